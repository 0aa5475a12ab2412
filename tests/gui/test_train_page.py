"""The Train page queues runs for a detached worker and follows them through their run folders.

The engine command is tests/gui/fake_queue_engine.py: the real queue worker, whose `train`
replays tests/transcripts/train_*.ndjson into a real run folder (no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from queue_helpers import queue_context, stop_engines

from engine.core import workspace
from engine.train import job_queue
from gui.engine_client import format_command
from gui.notifications import Notifier
from gui.pages.train import TrainPage, format_eta

FINISH_TIMEOUT_MS = 20_000
TRANSCRIPT_STEPS = 12


@pytest.fixture
def page(qtbot, tunebench_home):
    def build(transcript: str = "train_tiny.ndjson", *options: str) -> TrainPage:
        train = TrainPage(queue_context(transcript, *options), notifier=Notifier(use_tray=False))
        qtbot.addWidget(train)
        train.resize(1200, 760)
        return train

    yield build
    stop_engines(tunebench_home)


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def run_to_end(qtbot, train: TrainPage) -> list[str]:
    finished: list[str] = []
    train.sig_run_finished.connect(finished.append)
    with qtbot.waitSignal(train.sig_run_finished, timeout=FINISH_TIMEOUT_MS):
        click(qtbot, train.start_button)
    return finished


def test_cpu_quick_demo_is_preselected_with_friendly_names(page):
    train = page()
    assert train.preset_combo.currentText() == "CPU quick demo"
    assert "LoRA" in train.preset_description.text()
    values = train.form.values()
    assert values["method"] == "lora" and values["max_steps"] == 60
    # The picker's label carries the memory estimate where the model's shape can be read.
    assert train.form.widget("model").currentText().startswith("SmolLM2-135M-Instruct (bundled)")
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


def test_knobs_the_method_ignores_are_greyed_out_with_the_reason(page):
    train = page()  # CPU quick demo: LoRA, SFT, max_steps 60, no validation
    form = train.form
    assert form.widget("lora_r").isEnabled() and not form.widget("beta").isEnabled()
    assert not form.widget("quant_type").isEnabled() and not form.widget("num_virtual_tokens").isEnabled()
    assert form.widget("beta").toolTip().startswith("Not used now: used by the dpo and orpo objectives only")
    assert form.widget("shared_prefix").isEnabled()
    form.widget("objective").setCurrentText("dpo")
    assert form.widget("beta").isEnabled() and not form.widget("completion_only_loss").isEnabled()
    assert not form.widget("shared_prefix").isEnabled()  # a preference pair is scored whole
    form.widget("method").setCurrentText("prefix_tuning")
    assert form.widget("num_virtual_tokens").isEnabled() and not form.widget("lora_r").isEnabled()
    form.widget("method").setCurrentText("qlora")
    assert form.widget("quant_type").isEnabled() and form.widget("lora_r").isEnabled()
    assert not form.widget("compact_weights").isEnabled()  # a 4-bit base has no float32 weights
    assert not form.widget("fused_lora").isEnabled()
    form.widget("method").setCurrentText("lora")
    assert form.widget("compact_weights").isEnabled() and form.widget("fused_lora").isEnabled()
    form.widget("precision").setCurrentText("bf16")
    assert not form.widget("compact_weights").isEnabled() and not form.widget("fused_lora").isEnabled()
    form.widget("method").setCurrentText("qlora")
    assert not form.widget("early_stopping_patience").isEnabled()
    form.widget("val_fraction").setValue(0.1)
    assert form.widget("early_stopping_patience").isEnabled()


def test_invalid_value_shows_one_line_and_queues_nothing(qtbot, page):
    train = page()
    train.form.widget("lora_r").setValue(8)
    train.form.widget("target_modules").setText("   ")
    click(qtbot, train.start_button)

    assert train.status_label.text() == "Target modules: must not be empty"
    assert train.status_label.is_error()
    assert job_queue.load() == [] and job_queue.worker_pid() is None
    assert not train.is_busy() and train.start_button.text() == "Start"
    # Nothing the user typed is lost.
    assert train.form.values()["lora_r"] == 8
    assert train.form.widget("target_modules").text() == "   "


def test_copy_as_command_puts_the_engine_command_on_the_clipboard(qtbot, page):
    train = page()
    click(qtbot, train.copy_button)
    text = QGuiApplication.clipboard().text()
    assert text == format_command(train.build_command())
    assert " train --json " in text and "--method lora" in text and "--max-steps 60" in text


def test_start_queues_the_job_and_a_detached_worker_trains_it(qtbot, page, tunebench_home):
    train = page("train_tiny.ndjson", "--delay", "0.01")
    finished = run_to_end(qtbot, train)

    # The run folder says finished a moment before its process exits and the worker notes it.
    qtbot.waitUntil(lambda: job_queue.load()[0]["status"] != "running", timeout=FINISH_TIMEOUT_MS)
    jobs = job_queue.load()
    assert len(jobs) == 1 and jobs[0]["status"] == "finished"
    assert "--max-steps" in jobs[0]["args"] and "60" in jobs[0]["args"]
    run_dir = Path(jobs[0]["run_dir"])
    assert finished == [str(run_dir)] and run_dir.parent == tunebench_home / "runs"
    assert train.plot.buffer.length("loss") == TRANSCRIPT_STEPS
    assert train.plot.drawn_points("loss") == TRANSCRIPT_STEPS
    assert train.plot.drawn_points("tokens_per_s") == TRANSCRIPT_STEPS
    losses = train.plot.buffer.arrays("loss")[1]
    assert losses[-1] < losses[0]
    assert train.progress.value() == train.progress.maximum() == TRANSCRIPT_STEPS
    assert train.progress.text() == "step 12 / 12 — ETA 00:00"
    assert train.status_label.text().startswith("Finished, 12 steps, final loss 1.4523")
    assert not train.status_label.is_error()
    assert any("Model loaded" in line for line in train.log_view.lines())
    assert train.notifier.sent[-1].title.endswith("finished") and not train.notifier.sent[-1].error
    assert not train.banner.isHidden() and "finished" in train.banner.text()  # no tray offscreen
    assert (tunebench_home / "queue" / "worker.log").is_file()


def test_stop_writes_the_cancel_request_and_the_run_stops(qtbot, page):
    train = page("train_tiny.ndjson", "--delay", "0.15")
    click(qtbot, train.start_button)
    assert train.is_busy() and train.stop_button.isEnabled()
    assert train.start_button.text() == "Add to queue"  # the form stays usable: Start queues the next
    assert train.form.isEnabled()

    qtbot.waitUntil(lambda: train.plot.buffer.length("loss") >= 2, timeout=FINISH_TIMEOUT_MS)
    with qtbot.waitSignal(train.sig_run_finished, timeout=FINISH_TIMEOUT_MS) as blocker:
        click(qtbot, train.stop_button)
    run = workspace.RunFolder(Path(blocker.args[0]))
    assert (run.path / job_queue.CANCEL_REQUEST).is_file()
    assert run.info()["status"] == "cancelled"
    assert train.status_label.text().startswith("Stopped")
    assert not train.status_label.is_error()
    assert train.plot.buffer.length("loss") < TRANSCRIPT_STEPS
    assert train.start_button.text() == "Start" and not train.stop_button.isEnabled()
    qtbot.waitUntil(lambda: job_queue.load()[0]["status"] != "running", timeout=FINISH_TIMEOUT_MS)
    assert job_queue.load()[0]["status"] == "cancelled" and job_queue.load()[0]["exit_code"] == 7


def test_a_failed_run_is_an_error_and_notified(qtbot, page):
    train = page("train_failed.ndjson", "--delay", "0.01")
    run_to_end(qtbot, train)
    assert train.status_label.is_error()
    assert "failed: out of memory" in train.status_label.text()
    assert train.notifier.sent[-1].error and "failed" in train.notifier.sent[-1].title
    qtbot.waitUntil(lambda: job_queue.load()[0]["status"] != "running", timeout=FINISH_TIMEOUT_MS)
    assert job_queue.load()[0]["status"] == "failed"


def test_a_second_start_waits_in_the_queue_shown_on_the_page(qtbot, page):
    train = page("train_tiny.ndjson", "--delay", "0.1")
    click(qtbot, train.start_button)
    click(qtbot, train.start_button)  # while the first trains
    assert "Added to the queue (1 ahead of it)" in train.status_label.text()
    jobs = train.queue_panel.jobs()
    assert [job["status"] for job in jobs][1] == "queued" and train.queue_panel.list.count() == 2
    train.queue_panel.select_job(jobs[1]["id"])
    assert train.queue_panel.remove_button.isEnabled() and train.queue_panel.up_button.isEnabled()
    click(qtbot, train.queue_panel.remove_button)
    assert [job["id"] for job in job_queue.load()] == [jobs[0]["id"]]


def test_queue_panel_moves_waiting_jobs(qtbot, page):
    train = page()
    first = job_queue.add(["--max-steps", "1"], name="first")
    second = job_queue.add(["--max-steps", "2"], name="second")
    train.queue_panel.refresh()
    train.queue_panel.select_job(second["id"])
    click(qtbot, train.queue_panel.up_button)
    assert [job["id"] for job in job_queue.load()] == [second["id"], first["id"]]
    assert train.queue_panel.selected_job()["id"] == second["id"]
    assert "second" in train.queue_panel.list.item(0).text()


def test_datasets_in_the_workspace_are_offered(page, tunebench_home):
    manifest = tunebench_home / "datasets" / "reviews" / "v1" / "manifest.json"
    workspace.atomic_write_json(manifest, {"name": "reviews", "version": 1, "rows": 3})
    train = page()
    combo = train.form.widget("dataset")
    assert [combo.itemData(i) for i in range(combo.count())] == ["sample", "reviews"]


@pytest.mark.parametrize("seconds, text", [(None, "--:--"), (0, "00:00"), (75.4, "01:15"), (3725, "1:02:05")])
def test_eta_format(seconds, text):
    assert format_eta(seconds) == text
