"""Live training curves on one step axis: train loss (raw and smoothed) with validation loss,
and below it learning rate, gradient norm, throughput, memory, and GPU utilisation and
temperature when the engine reports them.

Messages only append to a MetricBuffer; a single-shot ~10 Hz timer redraws, so a burst of
metrics costs one redraw, not one per message. A smoothing slider (TensorBoard's EMA) and a
log-scale switch act on the loss plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from gui.state.metric_buffer import MetricBuffer, smooth_ema
from gui.widgets.loss_controls import LossControls

REDRAW_INTERVAL_MS = 100
BACKGROUND = "#ffffff"
AXIS_COLOR = "#4a5260"
SMOOTHED = "loss_smoothed"  # drawn from "loss", not a metric of its own
SMALL_COLUMNS = 2


@dataclass(frozen=True)
class SeriesSpec:
    key: str  # the metric name in protocol metrics values
    label: str
    units: str
    color: str
    plot: str = ""  # the plot it is drawn in; empty: its own plot, named by key
    dots: bool = False  # sparse series (one point per evaluation) read better as dots
    # Its plot appears only once the engine reports it: GPU figures exist only on a GPU, and
    # runs recorded by older engines have no gradient norm or memory.
    optional: bool = False

    @property
    def plot_key(self) -> str:
        return self.plot or self.key


SERIES = (
    SeriesSpec("loss", "Train loss", "", "#2563eb"),
    SeriesSpec("eval_loss", "Validation loss", "", "#dc2626", plot="loss", dots=True),
    SeriesSpec("learning_rate", "Learning rate", "", "#d97706"),
    SeriesSpec("tokens_per_s", "Tokens/s", "", "#059669"),
    SeriesSpec("grad_norm", "Gradient norm", "", "#7c3aed", optional=True),
    SeriesSpec("memory_gb", "Memory", "GB", "#0891b2", optional=True),
    SeriesSpec("gpu_util", "GPU util", "%", "#db2777", optional=True),
    SeriesSpec("gpu_temp_c", "GPU temp", "°C", "#ea580c", optional=True),
)
SERIES_KEYS = tuple(spec.key for spec in SERIES)
PLOT_SPECS = tuple(spec for spec in SERIES if not spec.plot)  # one plot each
RAW_LOSS_COLOR = (37, 99, 235, 70)
# Dark labels on a near-opaque box: pyqtgraph's default light-grey text on no background is
# hard to read and curves run through it.
MARKER_COLOR = "#b54708"  # events on the step axis (out of memory): amber, apart from the curves
LEGEND_STYLE = {"labelTextColor": AXIS_COLOR, "brush": pg.mkBrush(255, 255, 255, 225),
                "pen": pg.mkPen("#d0d5dd")}  # the raw curve fades behind the smoothed one


class StepAxis(pg.AxisItem):
    """A step axis: whole steps only. pyqtgraph's spacings go on below 1 (0.5, 0.2, ...) when
    zoomed in, which would label steps 1.5 and 2.5 that no run has."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802, N803
        levels = super().tickSpacing(minVal, maxVal, size)
        whole = [(spacing, offset) for spacing, offset in levels
                 if spacing >= 1 and float(spacing).is_integer() and float(offset).is_integer()]
        return whole or [(1.0, 0.0)]


def step_axis() -> StepAxis:
    return StepAxis(orientation="bottom")


