"""The whole problem report of a refused import: file, line, field, problem and the line itself,
with the choice the issue asks for: import the valid rows, or cancel and fix the file."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from gui.state.dataset_problems import Problem
from gui.widgets.tables import make_read_only

HEADERS = ("File", "Line", "Field", "Problem", "Line text")


class ProblemList(QWidget):
    sig_import_valid = Signal()
    sig_cancel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.heading = QLabel(wordWrap=True, objectName="section")
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        make_read_only(self.table, stretch_column=HEADERS.index("Line text"))
        self.table.setWordWrap(False)
        self.import_valid_button = QPushButton(objectName="primary")
        self.import_valid_button.clicked.connect(self.sig_import_valid)
        self.cancel_button = QPushButton("Cancel and fix the file")
        self.cancel_button.clicked.connect(self.sig_cancel)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.import_valid_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.heading)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def show_problems(self, problems: list[Problem], valid_rows: int | None) -> None:
        """``valid_rows``: rows that would import (None when unknown: the file had none)."""
        count = len(problems)
        self.heading.setText(f"{count:,} invalid row{'s' if count != 1 else ''}. Import the valid ones, or "
                             "cancel, fix the file and import it again.")
        self.table.setRowCount(count)
        for r, problem in enumerate(problems):
            for c, text in enumerate((problem.file, problem.where, problem.field, problem.problem, problem.text)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        self.import_valid_button.setVisible(bool(valid_rows))
        self.import_valid_button.setText(f"Import the {valid_rows:,} valid rows" if valid_rows else "")
