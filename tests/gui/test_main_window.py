"""The window shell: five pages behind a navigation list."""

from __future__ import annotations

from PySide6.QtCore import Qt

from gui.main_window import MainWindow
from gui.pages.evaluate import EvaluatePage


def test_five_pages_in_order_and_navigation_switches_them(qtbot, make_context):
    window = MainWindow(make_context())
    qtbot.addWidget(window)
    titles = [window.nav.item(i).text() for i in range(window.nav.count())]
    assert titles == ["Datasets", "Prompt", "Train", "Evaluate", "Runs"]
    assert window.windowTitle() == "Tunebench"
    assert window.current_page_title() == "Train"
    assert window.width() >= 1200 and window.height() >= 760

    window.show()
    rect = window.nav.visualItemRect(window.nav.item(4))
    qtbot.mouseClick(window.nav.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.stack.currentWidget() is window.runs_page


def test_evaluate_page_has_no_dead_controls(qtbot, make_context):
    page = EvaluatePage(make_context())
    qtbot.addWidget(page)
    from PySide6.QtWidgets import QAbstractButton, QLineEdit

    assert page.findChildren(QAbstractButton) == [] and page.findChildren(QLineEdit) == []
    text = page.explanation.text()
    assert "later version" in text and "tunebench-engine" in text


def test_closing_with_a_job_running_asks_first(qtbot, make_context, monkeypatch):
    window = MainWindow(make_context("train_tiny.ndjson", "--delay", "0.2"))
    qtbot.addWidget(window)
    window.show()
    asked = []
    monkeypatch.setattr(window, "_confirm_close", lambda busy: asked.append(busy) or False)
    qtbot.mouseClick(window.train_page.start_button, Qt.MouseButton.LeftButton)
    assert not window.close()  # the user said no: the window and the run stay
    assert asked == [["Train"]] and window.train_page.is_busy()

    monkeypatch.setattr(window, "_confirm_close", lambda busy: True)
    assert window.close()
    assert not window.train_page.is_busy()
