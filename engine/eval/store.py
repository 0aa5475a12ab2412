"""Evaluation folders on disk: names of their files, listing and reading them.

Standard library only (plus engine.paths/workspace), so the GUI opens past evaluations with
the same code the engine writes them with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from engine.core import paths, untrusted, workspace

SPEC = "spec.toml"
EXAMPLES = "examples.jsonl"
SUMMARY = "summary.json"
JUDGE_VERDICTS = "judge.jsonl"  # `evaluate judge`: per row, both verdicts and the judge's reasons
JUDGE_REPORT = "judge.json"  # `evaluate judge`: rates or mean scores with intervals


def write_examples(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
                   for row in map(finite, rows))
    workspace.atomic_write_text(path, text)


def _plain(value: Any) -> Any:
    return str(value)


def finite(value: Any) -> Any:
    """NaN and infinity as null: JSON has no such numbers (a row with no scored tokens)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def read_summary(folder: Path) -> dict[str, Any] | None:
    return workspace.read_json(folder / SUMMARY)


def read_examples(folder: Path, name: str = EXAMPLES) -> list[dict[str, Any]]:
    """The per-example rows (of ``name``, a JSON-lines file); a torn or invalid line is skipped."""
    rows = []
    try:
        handle = (folder / name).open(encoding="utf-8", errors="replace")
    except OSError:
        return []
    with handle:
        for line in untrusted.bounded_lines(handle):
            try:
                row = untrusted.json_loads(line) if isinstance(line, str) else None
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def evaluation_folder(ref: str) -> Path | None:
    """An evaluation folder by id or path, or None."""
    candidate = Path(ref).expanduser()
    if not (candidate / SUMMARY).is_file():
        candidate = paths.evals_dir() / ref
    return candidate if (candidate / SUMMARY).is_file() else None


def list_evaluations(root: Path | None = None) -> list[dict[str, Any]]:
    """Finished evaluations, newest first: id, path, dataset, split, models, metrics."""
    root = root or paths.evals_dir()
    found = []
    for folder in sorted(root.iterdir() if root.is_dir() else [], reverse=True):
        summary = read_summary(folder)
        if summary is None or folder.name.startswith("."):
            continue
        found.append({"id": folder.name, "path": str(folder), "kind": summary.get("kind", "evaluation"),
                      "dataset": summary.get("dataset", ""),
                      "split": summary.get("split", ""), "examples": summary.get("examples", 0),
                      "models": [m.get("label", "") for m in summary.get("models", [])],
                      "metrics": list(summary.get("metrics", {})), "created": summary.get("created", "")})
    return found


def read_judge(folder: Path) -> tuple[dict[str, Any] | None, dict[Any, dict[str, Any]]]:
    """The last `evaluate judge` pass of an evaluation: its report (None if never judged) and its
    per-row verdicts by row index."""
    verdicts = {row.get("index"): row for row in read_examples(folder, JUDGE_VERDICTS)}
    return workspace.read_json(folder / JUDGE_REPORT), verdicts
