"""`data stats`: token lengths as training sees them, cutoff counts, duplicates, roles, labels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import
from engine.data import stats as data_stats
from engine.data import tokens as data_tokens


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chat(user: str, answer: str, system: str = "") -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


ROWS = [chat("great phone", "positive"),
        chat("the battery died after a day and the screen cracked", "negative " * 12, system="be brief"),
        chat("great phone", "positive"),  # an exact duplicate of the first row
        chat("ok " * 40, "neutral")]


def hand_counts(tokenizer, row: dict) -> tuple[int, int]:
    """(tokens, answer tokens) the plain way: the whole conversation through the chat template,
    minus the prompt rendered with the generation prompt."""
    whole = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=True, add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    return len(whole), len(whole) - len(prompt)


@pytest.fixture
def tokenizer(tiny_model_dir: Path):
    return data_tokens.load_tokenizer(str(tiny_model_dir))


def test_lengths_and_cutoff_counts_match_a_hand_count(workspace_home: Path, tmp_path: Path,
                                                      tiny_model_dir: Path, tokenizer) -> None:
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", ROWS))
    counts = [hand_counts(tokenizer, row) for row in ROWS]
    short, long, _, wordy = counts
    # A cutoff inside the long row's answer, and past the end of the wordy row's prompt.
    cutoff = long[0] - long[1] // 2
    assert wordy[0] - wordy[1] > cutoff > short[0]
    stats = data_stats.data_stats("d", str(tiny_model_dir), cutoff)

    lengths = [total for total, _ in counts]
    assert stats["rows"] == 4 and stats["tokens"]["max"] == max(lengths) and stats["tokens"]["min"] == min(lengths)
    assert stats["tokens"]["total"] == sum(lengths)
    assert stats["truncated"] == 2
    assert stats["answer_cut"] == 1  # the long row keeps the start of its answer
    assert stats["answer_lost"] == 1  # the wordy row's answer is wholly past the cutoff
    assert sum(stats["histogram"]["counts"]) == 4
    assert stats["histogram"]["edges"][0] <= min(lengths) and stats["histogram"]["edges"][-1] > max(lengths)
    assert stats["longest"][0] == [3, wordy[0]]
    assert stats["duplicates"] == 1 and stats["empty_answers"] == 0
    assert stats["roles"] == {"user": 4, "assistant": 4, "system": 1}
    assert stats["turns"] == {"1": 4}
    assert stats["labels"] == {}


def test_classification_label_balance_and_text_lengths(workspace_home: Path, tmp_path: Path,
                                                       tiny_model_dir: Path, tokenizer) -> None:
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "fine", "label": "pos"}]
    data_import.import_file(write_jsonl(tmp_path / "c.jsonl", rows))
    stats = data_stats.data_stats("c", str(tiny_model_dir), 512)
    assert stats["labels"] == {"pos": 2, "neg": 1}
    # Plain text goes through TRL's language-modelling path: the text and an end-of-sequence token.
    assert stats["tokens"]["max"] == max(len(tokenizer(r["text"] + tokenizer.eos_token)["input_ids"]) for r in rows)
    assert stats["truncated"] == 0 and stats["roles"] == {}


def test_stats_leave_the_version_folder_untouched(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    version = data_import.import_file(write_jsonl(tmp_path / "d.jsonl", ROWS))[0]
    before = sorted(p.relative_to(version.path) for p in version.path.rglob("*"))
    data_stats.data_stats("d", str(tiny_model_dir), 64)
    assert sorted(p.relative_to(version.path) for p in version.path.rglob("*")) == before


def test_progress_per_chunk_and_cancel(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", ROWS * 3))
    monkeypatch.setattr(data_tokens, "CHUNK_ROWS", 5)
    seen: list[tuple[int, int]] = []
    data_stats.data_stats("d", str(tiny_model_dir), 64, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(5, 12), (10, 12), (12, 12)]

    def cancel(done: int, total: int) -> None:
        raise EngineError(protocol.ExitCode.CANCELLED, "stats cancelled")

    with pytest.raises(EngineError) as caught:
        data_stats.data_stats("d", str(tiny_model_dir), 64, on_progress=cancel)
    assert caught.value.code == protocol.ExitCode.CANCELLED


def test_cli_stats_json(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path, engine_env, engine_argv) -> None:
    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", ROWS))
    done = subprocess.run(engine_argv("data", "stats", "d@v1", "--model", str(tiny_model_dir), "--max-length", "40",
                                      "--json"), env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.OK, done.stderr
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    assert [m["type"] for m in messages][0] == "hello" and messages[-1]["type"] == "result"
    assert any(m["type"] == "progress" and m["stage"] == "stats" for m in messages)
    result = messages[-1]["data"]
    assert (result["dataset"], result["rows"], result["max_length"], result["duplicates"]) == ("d@v1", 4, 40, 1)


def test_cli_unknown_dataset_is_one_line(workspace_home: Path, tiny_model_dir: Path, engine_env, engine_argv) -> None:
    done = subprocess.run(engine_argv("data", "stats", "nope", "--model", str(tiny_model_dir), "--json"),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.NOT_FOUND
    assert protocol.decode(done.stdout.splitlines()[-1])["message"].startswith("dataset: 'nope'")


def test_stats_of_one_split_and_of_preference_pairs(workspace_home: Path, tmp_path: Path,
                                                    tiny_model_dir: Path) -> None:
    from engine.data import split as data_split

    data_import.import_file(write_jsonl(tmp_path / "d.jsonl", ROWS * 5))
    split = data_split.split_dataset("d", val=0.2, seed=1)
    assert data_stats.data_stats(split.ref, str(tiny_model_dir), 512, split="validation")["rows"] == 4
    pairs = [{"prompt": "which?", "chosen": "this one", "rejected": "that one"}] * 2
    data_import.import_file(write_jsonl(tmp_path / "pairs.jsonl", pairs))
    stats = data_stats.data_stats("pairs", str(tiny_model_dir), 512)
    # Tokenized as the prompt with the chosen answer; both rows are the same pair.
    assert stats["roles"] == {"user": 2, "assistant": 2} and stats["duplicates"] == 1
    assert stats["tokens"]["min"] == stats["tokens"]["max"] > 0
