"""End to end: the Datasets page driving the real engine (import with the problem list and its
choice, the rows table from `data export`, the preview through the tiny model's template).

Skipped where the engine's packages are not installed (a GUI-only environment)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from gui_helpers import TRANSCRIPTS

from gui.context import AppContext
from gui.pages.datasets import DatasetsPage

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "datasets", "trl")),
    reason="the engine's ML packages are not installed here")

ENGINE_TIMEOUT_MS = 120_000


def run_job(qtbot, page: DatasetsPage, start) -> None:
    with qtbot.waitSignal(page.client.sig_finished, timeout=ENGINE_TIMEOUT_MS):
        start()


def test_import_problems_then_valid_rows_then_rows_and_preview(qtbot, tmp_path, tiny_model_dir):
    source = tmp_path / "reviews-bad.jsonl"
    shutil.copy(TRANSCRIPTS / "data_import_problems.source.jsonl", source)
    page = DatasetsPage(AppContext.from_environment())
    qtbot.addWidget(page)

    run_job(qtbot, page, lambda: page.import_file(str(source)))
    assert page.tabs.isTabVisible(0), page.status_label.text()
    assert page.problems.table.rowCount() == 4
    assert page.problems.table.item(0, 1).text() == "4"
    assert page.problems.import_valid_button.text() == "Import the 8 valid rows"

    run_job(qtbot, page, page.problems.import_valid_button.click)
    assert page.status_label.text() == "Imported reviews-bad v1: 8 rows (messages), 4 invalid rows left out."

    run_job(qtbot, page, lambda: page.select_version("reviews-bad", 1))
    assert page.rows_model.rowCount() == 8

    page.model_edit.setText(str(tiny_model_dir))
    run_job(qtbot, page, lambda: page.preview_row(2))
    assert page.token_view.summary.text().startswith("Row 2 of reviews-bad@v1:"), page.status_label.text()
    assert "background:#dbeafe" in page.token_view.text.toHtml() or "#dbeafe" in page.token_view.text.toHtml()
