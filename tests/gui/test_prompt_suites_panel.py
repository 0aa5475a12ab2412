"""The Suites tab: saving/importing/exporting suites, running one prompt, batch runs and exports."""

from __future__ import annotations

import csv
import json

from gui_helpers import TRANSCRIPTS, transcript_results

from engine.core import paths
from engine.infer import suites as prompt_suites
from engine.infer.suites import Example, Prompt, Suite
from gui.state.prompt_params import PRESETS

TIMEOUT_MS = 15_000


def capital_suite() -> Suite:
    return Suite("Capitals", prompts=[Prompt("capital", "What is the capital of {{country}}?", system="Be brief.")],
                 cases=[{"country": "France"}, {"country": "Spain"}])


def test_save_the_current_prompt_then_list_it(qtbot, make_prompt_page):
    page = make_prompt_page()
    panel = page.suites_panel
    page.system_edit.setPlainText("Be brief.")
    page.prompt_edit.setPlainText("Summarise: {{text}}")
    panel.save_current("My prompts", "summary")
    saved = prompt_suites.load_suite("My prompts")
    assert saved.prompts == [Prompt("summary", "Summarise: {{text}}", system="Be brief.", mode="chat")]
    assert (paths.suites_dir() / "my-prompts.json").is_file()
    assert panel.suite_combo.currentText() == "My prompts"
    assert panel.prompt_list.item(0).text() == "summary (chat, zero-shot)"


def test_import_and_export_json(qtbot, make_prompt_page, tmp_path):
    page = make_prompt_page()
    panel = page.suites_panel
    source = tmp_path / "in.json"
    prompt_suites.export_json(capital_suite(), source)
    panel.import_file(source)
    assert panel.suite_combo.currentText() == "Capitals" and not panel.status.is_error()
    out = tmp_path / "out.json"
    panel.export_file(out)
    assert prompt_suites.import_json(out) == capital_suite()
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "prompts": [{"name": "a"}]}', encoding="utf-8")
    panel.import_file(bad)
    assert panel.status.is_error() and panel.status.text().endswith("prompts[0]: 'template' must be a non-empty string")


def test_run_one_prompt_with_its_variables(qtbot, make_prompt_page):
    prompt_suites.save_suite(capital_suite())
    page = make_prompt_page()
    panel = page.suites_panel
    panel.values_edit.setText("country = Italy")
    panel.run_selected()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    conversation = page.columns[0].conversation
    assert conversation.last_question() == "What is the capital of Italy?"
    assert conversation.last_answer().text == transcript_results("session_chat.ndjson")[0]
    assert page.system_edit.toPlainText() == "Be brief."
    panel.values_edit.setText("")
    prompt_suites.save_suite(Suite("Broken", prompts=[Prompt("p", "{{missing}}")]))
    panel.refresh(select="Broken")
    panel.run_selected()
    assert panel.status.is_error() and "no value for variable {{missing}}" in panel.status.text()


def batch_rows(transcript: str) -> list[dict]:
    lines = map(json.loads, (TRANSCRIPTS / transcript).read_text(encoding="utf-8").splitlines())
    return [m["row"] for m in lines if m.get("type") == "progress" and "row" in m]


