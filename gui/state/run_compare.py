"""Comparing runs: their curves side by side and the settings that differ. Qt-free.

Reads each run's own folder (events.ndjson for the curves, config.toml for the settings) as
the Runs page does, so a comparison looks the same after a restart.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.core import workspace
from gui.state import run_history
from gui.state.run_history import RunRow

COMPARED_METRICS = run_history.CURVE_NAMES
DRAWN_WITH_LOSS = ("eval_loss",)  # not offered as a curve of its own: the loss view draws it
MISSING = "—"  # a setting one run's config.toml does not have


@dataclass(frozen=True)
class RunCurves:
    """One run's curves for an overlay plot."""

    run_id: str
    title: str
    series: dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values)

    def points(self, metric: str) -> int:
        return len(self.series.get(metric, (np.empty(0),))[0])


def load_curves(rows: Sequence[RunRow]) -> list[RunCurves]:
    """Every recorded curve of each run (loss, validation loss, learning rate, speed, memory,
    GPU), in the order given. Titles are made unique (two runs may share a name) so the legend
    tells them apart."""
    titles = unique_titles(rows)
    curves = []
    for row, title in zip(rows, titles):
        buffer = run_history.load_curves(row.path)
        series = {name: tuple(np.array(a) for a in buffer.arrays(name)) for name in COMPARED_METRICS}
        curves.append(RunCurves(row.id, title, series))  # type: ignore[arg-type]
    return curves


def comparable_metrics(runs: Sequence[RunCurves]) -> list[str]:
    """The metrics a comparison can show: loss always, then each other curve that at least one
    of ``runs`` recorded, in the Train page's order."""
    return ["loss"] + [name for name in COMPARED_METRICS if name != "loss" and name not in DRAWN_WITH_LOSS
                       and any(run.points(name) for run in runs)]


def unique_titles(rows: Sequence[RunRow]) -> list[str]:
    """Each run's name; a name shared by several runs gets its run id added."""
    names = [row.title for row in rows]
    return [f"{row.title} ({row.id})" if names.count(row.title) > 1 else row.title for row in rows]


def load_config(run_path: Path) -> dict[str, Any]:
    """The run's config.toml as flat dotted keys (``train.lora_r``); {} when it has none or it
    cannot be read (an older or damaged run still compares by what it has)."""
    try:
        data = tomllib.loads((run_path / workspace.CONFIG_TOML).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return _flatten(data.get("train", data) if isinstance(data.get("train"), dict) else data)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class DiffRow:
    key: str
    values: tuple[str, ...]  # one per run, as shown (MISSING where a run lacks the key)


def config_diff(configs: Sequence[dict[str, Any]]) -> list[DiffRow]:
    """The settings whose values are not the same in every config, in sorted key order."""
    keys = sorted(set().union(*configs)) if configs else []
    rows = []
    for key in keys:
        values = [config.get(key, _Missing) for config in configs]
        if any(value != values[0] or type(value) is not type(values[0]) for value in values):
            rows.append(DiffRow(key, tuple(format_value(value) for value in values)))
    return rows


class _Missing:
    """Sentinel for a key a config does not have (None is not a TOML value, but be exact)."""


def format_value(value: Any) -> str:
    if value is _Missing:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return ", ".join(format_value(item) for item in value) or "[]"
    return str(value)
