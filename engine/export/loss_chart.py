"""A run's loss curve for its model card: the points read back from the run's event log, a few of
them sampled for a table, and the whole curve as a small SVG line chart.

The event log is the record of what the run reported (engine/train/events.py): each training
step's ``metrics`` message carries ``loss``; a validation pass's (``split`` "validation") carries
``eval_loss``. A resumed run reports a step again; the later value wins, as in the window's chart.
Charts are drawn with the standard library, as engine/eval/report.py draws its bars: the engine
has no plotting library.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from engine.core import protocol, workspace

TRAIN_COLOR, EVAL_COLOR = "#2e86de", "#e67e22"


@dataclass(frozen=True)
class LossPoint:
    step: int
    train: float | None = None
    eval: float | None = None


def loss_points(run_path: Path) -> list[LossPoint]:
    """Every step with a training or validation loss, in step order."""
    train: dict[int, float] = {}
    evaluated: dict[int, float] = {}
    for message in workspace.RunFolder(run_path).read_events():
        if message["type"] != protocol.METRICS or not isinstance(message.get("values"), dict):
            continue
        step, values = message.get("step"), message["values"]
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        if message.get("split") == "validation":
            _keep(evaluated, step, values.get("eval_loss"))
        else:
            _keep(train, step, values.get("loss"))
    return [LossPoint(step, train.get(step), evaluated.get(step)) for step in sorted(train.keys() | evaluated.keys())]


def _keep(into: dict[int, float], step: int, value: object) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        into[step] = float(value)


def sampled(points: list[LossPoint], rows: int = 10) -> list[LossPoint]:
    """About ``rows`` training steps spread evenly, the last one always among them, plus as many
    validation steps spread the same way: a table a reader takes in at a glance."""
    trained = [point for point in points if point.train is not None]
    evaluated = [point for point in points if point.eval is not None]
    chosen = {point.step for group in (trained, evaluated) for point in _spread(group, rows)}
    return [point for point in points if point.step in chosen]


def _spread(points: list[LossPoint], count: int) -> list[LossPoint]:
    if len(points) <= count:
        return points
    last = len(points) - 1
    return [points[round(i * last / (count - 1))] for i in range(count)]


def loss_svg(points: list[LossPoint], width: int = 560, height: int = 280) -> str:
    """Training loss (and validation loss when the run had one) against the step."""
    series = [(name, color, [(p.step, value) for p in points if (value := getattr(p, name)) is not None])
              for name, color in (("train", TRAIN_COLOR), ("eval", EVAL_COLOR))]
    values = [value for _, _, line in series for _, value in line]
    steps = [point.step for point in points]
    low, high = min(values), max(values)
    first, last = min(steps), max(steps)
    left, right, upper, lower = 60, 20, 34, 44
    plot_w, plot_h = width - left - right, height - upper - lower

    def x(step: int) -> float:
        return left + plot_w * (step - first) / ((last - first) or 1)

    def y(value: float) -> float:
        return upper + plot_h * (high - value) / ((high - low) or 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">Loss</text>',
             f'<line x1="{left}" y1="{upper + plot_h}" x2="{left + plot_w}" y2="{upper + plot_h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{upper + plot_h}" stroke="#333"/>',
             f'<text x="{left - 6}" y="{y(high) + 4:.1f}" text-anchor="end">{high:.4g}</text>',
             f'<text x="{left - 6}" y="{y(low) + 4:.1f}" text-anchor="end">{low:.4g}</text>',
             f'<text x="{left}" y="{height - 24}" text-anchor="middle">{first}</text>',
             f'<text x="{left + plot_w}" y="{height - 24}" text-anchor="middle">{last}</text>',
             f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">step</text>']
    for index, (name, color, line) in enumerate(item for item in series if item[2]):
        label = "training" if name == "train" else "validation"
        coords = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in line)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w - 4}" y="{upper + 14 + 16 * index}" text-anchor="end" '
                     f'fill="{color}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
