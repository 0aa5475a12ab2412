"""`data import`: shapes, row-level errors naming file/line/field, versions, CLI exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_openai_messages_file_is_stored_with_a_manifest(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "chats.jsonl", [chat("hi", "hello", "be brief"), chat("2+2?", "4")])
    version, report = data_import.import_file(file)
    assert (version.name, version.version, report.rows, report.shape) == ("chats", 1, 2, "messages")
    manifest = json.loads((version.path / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["content_hash"] == data_import.file_hash(file)
    import datasets

    stored = datasets.load_from_disk(str(version.path / "data"))
    assert stored[0]["messages"][0] == {"role": "system", "content": "be brief"}


def test_alpaca_rows_become_conversations(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Translate", "input": "chat", "output": "cat"},
        {"instruction": "Say hi", "input": "", "output": "hi", "system": "polite"}])
    version, report = data_import.import_file(file)
    assert report.shape == "alpaca"
    import datasets

    rows = datasets.load_from_disk(str(version.path / "data"))["messages"]
    assert rows[0] == [{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "cat"}]
    assert rows[1][0] == {"role": "system", "content": "polite"}


@pytest.mark.parametrize(
    "bad_row, field, words",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "no final assistant turn"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "unknown role 'robot'"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}]},
            "messages[1].content",
            "must be text",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "messages[1].role",
            "alternate",
        ),
        ({"messages": []}, "messages", "non-empty list"),
        ('{"messages": [', "(line)", "not valid JSON"),
        ("[1, 2]", "(row)", "must be a JSON object"),
    ],
)
def test_a_bad_row_is_named_by_file_line_and_field(workspace_home: Path, tmp_path: Path,
                                                   bad_row, field: str, words: str) -> None:
    file = write_jsonl(tmp_path / "data.jsonl", [chat("a", "b"), chat("c", "d"), bad_row])
    with pytest.raises(EngineError) as caught:
        data_import.import_file(file)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    assert caught.value.message.startswith(f"data.jsonl:3: {field}: ")
    assert words in caught.value.message


def test_non_utf8_bytes_are_reported_on_their_line(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "latin.jsonl"
    file.write_bytes(json.dumps(chat("a", "b")).encode() + b"\n" + '{"messages": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(EngineError, match=r"latin.jsonl:2: \(line\): not UTF-8"):
        data_import.import_file(file)


def test_unchanged_file_reuses_its_version_and_changed_file_gets_a_new_one(
    workspace_home: Path, tmp_path: Path
) -> None:
    file = write_jsonl(tmp_path / "d.jsonl", [chat("a", "b")])
    assert data_import.import_file(file)[0].version == 1
    assert data_import.import_file(file)[0].version == 1
    write_jsonl(file, [chat("a", "b"), chat("c", "d")])
    second = data_import.import_file(file)[0]
    assert (second.version, second.manifest["rows"]) == (2, 2)
    assert data_import.resolve("d").version == 2 and data_import.resolve("d@v1").version == 1


def test_cli_refuses_bad_file_with_one_line_and_exit_code(engine_env, engine_argv, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "bad.jsonl", [chat("a", "b"), {"messages": [{"role": "user"}]}])
    done = subprocess.run(engine_argv("data", "import", str(file)), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.INVALID_INPUT
    assert "error: bad.jsonl:2: messages[0].content: missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_skip_invalid_imports_the_rest_and_says_how_many(engine_env, engine_argv, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "some.jsonl", [chat("a", "b"), "nope", chat("c", "d")])
    done = subprocess.run(engine_argv("data", "import", str(file), "--skip-invalid", "--json"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    assert messages[0]["type"] == "hello"
    assert messages[-1]["data"] | {"path": None} == {"name": "some", "version": 1, "rows": 2, "skipped": 1,
                                                     "shape": "messages", "path": None}


def test_missing_file_is_not_found(workspace_home: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as caught:
        data_import.import_file(tmp_path / "nope.jsonl")
    assert caught.value.code == protocol.ExitCode.NOT_FOUND


def test_the_bundled_sample_imports_cleanly(workspace_home: Path) -> None:
    version = data_import.resolve("sample")
    assert version.manifest["rows"] >= 200 and version.manifest["skipped"] == 0


# -- report file, progress, cancel, CLI options ---------------------------------------------------

def test_report_file_lists_every_problem_even_when_refused(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "mixed.jsonl", [chat("a", "b"), "nope", {"messages": []}, chat("c", "d")])
    report_file = tmp_path / "out" / "problems.jsonl"
    with pytest.raises(EngineError):
        data_import.import_file(file, report_file=report_file)
    lines = [json.loads(line) for line in report_file.read_text(encoding="utf-8").splitlines()]
    assert [(p["file"], p["line"], p["field"]) for p in lines] == [("mixed.jsonl", 2, "(line)"),
                                                                    ("mixed.jsonl", 3, "messages")]
    assert "not valid JSON" in lines[0]["problem"] and "non-empty list" in lines[1]["problem"]
    assert not (workspace_home / "datasets" / "mixed" / "v1").exists()


def test_progress_is_reported_and_cancel_leaves_no_version(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "big.jsonl", [chat(f"q{i}", "a") for i in range(data_import.PROGRESS_EVERY + 5)])
    seen: list[tuple[int, int]] = []

    def cancel_at_first_event(current: int, total: int) -> None:
        seen.append((current, total))
        raise EngineError(protocol.ExitCode.CANCELLED, "cancelled")

    with pytest.raises(EngineError) as caught:
        data_import.import_file(file, on_progress=cancel_at_first_event)
    assert caught.value.code == protocol.ExitCode.CANCELLED
    assert seen == [(data_import.PROGRESS_EVERY, 0)]
    assert list((workspace_home / "datasets" / "big").iterdir()) == []  # temp folder removed
    seen.clear()
    version, _ = data_import.import_file(file, on_progress=lambda c, t: seen.append((c, t)))
    assert version.version == 1 and seen[-1] == (data_import.PROGRESS_EVERY + 5,) * 2
    assert sorted(p.name for p in version.path.iterdir()) == ["data", "manifest.json"]  # cache removed


def test_progress_callback_sends_progress_and_honours_cancel() -> None:
    import threading
    from types import SimpleNamespace

    sent: list[dict] = []
    job = SimpleNamespace(channel=SimpleNamespace(send=sent.append),
                          control=SimpleNamespace(cancelled=threading.Event()))
    from engine.core.control import progress_reporter

    callback = progress_reporter(job, "import")
    callback(10, 0)
    assert (sent[0]["type"], sent[0]["current"], sent[0]["total"], sent[0]["stage"]) == ("progress", 10, 0, "import")
    job.control.cancelled.set()
    with pytest.raises(EngineError) as caught:
        callback(20, 0)
    assert caught.value.code == protocol.ExitCode.CANCELLED and len(sent) == 1


def test_cli_map_shape_and_report_options(engine_env, engine_argv, tmp_path: Path) -> None:
    file = tmp_path / "qa.csv"
    file.write_text("question,answer\n2+2?,4\n3+3?,\n", encoding="utf-8")
    report_file = tmp_path / "report.jsonl"
    done = subprocess.run(engine_argv("data", "import", str(file), "--map", "prompt=question",
                                      "--map", "completion=answer", "--shape", "prompt_completion",
                                      "--report", str(report_file), "--skip-invalid", "--json"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = protocol.decode(done.stdout.splitlines()[-1])["data"]
    assert (result["shape"], result["rows"], result["skipped"]) == ("prompt_completion", 1, 1)
    problem = json.loads(report_file.read_text(encoding="utf-8"))
    assert (problem["file"], problem["line"], problem["field"], problem["problem"]) == (
        "qa.csv",
        3,
        "answer",
        "is empty",
    )


def test_cli_bad_map_is_a_usage_error(engine_env, engine_argv, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "d.jsonl", [chat("a", "b")])
    done = subprocess.run(engine_argv("data", "import", str(file), "--map", "instruction"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE
    assert "expected FIELD=COLUMN" in done.stderr


def test_cli_cancel_on_stdin_stops_the_import_and_stores_nothing(engine_env, engine_argv, tmp_path: Path,
                                                                 workspace_home: Path) -> None:
    file = write_jsonl(tmp_path / "big.jsonl", [chat(f"q{i}", "a") for i in range(data_import.PROGRESS_EVERY + 5)])
    # The cancel is read as the engine starts, long before the first progress boundary.
    done = subprocess.run(engine_argv("data", "import", str(file), "--json"), env=engine_env,
                          input=json.dumps({"type": "cancel"}) + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.CANCELLED, done.stderr
    assert protocol.decode(done.stdout.splitlines()[-1])["type"] == "error"
    assert list((workspace_home / "datasets" / "big").iterdir()) == []


# -- extra columns kept as metadata -----------------------------------------------------------------

def stored_rows(version: data_import.DatasetVersion) -> list[dict]:
    import datasets

    return datasets.load_from_disk(str(version.path / "data")).to_list()


def test_extra_scalar_columns_are_kept_as_meta_and_nested_ones_named_once(workspace_home: Path, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    file = write_jsonl(tmp_path / "tagged.jsonl", [
        chat("hi", "hello") | {"category": "greeting", "score": 0.5, "ok": True, "tags": ["a"]},
        chat("2+2?", "4") | {"category": "math", "n": 3, "lang": None, "tags": ["b", "c"]},
        chat("bye", "see you")])
    with caplog.at_level("INFO", logger="engine.data"):
        version, report = data_import.import_file(file)
    rows = stored_rows(version)
    assert [sorted(r) for r in rows] == [["messages", "meta"]] * 3
    assert [json.loads(r["meta"]) for r in rows] == [
        {"category": "greeting", "score": 0.5, "ok": True}, {"category": "math", "n": 3, "lang": None}, {}]
    assert version.manifest["meta_columns"] == ["category", "score", "ok", "n", "lang"]
    assert list(report.left_out_columns) == ["tags"]
    assert len([r for r in caplog.records if "'tags'" in r.getMessage()]) == 1  # one line, not one per row


def test_mapped_source_columns_are_not_meta(workspace_home: Path, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "qa.jsonl", [{"question": "2+2?", "answer": "4", "topic": "math"}])
    options = data_import.ImportOptions(mapping={"instruction": "question", "output": "answer"})
    version, _ = data_import.import_file(file, options=options)
    assert json.loads(stored_rows(version)[0]["meta"]) == {"topic": "math"}


# Pinned before metadata was kept: a file without extra columns must be stored exactly as before.
PLAIN_ROWS = [chat(f"q{i}", f"a{i}") for i in range(5)]
PLAIN_ROWS_SHA256 = "9414be3313f5f3b27147d72d1d21e90d25ff09c2af4a433c50d26daf44b8cc82"
PLAIN_FINGERPRINT = "4cda8fe2f2df6804"
PLAIN_CONTENT_HASH = "7e2fad8ee908be9b9ca7ae0328896339b439b1d8a42515034b16378713c66081"


def test_a_file_without_extra_columns_is_stored_as_before(workspace_home: Path, tmp_path: Path) -> None:
    import hashlib

    import datasets

    file = tmp_path / "plain.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in PLAIN_ROWS))
    version, _ = data_import.import_file(file)
    stored = datasets.load_from_disk(str(version.path / "data"))
    assert stored.column_names == ["messages"] and stored._fingerprint == PLAIN_FINGERPRINT
    assert hashlib.sha256(json.dumps(list(stored), sort_keys=True).encode()).hexdigest() == PLAIN_ROWS_SHA256
    assert version.manifest["content_hash"] == PLAIN_CONTENT_HASH and version.manifest["meta_columns"] == []
    info = json.loads((version.path / "data" / "dataset_info.json").read_text())
    assert info["dataset_size"] == stored.data.nbytes  # sizes of the stored table, not of the dropped column


def old_style(version: data_import.DatasetVersion) -> None:
    """Makes ``version`` look stored before metadata was kept (no meta_columns, no meta column)."""
    import shutil

    import datasets

    manifest = json.loads((version.path / "manifest.json").read_text())
    del manifest["meta_columns"]
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    data = datasets.load_from_disk(str(version.path / "data"))
    if "meta" in data.column_names:
        data.remove_columns("meta").save_to_disk(str(version.path / "old"))
        del data
        shutil.rmtree(version.path / "data")
        (version.path / "old").rename(version.path / "data")


def test_versions_stored_before_meta_are_reused_only_without_extra_columns(workspace_home: Path,
                                                                          tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "plain.jsonl", PLAIN_ROWS)
    old_style(data_import.import_file(plain)[0])
    assert data_import.import_file(plain)[0].version == 1  # same version on re-import
    tagged = write_jsonl(tmp_path / "tagged.jsonl", [chat("hi", "hello") | {"category": "greeting"}])
    old_style(data_import.import_file(tagged)[0])
    again = data_import.import_file(tagged)[0]
    assert again.version == 2 and json.loads(stored_rows(again)[0]["meta"]) == {"category": "greeting"}
    assert data_import.import_file(tagged)[0].version == 2


def test_dataset_dict_splits_all_get_meta_when_one_has_it(workspace_home: Path, tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"text": "a", "label": "x", "lang": "en"}]),
        "test": datasets.Dataset.from_list([{"text": "b", "label": "y"}])}).save_to_disk(str(folder))
    version, _ = data_import.import_file(folder)
    data = datasets.load_from_disk(str(version.path / "data"))
    assert data["train"]["meta"] == ['{"lang": "en"}'] and data["test"]["meta"] == ["{}"]
