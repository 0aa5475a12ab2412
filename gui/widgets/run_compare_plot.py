"""Several runs' curves overlaid on one step axis, one colour per run, with a legend naming
each run. Loss by default: train loss as a line (smoothed as on the Train page), validation
loss in the same colour, dashed with dots. A metric box switches to any other curve the runs
recorded (learning rate, gradient norm, tokens/s, memory, GPU)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.state.metric_buffer import smooth_ema
from gui.state.run_compare import RunCurves, comparable_metrics
from gui.widgets.loss_controls import LossControls
from gui.widgets.metric_plot import (
    AXIS_COLOR,
    BACKGROUND,
    LEGEND_STYLE,
    SERIES,
    step_axis,
)

LABELS = {spec.key: (f"{spec.label} ({spec.units})" if spec.units else spec.label) for spec in SERIES}
LABELS["loss"] = "Loss"

# Tableau 10: distinct on white and for the common colour-vision deficiencies; cycles past ten.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


class RunComparePlot(QWidget):
    """``set_runs([RunCurves, ...])`` draws them; the legend says which run each colour is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = pg.PlotWidget(background=BACKGROUND, axisItems={"bottom": step_axis()})
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "Step", color=AXIS_COLOR)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setPen(pg.mkPen(AXIS_COLOR))
            self.plot.getAxis(side).setTextPen(pg.mkPen(AXIS_COLOR))
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = self.plot.addLegend(offset=(-10, 10), **LEGEND_STYLE)
        self.hint = QLabel(objectName="hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._build_controls())
        layout.addWidget(self.plot_widget, 1)
        self._runs: list[RunCurves] = []
        self._curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.set_runs([])

    def _build_controls(self) -> QHBoxLayout:
        self.metric_combo = QComboBox(toolTip="The curve to compare; only those a selected run recorded are listed")
        self.metric_combo.currentIndexChanged.connect(lambda _index: self._redraw())
        controls = LossControls(
            "Exponential moving average of each run's curve, as in TensorBoard (0: raw). "
            "Validation loss is drawn as recorded.",
            "A logarithmic axis: late, small differences between runs stay visible",
            trailing=self.hint)
        controls.insertWidget(0, self.metric_combo)
        controls.insertSpacing(1, 16)
        self.smoothing_slider, self.smoothing_label = controls.slider, controls.value_label
        self.log_check = controls.log_check
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.log_check.toggled.connect(lambda on: self.plot.setLogMode(y=on))
        return controls

    @property
    def metric(self) -> str:
        """The metric drawn: "loss" (train and validation) or another curve's name."""
        return self.metric_combo.currentData() or "loss"

    def metric_names(self) -> list[str]:
        return [self.metric_combo.itemData(i) for i in range(self.metric_combo.count())]

    def set_metric(self, name: str) -> bool:
        index = self.metric_combo.findData(name)
        if index >= 0:
            self.metric_combo.setCurrentIndex(index)
        return index >= 0

    @property
    def smoothing(self) -> float:
        return self.smoothing_slider.value() / 100

    def set_runs(self, runs: Sequence[RunCurves]) -> None:
        """Draws ``runs``; the chosen metric stays while the runs recorded it, else loss."""
        self._runs = list(runs)
        chosen = self.metric
        self.metric_combo.blockSignals(True)
        self.metric_combo.clear()
        for name in comparable_metrics(self._runs):
            self.metric_combo.addItem(LABELS.get(name, name), name)
        self.metric_combo.setCurrentIndex(max(self.metric_combo.findData(chosen), 0))
        self.metric_combo.blockSignals(False)
        self._redraw()

    def _redraw(self) -> None:
        metric = self.metric
        self.plot.clear()  # removes the curves and their legend entries
        self.legend.clear()
        self._curves = {}
        self.plot.setLabel("left", LABELS.get(metric, metric), color=AXIS_COLOR)
        for index, run in enumerate(self._runs):
            self._add_run(run, color_of(index), metric)
        self.plot.enableAutoRange()
        self.hint.setText(self._hint(metric))

    def _hint(self, metric: str) -> str:
        if len(self._runs) < 2:
            return "Select two or more runs in the table (Ctrl- or Shift-click) to overlay their curves."
        shown = ("loss", "eval_loss") if metric == "loss" else (metric,)
        empty = [run.title for run in self._runs if not any(run.points(name) for name in shown)]
        if empty:
            what = "loss" if metric == "loss" else LABELS.get(metric, metric)
            return f"No {what} recorded for: {', '.join(empty)}."
        if metric == "loss":
            return f"{len(self._runs)} runs; dashed with dots: validation loss."
        return f"{len(self._runs)} runs."

    def _add_run(self, run: RunCurves, color: str, metric: str) -> None:
        x, y = run.series.get(metric, (np.empty(0), np.empty(0)))
        if len(x):
            name = f"{run.title} · train" if metric == "loss" else run.title
            curve = self.plot.plot(x, smooth_ema(y, self.smoothing), pen=pg.mkPen(color, width=2),
                                   connect="finite", name=name)
            self._curves[(run.run_id, metric)] = curve
        if metric != "loss":
            return
        x, y = run.series.get("eval_loss", (np.empty(0), np.empty(0)))
        if len(x):
            curve = self.plot.plot(x, y, pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine), symbol="o",
                                   symbolSize=6, symbolBrush=color, symbolPen=None, name=f"{run.title} · validation")
            self._curves[(run.run_id, "eval_loss")] = curve

    def _on_smoothing_changed(self, value: int) -> None:
        metric = self.metric
        for run in self._runs:
            curve = self._curves.get((run.run_id, metric))
            if curve is not None:
                x, y = run.series[metric]
                curve.setData(x, smooth_ema(y, self.smoothing))

    # -- for tests and screenshots -------------------------------------------------------------

    def legend_names(self) -> list[str]:
        return [label.text for _, label in self.legend.items]

    def curve_color(self, run_id: str, metric: str = "loss") -> str:
        return self._curves[(run_id, metric)].opts["pen"].color().name()

    def drawn_data(self, run_id: str, metric: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        curve = self._curves.get((run_id, metric))
        if curve is None:
            return np.empty(0), np.empty(0)
        x, y = curve.getOriginalDataset()
        return np.asarray(x), np.asarray(y)
