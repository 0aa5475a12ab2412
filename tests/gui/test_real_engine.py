"""End to end: the window's pages driving the real engine on a tiny random model.

Skipped where the engine's packages are not installed (a GUI-only environment)."""

from __future__ import annotations

import importlib.util

import pytest
from PySide6.QtCore import Qt

from engine import workspace
from gui.context import AppContext
from gui.main_window import MainWindow

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
    with qtbot.waitSignal(train.client.sig_finished, timeout=ENGINE_TIMEOUT_MS) as done:
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)

    assert done.args[0] == 0, train.status_label.text() + "\n" + "\n".join(train.log_view.lines()[-20:])
    assert train.plot.buffer.length("loss") >= 1
    assert train.progress.text().startswith("step 3 / 3")
    assert not [line for line in train.log_view.lines() if "non-protocol" in line]
    runs = window.runs_page
    assert runs.model.rowCount() == 1 and runs.model.row_at(0).status == workspace.FINISHED

    prompt = window.prompt_page
    assert prompt.adapter_combo.count() == 2
    prompt.adapter_combo.setCurrentIndex(1)
    prompt.model_combo.set_value(str(tiny_model_dir))
    prompt.max_tokens_spin.setValue(5)
    tokens, results = [], []
    prompt.client.sig_token.connect(tokens.append)
    prompt.client.sig_result.connect(results.append)
    with qtbot.waitSignal(prompt.client.sig_finished, timeout=ENGINE_TIMEOUT_MS) as done:
        qtbot.mouseClick(prompt.generate_button, Qt.MouseButton.LeftButton)

    assert done.args[0] == 0, prompt.stats_label.text()
    assert tokens and prompt.output_view.toPlainText() == "".join(t["text"] for t in tokens)
    assert prompt.stats_label.text().startswith(f"{results[0]['data']['tokens']} tokens, ")
