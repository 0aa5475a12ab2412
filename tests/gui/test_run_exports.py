"""The Runs page's Exports tab: each export of the selected run with its round-trip check, read
from the run's exports.json; a failed check opens on the prompts whose answers differed."""

from __future__ import annotations

from gui_helpers import make_run

from engine.export import history
from gui.pages.runs import RunsPage
from gui.widgets.run_exports import FAILED_COLOUR, PASSED_COLOUR

PASSED = {"passed": True, "rule": "the same greedy text as the unmerged adapter", "prompts": 2, "cause": "",
          "differing": []}
FAILED = {"passed": False, "rule": "the adapter's first 3 tokens, and an end-of-turn wherever the adapter gave one",
          "prompts": 2, "cause": "1 of 2 answers differ: no end-of-turn within 48 tokens (the adapter ended its "
          "answer): the export rambles",
          "differing": [{"prompt": "Name a kettle part.", "expected": "The spout.",
                         "got": "The spout. The spout. The spout.", "why": "no end-of-turn within 48 tokens"}]}


def test_the_exports_tab_shows_each_check_newest_first(qtbot, make_context, tmp_path) -> None:
    run = make_run("kettle", adapter=True)
    kept = tmp_path / "kettle-f16.gguf"
    kept.write_bytes(b"GGUF")
    history.record(run.path, {"path": str(kept), "format": "gguf", "outtype": "f16", "roundtrip": PASSED})
    history.record(run.path, {"path": str(tmp_path / "gone-q4_0.gguf"), "format": "gguf", "outtype": "q4_0",
                              "roundtrip": FAILED})
    history.record(run.path, {"path": str(tmp_path / "unchecked"), "format": "merged", "outtype": "f32",
                              "roundtrip": None})
    page = RunsPage(make_context())
    qtbot.addWidget(page)
    page.resize(1200, 820)
    assert page.select_run(run.id)
    page.tabs.setCurrentWidget(page.exports_view)
    assert page.tabs.tabText(page.tabs.indexOf(page.exports_view)) == "Exports (3)"
    tree = page.exports_view.tree
    unchecked, failed, passed = (tree.topLevelItem(i) for i in range(3))
    assert unchecked.text(2) == "not checked (--no-check)" and unchecked.text(1) == "merged f32"
    assert failed.text(2).startswith("failed: 1 of 2 answers differ") and failed.isExpanded()
    assert failed.foreground(2).color() == FAILED_COLOUR and passed.foreground(2).color() == PASSED_COLOUR
    assert failed.childCount() == 1 and "Name a kettle part." in failed.child(0).text(2)
    assert "Export: The spout. The spout." in failed.child(0).toolTip(2)
    assert failed.toolTip(3).endswith("(no longer there)") and passed.toolTip(3) == str(kept)
    assert passed.text(2) == "passed: 2 sample prompts gave the same greedy text as the unmerged adapter"
    tree.setCurrentItem(failed)
    assert "Rule: the adapter's first 3 tokens" in page.exports_view.detail.toPlainText()
    tree.setCurrentItem(failed.child(0))
    assert "Adapter: The spout.\nExport: The spout. The spout. The spout." in page.exports_view.detail.toPlainText()
    page.show()
    qtbot.waitExposed(page)
    page.grab().save(str(tmp_path / "runs-exports.png"))
    page.select_runs([])
    assert page.tabs.tabText(page.tabs.indexOf(page.exports_view)) == "Exports"
    assert tree.topLevelItemCount() == 0


def test_a_torn_or_foreign_exports_file_shows_what_is_whole(tmp_path) -> None:
    run = make_run("kettle")
    (run.path / history.EXPORTS_FILE).write_text('{"exports": [{"path": "a.gguf"}, 3, {"no": "path"}]}')
    assert history.read(run.path) == [{"path": "a.gguf"}]
    (run.path / history.EXPORTS_FILE).write_text('{"exports": [')
    assert history.read(run.path) == []
    history.record(run.path, {"path": "b.gguf"})  # a torn file is replaced, not crashed on
    assert [entry["path"] for entry in history.read(run.path)] == ["b.gguf"]


def test_an_adapter_outside_any_run_records_nothing(tmp_path) -> None:
    history.record(tmp_path, {"path": "x.gguf"})
    assert not (tmp_path / history.EXPORTS_FILE).exists()
