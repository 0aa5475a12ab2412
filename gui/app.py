"""Entry point of the window (`tunebench`). Imports stay light: the window opens in about a
second because nothing here loads torch; the engine does that in its own process."""

from __future__ import annotations

import sys
from typing import Sequence

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from engine.core import paths
from gui.context import AppContext
from gui.main_window import MainWindow

APP_NAME = "Tunebench"


def app_icon() -> QIcon | None:
    icon_file = paths.resources_dir() / "icons" / "tunebench.png"
    return QIcon(str(icon_file)) if icon_file.is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    app = QApplication(list(argv) if argv is not None else sys.argv)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    window = MainWindow(AppContext.from_environment())
    window.show()
    return app.exec()
