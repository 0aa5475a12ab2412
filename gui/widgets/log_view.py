"""A read-only log pane that keeps the last few thousand lines (older ones drop off)."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QWidget

MAX_LINES = 5000


class LogView(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        # Long runs write many lines; a bounded document keeps memory and layout cost flat.
        self.setMaximumBlockCount(MAX_LINES)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setPlaceholderText("The engine's log appears here.")

    def append_line(self, text: str) -> None:
        self.appendPlainText(text.rstrip("\n"))

    def lines(self) -> list[str]:
        return self.toPlainText().splitlines()
