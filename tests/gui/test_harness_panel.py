"""The Evaluate page's lm-eval panel against a fake engine replaying a recorded
`evaluate harness --json` (tests/transcripts/evaluate_harness_tiny.ndjson, recorded on the tiny
model: base vs a random LoRA adapter, 12 documents of the shipped sentiment task), with the
summary.json and examples.jsonl that run wrote (tests/transcripts/evaluate_harness_tiny_folder;
its harness.json and tasks/ are left out, as they name the recording machine's paths)."""

from __future__ import annotations

import importlib.util
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
from gui.context import AppContext
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


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed here")
def test_the_page_runs_the_shipped_task_on_the_tiny_model_with_the_real_engine(qtbot, tiny_model_dir,
                                                                             tunebench_home) -> None:
    """The page's own command, through the real engine: the accuracy it shows is the one lm-eval
    reported (tests/engine/test_harness.py checks that equals lm-eval run on its own)."""
    page = EvaluatePage(AppContext.from_environment(engine_override=[sys.executable, "-m", "engine"]))
    qtbot.addWidget(page)
    try:
        page.model_combo.setCurrentText(str(tiny_model_dir))
        page.harness_panel.limit_spin.setValue(12)
        qtbot.mouseClick(page.harness_panel.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not page.is_busy(), timeout=240_000)
        assert not page.status.is_error(), page.status.text()
        evaluation = page.evaluation
        raw = json.loads((evaluation.path / "harness.json").read_text(encoding="utf-8"))
        reported = _find_results(raw, TASK)["acc,none"]
        assert evaluation.labels == ["base"] and evaluation.values(f"{TASK}:acc")[0]["estimate"] == reported
        assert page.examples_model.rowCount() == 12
    finally:
        page.shutdown()


def _find_results(raw: dict, task: str) -> dict:
    """lm-eval's own results block of ``task`` in harness.json, wherever the run wrote it."""
    stack = [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if task in node and isinstance(node[task], dict) and "acc,none" in node[task]:
                return node[task]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no lm-eval results for {task} in harness.json")