def test_a_suite_batch_runs_through_the_engine_batch_command_and_exports(qtbot, make_prompt_page, tmp_path):
    # Recorded from `tunebench-engine batch --json --suite Capitals --config <two columns>`
    # on the tiny test model.
    prompt_suites.save_suite(capital_suite())
    page = make_prompt_page("session_batch_real_tiny.ndjson", "--delay", "0.01")
    page.add_column().set_params(PRESETS["Creative"])
    panel = page.suites_panel
    panel.run_suite()
    argv = page.batch_runner.client.command_line()
    assert " batch --json --suite Capitals --config " in argv
    configs = json.loads(open(argv.rsplit("--config ", 1)[1].strip("'"), encoding="utf-8").read())
    assert [(c["name"], c["model"], c["params"]["temperature"]) for c in configs] == [
        ("A", "default", 0.7), ("B", "default", PRESETS["Creative"].temperature)]
    assert panel.cancel_button.isEnabled() and not page.send_button.isEnabled() and page.is_busy()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)

    recorded = batch_rows("session_batch_real_tiny.ndjson")
    assert [(r.case, r.column) for r in panel.rows] == [(0, "A"), (1, "A"), (0, "B"), (1, "B")]
    assert [r.answer for r in panel.rows] == [r["text"] for r in recorded]
    assert panel.table.rowCount() == 4 and panel.table.item(1, 3).text() == "What is the capital of Spain?"
    assert panel.progress.value() == 4 and page.send_button.isEnabled()
    assert page.status.text().startswith("Batch finished: 4 answers saved in ") and not page.status.is_error()

    panel.export_results(tmp_path / "r.csv")
    with (tmp_path / "r.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["answer"] for row in table] == [r["text"] for r in recorded]
    assert table[0]["input"] == "What is the capital of France?" and table[0]["finish_reason"] == "length"
    panel.export_results(tmp_path / "r.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[3]["column"] == "B" and rows[3]["tokens_per_s"] == recorded[3]["tokens_per_s"]
    panel.export_results(tmp_path / "r.md")
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0].startswith("| Prompt | Case | Column |") and len(markdown) == 6
    panel.export_results(tmp_path / "r.xlsx")
    assert panel.status.is_error() and "use a .csv, .jsonl or .md" in panel.status.text()


def test_a_batch_from_a_file_column_can_be_cancelled(qtbot, make_prompt_page, tmp_path):
    data = tmp_path / "questions.jsonl"
    data.write_text('{"q": "first"}\n{"q": "second"}\n', encoding="utf-8")
    page = make_prompt_page("session_batch_real_tiny.ndjson", "--delay", "0.3")
    page.system_edit.setPlainText("Be brief.")
    panel = page.suites_panel
    panel.run_file(data, "q")
    assert page.batch_runner.client.command_line().split(" batch --json ")[1].startswith(
        f"--file {data} --column q --mode chat --system 'Be brief.' --config ")
    qtbot.waitUntil(lambda: len(panel.rows) >= 1, timeout=TIMEOUT_MS)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert 1 <= len(panel.rows) < 4 and page.status.text().startswith("Batch stopped")
    assert panel.batch_button.isEnabled() and not page.status.is_error()
    panel.run_file(data, "nope")
    assert panel.status.is_error() and "line 1: no field 'nope'" in panel.status.text()


def test_a_failed_batch_is_one_line(qtbot, make_prompt_page):
    prompt_suites.save_suite(capital_suite())
    page = make_prompt_page("session_serve_port_busy.ndjson")  # any engine that fails with an error
    page.suites_panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert page.status.is_error() and "\n" not in page.status.text()
    assert page.suites_panel.batch_button.isEnabled()


def test_a_few_shot_chat_prompt_runs_as_its_turns(qtbot, make_prompt_page):
    few = Prompt("sentiment", "Review: {{r}}", examples=[Example("Review: bad", "negative")])
    prompt_suites.save_suite(Suite("Shots", prompts=[few], cases=[{"r": "great"}]))
    page = make_prompt_page()
    page.suites_panel.run_selected()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    row = page.suites_panel.rows[0]
    assert [m["content"] for m in row.request["messages"]] == ["Review: bad", "negative", "Review: great"]
    assert row.answer == transcript_results("session_chat.ndjson")[0]


def test_rows_a_configuration_could_not_answer_show_the_reason(qtbot, make_prompt_page):
    # Recorded from `tunebench-engine batch --json --suite Capitals --config <A: a missing
    # adapter, B: the tiny model>`: A's rows carry the one-line reason, B's the answers.
    prompt_suites.save_suite(capital_suite())
    page = make_prompt_page("session_batch_error_rows_real_tiny.ndjson", "--delay", "0.01")
    page.add_column()
    panel = page.suites_panel
    panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert [(r.column, bool(r.error), bool(r.answer)) for r in panel.rows] == [
        ("A", True, False), ("A", True, False), ("B", False, True), ("B", False, True)]
    reason = panel.table.item(0, 4).text()
    assert reason.startswith("error: adapter: ") and "missing-adapter" in reason
    assert panel.table.item(0, 5).text() == "error" and panel.table.item(2, 5).text() == "length"
    assert page.status.text().startswith("Batch finished: 2 answers saved in ")
    assert page.status.text().endswith("; 2 failed (the table says why).") and not page.status.is_error()
