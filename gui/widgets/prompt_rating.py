"""Rating controls under a column (thumbs, 1–5, "Better" for A/B) and the Ratings tab."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.core import errors
from engine.infer import ratings
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

NO_SCORE = "1–5"


class RatingBar(QWidget):
    """Thumbs up/down, a 1–5 score and "Better" (this answer beats the other columns' answers)."""

    sig_thumbs = Signal(int)  # +1 / -1
    sig_score = Signal(int)  # 1..5
    sig_better = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.up_button = QToolButton(text="▲", checkable=True, toolTip="Thumbs up: a good answer")
        self.down_button = QToolButton(text="▼", checkable=True, toolTip="Thumbs down: a bad answer")
        self.score_combo = QComboBox(toolTip="Rate the answer from 1 (useless) to 5 (perfect)")
        self.score_combo.addItems([NO_SCORE, "1", "2", "3", "4", "5"])
        self.score_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.better_button = QPushButton("Better", toolTip="A/B: this answer is better than the other "
                                                           "columns' answers to the same prompt")
        self.up_button.clicked.connect(lambda: self._on_thumb(1))
        self.down_button.clicked.connect(lambda: self._on_thumb(-1))
        self.score_combo.activated.connect(self._on_score_activated)
        self.better_button.clicked.connect(self.sig_better.emit)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.up_button, self.down_button, self.score_combo, self.better_button):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.reset(False, False)

    def reset(self, rateable: bool, comparable: bool) -> None:
        """A new answer: nothing chosen; enabled when it can be rated (and compared)."""
        for button in (self.up_button, self.down_button):
            button.setChecked(False)
            button.setEnabled(rateable)
        self.score_combo.setCurrentIndex(0)
        self.score_combo.setEnabled(rateable)
        self.better_button.setEnabled(rateable and comparable)

    def _on_thumb(self, value: int) -> None:
        self.up_button.setChecked(value == 1)
        self.down_button.setChecked(value == -1)
        self.sig_thumbs.emit(value)

    def _on_score_activated(self, index: int) -> None:
        if index > 0:
            self.sig_score.emit(index)


class RatingsPanel(QWidget):
    """What has been rated, and "Export as preference dataset"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel(wordWrap=True)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Kind", "Rating", "Adapter", "Answer"])
        make_read_only(self.table, stretch_column=3)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(2, 110)
        self.table.setWordWrap(False)
        self.table.setToolTip("Newest first; hover an answer for its full text.")
        self.export_button = QPushButton("Export as preference dataset…", objectName="primary")
        self.export_button.setToolTip("Write prompt/chosen/rejected rows (JSONL) for the Datasets page to "
                                      "import and preference tuning to train on.")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(QLabel("Ratings", objectName="section"))
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        self.refresh()

    def refresh(self) -> None:
        stored = ratings.load()
        pairs = len(ratings.preference_rows(stored))
        counts = {kind: sum(r.kind == kind for r in stored) for kind in ratings.KINDS}
        self.summary.setText(f"{len(stored)} ratings ({counts['thumbs']} thumbs, {counts['score']} scores, "
                             f"{counts['ab']} A/B picks) → {pairs} preference pairs. Stored in "
                             f"{ratings.ratings_file()}.")
        recent = list(reversed(stored))[:200]
        self.table.setRowCount(len(recent))
        for row, rating in enumerate(recent):
            value = {"thumbs": "▲ good" if rating.value == 1 else "▼ bad", "score": f"{rating.value}/5",
                     "ab": "preferred"}[rating.kind]
            adapter = str(rating.config.get("adapter") or "base")
            for column, text in enumerate((rating.kind, value, Path(adapter).parent.name or adapter, rating.answer)):
                item = QTableWidgetItem(text.replace("\n", " ")[:200])
                tip = f"{text}\n\nover: {rating.other_answer}" if rating.kind == "ab" and column == 3 else text
                item.setToolTip(tip[:1000])
                self.table.setItem(row, column, item)
        self.export_button.setEnabled(pairs > 0)

    def export_to(self, path: Path) -> None:
        try:
            count = ratings.export_preferences(path)
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return
        self.status.show_message(f"Wrote {count} preference pairs to {path}; import it on the Datasets page.")

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export preference dataset", "preferences.jsonl", "JSONL (*.jsonl)")
        if path:
            self.export_to(Path(path))
