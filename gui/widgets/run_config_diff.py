"""The settings that differ between runs, side by side: one row per setting, one column per
run, from each run's config.toml."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.state.run_compare import DiffRow, config_diff


class ConfigDiffView(QWidget):
    """``set_runs(titles, configs)`` lists only the keys whose values differ."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel(objectName="hint", wordWrap=True)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        self.rows: list[DiffRow] = []
        self.set_runs([], [])

    def set_runs(self, titles: Sequence[str], configs: Sequence[dict[str, Any]]) -> None:
        self.rows = config_diff(configs) if len(configs) >= 2 else []
        self.table.clear()
        self.table.setColumnCount(1 + len(titles) if len(titles) >= 2 else 0)
        self.table.setHorizontalHeaderLabels(["Setting", *titles])
        self.table.setRowCount(len(self.rows))
        for row, diff in enumerate(self.rows):
            self.table.setItem(row, 0, QTableWidgetItem(diff.key))
            for column, value in enumerate(diff.values, start=1):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(row, column, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        if self.table.columnCount():
            header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.summary.setText(self._summary_text(titles, configs))

    def _summary_text(self, titles: Sequence[str], configs: Sequence[dict[str, Any]]) -> str:
        if len(titles) < 2:
            return "Select two or more runs in the table (Ctrl- or Shift-click) to see the settings that differ."
        missing = [title for title, config in zip(titles, configs) if not config]
        note = f" No readable config.toml for: {', '.join(missing)}." if missing else ""
        if not self.rows:
            return "These runs used the same settings." + note
        return f"{len(self.rows)} setting{'s' if len(self.rows) != 1 else ''} differ; the rest are the same." + note
