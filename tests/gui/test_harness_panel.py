"""The Evaluate page's lm-eval panel against a fake engine replaying a recorded
`evaluate harness --json` (tests/transcripts/evaluate_harness_tiny.ndjson, recorded on the tiny
model: base vs a random LoRA adapter, 12 documents of the shipped sentiment task), with the
summary.json and examples.jsonl that run wrote (tests/transcripts/evaluate_harness_tiny_folder;
its harness.json and tasks/ are left out, as they name the recording machine's paths)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gui_helpers import TRANSCRIPTS
from PySide6.QtCore import Qt

from engine.core import paths
from gui.pages.evaluate import EvaluatePage
from gui.widgets.harness_panel import OWN_FILE

TIMEOUT_MS = 20_000
TASK = "tunebench_review_sentiment"


def recorded_result() -> dict:
    lines = map(json.loads, (TRANSCRIPTS / "evaluate_harness_tiny.ndjson").read_text(encoding="utf-8").splitlines())
    return next(m["data"] for m in lines if m["type"] == "result")


@pytest.fixture
def page(qtbot, make_context, tunebench_home):
    page = EvaluatePage(make_context("evaluate_harness_tiny.ndjson", "--delay", "0.02"))
    qtbot.addWidget(page)
    page.resize(1320, 900)
    yield page
    page.shutdown()


def test_panel_runs_harness_and_shows_its_metrics(qtbot, page: EvaluatePage) -> None:
    shutil.copytree(TRANSCRIPTS / "evaluate_harness_tiny_folder", paths.evals_dir() / recorded_result()["id"])
    panel = page.harness_panel
    assert panel.task_combo.currentData() == TASK  # the engine's default task
    panel.task_combo.setCurrentIndex(panel.task_combo.findData("tunebench_review_product"))
    assert panel.arguments() == ["--tasks", "tunebench_review_product"]
    panel.task_combo.setCurrentIndex(panel.task_combo.findData(TASK))
    assert not panel.file_edit.isEnabled()
    panel.limit_spin.setValue(12)
    assert panel.arguments() == ["--limit", "12"]  # the default task needs no flag
    started: list[list[str]] = []
    page.client.sig_progress.connect(lambda m: started.append(m))
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    assert started and panel.run_button.isEnabled()
    evaluation = page.evaluation
    assert evaluation.labels == ["base", "tiny-lora"]
    assert f"{TASK}:acc" in evaluation.metric_names and f"{TASK}:acc_norm" in evaluation.metric_names
    values = evaluation.values(f"{TASK}:acc")
    assert values[0]["estimate"] == recorded_result()["values"][f"{TASK}:acc"]["base"]
    assert page.values_table.item(0, 2).text()  # the interval from lm-eval's standard error
    assert page.examples_model.rowCount() == 12
    if os.environ.get("TUNEBENCH_SCREENSHOTS"):
        page.grab().save(str(Path(os.environ["TUNEBENCH_SCREENSHOTS"]) / "evaluate-harness.png"))


def test_own_yaml_needs_a_file_and_its_flags_parse_back(qtbot, page: EvaluatePage, tmp_path: Path) -> None:
    panel = page.harness_panel
    panel.task_combo.setCurrentIndex(panel.task_combo.findData(OWN_FILE))
    assert panel.file_edit.isEnabled()
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert not page.is_busy() and "task YAML" in page.status.text()
    task = tmp_path / "mine.yaml"
    task.write_text("task: mine\n", encoding="utf-8")
    panel.file_edit.setText(str(task))
    assert panel.problem() == ""
    # The flags the panel builds are the engine's own: its parser takes them back.
    code = ("import sys; from engine import cli; p = cli.build_parser(); "
            "a = p.parse_args(['evaluate', 'harness', *sys.argv[1:]]); print(a.include, a.tasks)")
    out = subprocess.run([sys.executable, "-c", code, *panel.arguments()], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-800:]
    assert str(task) in out.stdout
