"""What the Sweeps view draws, from the engine's `sweep status --json` summary; Qt-free.

The window never imports optuna (or torch): the engine computes the trials, the best trial and
the importance, and this module only arranges them into table rows, the optimisation history,
parallel-coordinate lines and importance bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import paths

STATE_ORDER = ("complete", "pruned", "running", "waiting", "fail")


def list_sweeps(root: Path | None = None) -> list[str]:
    """The sweeps whose study file is in the workspace (sweeps/NAME.db), by name."""
    folder = root or paths.sweeps_dir()
    return sorted(p.stem for p in folder.glob("*.db")) if folder.is_dir() else []


@dataclass
class SweepSummary:
    data: dict[str, Any]
    knobs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.knobs = list(self.data.get("definition", {}).get("space", {}))

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def trials(self) -> list[dict[str, Any]]:
        return list(self.data.get("trials", []))

    @property
    def best(self) -> dict[str, Any] | None:
        return self.data.get("best")

    @property
    def minimise(self) -> bool:
        return self.data.get("direction", "minimize") == "minimize"

    def headline(self) -> str:
        states = self.data.get("states", {})
        parts = [f"{states[s]} {s}" for s in STATE_ORDER if states.get(s)]
        done, total = self.data.get("done", 0), self.data.get("n_trials", 0)
        return f"{done} of {total} trials done ({', '.join(parts) or 'none yet'})"

    def space(self, knob: str) -> dict[str, Any]:
        return self.data.get("definition", {}).get("space", {}).get(knob, {})


def table(summary: SweepSummary) -> tuple[list[str], list[list[str]]]:
    """(header, rows): state, value, every knob, duration, pruned step, retry of, run."""
    header = ["#", "State", "Value", *summary.knobs, "Duration", "Pruned at", "Retry of", "Run"]
    rows = []
    for trial in summary.trials:
        knobs = [format_value(trial["params"].get(k)) for k in summary.knobs]
        rows.append([str(trial["number"]), trial["state"], format_value(trial.get("value")), *knobs,
                     format_duration(trial.get("duration_s")), _text(trial.get("pruned_step")),
                     _text(trial.get("retry_of")), trial.get("run_id") or ""])
    return header, rows


def history(summary: SweepSummary) -> tuple[list[int], list[float], list[float]]:
    """(trial numbers, their values, best so far) over the finished trials, in trial order."""
    numbers: list[int] = []
    values: list[float] = []
    best: list[float] = []
    for trial in sorted(summary.trials, key=lambda t: t["number"]):
        value = trial.get("value")
        if trial["state"] != "complete" or value is None:
            continue
        numbers.append(trial["number"])
        values.append(float(value))
        earlier = best[-1] if best else value
        best.append(min(earlier, value) if summary.minimise else max(earlier, value))
    return numbers, values, best


def axis_position(summary: SweepSummary, knob: str, value: Any) -> float | None:
    """Where ``value`` sits on the knob's axis, 0 to 1: choices spread evenly, ranges linear or
    log as searched."""
    space = summary.space(knob)
    if value is None:
        return None
    if "choices" in space:
        choices = list(space["choices"])
        return choices.index(value) / max(len(choices) - 1, 1) if value in choices else None
    low, high = float(space.get("low", 0.0)), float(space.get("high", 1.0))
    if space.get("log") and low > 0 and float(value) > 0:
        low, high, value = math.log10(low), math.log10(high), math.log10(float(value))
    return (float(value) - low) / (high - low) if high > low else 0.5


def parallel_lines(summary: SweepSummary) -> tuple[list[str], list[tuple[int, list[float], float]]]:
    """(axis names, one line per finished trial: number, position on each axis, value). The last
    axis is the objective, scaled between the worst and best value seen."""
    axes = [*summary.knobs, "value"]
    finished = [t for t in summary.trials if t["state"] == "complete" and t.get("value") is not None]
    if not finished:
        return axes, []
    values = [float(t["value"]) for t in finished]
    low, high = min(values), max(values)
    lines = []
    for trial in finished:
        points = [axis_position(summary, k, trial["params"].get(k)) for k in summary.knobs]
        if any(p is None for p in points):
            continue
        scaled = (float(trial["value"]) - low) / (high - low) if high > low else 0.5
        lines.append((int(trial["number"]), [*(float(p) for p in points if p is not None), scaled],
                      float(trial["value"])))
    return axes, lines


def importance_bars(summary: SweepSummary) -> list[tuple[str, float]]:
    """Each knob's importance, most important first."""
    weights = summary.data.get("importance") or {}
    return sorted(((k, float(v)) for k, v in weights.items()), key=lambda kv: kv[1], reverse=True)


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _text(value: Any) -> str:
    return "" if value is None else str(value)
