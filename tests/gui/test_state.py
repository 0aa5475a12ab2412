"""The Qt-free view state: metric buffers, run history, dataset catalog, the app context."""

from __future__ import annotations

import sys

import numpy as np
from gui_helpers import make_dataset, make_run

from engine.core import paths, workspace
from gui.context import AppContext
from gui.state import dataset_catalog, run_history
from gui.state.metric_buffer import MetricBuffer, smooth_ema


def test_metric_buffer_grows_past_its_initial_capacity():
    buffer = MetricBuffer()
    for step in range(1000):
        buffer.append("loss", step, 1.0 / (step + 1))
    x, y = buffer.arrays("loss")
    assert len(buffer) == buffer.length("loss") == 1000
    assert np.array_equal(x, np.arange(1000))
    assert y[0] == 1.0 and buffer.last("loss") == 1.0 / 1000


def test_metric_buffer_skips_missing_and_non_numeric_values():
    buffer = MetricBuffer()
    buffer.append_values(1, {"loss": 2.5, "learning_rate": None, "epoch": True}, ["loss", "learning_rate", "epoch"])
    buffer.append_values("bad step", {"loss": 2.4}, ["loss"])
    assert buffer.names() == ["loss"] and buffer.length("loss") == 1
    assert buffer.arrays("tokens_per_s")[0].size == 0


def test_run_history_rows_and_curves():
    run = make_run("alpha", steps=5)
    rows = run_history.list_rows()
    assert [(r.name, r.status, r.method, r.steps) for r in rows] == [("alpha", "finished", "lora", 5)]
    assert rows[0].final_loss == 2.0991
    curves = run_history.load_curves(run.path)
    assert curves.length("loss") == 5 and curves.length("learning_rate") == 5


def test_run_history_skips_a_torn_last_event_line():
    run = make_run("torn", steps=3)
    with run.events.open("a", encoding="utf-8") as handle:
        handle.write('{"type":"metrics","step":4,"values":{"loss":')  # crash mid-write
    assert run_history.load_curves(run.path).length("loss") == 3


def test_only_runs_with_an_adapter_reach_the_playground():
    make_run("no adapter")
    with_adapter = make_run("tuned", adapter=True)
    assert [r.id for r in run_history.finished_with_adapter()] == [with_adapter.id]


def test_live_running_run_stays_running():
    make_run("live", status="running", pid=workspace.os.getpid())
    assert run_history.list_rows()[0].status == "running"


def test_dataset_catalog_orders_versions_numerically():
    for version in (1, 2, 10):
        make_dataset(paths.datasets_dir(), "reviews", version, version * 10)
    assert [row.version for row in dataset_catalog.list_datasets()] == [1, 2, 10]
    assert dataset_catalog.dataset_names() == ["reviews"]


def test_engine_command_comes_from_settings_unless_overridden():
    context = AppContext.from_environment()
    assert context.engine_command() == [sys.executable, "-m", "engine"]
    context.save_settings({"engine_python": "/opt/tunebench/engine-env/bin/python"})
    assert AppContext.from_environment().engine_command() == ["/opt/tunebench/engine-env/bin/python", "-m", "engine"]
    assert AppContext.from_environment(engine_override=["fake"]).engine_command() == ["fake"]


def test_engine_gets_the_workspace_override(tunebench_home):
    env = AppContext.from_environment().engine_env()
    assert env["TUNEBENCH_HOME"] == str(tunebench_home)
    assert AppContext.from_environment().workspace_dir == tunebench_home.resolve()


def test_smoothing_is_tensorboards_debiased_ema():
    values = np.array([1.0, 2.0, np.nan, 3.0])
    assert np.array_equal(smooth_ema(values, 0.0), values, equal_nan=True)
    smooth = smooth_ema(values, 0.5)
    assert smooth[0] == 1.0  # debiased: the first point is not pulled towards zero
    assert smooth[1] == (0.25 + 1.0) / 0.75  # (0.5 * 0.5 * 1 + 0.5 * 2) / (1 - 0.5**2)
    assert np.isnan(smooth[2])  # a gap stays a gap and does not enter the average
    assert 2.0 < smooth[3] < 3.0


def test_continue_is_offered_for_a_finished_run_with_an_adapter():
    done = run_history.row_of(make_run("done", adapter=True))
    bare = run_history.row_of(make_run("no adapter"))
    stopped = run_history.row_of(make_run("stopped", status="cancelled", adapter=True))
    assert done.can_continue() and not bare.can_continue() and not stopped.can_continue()


def test_samples_come_from_samples_jsonl_latest_answer_per_step():
    import json

    run = make_run("sampled")
    lines = [{"step": 10, "samples": [{"prompt": "p", "output": "first"}]},
             {"step": 20, "samples": [{"prompt": "p", "output": "b"}]},
             {"step": 10, "samples": [{"prompt": "p", "output": "redone"}]}]  # a resumed run redid step 10
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 30, "samp'  # torn last line
    (run.path / run_history.SAMPLES_FILE).write_text(text, encoding="utf-8")
    samples = run_history.load_samples(run.path)
    assert [(step, [s["output"] for s in rows]) for step, rows in samples] == [(10, ["redone"]), (20, ["b"])]


def test_samples_fall_back_to_the_event_log():
    from engine.core import protocol

    run = make_run("events only")
    with run.events.open("a", encoding="utf-8") as handle:
        sample = {"prompt": "q", "output": "a"}
        handle.write(protocol.encode(protocol.artifact("samples", "x", step=4, samples=[sample])))
    assert run_history.load_samples(run.path) == [(4, [{"prompt": "q", "output": "a"}])]
    assert run_history.load_samples(make_run("none").path) == []


def test_delete_removes_a_finished_run_but_never_a_live_one():
    import pytest

    done = make_run("done", adapter=True)
    live = make_run("live", status="running", pid=workspace.os.getpid())
    with pytest.raises(run_history.RunDeleteError, match="still training"):
        run_history.delete_run(live.path)
    assert live.path.is_dir()
    run_history.delete_run(done.path)
    assert not done.path.exists() and [row.id for row in run_history.list_rows()] == [live.id]
    assert [p.name for p in done.path.parent.iterdir()] == [live.id]  # no hidden leftovers


def test_delete_refuses_a_run_a_queued_job_resumes():
    import pytest

    from engine.train import job_queue

    stopped = make_run("stopped", status="cancelled")
    job_queue.add(["--resume", stopped.id])
    with pytest.raises(run_history.RunDeleteError, match="waiting in the queue"):
        run_history.delete_run(stopped.path)
    assert stopped.path.is_dir()
