"""`data clean`: normalise text, drop duplicates, empty rows and rows of the wrong token length,
oversample minority labels and augment small datasets, stored as a new version.

Steps run in a fixed order (normalise, drop empty, dedupe, token length, oversample, augment) and
each reports how many rows it changed. The new version's manifest names its ``parent`` version
and the steps with their counts, and a second run of the same steps on the same parent reuses it.

Splits are carried, not redone: a split version's cleaned version keeps its train/validation/test
splits. Normalising and the filters apply to every split; duplicates are found across splits in
train, validation, test order, so a validation or test row that repeats a training row is dropped
(it would measure memory, not generalisation). Oversampling and augmentation add rows to the train
split only (an unsplit version is all training data): copies in validation or test would inflate
the scores. Splitting a cleaned version again (`data split`) re-splits all its rows; to keep
added copies out of validation, split first and clean the split version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from engine.core import errors, protocol
from engine.core.control import progress_reporter
from engine.core.job import Job
from engine.core.schema import from_namespace
from engine.core.workspace import atomic_folder, atomic_write_json
from engine.data.importer import (
    MANIFEST,
    DatasetVersion,
    dataset_folder,
    resolve,
    versions,
)
from engine.data.options import AUGMENTS, CleanOptions
from engine.data.split import SPLITS, load_data
from engine.data.stats import answer_text, row_key
from engine.data.tokens import load_tokenizer, tokenized_chunks

log = logging.getLogger("engine.data")

DELETE_PROBABILITY = 0.1  # EDA's random deletion rate (Wei & Zou, 2019)
SWAP_FRACTION = 0.1  # word pairs swapped per word, at least one
ProgressCallback = Callable[[int, int], None]

_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass
class StepReport:
    step: str
    changed: int = 0
    by_split: dict[str, int] = field(default_factory=dict)

    def add(self, split: str, count: int) -> None:
        self.changed += count
        self.by_split[split] = self.by_split.get(split, 0) + count


# -- text helpers ---------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """NFC, odd spaces to plain ones, invisible characters removed, LF line ends, no trailing
    spaces on a line, at most one blank line in a row, no blank edges. Indentation is kept
    (answers may hold code)."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", _ODD_SPACES.sub(" ", text))
    return _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", text)).strip()


def map_texts(row: dict, change: Callable[[str], str], answers: bool = True) -> dict:
    """The row with ``change`` applied to its texts; ``answers=False`` leaves what the row
    teaches (assistant turns, chosen/rejected, labels) alone."""
    out = dict(row)
    for key in ("messages", "prompt", "chosen", "rejected"):
        if isinstance(row.get(key), list) and (answers or key in ("messages", "prompt")):
            out[key] = [m | {"content": change(m["content"])} if answers or m["role"] != "assistant" else m
                        for m in row[key]]
    if isinstance(row.get("text"), str):
        out["text"] = change(row["text"])
    return out


def is_empty(row: dict) -> bool:
    """A row with an empty answer or any empty turn or text."""
    texts = [m["content"] for key in ("messages", "prompt", "chosen", "rejected") for m in row.get(key) or []]
    if "text" in row:
        texts.append(row["text"])
    return not answer_text(row).strip() or any(not text.strip() for text in texts)


def augment_text(text: str, kind: str, rng: random.Random) -> str:
    """Random word deletion (each word with probability 0.1, one word always kept) or random
    word swap (10% of the words, at least one pair)."""
    words = text.split(" ")
    if len(words) < 2:
        return text
    if kind == "delete":
        kept = [word for word in words if rng.random() >= DELETE_PROBABILITY]
        return " ".join(kept or [rng.choice(words)])
    for _ in range(max(1, int(len(words) * SWAP_FRACTION))):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


# -- steps on one split ---------------------------------------------------------------------------

def _rows(dataset: Any) -> list[dict]:
    return list(dataset)


def step_normalize(rows: list[dict], report: StepReport, split: str) -> list[dict]:
    out = [map_texts(row, normalize_text) for row in rows]
    report.add(split, sum(1 for before, after in zip(rows, out) if before != after))
    return out


