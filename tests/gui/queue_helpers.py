"""GUI tests of the queue: a context whose engine is tests/gui/fake_queue_engine.py (the real
queue worker; `train` replays a transcript into a real run folder), and cleanup of the detached
processes a test started."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from gui_helpers import TRANSCRIPTS

from engine.core import workspace
from engine.train import job_queue
from gui.context import AppContext

FAKE_QUEUE_ENGINE = Path(__file__).resolve().parent / "fake_queue_engine.py"


def queue_context(transcript: str = "train_tiny.ndjson", *options: str) -> AppContext:
    return AppContext.from_environment(
        engine_override=[sys.executable, str(FAKE_QUEUE_ENGINE), str(TRANSCRIPTS / transcript), *options])


def stop_engines(root: Path) -> None:
    """Ends the detached workers and runs a test left behind, by their recorded process ids."""
    pids = [job.get("pid") for job in job_queue.load(root)] + [job_queue.worker_pid(root)]
    for pid in pids:
        if pid and workspace.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(pid and workspace.pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
