"""The engine's incoming side: ``cancel`` and ``ping`` on stdin, and Ctrl+C in a terminal.

Cancel is cooperative (docs/architecture.md, 'Cancelling a job'): it only sets a flag that long
jobs check at each step boundary; the job then saves what it has and exits with
ExitCode.CANCELLED. The same path works on Windows and Linux because it needs no signals from
the GUI.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Protocol

from engine.core import protocol
from engine.core.channel import Channel
from engine.core.errors import EngineError

log = logging.getLogger("engine")

CANCEL_POLL_S = 0.5


class RunningJob(Protocol):
    """What :func:`progress_reporter` needs of a job. engine.core.job.Job has it; that module
    imports this one, so naming Job here would make an import loop."""

    channel: Channel
    control: Control


def progress_reporter(job: RunningJob, stage: str) -> Callable[[int, int], None]:
    """A row-progress callback for long data jobs: sends ``progress`` on the job's channel and
    stops the job (EngineError CANCELLED) when a cancel has arrived; the job's own atomic write
    then leaves nothing half-written behind."""
    def on_progress(current: int, total: int) -> None:
        if job.control.cancelled.is_set():
            raise EngineError(protocol.ExitCode.CANCELLED,
                              f"{stage} cancelled after {current} rows; nothing was written")
        job.channel.send(protocol.progress(current, total, stage=stage))

    return on_progress


class Control:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self.cancelled = threading.Event()

    def start(self) -> None:
        """Listens on stdin in protocol (--json) mode, and turns the first Ctrl+C into a cancel.

        In text mode stdin is left alone: a shell loop that pipes lines into a script running
        the engine must not have its input swallowed."""
        if self._channel.json_mode and sys.stdin is not None and not sys.stdin.isatty():
            threading.Thread(target=self._read_stdin, name="engine-control", daemon=True).start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_interrupt)

    def watch_cancel_file(self, path: Path, interval_s: float = CANCEL_POLL_S) -> threading.Thread:
        """Cancels when ``path`` appears: a window that did not start this process (the run
        outlived the one that did, or it runs from the queue worker) has no pipe to its stdin,
        so it asks by creating the file. Polling needs no signals and no platform API, so it
        works the same on Windows and Linux."""
        path = Path(path)
        # A file already there is left from an earlier stop of this run (a resumed run reuses
        # its folder); only a request made from now on counts.
        path.unlink(missing_ok=True)

        def poll() -> None:
            while not self.cancelled.wait(interval_s):
                if not path.parent.is_dir():
                    return  # the run folder is gone (a test's temp folder): nothing to watch
                if path.exists():
                    log.info("Cancel requested (%s); stopping at the next step boundary.", path.name)
                    self.cancelled.set()

        thread = threading.Thread(target=poll, name="engine-cancel-file", daemon=True)
        thread.start()
        return thread

    def _on_interrupt(self, signum: int, frame: object) -> None:
        if self.cancelled.is_set():
            raise KeyboardInterrupt  # second Ctrl+C: stop now
        log.warning("Cancelling at the next step; press Ctrl+C again to stop immediately.")
        self.cancelled.set()

    def _read_stdin(self) -> None:
        # End of input (the window closed) is not a cancel: the job keeps running and its run
        # folder keeps its record, so a new window can re-attach.
        for line in protocol.read_lines(sys.stdin):
            try:
                message = protocol.decode(line)
            except protocol.ProtocolError as exc:
                log.warning("ignored a line on stdin: %s", exc)
                continue
            self._handle(message)

    def _handle(self, message: dict) -> None:
        if message["type"] == protocol.CANCEL:
            log.info("Cancel requested; stopping at the next step boundary.")
            self.cancelled.set()
        elif message["type"] == protocol.PING:
            self._channel.send(protocol.make(protocol.PONG, id=message.get("id")))
