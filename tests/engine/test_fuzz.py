"""Property-based fuzzing of every reader of user input (issue 19): whatever the bytes, a reader
returns values or refuses with its one-line error, never another exception (a traceback).

Bounded: a few hundred examples each, small inputs, no deadline (the machine is shared)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import names, protocol, untrusted
from engine.core.errors import EngineError
from engine.data import formats

# The same examples on every run: a fuzz failure reproduces, and CI is never red by chance.
settings.register_profile("tunebench", derandomize=True, database=None)
settings.load_profile("tunebench")

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# Text that looks like JSON: fragments of it glued together, so the parser gets past the first byte.
json_pieces = st.sampled_from(['{', '}', '[', ']', '"', ':', ',', 'NaN', 'Infinity', '-Infinity', '1e999',
                               '"\\ud800"', '"a"', '"a": 1', 'null', 'true', '\\', '\n', ' ', '0', '9' * 40])
jsonish = st.lists(json_pieces, max_size=60).map("".join) | st.text(max_size=200)


@FAST
@given(jsonish)
def test_json_loads_returns_a_value_or_an_input_error(text: str) -> None:
    try:
        value = untrusted.json_loads(text)
    except untrusted.InputError as exc:
        assert "\n" not in str(exc)
        return
    untrusted.check_value(value)  # what it returns passes its own checks
    json.dumps(value, allow_nan=False).encode("utf-8")  # and can be written back as UTF-8


@FAST
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_is_refused_cleanly(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "1" + closer * depth
    if depth <= untrusted.MAX_DEPTH:
        untrusted.json_loads(text)
    else:
        with pytest.raises(untrusted.InputError, match="nested more than"):
            untrusted.json_loads(text)


@FAST
@given(json_values)
def test_valid_json_round_trips(value: object) -> None:
    text = json.dumps(value)
    try:
        assert untrusted.json_loads(text) == value
    except untrusted.InputError as exc:  # only for what the checker refuses on purpose
        assert "surrogate" in str(exc) or "duplicate" in str(exc) or "nested" in str(exc)


@FAST
@given(st.text(max_size=300))
def test_toml_loads_returns_a_table_or_an_input_error(text: str) -> None:
    try:
        assert isinstance(untrusted.toml_loads(text), dict)
    except untrusted.InputError as exc:
        assert "\n" not in exc.problem


@FAST
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b"x" * 50]), max_size=30),
       st.integers(min_value=1, max_value=64))
def test_bounded_lines_never_hold_more_than_the_limit(parts: list[bytes], limit: int) -> None:
    data = b"".join(parts)
    *complete, last = data.split(b"\n")
    expected = [piece + b"\n" for piece in complete] + ([last] if last else [])
    lines = list(untrusted.bounded_lines(io.BytesIO(data), limit))
    assert len(lines) == len(expected)
    for line, original in zip(lines, expected):
        if isinstance(line, untrusted.LineTooLong):
            assert len(original) > limit and line.size == len(original)
        else:
            assert line == original and len(line.rstrip(b"\n")) <= limit


@FAST
@given(st.binary(max_size=400) | jsonish.map(str.encode))
def test_protocol_decode_returns_a_message_or_a_protocol_error(line: bytes) -> None:
    for form in (line, line.decode("utf-8", errors="replace")):
        try:
            message = protocol.decode(form)
        except protocol.ProtocolError:
            continue
        assert isinstance(message, dict) and message["type"] in protocol.REQUIRED_FIELDS


@FAST
@given(st.text(max_size=30))
def test_a_name_is_refused_or_stays_inside_its_folder(name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "datasets"
        root.mkdir()
        try:
            path = names.child(root, name, "dataset name")
        except EngineError as exc:
            assert exc.message.startswith("dataset name ") and "\n" not in exc.message.replace("\\n", "")
            return
        assert path.resolve().parent == root.resolve()


# -- the dataset readers --------------------------------------------------------------------------

def _read_all(data: bytes, suffix: str) -> None:
    """Reads ``data`` as a file of ``suffix``: records or RowErrors, or one EngineError line."""
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / f"fuzz{suffix}"
        file.write_bytes(data)
        try:
            records = list(formats.read_records(formats.open_source(file)))
        except EngineError as exc:
            assert "\n" not in exc.message and exc.message.startswith("fuzz")
            return
        for record in records:
            assert record.position >= 1
            if isinstance(record.value, formats.RowError):
                assert "\n" not in record.value.problem


TEXT_SUFFIXES = st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt", ""])
line_bytes = (st.binary(max_size=60) | jsonish.map(lambda t: t.encode("utf-8", "surrogatepass"))
              | st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00", b"\xed\xa0\x80", b'"', b"\r"]))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_bytes, max_size=12).map(b"\n".join), TEXT_SUFFIXES)
def test_text_readers_never_raise_anything_but_their_one_line(data: bytes, suffix: str) -> None:
    _read_all(data, suffix)


@FAST
@given(st.lists(json_values.map(json.dumps) | jsonish, max_size=8), st.sampled_from([".jsonl", ".json"]))
def test_json_readers_on_near_json(lines: list[str], suffix: str) -> None:
    _read_all("\n".join(lines).encode("utf-8", "surrogatepass"), suffix)


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"text": ["hello", "world", "x" * 50], "n": [1, 2, 3]}), sink)
    return sink.getvalue()


PARQUET = _parquet_bytes()


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(PARQUET) - 1), st.integers(0, 255)),
                min_size=1, max_size=6))
def test_parquet_reader_on_damaged_files(flips: list[tuple[int, int]]) -> None:
    data = bytearray(PARQUET)
    for position, value in flips:
        data[position] = value
    _read_all(bytes(data), ".parquet")
