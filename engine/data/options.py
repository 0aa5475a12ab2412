"""Options of the `data` commands (import, export, split, stats, preview, clean).

Standard library only and light, so the CLI builds every `data` parser without importing the
handlers. The lists of formats, shapes and steps the flags accept are defined here or in the
modules that read files (formats, shapes), and the handlers check against the same lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.config import TrainConfig
from engine.core.schema import knob
from engine.data.formats import FORMATS, TXT_MODES
from engine.data.shapes import CHAT_SHAPES, SHAPES

SPLIT_NAMES = ("train", "validation", "test")
OWN_FORMATS = ("preference", "classification", "text")  # these shapes export only as themselves
EXPORT_FORMATS = CHAT_SHAPES + OWN_FORMATS
AUGMENTS = ("delete", "swap")
TRAIN = TrainConfig()  # tokenize as `train` does by default


def dataset_knob() -> Any:
    return knob("", "NAME or NAME@vN", positional=True)


@dataclass
class ImportOptions:
    path: str = knob("", "the file, or a folder saved by datasets", positional=True)
    name: str = knob("", "dataset name (default: the file name)")
    skip_invalid: bool = knob(False, "import the valid rows and report the rest (default: refuse the file)")
    format: str = knob("", "file format (default: from the file name or content)", choices=FORMATS)
    shape: str = knob("", "row shape (default: detected from the first row)", choices=SHAPES)
    map: list[str] = knob([], "read a shape's field from another column, e.g. --map instruction=question "
                          "(repeatable)", repeatable=True, metavar="FIELD=COLUMN")
    txt_mode: str = knob("paragraphs", "TXT files: one document per blank-line-separated paragraph, or the "
                         "whole file", choices=TXT_MODES)
    report: str | None = knob(None, "write every problem found as JSONL (file, line, field, problem)",
                              metavar="FILE")
    split: str = knob("", "a folder saved from a datasets DatasetDict: import only this split (default: "
                      "every split, kept as the version's splits)", metavar="NAME")


@dataclass
class DataExportOptions:
    dataset: str = dataset_knob()
    format: str = knob("", "chat datasets: messages (default), alpaca (single-turn rows only), sharegpt or "
                       "prompt_completion; other shapes export as themselves", choices=EXPORT_FORMATS)
    out: str = knob("", "the JSONL file to write", required=True, metavar="FILE.jsonl")
    split: str = knob("", "export one split of a split version (default: every row)", choices=SPLIT_NAMES)
    skip_invalid: bool = knob(False, "leave out rows the format cannot hold (default: refuse, naming the first)")


@dataclass
class SplitOptions:
    dataset: str = dataset_knob()
    val: float = knob(0.1, "fraction for the validation split (default 0.1)")
    test: float = knob(0.0, "fraction for a test split (default 0: none)")
    seed: int = knob(42, "shuffle seed; the same seed gives the same split")


@dataclass
class TokenizerOptions:
    """`data stats` and `data preview`: tokenize as `train` would."""

    dataset: str = dataset_knob()
    model: str = knob(TRAIN.model, "the model whose tokenizer and chat template training uses (as for "
                      "train; default: the bundled model)")
    max_length: int = knob(TRAIN.max_length, "the training cutoff in tokens (train's max_length; "
                           f"default {TRAIN.max_length or 'none'})")
    split: str = knob("", "one split of a split version (default: every row)", choices=SPLIT_NAMES)
    completion_only_loss: bool = knob(TRAIN.completion_only_loss, "mask the prompt out of the loss, as "
                                      "train's knob of that name (default: on)", negatable=True)


@dataclass
class PreviewRowOptions:
    row: int = knob(1, "the row number, 1-based as the table shows it", required=True)


@dataclass
class DatasetOptions:
    dataset: str = dataset_knob()


@dataclass
class CleanOptions:
    """Which `data clean` steps to run; every one is off unless asked for. A cleaned version's
    manifest records these fields as they are."""

    normalize: bool = knob(False, "Unicode NFC, odd spaces and invisible characters, LF line ends, trailing "
                           "spaces, runs of blank lines")
    drop_empty: bool = knob(False, "drop rows with an empty answer, turn or text")
    dedupe: bool = knob(False, "drop exact duplicate rows (across splits: a test row that repeats a train "
                        "row goes)")
    min_tokens: int = knob(0, "drop rows shorter than this many tokens (as training tokenizes them with "
                           "--model)")
    max_tokens: int = knob(0, "drop rows longer than this many tokens")
    model: str = knob(TRAIN.model, "tokenizer and chat template for --min-tokens/--max-tokens (default: the "
                      "bundled model)")
    oversample: bool = knob(False, "classification: copy random rows of minority labels until every label "
                            "is as common as the most common one (train split only)")
    augment: str = knob("", "add copies with random word deletion or swap in the prompt side (train split "
                        "only)", choices=AUGMENTS)
    augment_copies: int = knob(1, "augmented copies per row (default 1)")
    seed: int = knob(42, "seed for oversampling and augmentation")

    def steps(self) -> list[str]:
        chosen = [("normalize", self.normalize), ("drop_empty", self.drop_empty), ("dedupe", self.dedupe),
                  ("token_length", bool(self.min_tokens or self.max_tokens)), ("oversample", self.oversample),
                  ("augment", bool(self.augment))]
        return [name for name, on in chosen if on]
