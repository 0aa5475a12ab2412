"""Open Tunebench's main window as an installed app would, then quit; print one JSON line.

Run with an installed environment's Python from a folder outside the checkout (so that the
installed ``gui`` package is the one imported) and ``QT_QPA_PLATFORM=offscreen``.
"""

import json
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

import gui
from gui.context import AppContext
from gui.main_window import MainWindow


def main() -> int:
    app = QApplication(sys.argv[:1])
    window = MainWindow(AppContext.from_environment())
    window.show()
    seen = {}

    def look() -> None:
        seen.update(visible=window.isVisible(), title=window.windowTitle(),
                    pages=list(window.pages), gui_file=gui.__file__)
        window.close()
        app.quit()

    QTimer.singleShot(500, look)
    app.exec()
    print(json.dumps(seen))
    return 0 if seen.get("visible") else 1


if __name__ == "__main__":
    sys.exit(main())
