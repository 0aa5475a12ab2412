"""A sweep's three charts, drawn with pyqtgraph from gui/state/sweep_view.py: the optimisation
history (each finished trial's value and the best so far), parallel coordinates (one line per
trial across every knob and the value, coloured from best to worst) and each knob's importance."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.state import sweep_view
from gui.state.sweep_view import SweepSummary
from gui.widgets.metric_plot import AXIS_COLOR, BACKGROUND

TRIAL_COLOR = "#2563eb"
BEST_COLOR = "#ea580c"
GOOD, BAD = (5, 150, 105), (220, 38, 38)  # parallel-coordinate lines: best value green, worst red


def _plot(title: str) -> tuple[QWidget, pg.PlotWidget]:
    box = QWidget()
    plot = pg.PlotWidget(background=BACKGROUND)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    for side in ("left", "bottom"):
        plot.getAxis(side).setPen(AXIS_COLOR)
        plot.getAxis(side).setTextPen(AXIS_COLOR)
    label = QLabel(title, alignment=Qt.AlignmentFlag.AlignCenter, objectName="heading")
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(label)
    layout.addWidget(plot, 1)
    return box, plot


def _mix(share: float) -> tuple[int, int, int]:
    return tuple(int(g + (b - g) * share) for g, b in zip(GOOD, BAD))  # type: ignore[return-value]


class SweepPlots(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        history_box, self.history = _plot("Optimisation history")
        parallel_box, self.parallel = _plot("Parallel coordinates")
        importance_box, self.importance = _plot("Knob importance (fANOVA)")
        self.history.setLabel("bottom", "trial")
        self.history.setLabel("left", "validation loss")
        self.parallel.getAxis("left").setTicks([[(0.0, "low"), (1.0, "high")]])
        self.importance.setMouseEnabled(x=False, y=False)
        self.importance_note = QLabel(objectName="hint", alignment=Qt.AlignmentFlag.AlignCenter)
        importance_layout = importance_box.layout()
        importance_layout.addWidget(self.importance_note)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (history_box, parallel_box, importance_box):
            layout.addWidget(box, 1)
        self.drawn: dict[str, int] = {}  # what each chart holds, for tests

    def show_summary(self, summary: SweepSummary) -> None:
        self.history.setLabel("left", str(summary.data.get("objective_label") or "validation loss"))
        self._draw_history(summary)
        self._draw_parallel(summary)
        self._draw_importance(summary)

    def _draw_history(self, summary: SweepSummary) -> None:
        self.history.clear()
        numbers, values, best = sweep_view.history(summary)
        self.history.addLegend(offset=(-10, 10), labelTextColor=AXIS_COLOR)
        self.history.plot(numbers, values, pen=None, symbol="o", symbolSize=8, symbolBrush=TRIAL_COLOR,
                          name="trial")
        self.history.plot(numbers, best, pen=pg.mkPen(BEST_COLOR, width=2), stepMode=None, name="best so far")
        self.drawn["history"] = len(numbers)

    def _draw_parallel(self, summary: SweepSummary) -> None:
        self.parallel.clear()
        axes, lines = sweep_view.parallel_lines(summary)
        x = np.arange(len(axes), dtype=float)
        self.parallel.getAxis("bottom").setTicks([list(enumerate(axes))])
        for position in x:
            self.parallel.addItem(pg.InfiniteLine(pos=position, angle=90, pen=pg.mkPen("#d0d5dd")))
        # Worst first, so the best lines are drawn on top.
        for _number, points, _value in sorted(lines, key=lambda line: line[1][-1], reverse=summary.minimise):
            share = points[-1] if summary.minimise else 1.0 - points[-1]
            self.parallel.plot(x, points, pen=pg.mkPen(_mix(share), width=2), symbol="o", symbolSize=5,
                               symbolBrush=_mix(share), symbolPen=None)
        self.parallel.setXRange(-0.2, len(axes) - 0.8)
        self.parallel.setYRange(-0.05, 1.05)
        self.drawn["parallel"] = len(lines)

    def _draw_importance(self, summary: SweepSummary) -> None:
        self.importance.clear()
        bars = sweep_view.importance_bars(summary)
        self.importance_note.setText(summary.data.get("importance_note", "") if not bars else "")
        self.importance.getAxis("left").setTicks([[(i, name) for i, (name, _) in enumerate(bars)]])
        if bars:
            y = np.arange(len(bars), dtype=float)
            widths = [value for _, value in bars]
            self.importance.addItem(pg.BarGraphItem(x0=0, y=y, height=0.6, width=widths,
                                                    brush=pg.mkBrush(TRIAL_COLOR), pen=pg.mkPen(None)))
            self.importance.setXRange(0, 1)
            self.importance.setYRange(-0.6, len(bars) - 0.4)
            self.importance.getViewBox().invertY(True)  # most important on top
        self.drawn["importance"] = len(bars)
