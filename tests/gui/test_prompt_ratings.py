"""Rating answers on the Prompt page; the preference export is read back by the importer."""

from __future__ import annotations

import pytest

from engine.data import importer as data_import
from engine.data import split as data_split
from engine.infer import ratings
from gui.pages.prompt import PromptPage

TIMEOUT_MS = 15_000


@pytest.fixture
def page(qtbot, make_context):
    widget = PromptPage(make_context("session_chat.ndjson"))
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def send(qtbot, page: PromptPage, text: str) -> None:
    page.prompt_edit.setPlainText(text)
    page.send_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)


def test_thumbs_and_scores_are_stored_with_prompt_configuration_and_answer(qtbot, page):
    bar = page.columns[0].rating_bar
    assert not bar.up_button.isEnabled()  # nothing to rate yet
    page.system_edit.setPlainText("Be brief.")
    send(qtbot, page, "Capital of France?")
    assert bar.up_button.isEnabled() and not bar.better_button.isEnabled()  # one column: no A/B
    bar.up_button.click()
    [stored] = ratings.load()
    assert (stored.kind, stored.value, stored.answer) == ("thumbs", 1, "Paris is the capital of France.")
    assert stored.prompt == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Capital of France?"}]
    assert stored.config["model"] == "default" and stored.config["params"]["temperature"] == 0.7
    bar.down_button.click()  # changing one's mind replaces the rating
    assert [(r.kind, r.value) for r in ratings.load()] == [("thumbs", -1)]
    assert bar.down_button.isChecked() and not bar.up_button.isChecked()
    bar.score_combo.setCurrentIndex(4)
    bar.score_combo.activated.emit(4)
    assert [(r.kind, r.value) for r in ratings.load()] == [("thumbs", -1), ("score", 4)]
    assert page.ratings_panel.table.rowCount() == 2
    assert page.ratings_panel.summary.text().startswith("2 ratings (1 thumbs, 1 scores, 0 A/B picks)")


def test_ab_pick_exports_a_preference_dataset_the_importer_reads(qtbot, page, tmp_path):
    page.add_column()
    send(qtbot, page, "Capital of France?")
    a, b = page.columns
    assert b.rating_bar.better_button.isEnabled()
    b.rating_bar.better_button.click()
    [pick] = ratings.load()
    assert pick.kind == "ab" and pick.answer == b.conversation.last_answer().text
    assert pick.other_answer == a.conversation.last_answer().text
    assert "1 A/B picks) → 1 preference pairs" in page.ratings_panel.summary.text()
    assert page.ratings_panel.export_button.isEnabled()

    out = tmp_path / "preferences.jsonl"
    page.ratings_panel.export_to(out)
    assert not page.ratings_panel.status.is_error()
    version, _ = data_import.import_file(out, name="playground-prefs")
    assert version.manifest["shape"] == "preference"
    [row] = list(data_split.load_rows(version))
    assert row["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert row["chosen"] == [{"role": "assistant", "content": b.conversation.last_answer().text}]
    assert row["rejected"] == [{"role": "assistant", "content": a.conversation.last_answer().text}]


def test_export_without_pairs_says_why(qtbot, page, tmp_path):
    page.ratings_panel.export_to(tmp_path / "p.jsonl")
    assert page.ratings_panel.status.is_error() and "no preference pairs yet" in page.ratings_panel.status.text()
