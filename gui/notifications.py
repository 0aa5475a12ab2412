"""Telling the user a run ended while they look elsewhere.

A desktop notification through the system tray where the desktop has one; otherwise (no tray,
e.g. some Linux desktops, or offscreen tests) the page shows an in-window banner instead, so the
message is never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QStyle, QSystemTrayIcon

MESSAGE_MS = 10_000
PARTING_MS = 8_000


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    error: bool = False


class Notifier(QObject):
    """``notify(title, text)`` → a tray message, or ``sig_banner`` when there is no tray."""

    sig_banner = Signal(object)  # a Notice for the in-window banner

    def __init__(self, parent: QObject | None = None, use_tray: bool | None = None) -> None:
        super().__init__(parent)
        self.sent: list[Notice] = []  # every notice, newest last (also for tests)
        available = QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages()
        self._tray: QSystemTrayIcon | None = None
        if available if use_tray is None else use_tray:
            icon = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
            self._tray = QSystemTrayIcon(icon, self)
            self._tray.setToolTip("Tunebench")

    @property
    def uses_tray(self) -> bool:
        return self._tray is not None

    def notify(self, title: str, text: str, error: bool = False) -> None:
        notice = Notice(title, text, error)
        self.sent.append(notice)
        if self._tray is not None:
            self._tray.show()  # a tray icon must be visible for its message to show
            kind = QSystemTrayIcon.MessageIcon.Critical if error else QSystemTrayIcon.MessageIcon.Information
            self._tray.showMessage(title, text, kind, MESSAGE_MS)
        else:
            self.sig_banner.emit(notice)


def show_parting_notice(notice: Notice, timeout_ms: int = PARTING_MS) -> QMessageBox:
    """A small window that outlives the main window for a few seconds, for a notice the user
    must see as the window closes (training goes on) when there is no tray to carry it. It is
    not modal and closes itself; the application quits once it has closed."""
    box = QMessageBox(QMessageBox.Icon.Information, notice.title, notice.text, QMessageBox.StandardButton.Ok)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    QTimer.singleShot(timeout_ms, box, box.close)
    box.show()
    return box
