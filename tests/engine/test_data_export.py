"""`data export`: each shape written back to JSONL, round-trips through `data import`, refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import export as data_export
from engine.data import importer as data_import


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def stored_rows(version: data_import.DatasetVersion) -> list[dict]:
    import datasets

    return datasets.load_from_disk(str(version.path / "data")).to_list()


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


SINGLE_TURN = [
    {"messages": [msg("system", "be brief"), msg("user", "2+2?"), msg("assistant", "4")]},
    {"messages": [msg("user", "Line one\nline two — é ✓"), msg("assistant", "ok\n\"quoted\"")]},
]
MULTI_TURN = {"messages": [msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye"),
                           msg("assistant", "see you")]}


def import_rows(tmp_path: Path, rows: list[dict], name: str = "chats") -> data_import.DatasetVersion:
    return data_import.import_file(write_jsonl(tmp_path / f"{name}.jsonl", rows))[0]


@pytest.mark.parametrize("fmt, rows", [
    ("messages", SINGLE_TURN + [MULTI_TURN]),
    ("sharegpt", SINGLE_TURN + [MULTI_TURN]),
    ("alpaca", SINGLE_TURN),
])
def test_export_then_import_gives_the_same_rows(workspace_home: Path, tmp_path: Path, fmt: str,
                                                rows: list[dict]) -> None:
    original = import_rows(tmp_path, rows)
    out = tmp_path / "out" / f"exported-{fmt}.jsonl"
    report = data_export.export_dataset(original.ref, out, fmt)
    assert (report.format, report.rows, report.skipped) == (fmt, len(rows), 0)
    again, import_report = data_import.import_file(out)
    assert import_report.shape == fmt
    assert stored_rows(again) == stored_rows(original)


def test_exported_files_read_back_in_each_format(workspace_home: Path, tmp_path: Path) -> None:
    version = import_rows(tmp_path, SINGLE_TURN[:1])
    written = {}
    for fmt in data_export.CHAT_FORMATS:
        data_export.export_dataset(version.ref, tmp_path / f"{fmt}.jsonl", fmt)
        written[fmt] = read_jsonl(tmp_path / f"{fmt}.jsonl")
    assert written["messages"] == SINGLE_TURN[:1]
    assert written["alpaca"] == [{"instruction": "2+2?", "input": "", "output": "4", "system": "be brief"}]
    assert written["sharegpt"] == [{"conversations": [{"from": "system", "value": "be brief"},
                                                      {"from": "human", "value": "2+2?"},
                                                      {"from": "gpt", "value": "4"}]}]
    assert written["prompt_completion"] == [{"prompt": [msg("system", "be brief"), msg("user", "2+2?")],
                                             "completion": [msg("assistant", "4")]}]


def test_multi_turn_prompt_completion_keeps_earlier_turns_in_the_prompt(workspace_home: Path, tmp_path: Path) -> None:
    version = import_rows(tmp_path, [MULTI_TURN])
    data_export.export_dataset(version.ref, tmp_path / "pc.jsonl", "prompt_completion")
    row = read_jsonl(tmp_path / "pc.jsonl")[0]
    assert row["prompt"] == MULTI_TURN["messages"][:3] and row["completion"] == MULTI_TURN["messages"][3:]


def test_prompt_completion_export_round_trips(workspace_home: Path, tmp_path: Path) -> None:
    original = import_rows(tmp_path, SINGLE_TURN)
    data_export.export_dataset(original.ref, tmp_path / "pc.jsonl", "prompt_completion")
    assert stored_rows(data_import.import_file(tmp_path / "pc.jsonl")[0]) == stored_rows(original)


def test_alpaca_refuses_multi_turn_rows_naming_the_first(workspace_home: Path, tmp_path: Path) -> None:
    version = import_rows(tmp_path, [SINGLE_TURN[0], MULTI_TURN, MULTI_TURN])
    out = tmp_path / "alpaca.jsonl"
    out.write_text("previous content\n", encoding="utf-8")
    with pytest.raises(EngineError) as caught:
        data_export.export_dataset(version.ref, out, "alpaca")
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert caught.value.message.startswith("row 2: has 2 exchanges") and "\n" not in caught.value.message
    assert out.read_text(encoding="utf-8") == "previous content\n"  # never half-written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".alpaca")] == []  # temp removed
    report = data_export.export_dataset(version.ref, out, "alpaca", skip_invalid=True)
    assert (report.rows, report.skipped) == (1, 2)
    assert read_jsonl(out) == [{"instruction": "2+2?", "input": "", "output": "4", "system": "be brief"}]


@pytest.mark.parametrize("rows, shape", [
    ([{"prompt": [msg("user", "Pick")], "chosen": [msg("assistant", "A")], "rejected": [msg("assistant", "B")]}],
     "preference"),
    ([{"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"}], "classification"),
    ([{"text": "a document"}, {"text": "another\nwith two lines"}], "text"),
])
def test_other_shapes_export_as_themselves_and_round_trip(workspace_home: Path, tmp_path: Path,
                                                          rows: list[dict], shape: str) -> None:
    original = import_rows(tmp_path, rows, name=shape)
    out = tmp_path / "out.jsonl"
    assert data_export.export_dataset(original.ref, out).format == shape
    assert read_jsonl(out) == rows
    assert stored_rows(data_import.import_file(out, name="again")[0]) == stored_rows(original)
    with pytest.raises(EngineError) as caught:
        data_export.export_dataset(original.ref, out, "alpaca")
    assert caught.value.code == protocol.ExitCode.USAGE and "--format alpaca" in caught.value.message


def test_cli_export_json_result_and_refusal(engine_env, engine_argv, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "talk.jsonl", [SINGLE_TURN[0], MULTI_TURN])
    done = subprocess.run(engine_argv("data", "import", str(file)), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "talk-sharegpt.jsonl"
    done = subprocess.run(engine_argv("data", "export", "talk@v1", "--format", "sharegpt", "--out", str(out), "--json"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = protocol.decode(done.stdout.splitlines()[-1])["data"]
    assert (result["format"], result["rows"], result["skipped"]) == ("sharegpt", 2, 0)
    assert len(read_jsonl(out)) == 2
    done = subprocess.run(
        engine_argv("data", "export", "talk", "--format", "alpaca", "--out", str(tmp_path / "a.jsonl")),
        env=engine_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == protocol.ExitCode.INVALID_INPUT
    assert "error: row 2: has 2 exchanges" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "a.jsonl").exists()


TAGGED = [SINGLE_TURN[0] | {"category": "math", "n": 1, "ok": True, "lang": None},
          SINGLE_TURN[1] | {"category": "chat"}, MULTI_TURN]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "prompt_completion"])
def test_meta_is_written_back_as_fields_and_round_trips(workspace_home: Path, tmp_path: Path, fmt: str) -> None:
    original = import_rows(tmp_path, TAGGED)
    out = tmp_path / f"tagged-{fmt}.jsonl"
    data_export.export_dataset(original.ref, out, fmt)
    written = read_jsonl(out)
    assert [{k: v for k, v in r.items() if k in ("category", "n", "ok", "lang")} for r in written] == [
        {"category": "math", "n": 1, "ok": True, "lang": None}, {"category": "chat"}, {}]
    again = data_import.import_file(out, name="again")[0]
    assert stored_rows(again) == stored_rows(original)
    assert again.manifest["meta_columns"] == original.manifest["meta_columns"]


def test_classification_meta_round_trips_and_own_fields_win(workspace_home: Path, tmp_path: Path) -> None:
    rows = [{"text": "great", "label": "pos", "language": "en"}, {"text": "schlecht", "label": "neg", "language": "de"}]
    original = import_rows(tmp_path, rows, name="reviews")
    out = tmp_path / "out.jsonl"
    data_export.export_dataset(original.ref, out)
    assert read_jsonl(out) == rows
    assert stored_rows(data_import.import_file(out, name="again")[0]) == stored_rows(original)
    row = {"messages": SINGLE_TURN[0]["messages"], "meta": json.dumps({"messages": "x", "topic": "t"})}
    assert data_export.with_meta(row, data_export.to_messages(row)) == {"messages": row["messages"], "topic": "t"}