class MetricPlot(QWidget):
    """The loss plot on top, smaller plots in a grid below, all linked on X (training step),
    fed from a MetricBuffer.

    Wraps a GraphicsLayoutWidget rather than subclassing it: that class copies methods such as
    ``clear`` onto each instance, which would silently shadow ours.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground(BACKGROUND)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._build_controls())
        layout.addWidget(self.view, 1)
        self.buffer = MetricBuffer()
        self._drawn_version = -1
        self._drawn_smoothing = -1.0
        self._plots: dict[str, pg.PlotItem] = {}
        self._syncing_x = False
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._markers: list[pg.InfiniteLine] = []
        for spec in PLOT_SPECS:
            if not spec.optional:
                self._add_plot(spec)
        self._add_smoothed_curve()
        self._label_bottom_row()
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._on_redraw_timer_timeout)

    def _build_controls(self) -> QHBoxLayout:
        controls = LossControls(
            "Exponential moving average of the train loss, as in TensorBoard: 0 shows the raw "
            "curve, 0.99 a very smooth one. The raw curve stays visible, faded.",
            "Loss on a logarithmic axis: late, small improvements stay visible")
        self.smoothing_slider, self.smoothing_label = controls.slider, controls.value_label
        self.log_check = controls.log_check
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.log_check.toggled.connect(self._on_log_toggled)
        return controls

    # -- data --------------------------------------------------------------------------------

    def add_metrics(self, step: float, values: Mapping[str, object]) -> None:
        """Records one metrics message; the plot catches up within ~100 ms."""
        self.buffer.append_values(step, values, SERIES_KEYS)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def add_marker(self, step: float, text: str) -> None:
        """A labelled vertical line on the loss plot, e.g. where memory ran out."""
        line = pg.InfiniteLine(
            pos=step,
            angle=90,
            pen=pg.mkPen(MARKER_COLOR, style=Qt.PenStyle.DashLine),
            label=text,
            labelOpts={"position": 0.9, "color": MARKER_COLOR, "anchors": [(0, 1), (0, 1)]},
        )
        self._plots["loss"].addItem(line, ignoreBounds=True)  # the curves decide the range
        self._markers.append(line)

    def marker_texts(self) -> list[str]:
        return [line.label.format for line in self._markers]

    def set_buffer(self, buffer: MetricBuffer) -> None:
        """Shows a finished run's history at once (no timer needed: one redraw)."""
        self.buffer = buffer
        self.redraw()

    def clear(self) -> None:
        self.buffer = MetricBuffer()
        for line in self._markers:
            self._plots["loss"].removeItem(line)
        self._markers.clear()
        self.redraw()

    @property
    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100

    def set_smoothing(self, weight: float) -> None:
        self.smoothing_slider.setValue(int(round(weight * 100)))

    def set_log_scale(self, on: bool) -> None:
        self.log_check.setChecked(on)

    def is_log_scale(self) -> bool:
        return bool(self._plots["loss"].ctrl.logYCheck.isChecked())

    def has_plot(self, key: str) -> bool:
        return key in self._plots

    def drawn_points(self, key: str) -> int:
        """How many points the curve for ``key`` currently shows (before downsampling)."""
        curve = self._curves.get(key)
        x = curve.getOriginalDataset()[0] if curve is not None else None
        return 0 if x is None else len(x)

    def drawn_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._curves[key].getOriginalDataset()
        return (np.empty(0), np.empty(0)) if x is None else (np.asarray(x), np.asarray(y))

    # -- drawing -----------------------------------------------------------------------------

    def redraw(self) -> None:
        self._sync_optional_plots()
        for key, curve in self._curves.items():
            if key != SMOOTHED:
                curve.setData(*self.buffer.arrays(key))
        x, y = self.buffer.arrays("loss")
        self._curves[SMOOTHED].setData(x, smooth_ema(y, self.smoothing))
        for key in self._plots:
            self._fit_y(key, self.buffer.arrays(key)[1])
        self._show_legend()
        self._drawn_version = self.buffer.version
        self._drawn_smoothing = self.smoothing

    def _fit_y(self, key: str, y: np.ndarray) -> None:
        """Auto-range, except for a flat series (a constant learning rate): pyqtgraph would
        centre it in a ±0.5 window, drawing 2e-4 as if it were 0."""
        plot = self._plots[key]
        finite = y[np.isfinite(y)]
        if finite.size and finite.min() == finite.max() and not (key == "loss" and self.is_log_scale()):
            value = float(finite[0])
            margin = abs(value) * 0.1 or 1.0
            plot.setYRange(value - margin, value + margin, padding=0)
        else:
            plot.enableAutoRange(axis="y")

    def _show_legend(self) -> None:
        """The loss plot names its curves once it has data; validation joins when it has some."""
        plot = self._plots["loss"]
        if plot.legend is None and self.buffer.length("loss"):
            plot.addLegend(offset=(-10, 10), **LEGEND_STYLE)
            plot.legend.addItem(self._curves["loss"], "train (raw)")
            plot.legend.addItem(self._curves[SMOOTHED], "train (smoothed)")
        if plot.legend is not None and self.buffer.length("eval_loss") and not self._legend_has("validation"):
            plot.legend.addItem(self._curves["eval_loss"], "validation")
        elif plot.legend is not None and not self.buffer.length("eval_loss") and self._legend_has("validation"):
            plot.legend.removeItem(self._curves["eval_loss"])  # another run, without validation

    def _legend_has(self, name: str) -> bool:
        legend = self._plots["loss"].legend
        return legend is not None and any(label.text == name for _, label in legend.items)

    def legend_names(self) -> list[str]:
        legend = self._plots["loss"].legend
        return [] if legend is None else [label.text for _, label in legend.items]

    def _on_x_range_changed(self, source: pg.ViewBox, x_range: tuple[float, float]) -> None:
        if self._syncing_x:
            return
        self._syncing_x = True
        try:
            for plot in self._plots.values():
                if plot.getViewBox() is not source:
                    plot.setXRange(*x_range, padding=0)
        finally:
            self._syncing_x = False

    def x_range(self, key: str) -> tuple[float, float]:
        low, high = self._plots[key].viewRange()[0]
        return float(low), float(high)

    def _on_redraw_timer_timeout(self) -> None:
        if self.buffer.version != self._drawn_version:
            self.redraw()

    def _on_smoothing_changed(self, value: int) -> None:
        if hasattr(self, "_curves") and SMOOTHED in self._curves:
            x, y = self.buffer.arrays("loss")
            self._curves[SMOOTHED].setData(x, smooth_ema(y, self.smoothing))

    def _on_log_toggled(self, on: bool) -> None:
        self._plots["loss"].setLogMode(y=on)
        self._plots["loss"].setLabel("left", "Train loss (log)" if on else "Train loss", color=AXIS_COLOR)
        self._fit_y("loss", self.buffer.arrays("loss")[1])

    # -- building ----------------------------------------------------------------------------

    def _sync_optional_plots(self) -> None:
        """Optional plots follow the buffer: one appears when its metric is first reported and
        goes when a run without it is shown (a GPU run's plots must not linger, empty, over a
        CPU run). The grid is then laid out again so no gap is left."""
        wanted = [spec for spec in PLOT_SPECS if not spec.optional or self.buffer.length(spec.key)]
        if [spec.key for spec in wanted] == list(self._plots):
            return
        kept = dict(self._plots)
        for key, plot in kept.items():
            if key != "loss":
                self.view.removeItem(plot)
        self._plots = {"loss": kept.pop("loss")}
        for spec in wanted[1:]:
            plot = kept.pop(spec.key, None)
            if plot is None:
                self._add_plot(spec)
                continue
            row, col = self._next_cell(spec)
            self.view.addItem(plot, row=row, col=col)
            self._plots[spec.key] = plot
        for key, plot in kept.items():  # the ones no longer wanted
            plot.sigXRangeChanged.disconnect(self._on_x_range_changed)
            for series in SERIES:
                if series.plot_key == key:
                    self._curves.pop(series.key, None)
        self._label_bottom_row()

    def _next_cell(self, spec: SeriesSpec) -> tuple[int, int]:
        if spec.key == "loss":
            return 0, 0
        index = len(self._plots) - 1  # the small plots fill a grid below the loss plot
        return 1 + index // SMALL_COLUMNS, index % SMALL_COLUMNS

    def _add_plot(self, spec: SeriesSpec) -> None:
        row, col = self._next_cell(spec)
        plot = self.view.addPlot(row=row, col=col, colspan=SMALL_COLUMNS if spec.key == "loss" else 1,
                                 axisItems={"bottom": step_axis()})
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
        left.setWidth(72)  # equal widths keep the x axes of a column aligned
        # "0.0002" reads better than "200" under a "(x1e-06)" label.
        left.enableAutoSIPrefix(False)
        # Every plot shows the same steps. Not pyqtgraph's setXLink: it lines linked views up by
        # their screen position, which shifts the grid's right column against the wide loss plot.
        plot.sigXRangeChanged.connect(self._on_x_range_changed)
        if self._plots:
            plot.enableAutoRange(x=False)  # the loss plot's auto range decides for all
            plot.setXRange(*self._plots["loss"].viewRange()[0], padding=0)
        self._plots[spec.key] = plot
        if spec.key == "loss":
            self.view.ci.layout.setRowStretchFactor(0, 2)  # the loss plot gets the most room
        for series in SERIES:
            if series.plot_key == spec.key:
                self._add_curve(series)

    def _label_bottom_row(self) -> None:
        """"Step" under the plots of the last row only: the axis is shared."""
        last_row = max(self._next_cell_of(key)[0] for key in self._plots)
        for key, plot in self._plots.items():
            plot.setLabel("bottom", "Step" if self._next_cell_of(key)[0] == last_row else "", color=AXIS_COLOR)

    def _next_cell_of(self, key: str) -> tuple[int, int]:
        if key == "loss":
            return 0, 0
        index = list(self._plots).index(key) - 1
        return 1 + index // SMALL_COLUMNS, index % SMALL_COLUMNS

    def _add_curve(self, spec: SeriesSpec) -> None:
        plot = self._plots[spec.plot_key]
        if spec.dots:
            curve = plot.plot([], [], pen=pg.mkPen(spec.color, width=2), symbol="o", symbolSize=7,
                              symbolBrush=spec.color, symbolPen=None)
        elif spec.key == "loss":
            curve = plot.plot([], [], pen=pg.mkPen(RAW_LOSS_COLOR, width=1.5), connect="finite")
        else:
            curve = plot.plot([], [], pen=pg.mkPen(spec.color, width=2), connect="finite")
        self._curves[spec.key] = curve

    def _add_smoothed_curve(self) -> None:
        curve = self._plots["loss"].plot([], [], pen=pg.mkPen("#1d4ed8", width=2.5), connect="finite")
        curve.setZValue(1)  # above the raw curve
        self._curves[SMOOTHED] = curve
