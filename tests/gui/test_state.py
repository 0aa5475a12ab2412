"""The Qt-free view state: metric buffers, run history, dataset catalog, the app context."""

from __future__ import annotations

import sys

import numpy as np

from engine import paths, workspace
from gui.context import AppContext
from gui.state import dataset_catalog, run_history
from gui.state.metric_buffer import MetricBuffer

from gui_helpers import make_dataset, make_run


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
