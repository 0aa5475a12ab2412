"""Endpoint controls on the Prompt page: serve the selected column's model + adapter."""

from __future__ import annotations

from gui_helpers import make_run
from PySide6.QtGui import QGuiApplication

from gui.widgets.prompt_serve_panel import serve_arguments

TIMEOUT_MS = 15_000
TOKEN = "tb-3f9c2a7e51d84b06a1c5e2f7d9b4c813"


def test_serve_arguments():
    assert serve_arguments("", "") == ["serve", "--json", "--model", "default"]
    assert serve_arguments("/m", "/a") == ["serve", "--json", "--model", "/m", "--adapter", "/a"]


def test_start_shows_url_and_token_then_stop(qtbot, make_prompt_page):
    run = make_run("tuned", adapter=True)
    page = make_prompt_page("session_serve_running.ndjson")
    page.columns[0].adapter_combo.setCurrentIndex(1)
    panel = page.serve_panel
    panel.start()
    assert panel.client.command_line().endswith(f"serve --json --model default --adapter {run.adapter}")
    qtbot.waitUntil(lambda: panel.token_edit.text() == TOKEN, timeout=TIMEOUT_MS)
    assert panel.url_edit.text() == "http://127.0.0.1:8765/v1"
    assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled() and page.is_busy()
    panel.copy_token_button.click()
    assert QGuiApplication.clipboard().text() == TOKEN and panel.status.text() == "Copied the token."
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=TIMEOUT_MS)
    assert panel.status.text() == "The endpoint stopped." and not panel.status.is_error()
    assert panel.url_edit.text() == "" and panel.start_button.isEnabled() and not page.is_busy()


def test_a_failure_to_serve_is_one_line(qtbot, make_prompt_page):
    panel = make_prompt_page("session_serve_port_busy.ndjson").serve_panel
    panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=TIMEOUT_MS)
    assert panel.status.is_error() and "\n" not in panel.status.text()
    assert "port 8765 is already in use" in panel.status.text()
