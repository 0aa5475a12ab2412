"""The Datasets page lists manifests and imports files through the (fake) engine."""

from __future__ import annotations

from engine import paths
from gui.pages.datasets import DatasetsPage

from gui_helpers import make_dataset

FINISH_TIMEOUT_MS = 15_000


def table_rows(page: DatasetsPage) -> list[list[str]]:
    return [[page.table.item(r, c).text() for c in range(page.table.columnCount())]
            for r in range(page.table.rowCount())]


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
    with qtbot.waitSignal(page.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        page.import_file(str(tmp_path / "bad.jsonl"))

    assert page.status_label.text() == "Import failed: bad.jsonl:37: field 'completion' is missing"
    assert page.status_label.is_error()
    assert page.import_button.isEnabled()
    assert page.table.rowCount() == 0


def test_a_successful_import_refreshes_the_table(qtbot, make_context, tmp_path):
    page = DatasetsPage(make_context("data_import_ok.ndjson"))
    qtbot.addWidget(page)
    # The real engine writes the version folder before it reports the result.
    page.client.sig_hello.connect(lambda _: make_dataset(paths.datasets_dir(), "reviews", 1, 3))
    changed = []
    page.sig_datasets_changed.connect(lambda: changed.append(True))
    with qtbot.waitSignal(page.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        page.import_file(str(tmp_path / "reviews.jsonl"))

    assert page.status_label.text() == "Imported reviews v1: 3 rows (prompt-completion)."
    assert not page.status_label.is_error()
    assert table_rows(page)[0][:3] == ["reviews", "v1", "3"]
    assert changed == [True]
    assert page.client.command_line().endswith(f"data import {tmp_path / 'reviews.jsonl'} --json")
