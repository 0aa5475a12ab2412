"""A bar per model for one metric, with its 95% bootstrap interval as a whisker (pyqtgraph
BarGraphItem + ErrorBarItem). Saves itself as PNG with pyqtgraph's ImageExporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from gui.widgets.metric_plot import AXIS_COLOR, BACKGROUND

COLORS = ("#94a3b8", "#2563eb", "#ea580c", "#059669", "#7c3aed", "#dc2626")
BAR_WIDTH = 0.6


class EvalBarChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(background=BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setPen(AXIS_COLOR)
            axis.setTextPen(AXIS_COLOR)
        self.plot.showGrid(x=False, y=True, alpha=0.2)
        # The title is a label, not the plot's own title row, which pyqtgraph squeezes out of
        # sight when the plot is short; exported images get it as the plot title.
        self.title = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, objectName="heading")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        self.bars: pg.BarGraphItem | None = None
        self.whiskers: pg.ErrorBarItem | None = None
        self.heights: list[float] = []

    def clear(self) -> None:
        self.plot.clear()
        self.bars = self.whiskers = None
        self.heights = []
        self.title.setText("")

    def show_values(self, title: str, labels: Sequence[str], values: Sequence[dict[str, Any]]) -> None:
        """One bar per model (``values[i]["estimate"]``), whiskers from ``low`` to ``high`` where given."""
        self.clear()
        if not labels:
            return
        x = np.arange(len(labels), dtype=float)
        heights = [_number(v.get("estimate")) for v in values]
        self.heights = heights
        brushes = [pg.mkBrush(COLORS[i % len(COLORS)]) for i in range(len(labels))]
        self.bars = pg.BarGraphItem(x=x, height=heights, width=BAR_WIDTH, brushes=brushes, pen=pg.mkPen(None))
        self.plot.addItem(self.bars)
        lows = [_number(v.get("low"), h) for v, h in zip(values, heights)]
        highs = [_number(v.get("high"), h) for v, h in zip(values, heights)]
        if any(lo != h or hi != h for lo, hi, h in zip(lows, highs, heights)):
            self.whiskers = pg.ErrorBarItem(x=x, y=np.array(heights), bottom=np.array(heights) - np.array(lows),
                                            top=np.array(highs) - np.array(heights), beam=0.2,
                                            pen=pg.mkPen("#111827", width=1.5))
            self.plot.addItem(self.whiskers)
        axis = self.plot.getAxis("bottom")
        axis.setTicks([[(i, _short(label)) for i, label in enumerate(labels)]])
        self.title.setText(title)
        top = max(highs + heights + [0.0])
        bottom = min(lows + heights + [0.0])
        self.plot.setYRange(bottom, top * 1.1 if top > 0 else 1.0, padding=0.02)
        self.plot.setXRange(-0.6, len(labels) - 0.4, padding=0)

    def save_png(self, path: Path) -> None:
        from pyqtgraph.exporters import ImageExporter

        item = self.plot.getPlotItem()
        item.setTitle(self.title.text(), color=AXIS_COLOR, size="11pt")
        # The title row only gets its height once the layout has run.
        item.layout.activate()
        QApplication.processEvents()
        try:
            exporter = ImageExporter(item)
            exporter.parameters()["width"] = max(self.plot.width(), 480)
            exporter.export(str(path))
        finally:
            item.setTitle(None)


def _number(value: Any, fallback: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) else fallback


def _short(label: str) -> str:
    return label if len(label) <= 24 else label[:10] + "…" + label[-12:]
