"""Live training curves: loss (and validation loss), learning rate and throughput, stacked with
a shared step axis.

Messages only append to a MetricBuffer; a single-shot ~10 Hz timer redraws, so a burst of
metrics costs one redraw, not one per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from gui.state.metric_buffer import MetricBuffer

REDRAW_INTERVAL_MS = 100
BACKGROUND = "#ffffff"
AXIS_COLOR = "#4a5260"


@dataclass(frozen=True)
class SeriesSpec:
    key: str  # the metric name in protocol metrics values
    label: str
    units: str
    color: str
    plot: str = ""  # the plot it is drawn in; empty: its own plot, named by key
    dots: bool = False  # sparse series (one point per evaluation) read better as dots

    @property
    def plot_key(self) -> str:
        return self.plot or self.key


SERIES = (
    SeriesSpec("loss", "Loss", "", "#2563eb"),
    SeriesSpec("eval_loss", "Validation loss", "", "#dc2626", plot="loss", dots=True),
    SeriesSpec("learning_rate", "Learning rate", "", "#d97706"),
    SeriesSpec("tokens_per_s", "Throughput", "tokens/s", "#059669"),
)
SERIES_KEYS = tuple(spec.key for spec in SERIES)
PLOT_SPECS = tuple(spec for spec in SERIES if not spec.plot)  # one stacked plot each


class MetricPlot(QWidget):
    """Three stacked plots linked on X (training step), fed from a MetricBuffer.

    Wraps a GraphicsLayoutWidget rather than subclassing it: that class copies methods such as
    ``clear`` onto each instance, which would silently shadow ours.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground(BACKGROUND)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.buffer = MetricBuffer()
        self._drawn_version = -1
        self._plots: dict[str, pg.PlotItem] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        for row, spec in enumerate(PLOT_SPECS):
            self._add_plot(row, spec)
        for spec in SERIES:
            self._add_curve(spec)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._on_redraw_timer_timeout)

    def add_metrics(self, step: float, values: Mapping[str, object]) -> None:
        """Records one metrics message; the plot catches up within ~100 ms."""
        self.buffer.append_values(step, values, SERIES_KEYS)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def set_buffer(self, buffer: MetricBuffer) -> None:
        """Shows a finished run's history at once (no timer needed: one redraw)."""
        self.buffer = buffer
        self.redraw()

    def clear(self) -> None:
        self.buffer = MetricBuffer()
        self.redraw()

    def drawn_points(self, key: str) -> int:
        """How many points the curve for ``key`` currently shows (before downsampling)."""
        x, _ = self._curves[key].getOriginalDataset()
        return 0 if x is None else len(x)

    def redraw(self) -> None:
        for key, curve in self._curves.items():
            x, y = self.buffer.arrays(key)
            curve.setData(x, y)
        for key in self._plots:
            self._fit_y(key, self.buffer.arrays(key)[1])
        self._show_legends()
        self._drawn_version = self.buffer.version

    def _fit_y(self, key: str, y: np.ndarray) -> None:
        """Auto-range, except for a flat series (a constant learning rate): pyqtgraph would
        centre it in a ±0.5 window, drawing 2e-4 as if it were 0."""
        plot = self._plots[key]
        finite = y[np.isfinite(y)]
        if finite.size and finite.min() == finite.max():
            value = float(finite[0])
            margin = abs(value) * 0.1 or 1.0
            plot.setYRange(value - margin, value + margin, padding=0)
        else:
            plot.enableAutoRange(axis="y")

    def _show_legends(self) -> None:
        """A shared plot gets a legend once its second series has data (a run without
        validation keeps a plain loss plot)."""
        for spec in SERIES:
            plot = self._plots[spec.plot_key]
            if spec.plot and plot.legend is None and self.buffer.length(spec.key):
                plot.addLegend(offset=(-10, 10))
                plot.legend.addItem(self._curves[spec.plot_key], "train")
                plot.legend.addItem(self._curves[spec.key], spec.label.lower())

    def _on_redraw_timer_timeout(self) -> None:
        if self.buffer.version != self._drawn_version:
            self.redraw()

    def _add_plot(self, row: int, spec: SeriesSpec) -> None:
        plot = self.view.addPlot(row=row, col=0)
        plot.setDownsampling(mode="peak")
        plot.setClipToView(True)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setMenuEnabled(False)
        plot.setLabel("left", spec.label, units=spec.units or None, color=AXIS_COLOR)
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setPen(pg.mkPen(AXIS_COLOR))
            axis.setTextPen(pg.mkPen(AXIS_COLOR))
        left = plot.getAxis("left")
        left.setWidth(72)  # equal widths keep the three x axes aligned
        # "0.0002" reads better than "200" under a "(x1e-06)" label.
        left.enableAutoSIPrefix(False)
        if row == len(PLOT_SPECS) - 1:
            plot.setLabel("bottom", "Step", color=AXIS_COLOR)
        else:
            plot.getAxis("bottom").setStyle(showValues=False)  # the shared step axis is at the bottom
        if self._plots:
            plot.setXLink(next(iter(self._plots.values())))
        self._plots[spec.key] = plot

    def _add_curve(self, spec: SeriesSpec) -> None:
        plot = self._plots[spec.plot_key]
        pen = pg.mkPen(spec.color, width=2)
        if spec.dots:
            curve = plot.plot([], [], pen=pen, symbol="o", symbolSize=7, symbolBrush=spec.color,
                              symbolPen=None)
        else:
            curve = plot.plot([], [], pen=pen, connect="finite")
        self._curves[spec.key] = curve
