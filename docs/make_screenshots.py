"""Takes the README's screenshots with the real engine and the bundled default model.

Run from the repository root with the app's environment active:
    QT_QPA_PLATFORM=offscreen python docs/make_screenshots.py [--steps 20]
    QT_QPA_PLATFORM=offscreen TUNEBENCH_HOME=WORKSPACE python docs/make_screenshots.py \
        --prompt RUN_ID
    QT_QPA_PLATFORM=offscreen TUNEBENCH_HOME=WORKSPACE python docs/make_screenshots.py \
        --sweep NAME
    QT_QPA_PLATFORM=offscreen python docs/make_screenshots.py --sweep-dialog
The first trains the bundled default model in a throw-away workspace, grabs the Train page
once the given step has been plotted, then stops the run (Stop, as a user would). The second
asks the Prompt page one review greedily in two columns, the finished run's adapter on (A) and
off (B), and grabs the page when both answers are in. The third shows the Sweeps page with a
sweep of that workspace (made with `sweep create` and `sweep run`) once the engine's summary is in.
The fourth opens the Train page's Sweep… dialog on the CPU quick demo settings, with the epochs
searched as well, and grabs the dialog.
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
    parser.add_argument("--prompt", metavar="RUN_ID", help="the Prompt page, with this run's adapter")
    parser.add_argument("--sweep", metavar="NAME", help="the Sweeps page, showing this sweep")
    parser.add_argument("--sweep-dialog", action="store_true", help="the Train page's Sweep… dialog")
    args = parser.parse_args()
    if args.prompt:
        return prompt_page(args.prompt)
    if args.sweep:
        return sweeps_page(args.sweep)
    if args.sweep_dialog:
        return sweep_dialog()
    os.environ.setdefault("TUNEBENCH_HOME", tempfile.mkdtemp(prefix="tunebench-shot-"))

    from PySide6.QtCore import QTimer

    app, window = open_window("Train")
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


def open_window(page_name: str):
    """The main window at the README's screenshot size, showing ``page_name``."""
    from PySide6.QtWidgets import QApplication

    from gui.context import AppContext
    from gui.main_window import MainWindow

    app = QApplication(sys.argv)
    window = MainWindow(AppContext.from_environment())
    window.resize(1280, 800)
    window.show()
    window.show_page(page_name)
    return app, window


SYSTEM = "Read the product review and answer with one line of JSON: sentiment, product, aspects."
REVIEW = "The strap broke after a week and the screen scratches easily. This smartwatch was a waste of money."


def prompt_page(run_id: str) -> int:
    from PySide6.QtCore import QTimer

    from gui.state.prompt_params import Params

    app, window = open_window("Prompt")
    page = window.prompt_page
    page.add_column()
    for column, adapter_on in zip(page.columns, (True, False)):
        column.adapter_combo.setCurrentIndex(next(
            i for i in range(column.adapter_combo.count()) if run_id in column.adapter_combo.itemText(i)))
        column.adapter_switch.setChecked(adapter_on)
        column.set_params(Params(greedy=True, temperature=0.0, max_new_tokens=40))
    page.select_column(page.columns[0])  # the Parameters tab shows the column's settings
    page.system_edit.setPlainText(SYSTEM)
    page.prompt_edit.setPlainText(REVIEW)

    def grab() -> None:
        if page.is_busy():
            return
        watcher.stop()
        OUT.mkdir(parents=True, exist_ok=True)
        window.prompt_page.grab().save(str(OUT / "prompt-page.png"))
        print("saved", OUT / "prompt-page.png", "-", page.status.text())
        page.shutdown()
        app.quit()

    page.send_button.click()
    watcher = QTimer(interval=500)
    watcher.timeout.connect(grab)
    watcher.start()
    return app.exec()


def sweeps_page(name: str) -> int:
    from PySide6.QtCore import QTimer

    app, window = open_window("Sweeps")
    page = window.sweeps_page
    page.sweep_combo.setCurrentText(name)

    def grab() -> None:
        if page.is_busy() or page.summary is None or page.summary.name != name:
            return
        watcher.stop()
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / "sweeps-page.png"))
        print("saved", OUT / "sweeps-page.png")
        app.quit()

    watcher = QTimer(interval=500)
    watcher.timeout.connect(grab)
    watcher.start()
    return app.exec()


def sweep_dialog() -> int:
    from PySide6.QtCore import QTimer

    app, window = open_window("Train")
    page = window.train_page

    def grab() -> None:
        page.sweep_button.click()
        dialog = page.sweep_dialog
        dialog.tick("epochs", choices="1, 2, 3")
        dialog.set_setting("n_trials", 12)
        dialog.set_setting("timeout_s", 3600)
        QTimer.singleShot(300, lambda: save(dialog))

    def save(dialog) -> None:  # noqa: ANN001
        OUT.mkdir(parents=True, exist_ok=True)
        dialog.grab().save(str(OUT / "sweep-dialog.png"))
        print("saved", OUT / "sweep-dialog.png")
        app.quit()

    QTimer.singleShot(500, grab)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
