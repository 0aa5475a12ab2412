"""The window shell: seven pages behind a navigation list."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from gui.main_window import MainWindow


def test_seven_pages_in_order_and_navigation_switches_them(qtbot, make_context):
    window = MainWindow(make_context())
    qtbot.addWidget(window)
    titles = [window.nav.item(i).text() for i in range(window.nav.count())]
    assert titles == ["Datasets", "Prompt", "Train", "Evaluate", "Runs", "Sweeps", "Setup"]
    assert window.windowTitle() == "Tunebench"
    assert window.current_page_title() == "Train"
    assert window.width() >= 1200 and window.height() >= 760

    window.show()
    rect = window.nav.visualItemRect(window.nav.item(4))
    qtbot.mouseClick(window.nav.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.stack.currentWidget() is window.runs_page


def test_closing_during_a_training_run_asks_nothing_and_the_run_goes_on(qtbot, tunebench_home, monkeypatch):
    from queue_helpers import queue_context, stop_engines

    from engine.core import workspace

    window = MainWindow(queue_context("train_tiny.ndjson", "--delay", "0.1"))
    qtbot.addWidget(window)
    window.show()
    monkeypatch.setattr(window, "_confirm_close", lambda busy: pytest.fail("asked to confirm"))
    train = window.train_page
    qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(train.is_following, timeout=15_000)
    run = train._follower.run
    try:
        assert window.close()
        assert train.notifier.sent[-1].title == "Training continues"  # the user is told
        assert run.info()["status"] == "running" and workspace.pid_alive(run.info()["pid"])
        qtbot.waitUntil(lambda: run.info()["status"] == "finished", timeout=15_000)  # no window needed
    finally:
        stop_engines(tunebench_home)
