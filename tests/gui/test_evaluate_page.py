"""The Evaluate page against a fake engine replaying a recorded `evaluate run --json`
(tests/transcripts/evaluate_tiny.ndjson, recorded on the tiny model: base vs a 30-step LoRA
adapter), with the evaluation folder that run wrote (tests/transcripts/evaluate_tiny_folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from gui_helpers import TRANSCRIPTS, make_dataset, make_run
from PySide6.QtCore import Qt

from engine.core import paths
from gui.pages.evaluate import EvaluatePage
from gui.state.eval_view import Choices, Evaluation, row_change

TIMEOUT_MS = 20_000
RECORDED = TRANSCRIPTS / "evaluate_tiny_folder"
# Set TUNEBENCH_SCREENSHOTS=dir to keep a picture of each state (as the other page tests do).
SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


def recorded_result() -> dict:
    lines = map(json.loads, (TRANSCRIPTS / "evaluate_tiny.ndjson").read_text(encoding="utf-8").splitlines())
    return next(m["data"] for m in lines if m["type"] == "result")


def install_recorded_folder() -> Path:
    """The folder the recorded run wrote, placed in this test's workspace under its id."""
    target = paths.evals_dir() / recorded_result()["id"]
    shutil.copytree(RECORDED, target)
    return target


def shot(page: EvaluatePage, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.grab().save(str(Path(SHOTS) / f"evaluate-{name}.png"))


@pytest.fixture
def make_page(qtbot, make_context):
    pages: list[EvaluatePage] = []

    def make(transcript: str = "evaluate_tiny.ndjson", *options: str) -> EvaluatePage:
        page = EvaluatePage(make_context(transcript, *options))
        qtbot.addWidget(page)
        page.resize(1320, 860)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.shutdown()


def test_run_replays_progress_then_shows_summary_and_table(qtbot, make_page, tunebench_home):
    make_dataset(paths.datasets_dir(), "sample-product-reviews", 2, 240)
    run = make_run("tiny-demo", adapter=True)
    page = make_page("evaluate_tiny.ndjson", "--delay", "0.02")
    page.show()
    install_recorded_folder()
    page.refresh()
    assert page.dataset_combo.currentText() == "sample-product-reviews@v2"
    page.adapters_list.item(0).setCheckState(Qt.CheckState.Checked)
    assert "--adapters" in page.command() and run.id in page.command()
    progress_seen: list[int] = []
    page.client.sig_progress.connect(lambda m: progress_seen.append(m["current"]))
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert not page.run_button.isEnabled() and page.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(progress_seen) > 3, timeout=TIMEOUT_MS)
    shot(page, "running")
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    shot(page, "finished")

    evaluation = page.evaluation
    labels = evaluation.labels
    assert labels == recorded_result()["models"] and len(labels) == 2
    assert evaluation.path is not None and evaluation.path.parent == paths.evals_dir(), page.status.text()
    assert "Finished" in page.status.text() and page.run_button.isEnabled()
    # Summary: one bar per model, the interval in the values table.
    metric = page.current_metric()
    assert metric in ("token_f1", "rougeL", "chrf", "json_field_match")  # a generation metric leads
    assert page.chart.heights == pytest.approx(
        [evaluation.metric(metric)["values"][label]["estimate"] for label in labels]
    )
    assert page.chart.whiskers is not None
    assert page.values_table.rowCount() == 2 and "–" in page.values_table.item(1, 2).text()
    # Table: every example, sorted by the size of the change, largest first.
    model = page.examples_model
    assert page.examples_proxy.rowCount() == 12
    column = model.change_column()
    shown = [page.examples_proxy.index(r, column).data(Qt.ItemDataRole.UserRole + 1) for r in range(12)]
    assert shown == sorted(shown, reverse=True) and shown[0] > 0
    top = page.examples_proxy.mapToSource(page.examples_proxy.index(0, 0)).row()
    expected = max(abs(row_change(r, metric, labels[0], labels[1]) or 0) for r in evaluation.rows)
    assert abs(row_change(evaluation.rows[top], metric, labels[0], labels[1])) == pytest.approx(expected)
    assert page.past_list.count() == 1
    # Switching the metric redraws the chart and re-sorts the table by that metric's change.
    page.metric_combo.setCurrentIndex(page.metric_combo.findData("perplexity"))
    assert page.chart.heights[0] > page.chart.heights[1]  # the adapter lowered perplexity
    assert "Robustness" in page.breakdown.toHtml() and "typos" in page.breakdown.toHtml()
    page.tabs.setCurrentIndex(1)
    shot(page, "robustness")


