"""A run's exports and their round-trip checks, kept in the run's folder (``exports.json``) so
the Runs page can show, long after the export's job ended, whether each file answered like
the adapter and which prompts differed. No torch here: the window reads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.core import workspace

EXPORTS_FILE = "exports.json"
KEEP = 50  # the newest exports a run remembers; older records drop off, their files stay


def record(run_path: Path, entry: dict[str, Any]) -> None:
    """Adds one export to the run's list (an atomic rewrite: a crash keeps the old list)."""
    if not (run_path / workspace.RUN_JSON).is_file():
        return  # an adapter folder outside any run: nothing to show it in
    entries = read(run_path)
    entries.append({"exported": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry})
    workspace.atomic_write_json(run_path / EXPORTS_FILE, {"exports": entries[-KEEP:]})


def read(run_path: Path) -> list[dict[str, Any]]:
    """The run's exports, oldest first; a missing, torn or hand-edited file gives what is whole."""
    data = workspace.read_json(run_path / EXPORTS_FILE) or {}
    entries = data.get("exports")
    return [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("path"), str)] \
        if isinstance(entries, list) else []
