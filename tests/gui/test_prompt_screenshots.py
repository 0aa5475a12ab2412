"""Every state of the Prompt page renders with content; TUNEBENCH_SCREENSHOTS=<folder> keeps the
pictures for review (prompt_chat, prompt_side_by_side, prompt_tokens, prompt_error, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gui_helpers import make_run
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from gui import style
from gui.pages.prompt import PromptPage

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")
TIMEOUT_MS = 15_000


def shoot(qtbot, widget, name: str) -> QImage:
    qtbot.wait(60)
    image = widget.grab().toImage()
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(SHOTS) / f"{name}.png"))
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20
    return image


@pytest.fixture
def page(qtbot, make_context, request):
    make_run("reviews-lora", adapter=True)
    transcript = getattr(request, "param", "session_chat.ndjson")
    widget = PromptPage(make_context(transcript))
    widget.setStyleSheet(style.STYLESHEET)
    widget.resize(1280, 760)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.shutdown()


def send(qtbot, page: PromptPage, text: str) -> None:
    page.prompt_edit.setPlainText(text)
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)


def test_chat(qtbot, page):
    page.system_edit.setPlainText("You are a concise geography tutor.")
    send(qtbot, page, "What is the capital of France?")
    send(qtbot, page, "Tell me more.")
    shoot(qtbot, page, "prompt_chat")


def test_side_by_side_with_token_view(qtbot, page):
    page.columns[0].adapter_combo.setCurrentIndex(1)
    page.add_column().adapter_switch.setChecked(False)
    page.add_column()
    page.params_panel.preset_combo.setCurrentText("Creative")
    send(qtbot, page, "What is the capital of France?")
    shoot(qtbot, page, "prompt_side_by_side")
    assert page.width() == 1280  # three columns fit the default window
    page.token_view_check.setChecked(True)
    shoot(qtbot, page, "prompt_tokens")


@pytest.mark.parametrize("page", ["session_error.ndjson"], indirect=True)
def test_error(qtbot, page):
    page.columns[0].model_combo.setEditText("missing-model")
    send(qtbot, page, "Hello")
    shoot(qtbot, page, "prompt_error")


@pytest.mark.parametrize("page", ["session_batch_real_tiny.ndjson"], indirect=True)
def test_suites_and_batch(qtbot, page):
    from engine.infer import suites as prompt_suites
    from engine.infer.suites import Prompt, Suite

    prompt_suites.save_suite(Suite("Capitals", prompts=[
        Prompt("capital", "What is the capital of {{country}}?", system="Be brief."),
        Prompt("describe", "Describe {{country}} in one line.", mode="raw")],
        cases=[{"country": "France"}, {"country": "Spain"}]))
    page.suites_panel.refresh()
    page.add_column().adapter_combo.setCurrentIndex(1)
    page.side_tabs.setCurrentWidget(page.suites_panel)
    page.suites_panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    shoot(qtbot, page, "prompt_suites")


def test_ratings(qtbot, page):
    page.columns[0].adapter_combo.setCurrentIndex(1)
    page.add_column().adapter_switch.setChecked(False)
    send(qtbot, page, "What is the capital of France?")
    page.columns[0].rating_bar.up_button.click()
    page.columns[1].rating_bar.score_combo.setCurrentIndex(2)
    page.columns[1].rating_bar.score_combo.activated.emit(2)
    page.columns[0].rating_bar.better_button.click()
    page.side_tabs.setCurrentWidget(page.ratings_panel)
    shoot(qtbot, page, "prompt_ratings")


@pytest.mark.parametrize("page", ["session_serve_running.ndjson"], indirect=True)
def test_serve_running(qtbot, page):
    page.columns[0].adapter_combo.setCurrentIndex(1)
    page.side_tabs.setCurrentWidget(page.serve_panel)
    page.serve_panel.start()
    qtbot.waitUntil(lambda: bool(page.serve_panel.token_edit.text()), timeout=TIMEOUT_MS)
    shoot(qtbot, page, "prompt_serve")
    page.serve_panel.stop()
    qtbot.waitUntil(lambda: not page.serve_panel.is_running(), timeout=TIMEOUT_MS)


def test_four_columns_fit_the_default_window(qtbot, page):
    for _ in range(3):
        page.add_column()
    page.resize(1280 - 168, 760)  # the page's share of the default window, beside the nav list
    qtbot.wait(50)
    assert page.width() == 1280 - 168
    shoot(qtbot, page, "prompt_four_columns")
    assert all(column.width() >= column.minimumSizeHint().width() for column in page.columns)
