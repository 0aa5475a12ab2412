"""Every reader of user files besides the dataset importer refuses hostile input with one line
(issue 19): suites, prompt files, batch files, TOML run files and evaluation specs, ratings,
run folders, model files (GGUF, safetensors, config.json) and adapter folders."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from engine.core import config, protocol, schema, untrusted, workspace
from engine.core.errors import EngineError

REPO = Path(__file__).resolve().parents[2]
DEEP_JSON = "[" * 5000 + "]" * 5000
HOSTILE_JSON = {
    "deep": '{"name": "s", "prompts": ' + DEEP_JSON + "}",
    "nan": '{"name": "s", "prompts": [NaN]}',
    "duplicate": '{"name": "s", "name": "t", "prompts": []}',
    "surrogate": '{"name": "\\udc00", "prompts": []}',
    "bad utf-8": b'{"name": "\xff"}',
}


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def assert_one_line(exc: BaseException, *words: str) -> None:
    message = getattr(exc, "message", None) or str(exc)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_suite_files(case: str, tmp_path: Path) -> None:
    from engine.infer import suites

    file = write(tmp_path / "suite.json", HOSTILE_JSON[case])
    with pytest.raises(EngineError) as caught:
        suites.import_json(file)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert_one_line(caught.value, str(file))


def test_suite_file_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.infer import suites

    monkeypatch.setattr(untrusted, "MAX_CONFIG_BYTES", 100)
    file = write(tmp_path / "suite.json", json.dumps({"name": "s", "prompts": ["x" * 200]}))
    with pytest.raises(EngineError, match="larger than the 100 bytes limit"):
        suites.import_json(file)


@pytest.mark.parametrize("line, words", [
    ('{"q": ' + DEEP_JSON + "}", "nested more than"), ('{"q": "a", "q": "b"}', "duplicate key"),
    ('{"q": Infinity}', "Infinity")])
def test_prompt_file_columns(line: str, words: str, tmp_path: Path) -> None:
    from engine.infer import suites

    file = write(tmp_path / "prompts.jsonl", '{"q": "fine"}\n' + line + "\n")
    with pytest.raises(EngineError) as caught:
        suites.read_column(file, "q")
    assert_one_line(caught.value, f"{file}: line 2: not valid JSON", words)


def test_prompt_file_line_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.infer import suites

    monkeypatch.setattr(untrusted, "MAX_LINE_BYTES", 100)
    file = write(tmp_path / "prompts.jsonl", '{"q": "fine"}\n{"q": "' + "x" * 500 + '"}\n')
    with pytest.raises(EngineError) as caught:
        suites.read_column(file, "q")
    assert_one_line(caught.value, f"{file}: line 2: line is longer than the 100 bytes limit")


@pytest.mark.parametrize("name, content, words", [
    ("b.json", DEEP_JSON, "nested more than"),
    ("b.json", '[{"name": "a", "params": {"temperature": NaN}}]', "NaN"),
    ("b.toml", "[[config]]\nname = 'a'\nx = " + "[" * 3000 + "]" * 3000, "nested more than"),
    ("b.toml", "[[config]]\nname = 'a'\n[config.params]\ntemperature = nan\n", "nan is not a usable number"),
    ("b.toml", "[[config]]\nname = 'a'\nname = 'b'\n", ":3: not valid TOML"),
])
def test_batch_files(name: str, content: str, words: str, tmp_path: Path) -> None:
    from engine.infer import batch

    file = write(tmp_path / name, content)
    with pytest.raises(EngineError) as caught:
        batch.read_configs(file)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert_one_line(caught.value, str(file), words)


@pytest.mark.parametrize("content, words", [
    ("[train]\nlearning_rate = nan\n", "nan is not a usable number"),
    ("[train]\nlearning_rate = inf\n", "inf is not a usable number"),
    ("[train]\nx = " + "[" * 3000 + "]" * 3000 + "\n", "nested more than"),
    (b"[train]\nname = '\xff'\n", "not utf-8 text"),
    ("[train]\nepochs = 1\nepochs = 2\n", ":3: config: not valid TOML"),
])
def test_toml_run_files_and_evaluation_specs(content: str | bytes, words: str, tmp_path: Path) -> None:
    from engine.eval import spec

    file = write(tmp_path / "run.toml", content)
    for load in (lambda: config.load_toml(file), lambda: spec.load_toml(file)):
        with pytest.raises(schema.ConfigError) as caught:
            load()
        assert_one_line(caught.value, str(file), words)


def test_toml_file_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "MAX_CONFIG_BYTES", 50)
    file = write(tmp_path / "run.toml", "[train]\n" + "# padding\n" * 20)
    with pytest.raises(schema.ConfigError, match="larger than the 50 bytes limit"):
        config.load_toml(file)


def test_ratings_skip_hostile_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.infer import ratings

    monkeypatch.setattr(untrusted, "MAX_LINE_BYTES", 1000)
    good = json.dumps({"kind": "thumbs", "prompt": "p", "answer": "a", "value": 1})
    file = write(
        tmp_path / "ratings.jsonl",
        "\n".join(
            [
                '{"a": ' + DEEP_JSON + "}",
                "[1, 2]",
                '{"id": NaN}',
                '{"id": "x", "id": "y"}',
                '"' + "x" * 5000 + '"',
                good,
            ]
        )
        + "\n",
    )
    assert [rating.answer for rating in ratings.load(file)] == ["a"]


def test_run_json_and_manifests_that_are_hostile_read_as_missing(tmp_path: Path) -> None:
    for content in ('{"a": ' + DEEP_JSON + "}", '{"status": NaN}', '{"id": "a", "id": "b"}', b"\xff"):
        file = write(tmp_path / "run.json", content)
        assert workspace.read_json(file) is None


def test_event_log_with_a_huge_or_deep_line_is_read_around_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_LINE_BYTES", 1000)
    run = workspace.RunFolder(tmp_path)
    good = protocol.encode(protocol.log("fine"))
    write(run.events, good + '{"type": "log", "message": "' + "x" * 5000 + '"}\n' + '{"a": ' + DEEP_JSON + "}\n" + good)
    assert [m["message"] for m in run.read_events()] == ["fine", "fine"]


# -- model files -----------------------------------------------------------------------------------

def gguf_header(version: int = 3, tensors: int = 1, keys: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, keys) + b"\0" * 64


@pytest.mark.parametrize("content, words", [
    (b"", "not a GGUF file"), (b"PK\x03\x04" + b"\0" * 40, "not a GGUF file"),
    (gguf_header(version=99), "GGUF version 99"), (gguf_header(tensors=2**62), "damaged GGUF header"),
])
def test_gguf_files_are_checked_before_loading(content: bytes, words: str, tmp_path: Path) -> None:
    from engine.runtime import models

    file = write(tmp_path / "model.gguf", content)
    with pytest.raises(EngineError) as caught:
        models.resolve(str(file))
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert_one_line(caught.value, "model: ", str(file), words)


def safetensors(header: dict | str, data: bytes = b"\0" * 8, length: int | None = None) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


GOOD_TENSOR = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("content, words", [
    (safetensors(GOOD_TENSOR, length=2**40), "header length"),
    (b"\x01", "header length"),
    (safetensors('{"w": ' + DEEP_JSON + "}"), "nested more than"),
    (safetensors('{"w": {"data_offsets": [0, 8]}, "w": {"data_offsets": [0, 8]}}'), "duplicate key"),
    (safetensors({"w": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}}), "lies outside the file"),
])
def test_safetensors_headers_in_model_and_adapter_folders(content: bytes, words: str, tmp_path: Path) -> None:
    from engine.infer import generate
    from engine.runtime import models

    model = tmp_path / "model"
    model.mkdir()
    write(model / "config.json", '{"model_type": "llama"}')
    write(model / "model.safetensors", content)
    with pytest.raises(EngineError) as caught:
        models.resolve(str(model))
    assert_one_line(caught.value, "model: ", words)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write(adapter / "adapter_config.json", '{"base_model_name_or_path": "default"}')
    write(adapter / "adapter_model.safetensors", content)
    with pytest.raises(EngineError) as caught:
        generate.resolve(None, str(adapter))
    assert_one_line(caught.value, "adapter: ", words)


def test_good_safetensors_pass(tmp_path: Path) -> None:
    from engine.runtime import model_files

    write(tmp_path / "config.json", '{"model_type": "llama"}')
    write(tmp_path / "model.safetensors", safetensors(GOOD_TENSOR))
    assert model_files.check_folder(tmp_path) == {"model_type": "llama"}


@pytest.mark.parametrize("content", ['{"model_type": ' + DEEP_JSON + "}", '{"a": NaN}', "[1]", b"\xfe"])
def test_config_json_of_models_and_adapters(content: str | bytes, tmp_path: Path) -> None:
    from engine.infer import generate
    from engine.runtime import models

    write(tmp_path / "config.json", content)
    with pytest.raises(EngineError) as caught:
        models.resolve(str(tmp_path))
    assert_one_line(caught.value, "model: ", "config.json")
    write(tmp_path / "adapter_config.json", content)
    with pytest.raises(EngineError) as caught:
        generate.resolve(None, str(tmp_path))
    assert_one_line(caught.value, "adapter: ", "adapter_config.json")


# -- the class, not the examples -----------------------------------------------------------------

# Files that parse JSON or TOML the engine itself wrote a moment before (a stored column), or
# that ship with Tunebench (presets); every other parse of a file goes through engine.core.untrusted.
OWN_DATA = {"engine/core/untrusted.py", "engine/data/export.py", "engine/eval/examples.py", "engine/core/config.py",
            # request bodies of the local endpoint: bounded by its own request limits (serve.py)
            "engine/infer/serve.py"}


def test_every_parse_of_a_user_file_goes_through_the_checked_reader() -> None:
    offenders = []
    for file in sorted((REPO / "engine").rglob("*.py")):
        relative = file.relative_to(REPO).as_posix()
        if relative in OWN_DATA:
            continue
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"\bjson\.loads?\(|\btomllib\.loads?\(", line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