def step_drop_empty(rows: list[dict], report: StepReport, split: str) -> list[dict]:
    out = [row for row in rows if not is_empty(row)]
    report.add(split, len(rows) - len(out))
    return out


def step_dedupe(rows: list[dict], report: StepReport, split: str, seen: set[bytes]) -> list[dict]:
    out = []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    report.add(split, len(rows) - len(out))
    return out


def step_token_length(rows: list[dict], report: StepReport, split: str, options: CleanOptions,
                      shape: str, tokenizer: Any) -> list[dict]:
    import datasets

    if not rows:
        return rows
    lengths: list[int] = []
    for _, chunk in tokenized_chunks(datasets.Dataset.from_list(rows), shape, tokenizer):
        lengths.extend(len(ids) for ids in chunk["input_ids"])
    high = options.max_tokens or float("inf")
    out = [row for row, length in zip(rows, lengths) if options.min_tokens <= length <= high]
    report.add(split, len(rows) - len(out))
    return out


def step_oversample(rows: list[dict], report: StepReport, split: str, rng: random.Random) -> list[dict]:
    """Copies of random rows of each minority label until every label has as many rows as the
    most common one."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    most = max((len(group) for group in by_label.values()), default=0)
    extra = [rng.choice(group) for label in sorted(by_label) for group in [by_label[label]]
             for _ in range(most - len(group))]
    report.add(split, len(extra))
    return rows + extra


def step_augment(rows: list[dict], report: StepReport, split: str, options: CleanOptions,
                 rng: random.Random) -> list[dict]:
    """``augment_copies`` changed copies of each row; only the prompt side changes (a changed
    answer would teach the model wrong text). Copies equal to their row are left out."""
    extra = []
    for row in rows:
        for _ in range(options.augment_copies):
            copy = map_texts(row, lambda text: augment_text(text, options.augment, rng), answers=False)
            if copy != row:
                extra.append(copy)
    report.add(split, len(extra))
    return rows + extra


# -- running --------------------------------------------------------------------------------------

def check_options(options: CleanOptions, shape: str) -> None:
    if not options.steps():
        raise errors.usage("clean: choose at least one step (--normalize, --dedupe, --drop-empty, --min-tokens, "
                           "--max-tokens, --oversample, --augment)")
    if options.oversample and shape != "classification":
        raise errors.usage(f"--oversample: only for classification datasets (labels); this one is {shape}")
    if options.augment and options.augment not in AUGMENTS:
        raise errors.usage(f"--augment {options.augment}: use {' or '.join(AUGMENTS)}")
    if options.augment_copies < 1:
        raise errors.usage("--augment-copies: at least 1")
    low, high = options.min_tokens, options.max_tokens
    if low < 0 or high < 0 or (high and low > high):
        raise errors.usage("--min-tokens/--max-tokens: 0 <= min <= max")


def clean_splits(splits: dict[str, list[dict]], options: CleanOptions, shape: str,
                 on_progress: ProgressCallback | None = None) -> tuple[dict[str, list[dict]], list[StepReport]]:
    """Runs the chosen steps on ``{split: rows}`` (see the module docstring for what applies
    where). Split "" stands for an unsplit version."""
    rng = random.Random(options.seed)
    tokenizer = load_tokenizer(options.model) if "token_length" in options.steps() else None
    seen: set[bytes] = set()
    reports = []
    for index, step in enumerate(options.steps()):
        if on_progress:
            on_progress(index, len(options.steps()))
        report = StepReport(step)
        for split in list(splits):
            rows = splits[split]
            if step == "normalize":
                splits[split] = step_normalize(rows, report, split)
            elif step == "drop_empty":
                splits[split] = step_drop_empty(rows, report, split)
            elif step == "dedupe":
                splits[split] = step_dedupe(rows, report, split, seen)
            elif step == "token_length":
                splits[split] = step_token_length(rows, report, split, options, shape, tokenizer)
            elif split in ("", "train") and step == "oversample":
                splits[split] = step_oversample(rows, report, split, rng)
            elif split in ("", "train") and step == "augment":
                splits[split] = step_augment(rows, report, split, options, rng)
        log.info("%s: %d rows %s", step, report.changed, "changed" if step == "normalize" else
                 ("added" if step in ("oversample", "augment") else "dropped"))
        reports.append(report)
    if on_progress:
        on_progress(len(options.steps()), len(options.steps()))
    return splits, reports


def clean_dataset(spec: str, options: CleanOptions,
                  on_progress: ProgressCallback | None = None) -> tuple[DatasetVersion, list[StepReport]]:
    """Cleans ``spec`` (``name`` or ``name@vN``) into the dataset's next version.

    Returns:
        The new version (or the one an identical earlier clean made) and one report per step.

    Raises:
        EngineError: USAGE for no or conflicting steps; INVALID_INPUT when no row is left.
    """
    import datasets

    parent = resolve(spec)
    shape = parent.manifest.get("shape", "")
    check_options(options, shape)
    identity = _identity(parent, options)
    for existing in versions(parent.name):
        if existing.manifest.get("content_hash") == identity:
            log.info("%s was already cleaned this way as %s; reusing it", parent.ref, existing.ref)
            return existing, [StepReport(**step) for step in existing.manifest.get("steps", [])]
    data = load_data(parent)
    split_data = dict(data) if isinstance(data, datasets.DatasetDict) else {"": data}
    order = [name for name in SPLITS if name in split_data] + [n for n in split_data if n not in SPLITS]
    splits, reports = clean_splits({name: _rows(split_data[name]) for name in order}, options, shape, on_progress)
    if not any(splits.values()):
        raise errors.invalid_input(f"clean: no row of {parent.ref} is left after {', '.join(options.steps())}")
    return _store(parent, splits, options, reports, identity), reports


def _identity(parent: DatasetVersion, options: CleanOptions) -> str:
    """What makes a cleaned version reusable: the parent's content and the exact steps."""
    key = f"{parent.manifest.get('content_hash', '')}:clean:{json.dumps(asdict(options), sort_keys=True)}"
    return hashlib.sha256(key.encode()).hexdigest()