def test_metric_checkboxes_explain_each_metric(qtbot, make_page):
    page = make_page()
    for name in ("bleu", "chrf", "rougeL", "exact_match", "token_f1", "accuracy", "mc_accuracy", "perplexity",
                 "regex_match", "json_field_match"):
        assert len(page.metric_checks[name].toolTip()) > 80
    page.metric_checks["bleu"].setChecked(True)
    assert "sacrebleu" in page.definition.text()


def test_bad_choices_are_refused_on_the_page_without_starting(qtbot, make_page):
    page = make_page()
    page.dataset_combo.setCurrentText("")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.status.is_error() and "dataset" in page.status.text() and not page.is_busy()
    assert Choices(dataset="d", metrics=["regex_match"]).problem() == "Regex match needs a pattern."


def test_cancel_shows_no_result(qtbot, make_page):
    make_dataset(paths.datasets_dir(), "sample-product-reviews", 2, 240)
    page = make_page("evaluate_tiny.ndjson", "--delay", "0.3")
    page.refresh()
    seen: list[dict] = []
    page.client.sig_progress.connect(seen.append)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=TIMEOUT_MS)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert page.evaluation.path is None and "No evaluation was saved" in page.title.text()
    assert not page.status.is_error() and page.status.text() == "Cancelled: nothing was saved."
    assert page.past_list.count() == 0
    shot(page, "cancelled")


def test_error_from_engine_is_shown_in_one_line(qtbot, make_page, tmp_path):
    transcript = tmp_path / "evaluate_error.ndjson"
    transcript.write_text(
        '{"type":"hello","t":1,"protocol":1,"engine_version":"0.1.0","command":"evaluate run"}\n'
        '{"type":"error","t":2,"code":4,"message":"dataset: \'nope\' is not \'sample\', '
        'a dataset in the workspace or a file"}\n',
        encoding="utf-8",
    )
    page = make_page(str(transcript))
    page.dataset_combo.setCurrentText("nope")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert page.status.is_error() and "dataset: 'nope'" in page.status.text()
    assert page.title.text() == "The evaluation failed."


def test_past_evaluation_opens_from_disk_with_slices(qtbot, make_page):
    folder = install_recorded_folder()
    summary = json.loads((folder / "summary.json").read_text())
    labels = [m["label"] for m in summary["models"]]
    summary["slices"] = {"column": "label", "groups": {
        "positive": {"n": 7, "metrics": {"token_f1": {labels[0]: 0.1, labels[1]: 0.4}}},
        "<negative>": {"n": 5, "metrics": {"token_f1": {labels[0]: 0.0, labels[1]: 0.2}}}}}
    (folder / "summary.json").write_text(json.dumps(summary))
    page = make_page()
    page.show()
    assert page.past_list.count() == 1
    page.past_list.setCurrentRow(0)
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert page.evaluation.path == folder and page.examples_proxy.rowCount() == 12
    assert "sample-product-reviews@v2" in page.title.text()
    html = page.breakdown.toHtml()
    assert "Slices by label" in html and "&lt;negative&gt;" in html and "0.4" in html
    page.compare_combo.setCurrentIndex(0)
    assert page.examples_model.headerData(page.examples_model.change_column(), Qt.Orientation.Horizontal).startswith(
        "Change"
    )
    page.tabs.setCurrentIndex(1)
    shot(page, "slices")


