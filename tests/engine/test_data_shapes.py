"""`data import` shapes: detection, ShareGPT roles, preference and classification columns,
column mapping and a forced shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import
from engine.data import shapes as data_shapes


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def stored(version: data_import.DatasetVersion) -> list[dict]:
    import datasets

    return datasets.load_from_disk(str(version.path / "data")).to_list()


def refused(path: Path, **kwargs) -> str:
    with pytest.raises(EngineError) as caught:
        data_import.import_file(path, **kwargs)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    return caught.value.message


def sharegpt(*turns: tuple[str, str]) -> dict:
    return {"conversations": [{"from": who, "value": text} for who, text in turns]}


@pytest.mark.parametrize("row, shape", [
    ({"messages": []}, "messages"),
    ({"conversations": []}, "sharegpt"),
    ({"instruction": "", "output": ""}, "alpaca"),
    ({"prompt": "", "completion": ""}, "prompt_completion"),
    ({"prompt": "", "chosen": "", "rejected": "", "completion": ""}, "preference"),
    ({"text": "", "label": ""}, "classification"),
    ({"text": ""}, "text"),
])
def test_detect_shape(row: dict, shape: str) -> None:
    assert data_shapes.detect_shape(row) == shape


def test_sharegpt_roles_map_to_system_user_assistant(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "sg.jsonl", [
        sharegpt(("system", "be kind"), ("human", "hi"), ("gpt", "hello"), ("human", "bye"), ("gpt", "ciao"))])
    version, report = data_import.import_file(file)
    assert report.shape == "sharegpt"
    assert [m["role"] for m in stored(version)[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


@pytest.mark.parametrize("row, expected", [
    (sharegpt(("human", "hi"), ("bot", "hello")), "sg.jsonl:2: conversations[1].from: unknown role 'bot'"),
    (sharegpt(("human", "hi"), ("human", "again")), "sg.jsonl:2: conversations[1].from: expected assistant"),
    (sharegpt(("human", "hi")), "sg.jsonl:2: conversations: conversation has no final assistant turn"),
    (sharegpt(("human", "hi"), ("gpt", "")), "sg.jsonl:2: conversations[1].value: is empty"),
    ({"conversations": "hi"}, "sg.jsonl:2: conversations: must be a non-empty list"),
])
def test_bad_sharegpt_rows_name_the_turn(workspace_home: Path, tmp_path: Path, row: dict, expected: str) -> None:
    file = write_jsonl(tmp_path / "sg.jsonl", [sharegpt(("human", "q"), ("gpt", "a")), row])
    assert refused(file).startswith(expected)


def test_preference_rows_store_prompt_chosen_rejected(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {"prompt": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}],
         "chosen": [{"role": "assistant", "content": "hi"}], "rejected": "go away"}])
    version, report = data_import.import_file(file)
    assert report.shape == "preference" and version.manifest["shape"] == "preference"
    rows = stored(version)
    assert rows[0] == {"prompt": [{"role": "user", "content": "2+2?"}],
                       "chosen": [{"role": "assistant", "content": "4"}],
                       "rejected": [{"role": "assistant", "content": "5"}]}
    assert rows[1]["prompt"][0] == {"role": "system", "content": "terse"}


def test_preference_prompt_must_end_with_user(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
         "chosen": "c", "rejected": "d"}])
    assert "prefs.jsonl:1: prompt: prompt must end with a user turn" in refused(file)


def test_classification_rows_store_text_and_label(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "cls.jsonl", [
        {"text": "love it", "label": 1}, {"text": "hate it", "label": "neg"}, {"text": "meh", "label": [1]}])
    assert refused(file).startswith("cls.jsonl:3: label: must be text or a whole number, not list")
    version, report = data_import.import_file(file, skip_invalid=True)
    assert report.shape == "classification"
    assert stored(version) == [{"text": "love it", "label": "1"}, {"text": "hate it", "label": "neg"}]


def test_column_mapping_reads_fields_from_other_columns(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4"},
                                               {"question": "3+3?", "answer": ""}])
    options = data_import.ImportOptions(mapping={"instruction": "question", "output": "answer"})
    # The problem names the user's column, not the canonical field.
    assert refused(file, options=options).startswith("qa.jsonl:2: answer: is empty")
    version, report = data_import.import_file(file, options=options, skip_invalid=True)
    assert report.shape == "alpaca"
    assert version.manifest["mapping"] == {"instruction": "question", "output": "answer"}
    assert stored(version)[0]["messages"][1] == {"role": "assistant", "content": "4"}


def test_a_mapped_column_that_is_absent_is_reported_as_missing(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "reply": "4"}])
    options = data_import.ImportOptions(shape="alpaca", mapping={"instruction": "question", "output": "answer"})
    assert "qa.jsonl:1: answer: missing" in refused(file, options=options)


def test_forced_shape_wins_over_detection(workspace_home: Path, tmp_path: Path) -> None:
    # Detected as classification; forced to plain text the label is ignored.
    file = write_jsonl(tmp_path / "docs.jsonl", [{"text": "doc one", "label": "x"}])
    version, report = data_import.import_file(file, options=data_import.ImportOptions(shape="text"))
    assert report.shape == "text" and stored(version) == [{"text": "doc one"}]


def test_unknown_forced_shape_is_a_usage_error(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "docs.jsonl", [{"text": "doc"}])
    with pytest.raises(EngineError) as caught:
        data_import.import_file(file, options=data_import.ImportOptions(shape="poem"))
    assert caught.value.code == protocol.ExitCode.USAGE