def _store(parent: DatasetVersion, splits: dict[str, list[dict]], options: CleanOptions,
           reports: list[StepReport], identity: str) -> DatasetVersion:
    import datasets

    features = load_data(parent)
    features = (features[next(iter(features))] if isinstance(features, datasets.DatasetDict) else features).features
    built = {name: datasets.Dataset.from_list(rows, features=features) for name, rows in splits.items()}
    number = versions(parent.name)[-1].version + 1
    target = dataset_folder(parent.name) / f"v{number}"
    inherited = {key: parent.manifest[key] for key in ("source", "format", "encoding", "shape", "mapping", "options")
                 if key in parent.manifest}
    manifest: dict[str, Any] = {
        "name": parent.name, "version": number, **inherited, "rows": sum(len(rows) for rows in splits.values()),
        "skipped": 0, "parent": parent.ref, "clean": asdict(options), "steps": [asdict(r) for r in reports],
        "content_hash": identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with atomic_folder(target) as tmp:
        if "" in built:
            built[""].save_to_disk(str(tmp / "data"))
        else:
            datasets.DatasetDict(built).save_to_disk(str(tmp / "data"))
            manifest["splits"] = {name: len(rows) for name, rows in splits.items()}
        atomic_write_json(tmp / MANIFEST, manifest)
        del built  # release memory-mapped files before the rename (Windows)
    log.info("Cleaned %s into %s@v%d: %d rows", parent.ref, parent.name, number, manifest["rows"])
    return DatasetVersion(parent.name, number, target, manifest)


# -- CLI handler ----------------------------------------------------------------------------------

def options_from_args(args: argparse.Namespace) -> CleanOptions:
    return from_namespace(CleanOptions, args)


def cmd_clean(args: argparse.Namespace, job: Job) -> int:
    version, reports = clean_dataset(args.dataset, options_from_args(args), progress_reporter(job, "clean"))
    job.channel.send(protocol.result({
        "name": version.name, "version": version.version, "parent": version.manifest["parent"],
        "rows": version.manifest["rows"], "steps": [asdict(r) for r in reports],
        "splits": version.manifest.get("splits", {}), "path": str(version.path)}))
    return protocol.ExitCode.OK
