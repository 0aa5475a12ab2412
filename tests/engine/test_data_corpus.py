"""A generated corpus of malformed and odd files: every shape broken every way the issue names,
in JSONL and (for flat shapes) CSV with CRLF line ends and embedded newlines, plus empty, binary,
truncated and huge-line files. Each gives a correct import or the right per-row message naming
file, line and field, never a traceback."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import
from engine.data import split as data_split

GOOD = {
    "messages": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                              {"role": "assistant", "content": "a"}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    "alpaca": {"instruction": "q", "input": "", "output": "a"},
    "prompt_completion": {"prompt": "q", "completion": "a"},
    "preference": {"prompt": "q", "chosen": "good", "rejected": "bad"},
    "classification": {"text": "t", "label": "pos"},
    "text": {"text": "t"},
}

# (shape, broken row, field named in the message, words in the message)
BROKEN = [
    ("messages", {"messages": [{"role": "user", "content": "q"}]}, "messages", "no final assistant turn"),
    ("messages", {"messages": [{"role": "bot", "content": "q"}]}, "messages[0].role", "unknown role"),
    ("messages", {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
     "messages[0].role", "alternate"),
    ("messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
     "messages[1].content", "is empty"),
    ("messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]},
     "messages[1].content", "missing"),
    ("messages", {"messages": "q"}, "messages", "non-empty list"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"}]}, "conversations", "no final assistant"),
    ("sharegpt", {"conversations": [{"from": "robot", "value": "q"}]}, "conversations[0].from", "unknown role"),
    ("sharegpt", {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
     "conversations[0].from", "alternate"),
    ("sharegpt", {"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "a"}]},
     "conversations[0].value", "must be text"),
    ("alpaca", {"instruction": "q", "output": ""}, "output", "is empty"),
    ("alpaca", {"instruction": ["q"], "output": "a"}, "instruction", "must be text"),
    ("alpaca", {"instruction": "q", "output": None}, "output", "missing"),
    ("prompt_completion", {"prompt": "q", "completion": 5}, "completion", "must be text"),
    ("prompt_completion", {"prompt": "", "completion": "a"}, "prompt", "is empty"),
    ("prompt_completion", {"prompt": [{"role": "assistant", "content": "a"}], "completion": "a"},
     "prompt[0].role", "expected user"),
    ("preference", {"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", "is empty"),
    ("preference", {"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"},
     "chosen", "one assistant message"),
    ("classification", {"text": "t", "label": None}, "label", "missing"),
    ("classification", {"text": "t", "label": 1.5}, "label", "must be text or a whole number"),
    ("classification", {"text": "", "label": "pos"}, "text", "is empty"),
    ("text", {"text": 7}, "text", "must be text"),
    ("prompt_completion", {"prompt": [{"role": "user", "content": "line\nbreak"}, {"role": "user", "content": 1}],
                           "completion": "a"}, "prompt[1].content", "must be text"),
]


def write_jsonl(path: Path, rows: list[dict], newline: str = "\n") -> Path:
    path.write_bytes("".join(json.dumps(row, ensure_ascii=False) + newline for row in rows).encode("utf-8"))
    return path


def refused(path: Path, **kwargs) -> EngineError:
    with pytest.raises(EngineError) as caught:
        data_import.import_file(path, **kwargs)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert "\n" not in caught.value.message
    return caught.value


@pytest.mark.parametrize("shape, row, field, words", BROKEN, ids=[f"{b[0]}-{b[3]}" for b in BROKEN])
def test_each_shape_broken_each_way_names_line_and_field(workspace_home: Path, tmp_path: Path, shape: str,
                                                         row: dict, field: str, words: str) -> None:
    file = write_jsonl(tmp_path / f"{shape}.jsonl", [GOOD[shape], row, GOOD[shape]], newline="\r\n")
    message = refused(file, options=data_import.ImportOptions(shape=shape)).message
    assert message.startswith(f"{shape}.jsonl:2: {field}") and words in message
    version, report = data_import.import_file(file, skip_invalid=True, options=data_import.ImportOptions(shape=shape))
    assert (report.rows, len(report.problems), report.shape) == (2, 1, shape)


@pytest.mark.parametrize("shape", list(GOOD))
def test_every_good_shape_is_detected(workspace_home: Path, tmp_path: Path, shape: str) -> None:
    _, report = data_import.import_file(write_jsonl(tmp_path / f"{shape}.jsonl", [GOOD[shape]] * 2))
    assert (report.shape, report.rows) == (shape, 2)


@pytest.mark.parametrize("shape", ["alpaca", "prompt_completion", "classification", "text"])
def test_flat_shapes_as_crlf_csv_with_embedded_newlines(workspace_home: Path, tmp_path: Path, shape: str) -> None:
    columns = list(GOOD[shape])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    first = {name: f"{value}\r\nsecond line" if value else value for name, value in GOOD[shape].items()}
    writer.writerow([first[name] for name in columns])
    writer.writerow([GOOD[shape][name] for name in columns])
    writer.writerow([""] * len(columns))  # every field empty
    file = tmp_path / f"{shape}.csv"
    file.write_bytes(buffer.getvalue().encode("utf-8-sig"))
    if len(columns) > 1:
        # Header, the first row over 1 + (its line breaks) lines, the second row, then this one.
        line = 4 + sum(1 for value in GOOD[shape].values() if value)
        assert refused(file).message.startswith(f"{shape}.csv:{line}: ")
    # (A one-column row with its only field empty is a blank line, and blank lines are skipped.)
    version, report = data_import.import_file(file, skip_invalid=True)
    assert (report.shape, report.rows) == (shape, 2)
    first_row = data_split.load_rows(version)[0]
    assert "\r" not in json.dumps(first_row) and "second line" in json.dumps(first_row)


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", "\ufeff".encode("utf-8")])
def test_an_empty_file_says_no_valid_rows(workspace_home: Path, tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "empty.jsonl"
    file.write_bytes(content)
    assert refused(file).message == "empty.jsonl: no valid rows"


def test_a_truncated_last_line_is_one_bad_row(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "cut.jsonl"
    text = json.dumps(GOOD["alpaca"]) + "\n" + json.dumps(GOOD["alpaca"])[:20]
    file.write_text(text, encoding="utf-8")
    assert refused(file).message.startswith("cut.jsonl:2: (line): not valid JSON")


def test_a_huge_single_line_imports(workspace_home: Path, tmp_path: Path) -> None:
    answer = "word " * 400_000  # one 2 MB line
    file = write_jsonl(tmp_path / "huge.jsonl", [{"prompt": "q", "completion": answer}])
    version, report = data_import.import_file(file)
    assert report.rows == 1
    assert data_split.load_rows(version)[0]["messages"][1]["content"] == answer


def test_an_unknown_shape_lists_the_fields_found(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    message = refused(file).message
    assert "odd.jsonl:1: (row): unknown shape" in message and "found answer, question" in message
    # The mapping override makes the same file import.
    options = data_import.ImportOptions(mapping={"prompt": "question", "completion": "answer"})
    assert data_import.import_file(file, options=options)[1].shape == "prompt_completion"


def test_a_raw_line_break_inside_a_jsonl_string_is_reported_plainly(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "broken.jsonl"
    file.write_text('{"text": "ok"}\n{"text": "tab\there"}\n{"text": "line\nbreak"}\n', encoding="utf-8")
    message = refused(file).message
    assert message.startswith("broken.jsonl:2: (line): not valid JSON: Invalid control character at column")
    _, report = data_import.import_file(file, skip_invalid=True)
    assert [(p.line, p.field) for p in report.problems] == [(2, "(line)"), (3, "(line)"), (4, "(line)")]
