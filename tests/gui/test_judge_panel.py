"""The Evaluate page's Judge tab: it runs the real `evaluate judge` against a scripted
OpenAI-compatible server and shows the rates, the unparseable count and the judge's reasons."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from judge_server import GOOD, Scripted, make_evaluation, verdict
from PySide6.QtCore import Qt

from gui.context import AppContext
from gui.pages.evaluate import EvaluatePage

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")

    def policy(first: str, second: str, prompt: str) -> str:
        if "sky" in prompt and first == "blue":
            return "I think B"  # unparseable, on purpose
        return verdict("A" if first in GOOD else "B")

    fake = Scripted(policy)
    yield fake
    fake.close()


def test_judge_tab_runs_the_engine_and_shows_rates_and_reasons(qtbot, server) -> None:
    folder = make_evaluation()
    page = EvaluatePage(AppContext.from_environment(engine_override=[sys.executable, "-m", "engine"]))
    qtbot.addWidget(page)
    page.resize(1320, 860)
    assert page.open_folder(folder)
    panel = page.judge_panel
    page.tabs.setCurrentWidget(panel)
    assert [panel.a_combo.currentText(), panel.b_combo.currentText()] == ["base", "tuned"]
    assert "Not judged yet" in panel.summary.text()
    panel.source_combo.setCurrentIndex(1)
    panel.start()
    assert panel.status.is_error() and "base URL" in panel.status.text()
    panel.url_edit.setText(server.url)
    panel.start()
    qtbot.waitUntil(lambda: not panel.client.is_active(), timeout=60_000)
    assert panel.status.text() == "Judged.", panel.status.text()
    report = json.loads((folder / "judge.json").read_text())
    assert report["counts"] == {"win": 3, "tie": 0, "loss": 0} and report["unparseable"] == 1
    text = panel.summary.text()
    assert "win 100.0% [100.0, 100.0] (3)" in text and "Unparseable verdicts: 1" in text
    assert panel.table.rowCount() == 4
    cells = [panel.table.item(2, c).text() for c in range(4)]
    assert cells[:3] == ["2", "Colour of the sky?", "unparseable"] and "I think B" in cells[3]
    assert "said B" in panel.table.item(0, 3).text()
    # The Examples table gains a Judge column: each row's outcome, the reasons in its tooltip.
    model = page.examples_model
    column = next(c for c in range(model.columnCount()) if model.column_kind(c) == "judge")
    by_index = {model.value(r, 0): r for r in range(model.rowCount())}
    assert model.value(by_index[0], column) == "win (tuned)"
    assert model.value(by_index[2], column) == "unparseable"
    tip = model.data(model.index(by_index[2], column), Qt.ItemDataRole.ToolTipRole)
    assert "I think B" in tip and "base first" in tip
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.grab().save(str(Path(SHOTS) / "evaluate-judge.png"))
    page.shutdown()
