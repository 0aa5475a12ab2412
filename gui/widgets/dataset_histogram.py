"""Token-length histogram from `data stats`, with the training cutoff as a line and what it
costs in words ("N rows truncated, M lose part of the answer")."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

BAR = "#2563eb"
CUT_BAR = "#dc2626"  # bins past the cutoff
AXIS = "#4a5260"


def cutoff_sentence(stats: dict) -> str:
    truncated, cut, lost = stats.get("truncated", 0), stats.get("answer_cut", 0), stats.get("answer_lost", 0)
    text = (f"Cutoff {stats.get('max_length')} tokens: {truncated:,} of {stats.get('rows', 0):,} rows truncated, "
            f"{cut:,} lose part of the answer")
    if lost:
        text += f", {lost:,} lose all of it (training drops them)"
    return text + "."


class TokenHistogram(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="#ffffff")
        self.plot.setMinimumHeight(180)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "tokens per row (as training sees it)", color=AXIS)
        self.plot.setLabel("left", "rows", color=AXIS)
        self.plot.showGrid(y=True, alpha=0.2)
        self.summary = QLabel(wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot, 1)
        self.cutoff_line: pg.InfiniteLine | None = None

    def show_stats(self, stats: dict) -> None:
        histogram = stats.get("histogram") or {}
        edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
        self.plot.clear()
        cutoff = int(stats.get("max_length") or 0)
        if len(edges) == len(counts) + 1 and counts:
            width = edges[1] - edges[0]
            centers = [edge + width / 2 for edge in edges[:-1]]
            brushes = [CUT_BAR if edge + width > cutoff + 1 else BAR for edge in edges[:-1]]
            self.plot.addItem(pg.BarGraphItem(x=centers, height=counts, width=width * 0.9, brushes=brushes,
                                              pen=None))
            last = max((i for i, count in enumerate(counts) if count), default=0)  # trailing empty bins go
            self.plot.setXRange(edges[0], max(edges[min(last + 1, len(edges) - 1)], cutoff + width), padding=0.02)
        self.cutoff_line = pg.InfiniteLine(pos=cutoff, angle=90, movable=False,
                                           pen=pg.mkPen(CUT_BAR, width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
                                           label=f"cutoff {cutoff}", labelOpts={"position": 0.9, "color": CUT_BAR})
        self.plot.addItem(self.cutoff_line)
        self.summary.setText(cutoff_sentence(stats))
