"""Following a run through its folder, not a pipe. Qt-free.

The engine appends every protocol message to ``runs/<id>/events.ndjson`` as it goes (rule 6),
so any window, including one opened after the run started, can read the same messages the
engine's stdout carried: first the history, then each new complete line. A timer in the page
calls :meth:`RunFollower.poll`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import protocol, workspace

TERMINAL = (protocol.RESULT, protocol.ERROR)


class EventTail:
    """Reads the complete lines appended to a file since the last read.

    The file may not exist yet (the run is still being set up), and its last line may be half
    written (the engine is mid-write): that part is left for the next read.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0

    def read_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:  # replaced by a shorter file: start over
                    self.offset = 0
                handle.seek(self.offset)
                chunk = handle.read(size - self.offset)
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return chunk[: end + 1].decode("utf-8", errors="replace").splitlines()

    def read_messages(self) -> list[dict[str, Any]]:
        """The new lines as protocol messages; a line that is not one is skipped."""
        messages = []
        for line in self.read_lines():
            try:
                messages.append(protocol.decode(line))
            except protocol.ProtocolError:
                continue
        return messages


@dataclass
class RunFollower:
    """A live (or just finished) run: its new messages, and whether its engine has ended.

    The run has ended when run.json no longer says running and a result or error has been
    read since the engine's last hello (a resumed run's log holds an earlier attempt's result
    too), or when its engine process is gone.
    """

    run: workspace.RunFolder
    tail: EventTail = field(init=False)
    ended: bool = False
    _terminal_seen: bool = False

    def __post_init__(self) -> None:
        self.tail = EventTail(self.run.events)

    @classmethod
    def of(cls, run_path: Path | str) -> RunFollower:
        return cls(workspace.RunFolder(Path(run_path)))

    def poll(self) -> list[dict[str, Any]]:
        """New messages since the last call; sets ``ended`` once the run is over and all of
        its messages have been returned."""
        # Look at the process before reading: if it was gone then, everything it wrote is read.
        info = self.run.info()
        alive = workspace.pid_alive(info.get("pid"))
        messages = self.tail.read_messages()
        for message in messages:
            if message["type"] == protocol.HELLO:
                self._terminal_seen = False
            elif message["type"] in TERMINAL:
                self._terminal_seen = True
        running = self.run.info().get("status") == workspace.RUNNING
        self.ended = self.ended or (self._terminal_seen and not running) or not alive
        return messages

    def status(self) -> str:
        """run.json's status, with a run marked running whose engine is gone called interrupted."""
        info = self.run.info()
        status = str(info.get("status") or "unknown")
        if status == workspace.RUNNING and not workspace.pid_alive(info.get("pid")):
            return "interrupted"
        return status


def find_live_run(runs_dir: Path) -> workspace.RunFolder | None:
    """The newest run whose engine is still training (run.json running, its process alive)."""
    for run in workspace.list_runs(runs_dir):
        info = run.info()
        if info.get("status") == workspace.RUNNING and workspace.pid_alive(info.get("pid")):
            return run
    return None
