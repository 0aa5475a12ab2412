"""`data split`: seeded, reproducible splits stored as a new version; stratified labels; refusals."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import export as data_export
from engine.data import importer as data_import
from engine.data import split as data_split


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chats(count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(count)]


def import_rows(tmp_path: Path, rows: list[dict], name: str = "d") -> data_import.DatasetVersion:
    return data_import.import_file(write_jsonl(tmp_path / f"{name}.jsonl", rows))[0]


def questions(dataset) -> list[str]:
    return [messages[0]["content"] for messages in dataset["messages"]]


def test_split_is_a_new_version_holding_a_dataset_dict(workspace_home: Path, tmp_path: Path) -> None:
    import datasets

    source = import_rows(tmp_path, chats(100))
    split = data_split.split_dataset("d", val=0.1, test=0.2, seed=7)
    assert split.version == 2 and split.path == workspace_home / "datasets" / "d" / "v2"
    stored = datasets.load_from_disk(str(split.path / "data"))
    assert isinstance(stored, datasets.DatasetDict) and list(stored) == ["train", "validation", "test"]
    manifest = json.loads((split.path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["splits"] == {"train": 70, "validation": 10, "test": 20}
    assert (manifest["split_of"], manifest["seed"], manifest["rows"], manifest["shape"]) == ("d@v1", 7, 100, "messages")
    assert manifest["content_hash"] != source.manifest["content_hash"]
    every = sorted(sum((questions(stored[name]) for name in stored), []))
    assert every == sorted(f"q{i}" for i in range(100))  # each row in exactly one split


def test_same_seed_same_split_and_other_seed_differs(workspace_home: Path, tmp_path: Path) -> None:
    import_rows(tmp_path, chats(50))
    first = data_split.split_dataset("d@v1", 0.2, seed=1)
    assert data_split.split_dataset("d@v1", 0.2, seed=1).version == first.version  # reused
    other = data_split.split_dataset("d@v1", 0.2, seed=2)
    assert other.version == first.version + 1 and "test" not in other.manifest["splits"]
    val_first = questions(data_split.load_split(first, "validation"))
    assert val_first != questions(data_split.load_split(other, "validation"))
    # Recomputing from scratch (another workspace state) gives the very same rows.
    indices = data_split.assign_rows(50, data_split.split_sizes(50, 0.2, 0.0), seed=1)
    assert val_first == [f"q{i}" for i in indices["validation"]]


def test_splitting_a_split_version_splits_its_source_again(workspace_home: Path, tmp_path: Path) -> None:
    import_rows(tmp_path, chats(20))
    data_split.split_dataset("d", 0.1)
    again = data_split.split_dataset("d", 0.25)  # latest is d@v2, itself a split of d@v1
    assert again.manifest["split_of"] == "d@v1" and again.manifest["splits"] == {"train": 15, "validation": 5}


def test_classification_is_stratified_by_label(workspace_home: Path, tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(200)]
    import_rows(tmp_path, rows, name="cls")
    split = data_split.split_dataset("cls", val=0.1, test=0.1, seed=3)
    assert split.manifest["stratified_by"] == "label"
    for name in ("train", "validation", "test"):
        labels = Counter(data_split.load_split(split, name)["label"])
        share = labels["rare"] / sum(labels.values())
        assert share == pytest.approx(0.1), (name, labels)


@pytest.mark.parametrize("val, test, flag", [
    (0.0, 0.0, "--val 0.0"), (1.2, 0.0, "--val 1.2"), (0.1, -0.1, "--test -0.1"),
    (0.5, 0.5, "must be below 1"), (0.01, 0.0, "leaves the validation split empty"),
    (0.1, 0.01, "leaves the test split empty"),
])
def test_fractions_that_leave_a_split_empty_are_usage_errors(workspace_home: Path, tmp_path: Path,
                                                             val: float, test: float, flag: str) -> None:
    import_rows(tmp_path, chats(20))
    with pytest.raises(EngineError) as caught:
        data_split.split_dataset("d", val, test)
    assert caught.value.code == protocol.ExitCode.USAGE and flag in caught.value.message
    assert "\n" not in caught.value.message
    assert [v.version for v in data_import.versions("d")] == [1]


def test_load_split_reads_split_and_unsplit_versions(workspace_home: Path, tmp_path: Path) -> None:
    plain = import_rows(tmp_path, chats(10))
    assert len(data_split.load_split(plain)) == 10
    with pytest.raises(EngineError) as caught:
        data_split.load_split(plain, "validation")
    assert caught.value.code == protocol.ExitCode.NOT_FOUND and "data split" in caught.value.message
    split = data_split.split_dataset("d", 0.2)
    assert len(data_split.load_split(split)) == 8 and len(data_split.load_split(split, "validation")) == 2
    with pytest.raises(EngineError, match="no 'test' split"):
        data_split.load_split(split, "test")


def test_a_split_version_exports_every_row_or_one_split(workspace_home: Path, tmp_path: Path) -> None:
    import_rows(tmp_path, chats(10))
    data_split.split_dataset("d", 0.3)
    assert data_export.export_dataset("d", tmp_path / "all.jsonl").rows == 10
    assert data_export.export_dataset("d", tmp_path / "val.jsonl", split="validation").rows == 3


def test_cli_split_json_result_and_usage_error(engine_env, engine_argv, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "d.jsonl", chats(30))
    assert subprocess.run(engine_argv("data", "import", str(file)), env=engine_env,
                          capture_output=True, text=True, timeout=120).returncode == 0
    done = subprocess.run(engine_argv("data", "split", "d", "--val", "0.2", "--test", "0.1", "--seed", "5", "--json"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = protocol.decode(done.stdout.splitlines()[-1])["data"]
    assert (result["version"], result["split_of"], result["seed"]) == (2, "d@v1", 5)
    assert result["splits"] == {"train": 21, "validation": 6, "test": 3}
    done = subprocess.run(engine_argv("data", "split", "d", "--val", "0.6", "--test", "0.5"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE
    assert "error: --val 0.6 + --test 0.5" in done.stderr and "Traceback" not in done.stderr
