"""The Datasets page through the fake engine replaying transcripts recorded from the real one
(tests/transcripts/data_*.ndjson): listing, import with the problem list and its choice, the
mapping editor, drag and drop, the lazy rows table, stats, preview, split and clean."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from gui_helpers import TRANSCRIPTS, make_dataset
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.core import paths
from gui.pages.datasets import NO_DATASETS, DatasetsPage, report_path
from gui.state.dataset_rows import preview_file

FINISH_TIMEOUT_MS = 15_000
SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"


def table_rows(page: DatasetsPage) -> list[list[str]]:
    return [[page.table.item(r, c).text() for c in range(page.table.columnCount())]
            for r in range(page.table.rowCount())]


def run_job(qtbot, page: DatasetsPage, start) -> None:
    with qtbot.waitSignal(page.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        start()


def reviews_with_rows() -> Path:
    """A stored version and its exported rows in the cache (as `data export` leaves them)."""
    folder = make_dataset(paths.datasets_dir(), "reviews", 1, 240, shape="messages")
    target = preview_file("reviews", 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, target)
    later = time.time() + 5
    os.utime(target, (later, later))
    return folder


def test_the_empty_workspace_line_goes_once_a_dataset_is_listed(qtbot, make_context):
    page = DatasetsPage(make_context())
    qtbot.addWidget(page)
    page.refresh()
    assert page.table.rowCount() == 0 and page.status_label.text() == NO_DATASETS
    make_dataset(paths.datasets_dir(), "reviews", 1, 40)  # imported meanwhile, e.g. from the CLI
    page.resize(1100, 650)
    page.show()  # showing the page again lists what is there now
    qtbot.waitUntil(lambda: page.table.rowCount() == 1)
    assert page.status_label.text() == ""
    if os.environ.get("TUNEBENCH_SHOTS"):
        page.grab().save(os.path.join(os.environ["TUNEBENCH_SHOTS"], "datasets-after-import.png"))


def test_lists_every_version_of_every_dataset(qtbot, make_context):
    make_dataset(paths.datasets_dir(), "reviews", 1, 400)
    make_dataset(paths.datasets_dir(), "reviews", 2, 1250)
    make_dataset(paths.datasets_dir(), "faq", 1, 12)
    (paths.datasets_dir() / "half-written" / "v1").mkdir(parents=True)  # no manifest yet
    page = DatasetsPage(make_context())
    qtbot.addWidget(page)

    assert table_rows(page) == [
        ["faq", "v1", "12", "prompt-completion", "faq.jsonl", "2025-11-23 14:20"],
        ["reviews", "v1", "400", "prompt-completion", "reviews.jsonl", "2025-11-23 14:20"],
        ["reviews", "v2", "1,250", "prompt-completion", "reviews.jsonl", "2025-11-23 14:20"],
    ]


def test_a_failed_import_names_the_file_line_and_field(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_invalid.ndjson"))
    qtbot.addWidget(page)
    run_job(qtbot, page, lambda: page.import_file(str(tmp_path / "bad.jsonl")))

    assert page.status_label.text() == "Import failed: bad.jsonl:37: field 'completion' is missing"
    assert page.status_label.is_error()
    assert page.import_button.isEnabled()
    assert page.table.rowCount() == 0
    assert not page.tabs.isTabVisible(0)  # no report file: no problem list


def test_a_successful_import_refreshes_the_table(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_ok.ndjson"))
    qtbot.addWidget(page)
    # The real engine writes the version folder before it reports the result.
    page.client.sig_hello.connect(lambda _: make_dataset(paths.datasets_dir(), "reviews", 1, 3))
    changed, commands = [], []
    page.sig_datasets_changed.connect(lambda: changed.append(True))
    page.client.sig_hello.connect(lambda _: commands.append(page.client.command_line()))
    run_job(qtbot, page, lambda: page.import_file(str(tmp_path / "reviews.jsonl")))

    assert page.status_label.text() == "Imported reviews v1: 3 rows (prompt-completion)."
    assert not page.status_label.is_error()
    assert table_rows(page)[0][:3] == ["reviews", "v1", "3"]
    assert changed == [True]
    path = tmp_path / "reviews.jsonl"
    assert f"data import {path} --report {report_path(str(path))} --json" in commands[0]
    # The new version is selected and its rows are being read for the table.
    assert (page.selected.name, page.selected.version) == ("reviews", 1)
    assert "data export reviews@v1 --out " in page.client.command_line()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=20_000)


def start_bad_import(qtbot, page: DatasetsPage, tmp_path: Path) -> Path:
    source = tmp_path / "reviews-bad.jsonl"
    shutil.copy(TRANSCRIPTS / "data_import_problems.source.jsonl", source)
    # The engine writes the report while it validates; the fake engine does not, so it is put
    # in place as the engine starts (the page removes any old one first).
    page.client.sig_hello.connect(lambda _: shutil.copy(TRANSCRIPTS / "data_import_problems.report.jsonl",
                                                        report_path(str(source))))
    run_job(qtbot, page, lambda: page.import_file(str(source)))
    return source


def test_invalid_rows_open_the_problem_list_with_each_line(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_problems.ndjson"))
    qtbot.addWidget(page)
    source = start_bad_import(qtbot, page, tmp_path)

    assert page.tabs.isTabVisible(0) and page.tabs.currentIndex() == 0
    table = page.problems.table
    cells = [[table.item(r, c).text() for c in range(4)] for r in range(table.rowCount())]
    assert cells == [
        ["reviews-bad.jsonl", "4", "messages", "conversation has no final assistant turn to learn from"],
        ["reviews-bad.jsonl", "7", "messages[0].role", "unknown role 'customer' (use system, user or assistant)"],
        ["reviews-bad.jsonl", "9", "(line)", "not valid JSON: Invalid control character at column 51"],
        ["reviews-bad.jsonl", "11", "messages[1].content", "must be text, not int"],
    ]
    lines = source.read_text(encoding="utf-8").splitlines()
    assert table.item(1, 4).text() == lines[6][:299] + ("…" if len(lines[6]) > 300 else "")
    assert page.problems.import_valid_button.text() == "Import the 8 valid rows"
    assert page.status_label.is_error()

    page._context = make_context("data_import_skip.ndjson")  # the next command's transcript
    run_job(qtbot, page, page.problems.import_valid_button.click)
    assert page.client.command_line().endswith("--skip-invalid --json")
    assert page.status_label.text() == "Imported reviews-bad v1: 8 rows (messages), 4 invalid rows left out."
    assert not page.tabs.isTabVisible(0)


def test_cancel_and_fix_the_file_closes_the_list(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_problems.ndjson"))
    qtbot.addWidget(page)
    start_bad_import(qtbot, page, tmp_path)
    page.problems.cancel_button.click()
    assert not page.tabs.isTabVisible(0)
    assert page.status_label.text() == "Import cancelled: fix reviews-bad.jsonl and import it again."


def test_a_binary_file_is_one_clear_line(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_binary.ndjson"))
    qtbot.addWidget(page)
    run_job(qtbot, page, lambda: page.import_file(str(tmp_path / "image.jsonl")))
    assert page.status_label.text().startswith("Import failed: image.jsonl: a binary file, not text")
    assert not page.tabs.isTabVisible(0)


def test_the_mapping_editor_passes_shape_and_columns(qtbot, make_context, tmp_path):
    source = tmp_path / "qa.csv"
    source.write_text("question,answer,topic\nWhat?,That.,x\n", encoding="utf-8")
    page = DatasetsPage(make_context("data_import_ok.ndjson"))
    qtbot.addWidget(page)
    editor = page.open_mapping_editor(str(source))
    editor.set_shape("prompt_completion")
    assert list(editor.field_combos) == ["prompt", "completion", "system"]
    editor.set_column("prompt", "question")
    editor.set_column("completion", "answer")
    run_job(qtbot, page, editor.accept)
    assert (f"data import {source} --shape prompt_completion --map prompt=question --map completion=answer "
            in page.client.command_line())


def test_dropping_a_file_imports_it(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_ok.ndjson"))
    qtbot.addWidget(page)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.jsonl"))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    run_job(qtbot, page, lambda: page.dropEvent(event))
    assert f"data import {tmp_path / 'dropped.jsonl'}" in page.client.command_line()


def test_selecting_a_version_exports_its_rows_then_shows_them(qtbot, make_context):
    make_dataset(paths.datasets_dir(), "reviews", 1, 240, shape="messages")
    page = DatasetsPage(make_context("data_export_rows.ndjson"))
    qtbot.addWidget(page)
    target = preview_file("reviews", 1)

    def write_rows(_: dict) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE, target)

    page.client.sig_hello.connect(write_rows)
    run_job(qtbot, page, lambda: page.table.selectRow(0))
    assert f"data export reviews@v1 --out {target} --json" in page.client.command_line()
    assert page.rows_model.rowCount() == 240
    assert page.rows_model.headerData(3, Qt.Orientation.Horizontal) == "Answer"
    answer = page.rows_model.index(0, 3).data()
    assert answer.startswith('{"sentiment"')


def test_a_million_rows_are_read_lazily(qtbot, make_context):
    make_dataset(paths.datasets_dir(), "big", 1, 1_000_000, shape="text")
    target = preview_file("big", 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        handle.writelines(f'{{"text": "row {i}"}}\n' for i in range(1_000_000))
    page = DatasetsPage(make_context())
    qtbot.addWidget(page)
    page.resize(900, 700)
    page.show()
    page.table.selectRow(0)
    model = page.rows_model
    assert model.rowCount() == 1_000_000
    page.rows_view.scrollToBottom()
    qtbot.wait(50)
    assert model.index(999_999, 1).data() == "row 999999"
    from gui.state.dataset_rows import CACHE_ROWS

    assert len(model._rows._cache) <= CACHE_ROWS  # only rows on screen (and recent) are parsed


def test_stats_show_the_histogram_and_cutoff_counts(qtbot, make_context):
    reviews_with_rows()
    page = DatasetsPage(make_context("data_stats.ndjson"))
    qtbot.addWidget(page)
    page.table.selectRow(0)
    page.cutoff.setValue(96)
    run_job(qtbot, page, page.stats_button.click)
    assert "data stats reviews@v1 --model default --max-length 96 --json" in page.client.command_line()
    assert page.stats.histogram.summary.text() == \
        "Cutoff 96 tokens: 51 of 240 rows truncated, 51 lose part of the answer."
    assert page.stats.histogram.cutoff_line.value() == 96
    assert page.stats.values["Exact duplicates"].text() == "0"
    assert page.stats.values["Messages by role"].text() == "system: 240, user: 240, assistant: 240"
    assert page.tabs.currentIndex() == 3


def test_preview_highlights_loss_tokens(qtbot, make_context):
    reviews_with_rows()
    page = DatasetsPage(make_context("data_preview.ndjson"))
    qtbot.addWidget(page)
    page.table.selectRow(0)
    page.cutoff.setValue(80)
    page.rows_view.selectRow(2)
    run_job(qtbot, page, page.preview_button.click)
    assert "data preview reviews@v1 --row 3 --model default --max-length 80 --json" in page.client.command_line()
    assert page.token_view.summary.text().startswith("Row 3 of reviews@v1: 95 tokens, 31 count in the loss")
    html = page.token_view.text.toHtml()
    assert "line-through" in html  # tokens past the cutoff
    assert page.tabs.currentIndex() == 2


def test_clean_and_split_run_on_the_selected_version(qtbot, make_context):
    reviews_with_rows()
    page = DatasetsPage(make_context("data_clean.ndjson"))
    qtbot.addWidget(page)
    page.table.selectRow(0)
    page.tools.normalize.setChecked(True)
    page.tools.dedupe.setChecked(True)
    page.client.sig_hello.connect(lambda _: make_dataset(paths.datasets_dir(), "reviews", 2, 240, shape="messages"))
    commands = []
    page.client.sig_hello.connect(lambda _: commands.append(page.client.command_line()))
    run_job(qtbot, page, page.tools.clean_button.click)
    assert "data clean reviews@v1 --normalize --dedupe --json" in commands[0]
    assert page.status_label.text() == "Clean: reviews v2 (normalize 0; dedupe 0)."
    assert page.table.rowCount() == 2
    assert page.selected.version == 2  # the cleaned version is the one shown now
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=20_000)
    assert page.tools.split_arguments() == ["--val", "0.1", "--test", "0", "--seed", "42"]
