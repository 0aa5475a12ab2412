"""Takes the README's screenshot: the Train page during a real CPU quick-demo run.

Run from the repository root with the app's environment active:
    QT_QPA_PLATFORM=offscreen python docs/make_screenshots.py [--steps 20]
It trains the bundled default model in a throw-away workspace, grabs the window once the given
step has been plotted, then stops the run (Stop, as a user would).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "screenshots"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="grab after this many steps")
    args = parser.parse_args()
    os.environ.setdefault("TUNEBENCH_HOME", tempfile.mkdtemp(prefix="tunebench-shot-"))

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.context import AppContext
    from gui.main_window import MainWindow

    app = QApplication(sys.argv)
    window = MainWindow(AppContext.from_environment())
    window.resize(1280, 800)
    window.show()
    window.show_page("Train")
    page = window.train_page

    # The page follows the run folder that the detached queue worker writes; poll what it has
    # plotted, as a user would watch it.
    def poll() -> None:
        if page.plot.buffer.length("loss") >= args.steps and page.is_busy():
            watcher.stop()
            QTimer.singleShot(400, grab)  # let the 10 Hz plot timer draw the last point

    def grab() -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / "train-page.png"))
        print("saved", OUT / "train-page.png")
        page.stop_button.click()

    watcher = QTimer(interval=500)
    watcher.timeout.connect(poll)
    watcher.start()
    page.sig_run_finished.connect(lambda run_dir: app.quit())
    page.start_button.click()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
