"""The training queue: its file survives restarts and concurrent writers; one worker per
workspace runs the jobs in order as real `train` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core import protocol, workspace
from engine.core.errors import EngineError
from engine.train import job_queue

TINY = dict(max_steps=2, batch_size=4, learning_rate=5e-3, lora_r=8, lora_alpha=16, lora_dropout=0.0,
            max_length=128, save_steps=1000, device="cpu")


def tiny_flags(model_dir: Path, name: str) -> list[str]:
    return ["--model", str(model_dir), "--name", name, *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]


def ids(root: Path | None = None) -> list[str]:
    return [job["id"] for job in job_queue.load(root)]


def test_add_move_remove_keep_order_in_the_file(workspace_home) -> None:
    a, b, c = (job_queue.add(["--max-steps", str(n)], name=name) for n, name in ((1, "a"), (2, "b"), (3, "c")))
    assert ids() == [a["id"], b["id"], c["id"]]
    assert [job["status"] for job in job_queue.load()] == ["queued"] * 3
    assert job_queue.move(c["id"], -1) == 1
    assert ids() == [a["id"], c["id"], b["id"]]
    job_queue.move(a["id"], +10)  # clamped to the end
    assert ids() == [c["id"], b["id"], a["id"]]
    job_queue.remove(b["id"])
    assert ids() == [c["id"], a["id"]]
    data = json.loads((workspace_home / "queue" / "queue.json").read_text(encoding="utf-8"))
    assert [job["name"] for job in data["jobs"]] == ["c", "a"]
    assert not (workspace_home / "queue" / "queue.lock").exists()


def test_a_running_job_is_neither_removed_nor_moved(workspace_home) -> None:
    a = job_queue.add(["--max-steps", "1"])
    b = job_queue.add(["--max-steps", "1"])
    job_queue.update(a["id"], status="running")
    with pytest.raises(EngineError, match="is running; cancel its run instead"):
        job_queue.remove(a["id"])
    with pytest.raises(EngineError, match="only waiting jobs move"):
        job_queue.move(a["id"], 1)
    assert job_queue.move(b["id"], -1) == 1  # waiting jobs never jump ahead of the running one
    with pytest.raises(EngineError, match="no job 'nope'"):
        job_queue.remove("nope")


def test_concurrent_writers_lose_no_job(workspace_home, engine_env) -> None:
    """The window and the worker write at the same time: the lock keeps every change."""
    script = ("import sys\nfrom engine.train import job_queue\n"
              "for i in range(15): job_queue.add(['--max-steps', '1'], name=sys.argv[1] + str(i))\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, name], env=engine_env) for name in "xyz"]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0]
    names = [job["name"] for job in job_queue.load()]
    assert len(names) == 45 and len(set(names)) == 45
    for name in "xyz":  # each writer's own jobs stay in the order it added them
        assert [n for n in names if n[0] == name] == [f"{name}{i}" for i in range(15)]


def test_a_stale_lock_left_by_a_crash_is_broken(workspace_home) -> None:
    lock = job_queue.queue_dir() / job_queue.QUEUE_LOCK
    lock.write_text("12345", encoding="utf-8")
    old = lock.stat().st_mtime - job_queue.STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    job_queue.add(["--max-steps", "1"])
    assert len(job_queue.load()) == 1


def test_a_second_worker_exits_at_once_with_a_clear_message(workspace_home, engine_argv, engine_env) -> None:
    marker = job_queue.queue_dir() / job_queue.WORKER_JSON
    marker.write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")  # a live "worker"
    job_queue.add(["--max-steps", "1"])
    done = subprocess.run(engine_argv("queue", "run"), env=engine_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == protocol.ExitCode.USAGE
    assert f"a worker is already running for this workspace (process {os.getpid()})" in done.stderr
    assert "Traceback" not in done.stderr
    assert job_queue.load()[0]["status"] == "queued"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# Stands in for `python -m engine` in the in-process worker tests: announces a run folder like
# `train --json` does, then exits with the code given by `--max-steps`.
FAKE_TRAIN = ("import sys, json; code = int(sys.argv[sys.argv.index('--max-steps') + 1]); "
              "print(json.dumps({'type': 'artifact', 't': 0, 'kind': 'run_dir', 'path': '/runs/r' + str(code)}))"
              "; sys.exit(code)")


def test_the_worker_records_each_jobs_run_and_exit_status(workspace_home) -> None:
    for code in (0, 7, 1):
        job_queue.add(["--max-steps", str(code)])
    seen = []
    assert job_queue.run_worker([sys.executable, "-c", FAKE_TRAIN], on_event=lambda what, e: seen.append(what)) == 3
    jobs = job_queue.load()
    assert [(j["status"], j["exit_code"], j["run_id"]) for j in jobs] == [
        ("finished", 0, "r0"), ("cancelled", 7, "r7"), ("failed", 1, "r1")]
    assert seen == ["start", "end"] * 3
    assert job_queue.worker_pid() is None
    job_queue.add(["--max-steps", "0"])
    assert job_queue.clear_ended() == 3  # ended jobs go; the waiting one stays
    assert [j["status"] for j in job_queue.load()] == ["queued"]


def test_a_dead_workers_marker_and_running_job_are_recovered(workspace_home) -> None:
    folder = job_queue.queue_dir()
    crashed = job_queue.add(["--max-steps", "0"])
    job_queue.update(crashed["id"], status="running", worker_pid=dead_pid())
    waiting = job_queue.add(["--max-steps", "0"])
    (folder / job_queue.WORKER_JSON).write_text(json.dumps({"pid": dead_pid()}), encoding="utf-8")
    assert job_queue.worker_pid() is None
    assert job_queue.run_worker([sys.executable, "-c", FAKE_TRAIN]) == 1
    status = {job["id"]: job["status"] for job in job_queue.load()}
    assert status == {crashed["id"]: "interrupted", waiting["id"]: "finished"}


def test_queue_order_holds_across_a_client_restart(tiny_model_dir, engine_argv, engine_env,
                                                   workspace_home) -> None:
    for name in ("first", "second"):
        done = subprocess.run(engine_argv("queue", "add", "--json", "--", *tiny_flags(tiny_model_dir, name)),
                              env=engine_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    worker = subprocess.Popen(engine_argv("queue", "run", "--json"), env=engine_env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    # A "restarted client": a new process that knows nothing but the workspace.
    listed = subprocess.run(engine_argv("queue", "list", "--json"), env=engine_env, capture_output=True,
                            text=True, timeout=60)
    jobs = protocol.decode(listed.stdout.splitlines()[-1])["data"]["jobs"]
    assert [job["name"] for job in jobs] == ["first", "second"]
    messages = [protocol.decode(line) for line in worker.stdout]
    assert worker.wait(timeout=300) == 0
    starts = [m["job"]["name"] for m in messages if m["type"] == "artifact" and m.get("event") == "start"]
    assert starts == ["first", "second"]
    assert messages[-1]["data"] == {"jobs_run": 2}
    jobs = job_queue.load()
    assert [(job["name"], job["status"], job["exit_code"]) for job in jobs] == [
        ("first", "finished", 0), ("second", "finished", 0)]
    runs = [workspace.RunFolder(Path(job["run_dir"])) for job in jobs]
    assert [run.info()["name"] for run in runs] == ["first", "second"]
    assert all(run.info()["status"] == "finished" and run.info()["steps"] == 2 for run in runs)
    assert runs[0].info()["finished"] <= runs[1].info()["created"]  # one at a time
    assert job_queue.worker_pid() is None  # the worker left with the queue empty
    assert not (workspace_home / "queue" / job_queue.WORKER_JSON).exists()
