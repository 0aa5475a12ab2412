"""Every state of the Datasets page renders with content, error states included; set
TUNEBENCH_SCREENSHOTS=<folder> to keep the pictures for review."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gui_helpers import make_dataset
from test_datasets_page import reviews_with_rows, run_job, start_bad_import

from engine.core import paths
from gui.pages.datasets import DatasetsPage

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


def shoot(qtbot, page: DatasetsPage, name: str) -> None:
    qtbot.wait(30)
    image = page.grab().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 9) for y in range(0, image.height(), 9)}
    assert len(colours) > 8, f"{name} looks blank"
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(SHOTS) / f"datasets-{name}.png"))


@pytest.fixture
def page_for(qtbot, make_context):
    def make(transcript: str = "train_tiny.ndjson") -> DatasetsPage:
        page = DatasetsPage(make_context(transcript))
        qtbot.addWidget(page)
        page.resize(1100, 760)
        page.show()
        qtbot.waitExposed(page)
        return page

    return make


def test_empty_and_listed(qtbot, page_for):
    shoot(qtbot, page_for(), "empty")
    reviews_with_rows()
    make_dataset(paths.datasets_dir(), "reviews", 2, 236, shape="messages")
    page = page_for()
    page.table.selectRow(0)
    shoot(qtbot, page, "rows")


def test_problem_list_and_bad_file(qtbot, page_for, tmp_path):
    page = page_for("data_import_problems.ndjson")
    start_bad_import(qtbot, page, tmp_path)
    shoot(qtbot, page, "problems")
    page = page_for("data_import_binary.ndjson")
    run_job(qtbot, page, lambda: page.import_file(str(tmp_path / "image.jsonl")))
    shoot(qtbot, page, "bad-file")


def test_stats_preview_and_tools(qtbot, page_for):
    reviews_with_rows()
    page = page_for("data_stats.ndjson")
    page.table.selectRow(0)
    page.cutoff.setValue(96)
    run_job(qtbot, page, page.stats_button.click)
    shoot(qtbot, page, "stats")
    page = page_for("data_preview.ndjson")
    page.table.selectRow(0)
    page.cutoff.setValue(80)
    page.rows_view.selectRow(2)
    run_job(qtbot, page, page.preview_button.click)
    shoot(qtbot, page, "preview")
    page.tabs.setCurrentIndex(4)
    shoot(qtbot, page, "tools")


def test_mapping_editor(qtbot, page_for, tmp_path):
    source = tmp_path / "qa.csv"
    source.write_text("question,answer,topic\nWhat?,That.,x\n", encoding="utf-8")
    page = page_for()
    editor = page.open_mapping_editor(str(source))
    editor.set_shape("prompt_completion")
    editor.set_column("prompt", "question")
    editor.set_column("completion", "answer")
    qtbot.waitExposed(editor)
    qtbot.wait(30)
    if SHOTS:
        editor.grab().save(str(Path(SHOTS) / "datasets-mapping.png"))
    editor.reject()


def test_busy_with_progress_and_cancel(qtbot, page_for):
    reviews_with_rows()
    page = page_for("data_stats.ndjson")
    page.table.selectRow(0)
    page.compute_stats()
    page._on_client_progress({"current": 120, "total": 240, "stage": "stats"})
    assert page.cancel_button.isVisible() and not page.stats_button.isEnabled()
    shoot(qtbot, page, "busy")
    with qtbot.waitSignal(page.client.sig_finished, timeout=15_000):
        page.cancel_button.click()
