"""End to end: the window's pages driving the real engine on a tiny random model.

Skipped where the engine's packages are not installed (a GUI-only environment)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from engine.core import workspace
from gui.context import AppContext
from gui.main_window import MainWindow
from gui.pages.runs import RunsPage
from gui.state.prompt_params import Params

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "peft", "trl")),
    reason="the engine's ML packages are not installed here")

ENGINE_TIMEOUT_MS = 300_000


def test_train_then_prompt_with_the_new_adapter(qtbot, tiny_model_dir):
    window = MainWindow(AppContext.from_environment())
    qtbot.addWidget(window)
    train = window.train_page
    train.form.set_values({"model": str(tiny_model_dir), "max_steps": 3, "max_length": 256,
                           "save_steps": 2, "batch_size": 2, "device": "cpu", "method": "lora"})
    # Start queues the job; a detached queue worker trains it; the page follows its run folder.
    with qtbot.waitSignal(train.sig_run_finished, timeout=ENGINE_TIMEOUT_MS) as done:
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)

    run = workspace.RunFolder(Path(done.args[0]))
    assert run.info()["status"] == workspace.FINISHED, train.status_label.text() + "\n" + "\n".join(
        train.log_view.lines()[-20:])
    assert train.plot.buffer.length("loss") >= 1
    assert train.progress.text().startswith("step 3 / 3")
    assert not [line for line in train.log_view.lines() if "non-protocol" in line]
    runs = window.runs_page
    assert runs.model.rowCount() == 1 and runs.model.row_at(0).status == workspace.FINISHED

    # The Prompt page lists the new run's adapter and answers with it through the session.
    prompt = window.prompt_page
    column = prompt.columns[0]
    assert column.adapter_combo.count() == 2
    column.adapter_combo.setCurrentIndex(1)
    column.model_combo.setEditText(str(tiny_model_dir))
    column.set_params(Params(greedy=True, max_new_tokens=5))
    prompt.prompt_edit.setPlainText("Hello")
    try:
        qtbot.mouseClick(prompt.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not prompt.is_busy(), timeout=ENGINE_TIMEOUT_MS)
        answer = column.conversation.last_answer()
        assert not answer.error, answer.error
        assert answer.tokens and answer.text == "".join(t.text for t in answer.tokens)
        assert answer.tokens_per_s is not None
    finally:
        prompt.shutdown()


def test_runs_page_exports_a_runs_model_as_gguf(qtbot, tiny_model_dir, tmp_path, monkeypatch):
    done = subprocess.run([sys.executable, "-m", "engine", "train", "--model", str(tiny_model_dir), "--device",
                           "cpu", "--max-steps", "1", "--max-length", "128"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = RunsPage(AppContext.from_environment())
    qtbot.addWidget(runs)
    assert runs.model.rowCount() == 1 and runs.select_run(runs.model.row_at(0).id)
    gguf_menu, merged_menu, adapter_menu, tools_menu = runs.model_export_menus
    assert all(menu.isEnabled() for menu in (gguf_menu, merged_menu, adapter_menu, tools_menu))
    target = tmp_path / "exported" / "tuned.gguf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    gguf_menu.actions()[0].trigger()  # Q8_0
    assert runs.is_busy() and not gguf_menu.isEnabled()  # one export at a time
    qtbot.waitUntil(lambda: not runs.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert not runs.status_line.is_error(), runs.status_line.text()
    assert runs.status_line.text().startswith(f"Saved {target} (")
    assert "Round-trip check passed in " in runs.status_line.text()  # llama.cpp or transformers
    assert target.stat().st_size > 0 and gguf_menu.isEnabled()
    # The check's result stays with the run: the Exports tab lists it, newest first.
    assert runs.tabs.tabText(runs.tabs.indexOf(runs.exports_view)) == "Exports (1)"
    assert runs.exports_view.tree.topLevelItem(0).text(2).startswith("passed in ")
    lora_target = tmp_path / "exported" / "adapter.gguf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(lora_target), ""))
    adapter_menu.actions()[0].trigger()  # the adapter alone, F16
    qtbot.waitUntil(lambda: not runs.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert not runs.status_line.is_error(), runs.status_line.text()
    assert f'Use it with llama.cpp: llama-cli -m "BASE.gguf" --lora "{lora_target}"' in runs.status_line.text()
    newest = runs.exports_view.tree.topLevelItem(0)
    assert runs.exports_view.tree.topLevelItemCount() == 2 and newest.text(1) == "gguf-lora f16"
    assert newest.text(2).startswith("passed in ")
    runs.select_runs([])
    assert not gguf_menu.isEnabled()
