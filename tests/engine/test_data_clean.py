"""`data clean`: each step's count, the new version's manifest, splits carried, refusals."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import clean as data_clean
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.data import tokens as data_tokens
from engine.data.clean import CleanOptions


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def rows_of(version) -> list[dict]:
    return list(data_split.load_rows(version))


def test_normalize_then_dedupe_counts(workspace_home: Path, tmp_path: Path) -> None:
    decomposed = "cafe\u0301"  # "café" with a combining accent: NFC makes it one character
    rows = [chat("café", "yes"), chat(decomposed, "yes  \n\n\n\nsure"), chat("café", "yes"),
            chat("a\u00a0b\u200b", "ok"), chat("plain", "fine")]
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", rows))
    version, reports = data_clean.clean_dataset("d", CleanOptions(normalize=True, dedupe=True))
    assert [(r.step, r.changed) for r in reports] == [("normalize", 2), ("dedupe", 1)]
    cleaned = rows_of(version)
    assert [row["messages"][0]["content"] for row in cleaned] == ["café", "café", "a b", "plain"]
    assert cleaned[1]["messages"][1]["content"] == "yes\n\nsure"
    manifest = version.manifest
    assert (version.version, manifest["parent"], manifest["rows"], manifest["shape"]) == (2, "d@v1", 4, "messages")
    assert manifest["steps"][0] == {"step": "normalize", "changed": 2, "by_split": {"": 2}}
    # The same steps on the same parent reuse the version.
    assert data_clean.clean_dataset("d@v1", CleanOptions(normalize=True, dedupe=True))[0].version == 2


def test_drop_empty_after_normalising_whitespace_only_text(workspace_home: Path, tmp_path: Path) -> None:
    # Zero-width spaces are not whitespace to the importer, so this row imports; normalised it is empty.
    rows = [{"text": "real text"}, {"text": "\u200b\u200b"}, {"text": "more "}]
    data_import.import_file(write_jsonl(tmp_path / "t.jsonl", rows))
    version, reports = data_clean.clean_dataset("t", CleanOptions(normalize=True, drop_empty=True))
    assert [(r.step, r.changed) for r in reports] == [("normalize", 2), ("drop_empty", 1)]
    assert data_clean.is_empty({"text": " "}) and data_clean.is_empty(chat("q", "  "))
    assert not data_clean.is_empty(chat("q", "a"))
    assert rows_of(version) == [{"text": "real text"}, {"text": "more"}]


def test_token_length_filter_uses_training_lengths(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [chat("hi", "short"), chat("word " * 30, "long prompt"), chat("q", "answer " * 30)]
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", rows))
    tokenizer = data_tokens.load_tokenizer(str(tiny_model_dir))
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
               for r in rows]
    version, reports = data_clean.clean_dataset("d", CleanOptions(max_tokens=lengths[0], model=str(tiny_model_dir)))
    assert reports[0].step == "token_length" and reports[0].changed == 2
    assert rows_of(version) == [rows[0]]
    _, reports = data_clean.clean_dataset("d@v1", CleanOptions(min_tokens=lengths[0] + 1, model=str(tiny_model_dir)))
    assert reports[0].changed == 1


def test_oversample_balances_labels_in_train_only(workspace_home: Path, tmp_path: Path) -> None:
    rows = [{"text": f"good {i}", "label": "pos"} for i in range(16)] + \
           [{"text": f"bad {i}", "label": "neg"} for i in range(4)]
    data_import.import_file(write_jsonl(tmp_path / "c.jsonl", rows))
    split = data_split.split_dataset("c", val=0.25, seed=3)
    version, reports = data_clean.clean_dataset(split.ref, CleanOptions(oversample=True, seed=5))
    train = Counter(data_split.load_split(version, "train")["label"])
    assert train["pos"] == train["neg"] == 12
    assert reports[0].changed == 12 - 3 and reports[0].by_split == {"train": 9}
    assert version.manifest["splits"] == {"train": 24, "validation": 5}
    assert Counter(data_split.load_split(version, "validation")["label"]) == {"pos": 4, "neg": 1}


def test_augment_changes_prompts_not_answers(workspace_home: Path, tmp_path: Path) -> None:
    rows = [chat("please tell me the weather in paris today", "sunny"), chat("hi", "hello")]
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", rows))
    version, reports = data_clean.clean_dataset("d", CleanOptions(augment="swap", augment_copies=2, seed=1))
    # A one-word prompt cannot change, so only the long row gets copies.
    assert reports[0].changed == 2
    cleaned = rows_of(version)
    assert cleaned[:2] == rows
    for copy in cleaned[2:]:
        assert sorted(copy["messages"][0]["content"].split()) == sorted(rows[0]["messages"][0]["content"].split())
        assert copy["messages"][0]["content"] != rows[0]["messages"][0]["content"]
        assert copy["messages"][1] == rows[0]["messages"][1]


def test_augment_text_is_seeded() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    deleted = data_clean.augment_text(text, "delete", random.Random(7))
    assert deleted == data_clean.augment_text(text, "delete", random.Random(7))
    assert set(deleted.split()) < set(text.split())


def test_dedupe_drops_test_rows_that_repeat_train_rows(workspace_home: Path, tmp_path: Path) -> None:
    rows = [chat(f"q{i}", "a") for i in range(10)]
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", rows + rows[:10]))
    split = data_split.split_dataset("d", val=0.5, seed=0)
    version, reports = data_clean.clean_dataset(split.ref, CleanOptions(dedupe=True))
    assert reports[0].changed == 10 and version.manifest["rows"] == 10
    train = {r["messages"][0]["content"] for r in data_split.load_split(version, "train")}
    validation = {r["messages"][0]["content"] for r in data_split.load_split(version, "validation")}
    assert not train & validation


@pytest.mark.parametrize("options, words", [
    (CleanOptions(), "choose at least one step"),
    (CleanOptions(oversample=True), "only for classification"),
    (CleanOptions(min_tokens=10, max_tokens=5), "min <= max"),
])
def test_refusals(workspace_home: Path, tmp_path: Path, options: CleanOptions, words: str) -> None:
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", [chat("q", "a")]))
    with pytest.raises(EngineError) as caught:
        data_clean.clean_dataset("d", options)
    assert caught.value.code == protocol.ExitCode.USAGE and words in caught.value.message


def test_cli_clean(workspace_home: Path, tmp_path: Path, engine_env, engine_argv) -> None:
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), chat("q", "a")]))
    done = subprocess.run(engine_argv("data", "clean", "d", "--dedupe", "--json"), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.OK, done.stderr
    result = protocol.decode(done.stdout.splitlines()[-1])["data"]
    assert (result["version"], result["parent"], result["rows"]) == (2, "d@v1", 1)
    assert result["steps"] == [{"step": "dedupe", "changed": 1, "by_split": {"": 1}}]
