"""The Train page against the fake engine replaying tests/transcripts/train_tiny.ndjson."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from engine import workspace
from gui.engine_client import format_command
from gui.pages.train import TrainPage, format_eta

FINISH_TIMEOUT_MS = 15_000
TRANSCRIPT_STEPS = 12


@pytest.fixture
def page(qtbot, make_context):
    def build(*options: str) -> TrainPage:
        train = TrainPage(make_context("train_tiny.ndjson", *options))
        qtbot.addWidget(train)
        train.resize(1200, 760)
        return train

    yield build


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def run_to_end(qtbot, train: TrainPage) -> None:
    with qtbot.waitSignal(train.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        click(qtbot, train.start_button)


def test_cpu_quick_demo_is_preselected_with_friendly_names(page):
    train = page()
    assert train.preset_combo.currentText() == "CPU quick demo"
    assert "LoRA" in train.preset_description.text()
    values = train.form.values()
    assert values["method"] == "lora" and values["max_steps"] == 60
    assert train.form.widget("model").currentText() == "SmolLM2-135M-Instruct (bundled)"
    assert values["model"] == "default"
    assert train.form.widget("dataset").currentText() == "Product reviews (bundled sample)"
    assert values["dataset"] == "sample"
    assert "rank" in train.form.widget("lora_r").toolTip()


def test_choosing_a_preset_fills_the_form(page):
    train = page()
    train.preset_combo.setCurrentText("12 GB GPU")
    values = train.form.values()
    assert values["method"] == "qlora" and values["device"] == "cuda"
    assert values["gradient_checkpointing"] is True
    assert values["max_length"] == 2048 and values["max_steps"] == 0
    assert "QLoRA" in train.preset_description.text()
    # max_steps 0 means "train for epochs": the epochs field becomes editable.
    assert train.form.widget("epochs").isEnabled()
    train.preset_combo.setCurrentText("CPU quick demo")
    assert train.form.values()["method"] == "lora"
    assert not train.form.widget("epochs").isEnabled()


def test_invalid_value_shows_one_line_and_starts_nothing(qtbot, page):
    train = page()
    train.form.widget("lora_r").setValue(8)
    train.form.widget("target_modules").setText("   ")
    click(qtbot, train.start_button)

    assert train.status_label.text() == "Target modules: must not be empty"
    assert train.status_label.is_error()
    assert train.client.state.value == "idle"
    assert train.start_button.isEnabled()
    # Nothing the user typed is lost.
    assert train.form.values()["lora_r"] == 8
    assert train.form.widget("target_modules").text() == "   "


def test_copy_as_command_puts_the_engine_command_on_the_clipboard(qtbot, page):
    train = page()
    click(qtbot, train.copy_button)
    text = QGuiApplication.clipboard().text()
    assert text == format_command(train.build_command())
    assert " train --json " in text and "--method lora" in text and "--max-steps 60" in text


def test_a_run_fills_the_plot_and_the_progress_bar(qtbot, page):
    train = page("--delay", "0.01")
    finished = []
    train.sig_run_finished.connect(finished.append)
    run_to_end(qtbot, train)

    assert train.plot.buffer.length("loss") == TRANSCRIPT_STEPS
    assert train.plot.drawn_points("loss") == TRANSCRIPT_STEPS
    assert train.plot.drawn_points("tokens_per_s") == TRANSCRIPT_STEPS
    losses = train.plot.buffer.arrays("loss")[1]
    assert losses[-1] < losses[0]
    assert train.progress.value() == train.progress.maximum() == TRANSCRIPT_STEPS
    assert train.progress.text() == "step 12 / 12 — ETA 00:00"
    assert train.status_label.text().startswith("Finished, 12 steps, final loss ")
    assert not train.status_label.is_error()
    assert finished == ["/home/ada/.local/share/Tunebench/runs/20251123-142000-cpu-quick-demo-3f2a"]
    assert any("Model loaded" in line for line in train.log_view.lines())
    assert any("fake engine: replaying" in line for line in train.log_view.lines())


def test_controls_lock_while_running_and_stop_cancels(qtbot, page):
    train = page("--delay", "0.1")
    click(qtbot, train.start_button)
    assert not train.start_button.isEnabled() and train.stop_button.isEnabled()
    assert not train.form.isEnabled() and not train.preset_combo.isEnabled()

    qtbot.waitUntil(lambda: train.plot.buffer.length("loss") >= 2, timeout=FINISH_TIMEOUT_MS)
    with qtbot.waitSignal(train.client.sig_finished, timeout=FINISH_TIMEOUT_MS) as blocker:
        click(qtbot, train.stop_button)

    assert blocker.args[0] == 7
    assert "cancelled" in train.status_label.text()
    assert not train.status_label.is_error()
    assert train.plot.buffer.length("loss") < TRANSCRIPT_STEPS
    assert train.start_button.isEnabled() and not train.stop_button.isEnabled()
    assert train.form.isEnabled()


def test_engine_failure_is_shown_as_an_error(qtbot, page):
    train = page("--exit", "1")
    run_to_end(qtbot, train)
    assert train.status_label.text().startswith("The engine failed with an internal error")
    assert train.status_label.is_error()


def test_datasets_in_the_workspace_are_offered(page, tunebench_home):
    manifest = tunebench_home / "datasets" / "reviews" / "v1" / "manifest.json"
    workspace.atomic_write_json(manifest, {"name": "reviews", "version": 1, "rows": 3})
    train = page()
    combo = train.form.widget("dataset")
    assert [combo.itemData(i) for i in range(combo.count())] == ["sample", "reviews"]


@pytest.mark.parametrize("seconds, text", [(None, "--:--"), (0, "00:00"), (75.4, "01:15"), (3725, "1:02:05")])
def test_eta_format(seconds, text):
    assert format_eta(seconds) == text
