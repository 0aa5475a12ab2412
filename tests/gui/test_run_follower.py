"""Following a run through its folder: the Qt-free tail and follower, and the Train page
re-attaching to a run that was live before the window opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gui_helpers import dead_pid

from engine.core import protocol, workspace
from gui.notifications import Notifier
from gui.pages.train import TrainPage
from gui.state.metric_buffer import MetricBuffer
from gui.state.run_follower import EventTail, RunFollower, find_live_run


def line(message: dict) -> str:
    return protocol.encode(message)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(text)


def live_run(steps: int = 5, name: str = "overnight") -> workspace.RunFolder:
    """A run as the engine leaves it mid-training: running, its pid alive (this process)."""
    run = workspace.create_run(name)
    run.update_info(id=run.id, name=name, status="running", pid=os.getpid(), created=0)
    text = line(protocol.hello("train", "0.1.0")) + line(protocol.artifact("run_dir", str(run.path)))
    for step in range(1, steps + 1):
        text += line(protocol.progress(step, 20, eta_s=20 - step, stage="train"))
        text += line(protocol.metrics(step, {"loss": 3.0 - 0.1 * step, "learning_rate": 1e-4}))
    append(run.events, text)
    return run


def finish(run: workspace.RunFolder, status: str = "finished") -> None:
    run.update_info(status=status, steps=20, final_loss=1.0)
    append(run.events, line(protocol.result({"run_dir": str(run.path), "steps": 20, "final_loss": 1.0,
                                             "status": status})))


def test_tail_handles_a_missing_file_and_a_half_written_line(tmp_path):
    path = tmp_path / "events.ndjson"
    tail = EventTail(path)
    assert tail.read_messages() == []  # not created yet
    first = line(protocol.log("one"))
    second = line(protocol.log("two"))
    append(path, first + second[:10])  # the engine is mid-write
    assert [m["message"] for m in tail.read_messages()] == ["one"]
    assert tail.read_messages() == []
    append(path, second[10:] + "not json\n")
    assert [m["message"] for m in tail.read_messages()] == ["two"]  # the bad line is skipped
    path.write_text(first, encoding="utf-8")  # replaced by a shorter file
    assert [m["message"] for m in tail.read_messages()] == ["one"]


def test_follower_ends_on_the_result_of_this_attempt_only(tunebench_home):
    run = live_run(steps=2)
    # An earlier attempt's result before this attempt's hello (a resumed run) is not the end.
    old = run.events.read_text(encoding="utf-8")
    run.events.write_text(line(protocol.result({"status": "cancelled"})) + old, encoding="utf-8")
    follower = RunFollower(run)
    assert len(follower.poll()) == 7 and not follower.ended
    finish(run)
    assert follower.poll()[-1]["type"] == "result" and follower.ended
    assert follower.status() == "finished"


def test_follower_ends_when_the_engine_process_is_gone(tunebench_home):
    run = live_run(steps=1)
    run.update_info(pid=dead_pid())  # crashed without a result
    follower = RunFollower(run)
    assert len(follower.poll()) == 4 and follower.ended
    assert follower.status() == "interrupted"


def test_find_live_run_skips_ended_and_dead_runs(tunebench_home):
    done = live_run(name="done")
    finish(done)
    crashed = live_run(name="crashed")
    crashed.update_info(pid=dead_pid())
    assert find_live_run(tunebench_home / "runs") is None
    live = live_run(name="live")
    assert find_live_run(tunebench_home / "runs").id == live.id


def test_metric_buffer_truncates_after_a_step():
    buffer = MetricBuffer()
    for step in range(1, 13):
        buffer.append("loss", step, 1.0 / step)
    buffer.append("eval_loss", 6, 0.5)
    buffer.append("eval_loss", 12, 0.4)
    buffer.truncate_after(8)
    assert list(buffer.arrays("loss")[0]) == list(range(1, 9))
    assert list(buffer.arrays("eval_loss")[0]) == [6]


@pytest.fixture
def page(qtbot, make_context):
    def build() -> TrainPage:
        train = TrainPage(make_context(), notifier=Notifier(use_tray=False))
        qtbot.addWidget(train)
        train.resize(1200, 760)
        return train

    return build


def test_opening_the_page_re_attaches_to_a_live_run_and_continues(qtbot, page, tunebench_home):
    run = live_run(steps=5)
    train = page()
    assert train.is_following() and train.is_busy()
    assert "Re-attached" in train.status_label.text()
    assert str(run.path) in train.run_label.text()
    assert train.plot.buffer.length("loss") == 5  # the history, replayed
    assert train.progress.text() == "step 5 / 20 — ETA 00:15"
    assert train.stop_button.isEnabled()

    append(run.events, line(protocol.metrics(6, {"loss": 2.3})) + line(protocol.progress(6, 20, stage="train")))
    qtbot.waitUntil(lambda: train.plot.buffer.length("loss") == 6, timeout=3000)  # live, from the file
    with qtbot.waitSignal(train.sig_run_finished, timeout=3000) as blocker:
        finish(run)
    assert blocker.args == [str(run.path)]
    assert train.status_label.text().startswith("Finished, 20 steps, final loss 1.0000")
    assert train.notifier.sent[-1].title == "Run overnight finished"
    assert not train.is_busy()


def test_stop_on_a_re_attached_run_writes_the_cancel_request(qtbot, page, tunebench_home):
    run = live_run()
    train = page()
    train.stop_button.click()
    assert (run.path / "cancel.request").is_file()
    assert "Stopping" in train.status_label.text() and not train.stop_button.isEnabled()


def test_a_resumed_run_replays_to_its_checkpoint_then_carries_on(qtbot, page, tunebench_home):
    run = live_run(steps=12)  # the first attempt logged steps 1-12, its checkpoint was at 8
    append(run.events, line(protocol.hello("train", "0.1.0"))
           + line(protocol.artifact("run_dir", str(run.path), resumed_from=8))
           + line(protocol.metrics(9, {"loss": 2.05})))
    train = page()
    x, y = train.plot.buffer.arrays("loss")
    assert list(x) == list(range(1, 10)) and y[-1] == 2.05


def test_the_page_attaches_to_the_next_live_run_by_itself(qtbot, page, tunebench_home):
    train = page()
    assert not train.is_following()
    live_run(steps=3)  # the queue worker started the next job
    qtbot.waitUntil(train.is_following, timeout=3000)
    assert train.plot.buffer.length("loss") == 3
