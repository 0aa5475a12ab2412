"""Fields of each dataset shape, and the columns of a file, for the mapping editor. Qt-free.

The shape names and fields are those of ``engine.data.shapes`` (which the GUI cannot import: its
readers load ``datasets``); tests/gui/test_dataset_state.py checks the two stay the same.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SNIFF_BYTES = 1 << 16

SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "alpaca": ("instruction", "input", "output", "system"),
    "sharegpt": ("conversations",),
    "prompt_completion": ("prompt", "completion", "system"),
    "preference": ("prompt", "chosen", "rejected"),
    "classification": ("text", "label"),
    "text": ("text",),
}
SHAPE_LABELS = {"messages": "OpenAI messages", "alpaca": "Alpaca", "sharegpt": "ShareGPT",
                "prompt_completion": "Prompt / completion", "preference": "Preference pairs",
                "classification": "Classification", "text": "Plain text"}


def file_columns(path: Path) -> list[str]:
    """Column names from the start of a JSONL, JSON or CSV/TSV file ([] when they cannot be
    told cheaply, e.g. Parquet: the user types them)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return []
    text = head.decode("utf-8-sig", errors="replace")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".tab"):
        first = next(csv.reader(io.StringIO(text), delimiter="\t" if suffix != ".csv" else ","), [])
        return [name.strip() for name in first if name.strip()]
    for line in text.splitlines():
        line = line.strip().lstrip("[").strip()
        if not line:
            continue
        try:
            value = json.loads(line.rstrip(","))
        except ValueError:
            return []
        return list(value) if isinstance(value, dict) else []
    return []
