"""`data stats`: token lengths as training sees them against the cutoff, and the row checks that
matter before spending GPU hours (duplicates, empty answers, roles, label balance).

Token lengths come from :mod:`engine.data.tokens` (TRL's own tokenization of the training form
of each row). TRL keeps the start of a row longer than ``max_length`` (``keep_start``), so a long
row loses the end of its answer; a row whose answer lies wholly beyond the cutoff has nothing left
to learn from and TRL drops it. Both are counted here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from engine.core import protocol
from engine.core.config import TrainConfig
from engine.core.control import progress_reporter
from engine.core.job import Job
from engine.data.importer import resolve
from engine.data.split import load_rows
from engine.data.tokens import (
    MASKED,
    load_tokenizer,
    loss_tokens_beyond,
    tokenized_chunks,
)

log = logging.getLogger("engine.data")

BINS = 30
LONGEST = 10  # row indices of the longest rows, for the GUI to preview
ProgressCallback = Callable[[int, int], None]


@dataclass
class RowChecks:
    """Counts that need no tokenizer."""

    duplicates: int = 0
    empty_answers: int = 0
    roles: dict[str, int] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


def row_key(row: dict) -> bytes:
    """A digest of the whole canonical row: equal digests are exact duplicates."""
    return hashlib.blake2b(json.dumps(row, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()


def answer_text(row: dict) -> str:
    """The text a row teaches: the last assistant turn, the chosen answer, or the text."""
    if "messages" in row:
        return row["messages"][-1]["content"]
    if "chosen" in row:
        return row["chosen"][-1]["content"]
    return row.get("text", "")


def check_rows(rows: Any, checks: RowChecks, seen: set[bytes]) -> None:
    """Adds the duplicate, empty-answer, role and label counts of ``rows`` to ``checks``."""
    roles: Counter[str] = Counter(checks.roles)
    turns: Counter[str] = Counter(checks.turns)
    labels: Counter[str] = Counter(checks.labels)
    for row in rows:
        key = row_key(row)
        if key in seen:
            checks.duplicates += 1
        seen.add(key)
        if not answer_text(row).strip():
            checks.empty_answers += 1
        conversation = row.get("messages") or (row["prompt"] + row["chosen"] if "chosen" in row else [])
        roles.update(message["role"] for message in conversation)
        if conversation:
            turns[str(sum(1 for m in conversation if m["role"] == "assistant"))] += 1
        if "label" in row:
            labels[str(row["label"])] += 1
    checks.roles, checks.labels = dict(roles), dict(labels)
    checks.turns = dict(sorted(turns.items(), key=lambda item: int(item[0])))


@dataclass
class TokenCounts:
    """Per-row token counts of the whole dataset, in row order."""

    lengths: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)
    answer_cut: list[int] = field(default_factory=list)


def count_tokens(chunk: Any, max_length: int, counts: TokenCounts) -> None:
    for labels in chunk["labels"]:
        counts.lengths.append(len(labels))
        counts.answer.append(sum(1 for label in labels if label != MASKED))
        counts.answer_cut.append(loss_tokens_beyond(labels, max_length))


def histogram(lengths: list[int], cutoff: int, bins: int = BINS) -> dict[str, list[int]]:
    """Equal-width integer bins covering every row and the cutoff (so its line is on the plot)."""
    lower = min(min(lengths, default=0), cutoff)
    upper = max(max(lengths, default=0), cutoff) + 1
    width = max(1, -(-(upper - lower) // bins))
    counts = [0] * bins
    for length in lengths:
        counts[min((length - lower) // width, bins - 1)] += 1
    return {"edges": [lower + i * width for i in range(bins + 1)], "counts": counts}


def summarise(counts: TokenCounts, max_length: int) -> dict[str, Any]:
    import numpy as np

    lengths = np.asarray(counts.lengths or [0])
    answer, cut = np.asarray(counts.answer or [0]), np.asarray(counts.answer_cut or [0])
    longest = np.argsort(-lengths, kind="stable")[:LONGEST] if counts.lengths else []
    return {
        "tokens": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 1),
                   "median": float(np.median(lengths)), "p95": round(float(np.percentile(lengths, 95)), 1),
                   "max": int(lengths.max()), "total": int(lengths.sum()) if counts.lengths else 0},
        "histogram": histogram(counts.lengths, max_length),
        "truncated": int((lengths > max_length).sum()) if counts.lengths else 0,
        # Some of the answer is beyond the cutoff, some kept: training learns a cut answer.
        "answer_cut": int(((cut > 0) & (cut < answer)).sum()),
        # All of it is: TRL drops the row (nothing left to learn).
        "answer_lost": int(((cut > 0) & (cut == answer)).sum()),
        "longest": [[int(i), int(lengths[i])] for i in longest],
    }


def data_stats(spec: str, model: str, max_length: int, split: str = "", completion_only_loss: bool | None = None,
               on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Everything `data stats` reports for ``spec`` (``name`` or ``name@vN``).

    Args:
        spec: the dataset version.
        model: the model whose tokenizer and chat template training would use.
        max_length: the training cutoff in tokens.
        split: one split of a split version (default: every row).
        completion_only_loss: the train knob (default: its default).
        on_progress: called with (rows done, total) after every chunk; it may raise to cancel.
    """
    version = resolve(spec)
    shape = version.manifest.get("shape", "")
    data = load_rows(version, split)
    tokenizer = load_tokenizer(model)
    checks, seen, counts = RowChecks(), set(), TokenCounts()
    for start, chunk in tokenized_chunks(data, shape, tokenizer, completion_only_loss):
        check_rows(_rows(data, start, len(chunk)), checks, seen)
        count_tokens(chunk, max_length, counts)
        if on_progress:
            on_progress(start + len(chunk), len(data))
    result = {"dataset": version.ref, "shape": shape, "split": split, "rows": len(data), "model": model,
              "max_length": max_length, **summarise(counts, max_length), **asdict(checks)}
    _log_summary(result)
    return result


def _rows(data: Any, start: int, count: int) -> list[dict]:
    batch = data[start:start + count]
    return [dict(zip(batch, values)) for values in zip(*batch.values())]


def _log_summary(result: dict[str, Any]) -> None:
    tokens = result["tokens"]
    log.info("%s: %d rows; tokens min %d, median %g, p95 %g, max %d", result["dataset"], result["rows"],
             tokens["min"], tokens["median"], tokens["p95"], tokens["max"])
    log.info("Cutoff %d: %d rows truncated, %d lose part of the answer, %d lose all of it (dropped)",
             result["max_length"], result["truncated"], result["answer_cut"], result["answer_lost"])
    log.info("%d exact duplicates, %d empty answers", result["duplicates"], result["empty_answers"])


# -- CLI handler ----------------------------------------------------------------------------------

def cmd_stats(args: argparse.Namespace, job: Job) -> int:
    result = data_stats(args.dataset, args.model, args.max_length, args.split, args.completion_only_loss,
                        progress_reporter(job, "stats"))
    job.channel.send(protocol.result(result))
    return protocol.ExitCode.OK


DEFAULT_MAX_LENGTH = TrainConfig().max_length
