"""A one-line (wrapping) status label that can show a message as an error."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget


class StatusLine(QLabel):
    """Styled by the stylesheet through the ``error`` property (``QLabel#status[error="true"]``)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setObjectName("status")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setProperty("error", False)

    def show_message(self, text: str, error: bool = False) -> None:
        self.setText(text)
        if self.property("error") != error:
            self.setProperty("error", error)
            # A dynamic property only restyles once the style is re-applied.
            self.style().unpolish(self)
            self.style().polish(self)

    def is_error(self) -> bool:
        return bool(self.property("error"))
