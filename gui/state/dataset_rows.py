"""Rows of a dataset for the table preview, read lazily from the JSONL the engine exports. Qt-free.

The window never loads a dataset's rows: the engine writes the version's canonical rows to a
JSONL file in the cache (``data export``), one pass here records where each line starts, and a
row is parsed only when the table asks for it (a small LRU cache keeps the rows on screen), so a
million-row dataset costs one offset array and a screenful of parsed rows.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from engine.core import paths

CACHE_ROWS = 512  # parsed rows kept: several screens of scrolling
CELL_CHARS = 160  # text shown in a cell; the full row is in the tooltip and the preview
BLOCK = 1 << 24


def preview_file(name: str, version: int) -> Path:
    """Where the engine exports a version's rows for this table (the cache, not the workspace)."""
    return paths.cache_dir() / "dataset-previews" / f"{name}-v{version}.jsonl"


def is_current(preview: Path, version_dir: Path) -> bool:
    """True when ``preview`` exists and was written after the version's manifest."""
    manifest = version_dir / "manifest.json"
    try:
        return preview.stat().st_mtime >= manifest.stat().st_mtime
    except OSError:
        return False


class JsonlRows:
    """Random access to the lines of a JSONL file without reading them all into memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: Any = None
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._index()
        self._handle = path.open("rb")

    def _index(self) -> None:
        """Line starts found with numpy, a block at a time: a million-line file indexes in a
        fraction of a second and the index costs 8 bytes a row."""
        import numpy as np

        starts = [np.zeros(1, dtype=np.int64)]
        position = 0
        with self.path.open("rb") as handle:
            while block := handle.read(BLOCK):
                newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
                starts.append(newlines.astype(np.int64) + position + 1)
                position += len(block)
        offsets = np.concatenate(starts)
        # A start at the very end of the file is not a line (the file ends with a newline).
        self._offsets = offsets[offsets < position] if position else offsets[:0]

    def __len__(self) -> int:
        return len(self._offsets)

    def row(self, index: int) -> dict:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        self._handle.seek(int(self._offsets[index]))
        try:
            row = json.loads(self._handle.readline().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            row = {}
        self._cache[index] = row
        if len(self._cache) > CACHE_ROWS:
            self._cache.popitem(last=False)
        return row

    def close(self) -> None:
        self._handle.close()


# -- columns per shape ---------------------------------------------------------------------------

def _turn(role: str, last: bool = False) -> Callable[[dict], str]:
    def get(row: dict) -> str:
        turns = [m.get("content", "") for m in row.get("messages") or [] if m.get("role") == role]
        return (turns[-1] if last else turns[0]) if turns else ""
    return get


def _messages_text(key: str) -> Callable[[dict], str]:
    def get(row: dict) -> str:
        value = row.get(key)
        if isinstance(value, list):
            return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
        return "" if value is None else str(value)
    return get


def _turns(row: dict) -> str:
    return str(sum(1 for m in row.get("messages") or [] if m.get("role") == "assistant"))


COLUMNS: dict[str, list[tuple[str, Callable[[dict], str]]]] = {
    "chat": [("System", _turn("system")), ("User", _turn("user")), ("Answer", _turn("assistant", last=True)),
             ("Turns", _turns)],
    "preference": [("Prompt", _messages_text("prompt")), ("Chosen", _messages_text("chosen")),
                   ("Rejected", _messages_text("rejected"))],
    "classification": [("Text", _messages_text("text")), ("Label", _messages_text("label"))],
    "text": [("Text", _messages_text("text"))],
}


def columns_for(shape: str) -> list[tuple[str, Callable[[dict], str]]]:
    return COLUMNS.get(shape, COLUMNS["chat"])


def cell_text(text: str) -> str:
    """One line for a table cell: line breaks shown as ⏎, long text cut with an ellipsis."""
    flat = text.replace("\r\n", "\n").replace("\n", " ⏎ ")
    return flat if len(flat) <= CELL_CHARS else flat[:CELL_CHARS - 1] + "…"


def row_as_text(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, indent=2)