def test_export_writes_the_report_and_png_charts(qtbot, make_page, tmp_path):
    """Export runs `evaluate report` (here the real engine: it needs no model) and saves the
    page's chart of every metric as PNG beside the report."""
    import sys

    from gui.context import AppContext

    folder = install_recorded_folder()
    page = EvaluatePage(AppContext.from_environment(engine_override=[sys.executable, "-m", "engine"]))
    qtbot.addWidget(page)
    page.resize(1320, 860)
    page.past_list.setCurrentRow(0)
    page.open_selected()
    page.export_report()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=60_000)
    report = folder / "report"
    names = {p.name for p in report.iterdir()}
    assert {"report.md", "report.html", "summary.csv", "examples.csv", "chart-token_f1.svg",
            "chart-token_f1.png", "chart-perplexity.png"} <= names, page.status.text()
    assert (report / "chart-token_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Report written" in page.status.text()
    page.shutdown()


def test_hardest_rows_needs_one_adapter_and_shows_the_loss_table(qtbot, make_page, tmp_path):
    from engine.core import workspace
    from engine.eval import store as eval_report

    page = make_page()
    qtbot.mouseClick(page.hardest_button, Qt.MouseButton.LeftButton)
    assert page.status.is_error() and "exactly one adapter" in page.status.text() and not page.is_busy()
    # A hardest-rows folder as `evaluate hardest` writes it opens like any evaluation.
    folder = paths.evals_dir() / "20261123-170000-hardest-run-1"
    summary = {
        "kind": "hardest",
        "id": folder.name,
        "run": "run-1",
        "dataset": "d@v2",
        "split": "train",
        "examples": 2,
        "models": [{"label": "run-1"}],
        "created": "2026-11-23T17:00:00",
        "metrics": {
            "loss": {
                "title": "Training loss (answer NLL)",
                "better": "lower",
                "unit": "nats",
                "definition": "d",
                "values": {"run-1": {"estimate": 1.0, "low": None, "high": None}},
            }
        },
    }
    workspace.atomic_write_json(folder / eval_report.SUMMARY, summary)
    eval_report.write_examples(
        folder / eval_report.EXAMPLES,
        [
            {
                "index": 4,
                "input": "hard",
                "reference": "r",
                "outputs": {"run-1": ""},
                "metrics": {"run-1": {"loss": 3.5}},
            },
            {
                "index": 9,
                "input": "less hard",
                "reference": "r",
                "outputs": {"run-1": ""},
                "metrics": {"run-1": {"loss": 2.0}},
            },
        ],
    )
    page.refresh()
    assert "hardest rows" in page.past_list.item(0).text()
    page.open_folder(folder)
    assert page.title.text().startswith("Hardest training rows of run run-1")
    assert page.examples_model.change_column() == -1 and page.examples_proxy.rowCount() == 2
    assert page.chart.whiskers is None and page.chart.heights == [1.0]


def test_slice_choices_follow_the_chosen_dataset_and_its_extra_columns(qtbot, make_page):
    make_dataset(paths.datasets_dir(), "tickets", 1, 7, shape="messages", meta_columns=["category", "lang"])
    make_dataset(paths.datasets_dir(), "moods", 1, 5, shape="classification")
    page = make_page()
    page.refresh()
    page.dataset_combo.setCurrentText("tickets@v1")
    choices = [page.slice_combo.itemText(i) for i in range(page.slice_combo.count())]
    assert choices == ["", "reference", "category", "lang"]
    page.slice_combo.setCurrentText("category")
    page.dataset_combo.setCurrentText("moods@v1")
    choices = [page.slice_combo.itemText(i) for i in range(page.slice_combo.count())]
    assert choices == ["", "label", "reference"]
    assert page.slice_combo.currentText() == "category"  # what the user typed is kept


def test_system_prompt_and_json_output_reach_the_command(qtbot, make_page, tmp_path):
    page = make_page()
    page.dataset_combo.setCurrentText("reviews@v2")
    page.system_edit.setText("Answer in JSON.")
    schema_file = tmp_path / "answer.schema.json"
    schema_file.write_text('{"type": "object"}', encoding="utf-8")
    page.schema_edit.setText(str(schema_file))
    command = page.command()
    assert command[command.index("--system-prompt") + 1] == "Answer in JSON."
    assert command[command.index("--json-schema") + 1] == str(schema_file)
    page.system_edit.clear()
    page.schema_edit.clear()
    assert "--system-prompt" not in page.command() and "--json-schema" not in page.command()
    assert "--backend" not in page.command()  # Auto: the engine's own choice
    page.backend_combo.setCurrentIndex(page.backend_combo.findData("llama.cpp"))
    command = page.command()
    assert command[command.index("--backend") + 1] == "llama.cpp"
    assert page.backend_combo.toolTip().startswith("What generates the answers: auto (llama.cpp for a .gguf")


def test_the_title_says_what_generated_the_answers() -> None:
    summary = {"dataset": "d@v1", "split": "test", "examples": 3}
    assert Evaluation(summary=summary).title() == "d@v1 · test · 3 examples"
    both = {"base": "llama.cpp", "run-a": "transformers"}
    assert Evaluation(summary={**summary, "generation": {"backends": both}}).title() == (
        "d@v1 · test · 3 examples · answers by llama.cpp and transformers")
    assert Evaluation(summary={**summary, "generation": {"backends": {}}}).title() == "d@v1 · test · 3 examples"
