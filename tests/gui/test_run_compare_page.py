"""The Runs page as the history and comparison view: a stored run's samples, GPU plots that
follow the run shown, several runs' loss overlaid with a legend, the settings diff, export and
delete. Runs are written into a temporary workspace as the engine writes them. Set
TUNEBENCH_SCREENSHOTS=<folder> to keep pictures of each state."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from gui_helpers import TRANSCRIPTS, make_run
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from engine.core import config, protocol, workspace
from gui.pages.runs import RunsPage

SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


def save(widget, name: str) -> None:
    if SHOTS:
        QApplication.processEvents()  # let the layouts settle, as a user would see them
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


def gpu_run(name: str = "gpu run") -> workspace.RunFolder:
    """A finished run recorded from tests/transcripts/train_monitor.ndjson: GPU metrics,
    validation loss and samples at steps 10-40 (in the event log only)."""
    run = workspace.create_run(name)
    run.update_info(id=run.id, name=name, status="finished", method="qlora", model="default", dataset="sample",
                    steps=40, final_loss=1.02, created=1763900000.0)
    run.events.write_text((TRANSCRIPTS / "train_monitor.ndjson").read_text(encoding="utf-8"), encoding="utf-8")
    return run


def loss_run(name: str, steps: int, scale: float) -> workspace.RunFolder:
    """A finished run whose loss falls from ~3 towards ``scale``: different runs, different curves."""
    run = make_run(name, steps=0)
    run.update_info(steps=steps, final_loss=round(scale + 2.0 * 0.85**steps, 4))
    with run.events.open("a", encoding="utf-8") as handle:
        for step in range(1, steps + 1):
            handle.write(protocol.encode(protocol.metrics(step, {"loss": round(scale + 2.0 * 0.85**step, 4)})))
    return run


def with_config(run: workspace.RunFolder, **values) -> workspace.RunFolder:
    workspace.atomic_write_text(run.config_toml, config.to_toml(config.TrainConfig(**values)))
    return run


@pytest.fixture
def page(qtbot, make_context):
    def build() -> RunsPage:
        runs = RunsPage(make_context())
        qtbot.addWidget(runs)
        runs.resize(1200, 820)
        runs.show()
        qtbot.waitExposed(runs)
        return runs

    return build


def test_a_stored_runs_samples_show_from_its_event_log(page):
    run = gpu_run()
    runs = page()
    assert runs.select_run(run.id)
    assert runs.samples_view.steps() == [40, 30, 20, 10]
    assert runs.samples_view.outputs_at(30) == ['{"sentiment": "negative"}', '{"sentiment": "positive"}']
    assert runs.tabs.tabText(1) == "Samples (4)"
    runs.tabs.setCurrentWidget(runs.samples_view)
    runs.samples_view.tree.setCurrentItem(runs.samples_view.tree.topLevelItem(0).child(0))
    save(runs, "runs_samples")


def test_samples_jsonl_is_read_when_present(page):
    run = make_run("cpu", steps=6)
    (run.path / "samples.jsonl").write_text(
        json.dumps({"step": 6, "samples": [{"prompt": "Review: 'ok'", "output": "neutral"}]}) + "\n", encoding="utf-8")
    runs = page()
    assert runs.select_run(run.id) and runs.samples_view.steps() == [6]
    bare = make_run("bare")
    runs.refresh()
    assert runs.select_run(bare.id)
    assert runs.samples_view.steps() == [] and runs.tabs.tabText(1) == "Samples"
    assert "no sample generations" in runs.samples_view.empty_label.text()


def test_gpu_plots_go_when_a_cpu_run_is_shown(page):
    gpu = gpu_run()
    cpu = make_run("cpu run", steps=12)
    runs = page()
    assert runs.select_run(gpu.id)
    assert runs.plot.has_plot("gpu_util") and runs.plot.drawn_points("gpu_temp_c") == 40
    save(runs, "runs_gpu_run")
    assert runs.select_run(cpu.id)
    for key in ("gpu_util", "gpu_temp_c", "grad_norm", "memory_gb"):
        assert not runs.plot.has_plot(key), key
    assert runs.plot.drawn_points("loss") == 12 and "validation" not in runs.plot.legend_names()
    save(runs, "runs_cpu_after_gpu")


def test_selecting_several_runs_overlays_their_loss_with_a_legend(page):
    a = with_config(loss_run("lr 2e-4", 30, 0.6), name="lr 2e-4", learning_rate=2e-4, lora_r=8)
    b = with_config(gpu_run("lr 1e-4"), name="lr 1e-4", learning_rate=1e-4, lora_r=16, packing=True)
    c = with_config(loss_run("lr 5e-5", 8, 1.4), name="lr 5e-5", learning_rate=5e-5, lora_r=8)
    runs = page()
    assert runs.select_runs([a.id, b.id, c.id])
    assert runs.tabs.currentWidget() is runs.compare_plot
    assert runs.selected_run() is None and not runs.resume_button.isEnabled() and not runs.delete_button.isEnabled()
    order = [run.title for run in runs.selected_runs()]  # table order (newest first)
    assert sorted(order) == ["lr 1e-4", "lr 2e-4", "lr 5e-5"]
    expected = [f"{title} · {kind}" for title in order for kind in ("train", "validation")
                if kind == "train" or title == "lr 1e-4"]  # only b recorded validation loss
    assert runs.compare_plot.legend_names() == expected
    colors = [runs.compare_plot.curve_color(run.id) for run in (a, b, c)]
    assert len(set(colors)) == 3
    assert runs.compare_plot.curve_color(b.id, "eval_loss") == runs.compare_plot.curve_color(b.id)
    assert len(runs.compare_plot.drawn_data(b.id, "eval_loss")[0]) == 4
    assert len(runs.compare_plot.drawn_data(c.id)[0]) == 8
    save(runs, "runs_compare")

    runs.tabs.setCurrentWidget(runs.config_diff)
    diff = {row.key: row.values for row in runs.config_diff.rows}
    lr = {"lr 1e-4": "0.0001", "lr 2e-4": "0.0002", "lr 5e-5": "5e-05"}
    assert diff["learning_rate"] == tuple(lr[title] for title in order)
    assert diff["lora_r"] == tuple("16" if title == "lr 1e-4" else "8" for title in order)
    assert diff["packing"] == tuple("true" if title == "lr 1e-4" else "false" for title in order)
    assert "max_steps" not in diff
    header = [runs.config_diff.table.horizontalHeaderItem(i).text() for i in range(4)]
    assert header == ["Setting", *order]
    assert runs.config_diff.summary.text().startswith(f"{len(diff)} settings differ")
    save(runs, "runs_settings_diff")
    runs.refresh()  # e.g. the page shown again: the comparison stays
    assert [run.title for run in runs.selected_runs()] == order and len(runs.config_diff.rows) == len(diff)

    assert runs.select_run(a.id)  # back to one run: its own curves
    assert runs.tabs.currentWidget() is runs.plot and runs.compare_plot.legend_names() == []


def test_export_metrics_and_summary_to_the_paths_picked(page, tmp_path, monkeypatch):
    run = with_config(gpu_run(), lora_r=16)
    runs = page()
    assert runs.select_run(run.id) and runs.export_button.isEnabled()
    picks = iter([str(tmp_path / "m.csv"), str(tmp_path / "s.json"), ""])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (next(picks), ""))
    runs.export_csv_action.trigger()
    rows = list(csv.DictReader((tmp_path / "m.csv").open(encoding="utf-8")))
    assert len(rows) == 40 and rows[9]["eval_loss"] != "" and float(rows[0]["gpu_util"]) == 98.0
    assert runs.status_line.text() == f"Saved 40 steps of metrics to {tmp_path / 'm.csv'}."
    runs.export_json_action.trigger()
    data = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert data["config"]["lora_r"] == 16 and data["metrics"]["loss"]["points"] == 40
    assert len(data["samples"]) == 4
    runs.export_csv_action.trigger()  # cancelled dialog: nothing written, no message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "m.csv", "s.json"]
    save(runs, "runs_exported")


def test_several_selected_runs_export_together(page, tmp_path, monkeypatch):
    a = with_config(loss_run("lr 2e-4", 30, 0.6), name="lr 2e-4", learning_rate=2e-4)
    b = with_config(gpu_run("lr 1e-4"), name="lr 1e-4", learning_rate=1e-4)
    runs = page()
    assert runs.select_runs([a.id, b.id]) and runs.export_button.isEnabled()
    offered = []

    def pick(parent, title, suggested, filter_text):
        offered.append(Path(suggested).name)
        return str(tmp_path / Path(suggested).name), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", pick)
    runs.export_csv_action.trigger()
    assert runs.status_line.text() == f"Saved 70 rows of metrics from 2 runs to {tmp_path / '2-runs-metrics.csv'}."
    runs.export_json_action.trigger()
    assert offered == ["2-runs-metrics.csv", "2-runs-summary.json"]
    rows = list(csv.DictReader((tmp_path / "2-runs-metrics.csv").open(encoding="utf-8")))
    assert {row["run"] for row in rows} == {a.id, b.id} and len(rows) == 30 + 40
    assert runs.status_line.text() == f"Saved the summaries of 2 runs to {tmp_path / '2-runs-summary.json'}."
    data = json.loads((tmp_path / "2-runs-summary.json").read_text(encoding="utf-8"))
    assert {entry["run"]["id"] for entry in data["runs"]} == {a.id, b.id}
    assert {entry["setting"] for entry in data["settings_that_differ"]} >= {"learning_rate", "name"}


def test_an_export_to_an_unwritable_place_says_so_in_one_line(page, tmp_path):
    run = make_run("x", steps=3)
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    runs = page()
    row = runs.selected_run()
    assert row.id == run.id
    assert not runs.export_metrics([row], blocker / "m.csv")  # a folder that is a file
    assert runs.status_line.is_error() and runs.status_line.text().startswith(f"Could not write {blocker / 'm.csv'}")


def test_delete_asks_first_and_never_offers_a_live_run(page, monkeypatch):
    done = make_run("done", steps=4)
    live = make_run("live", status="running", pid=os.getpid())
    runs = page()
    assert runs.select_run(live.id) and not runs.delete_button.isEnabled()
    assert runs.select_run(done.id) and runs.delete_button.isEnabled()
    answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), next(answers))[1])
    runs.delete_button.click()
    assert done.path.is_dir() and runs.model.rowCount() == 2  # "No" keeps it
    assert "cannot be undone" in asked[0] and str(done.path) in asked[0]
    with_signal = []
    runs.sig_run_deleted.connect(with_signal.append)
    runs.delete_button.click()
    assert not done.path.exists() and runs.model.rowCount() == 1 and with_signal == [done.id]
    assert runs.status_line.text() == "Deleted done."
    assert runs.selected_run().id == live.id  # the remaining run is shown
    assert not runs.delete(runs.selected_run()) and live.path.is_dir()  # even when asked directly
    assert "still training" in runs.status_line.text()
    save(runs, "runs_after_delete")


def test_the_compare_tab_switches_to_any_curve_a_selected_run_recorded(page):
    a = loss_run("cpu run", 30, 0.6)  # loss only
    b = gpu_run("gpu run")  # loss, validation, learning rate, grad norm, tokens/s, memory, GPU
    runs = page()
    assert runs.select_runs([a.id, b.id])
    plot = runs.compare_plot
    assert plot.metric == "loss"
    assert plot.metric_names() == ["loss", "learning_rate", "grad_norm", "tokens_per_s", "memory_gb",
                                   "gpu_util", "gpu_temp_c"]
    events = [m for m in workspace.RunFolder(b.path).read_events() if m["type"] == protocol.METRICS]
    recorded = [(m["step"], m["values"]["gpu_util"]) for m in events if "gpu_util" in m["values"]]

    assert plot.set_metric("gpu_util")
    assert plot.legend_names() == ["gpu run"]  # the CPU run has no GPU curve to draw
    plot.smoothing_slider.setValue(0)  # raw, to compare with the event log
    x, y = plot.drawn_data(b.id, "gpu_util")
    assert list(zip(x, y)) == [(float(s), float(v)) for s, v in recorded] and len(recorded) > 2
    assert plot.drawn_data(b.id, "eval_loss")[0].size == 0  # validation loss goes with loss only
    assert plot.plot.getAxis("left").labelText == "GPU util (%)"
    assert plot.hint.text() == "No GPU util (%) recorded for: cpu run."
    save(runs, "runs_compare_gpu_util")

    assert plot.set_metric("learning_rate") and len(plot.legend_names()) == 1
    assert runs.select_runs([a.id, b.id]) and plot.metric == "learning_rate"  # a refresh keeps the choice
    c = loss_run("another cpu run", 8, 1.4)
    runs.refresh()
    assert runs.select_runs([a.id, c.id])  # neither recorded a learning rate: back to loss
    assert plot.metric == "loss" and plot.metric_names() == ["loss"]
    assert sorted(plot.legend_names()) == ["another cpu run · train", "cpu run · train"]
