"""The monitoring views, fed from tests/transcripts/train_monitor.ndjson (a GPU run with
validation, GPU metrics and sample generations) written into a live run folder: loss raw and
smoothed, log scale, the samples list, and the notification when the run ends. Set
TUNEBENCH_SCREENSHOTS=<folder> to keep pictures of each state."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import TRANSCRIPTS

from engine.core import protocol, workspace
from gui.notifications import Notifier
from gui.pages.train import TrainPage
from gui.state.metric_buffer import smooth_ema

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")
OLD_DIR = "/home/ada/.local/share/Tunebench/runs/20251123-142000-cpu-quick-demo-3f2a"


def save(widget, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


def transcript_lines(run: workspace.RunFolder) -> list[str]:
    text = (TRANSCRIPTS / "train_monitor.ndjson").read_text(encoding="utf-8")
    return text.replace(OLD_DIR, str(run.path)).splitlines(keepends=True)


def live_run_with(lines: list[str], name: str = "gpu run") -> workspace.RunFolder:
    run = workspace.create_run(name)
    run.update_info(id=run.id, name=name, status="running", pid=os.getpid())
    run.events.write_text("".join(lines), encoding="utf-8")
    return run


@pytest.fixture
def page(qtbot, make_context):
    def build() -> TrainPage:
        train = TrainPage(make_context(), notifier=Notifier(use_tray=False))
        qtbot.addWidget(train)
        train.resize(1280, 860)
        train.show()
        qtbot.waitExposed(train)
        return train

    return build


@pytest.fixture
def finished_page(qtbot, page):
    """A page that followed the whole monitoring transcript (last line: the result)."""
    run = workspace.create_run("gpu run")
    run.update_info(id=run.id, name="gpu run", status="running", pid=os.getpid())
    lines = transcript_lines(run)
    run.events.write_text("".join(lines[:-1]), encoding="utf-8")
    train = page()
    assert train.is_following()
    with qtbot.waitSignal(train.sig_run_finished, timeout=3000):
        run.update_info(status="finished", steps=40, final_loss=1.02)
        with run.events.open("a", encoding="utf-8") as handle:
            handle.write(lines[-1])
    train.plot.redraw()
    return train


def test_every_monitoring_series_is_plotted_on_one_step_axis(finished_page):
    plot = finished_page.plot
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "memory_gb", "gpu_util", "gpu_temp_c"):
        assert plot.drawn_points(key) == 40, key
    assert plot.drawn_points("eval_loss") == 4
    assert plot.has_plot("gpu_util") and plot.has_plot("gpu_temp_c")
    low, high = plot.x_range("loss")
    assert low <= 1 and high >= 40
    for key in ("learning_rate", "grad_norm", "tokens_per_s", "memory_gb", "gpu_util", "gpu_temp_c"):
        assert plot.x_range(key) == pytest.approx((low, high)), key  # both grid columns: the same steps
    assert plot.legend_names() == ["train (raw)", "train (smoothed)", "validation"]
    assert finished_page.progress.text() == "step 40 / 40 — ETA 00:00"
    save(finished_page, "train_monitoring")


def test_smoothing_slider_redraws_the_smoothed_loss(qtbot, finished_page):
    plot = finished_page.plot
    raw = plot.buffer.arrays("loss")[1]
    assert plot.smoothing == 0.6
    assert np.allclose(plot.drawn_data("loss_smoothed")[1], smooth_ema(raw, 0.6))
    plot.set_smoothing(0.0)
    assert np.allclose(plot.drawn_data("loss_smoothed")[1], raw)
    plot.set_smoothing(0.95)
    smooth = plot.drawn_data("loss_smoothed")[1]
    assert np.abs(np.diff(smooth)).sum() < 0.5 * np.abs(np.diff(raw)).sum()  # visibly smoother
    assert plot.smoothing_label.text() == "0.95"


def test_log_scale_toggle(qtbot, finished_page):
    plot = finished_page.plot
    assert not plot.is_log_scale()
    plot.log_check.click()
    assert plot.is_log_scale()
    assert plot._plots["loss"].getAxis("left").labelText == "Train loss (log)"
    save(finished_page, "train_monitoring_log")
    plot.log_check.click()
    assert not plot.is_log_scale()


def test_samples_are_listed_per_step_newest_first(qtbot, finished_page):
    samples = finished_page.samples_view
    assert samples.steps() == [40, 30, 20, 10]
    assert samples.outputs_at(30) == ['{"sentiment": "negative"}', '{"sentiment": "positive"}']
    assert finished_page.tabs.tabText(1) == "Samples (4)"
    newest = samples.tree.topLevelItem(0)
    assert newest.isExpanded() and not samples.tree.topLevelItem(1).isExpanded()
    samples.tree.setCurrentItem(newest.child(0))
    assert "Boils fast, but the lid broke in a week" in samples.detail.toPlainText()
    assert '{"sentiment": "mixed"}' in samples.detail.toPlainText()
    finished_page.tabs.setCurrentWidget(samples)
    save(finished_page, "train_samples")


def test_a_finished_run_is_notified_with_a_banner_without_a_tray(finished_page):
    notice = finished_page.notifier.sent[-1]
    assert notice.title == "Run gpu run finished" and not notice.error
    assert "final loss 1.0200" in notice.text
    assert finished_page.banner.isVisible() and "finished" in finished_page.banner.text()


def test_a_failed_run_is_notified_as_an_error(qtbot, page):
    run = workspace.create_run("doomed")
    run.update_info(id=run.id, name="doomed", status="running", pid=os.getpid())
    lines = transcript_lines(run)[:30]
    run.events.write_text("".join(lines), encoding="utf-8")
    train = page()
    with qtbot.waitSignal(train.sig_run_finished, timeout=3000):
        run.update_info(status="failed", error="out of memory")
        with run.events.open("a", encoding="utf-8") as handle:
            handle.write(protocol.encode(protocol.error(6, "out of memory: lower batch_size")))
    notice = train.notifier.sent[-1]
    assert notice.error and notice.title == "Run doomed failed"
    assert "out of memory: lower batch_size" in train.status_label.text() and train.status_label.is_error()
    assert train.banner.isVisible()
    save(train, "train_failed")


def test_notifier_uses_the_tray_when_there_is_one(qtbot):
    notifier = Notifier(use_tray=True)
    banners = []
    notifier.sig_banner.connect(banners.append)
    notifier.notify("Run x finished", "done")
    assert notifier.uses_tray and banners == [] and notifier.sent[-1].title == "Run x finished"


def test_an_out_of_memory_recovery_is_marked_on_the_loss_plot(qtbot, page):
    """The engine's `event: oom` metrics message becomes a labelled line at its step."""
    run = workspace.create_run("oom run")
    run.update_info(id=run.id, name="oom run", status="running", pid=os.getpid())
    lines = transcript_lines(run)
    marker = protocol.encode(protocol.metrics(12, {"micro_batch": 2.0}, event="oom")) + "\n"
    run.events.write_text("".join(lines[:20] + [marker] + lines[20:-1]), encoding="utf-8")
    train = page()
    qtbot.waitUntil(lambda: train.plot.marker_texts() == ["out of memory: micro-batch 2"], timeout=3000)
    assert train.plot.buffer.length("micro_batch") == 0  # a marker, not a curve
    train.plot.redraw()
    save(train, "train-oom-marker")
