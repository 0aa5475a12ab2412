"""One engine process: launch, line-buffered protocol reading, typed signals, cancel ladder.

The engine writes newline-delimited JSON (engine/core/protocol.py) on stdout and a human log on
stderr. QProcess delivers bytes in arbitrary chunks, so both streams are buffered here and
split on b"\\n"; a message is only decoded once its whole line has arrived. A line longer than
protocol.MAX_LINE_BYTES is never held: its bytes are dropped as they arrive and it is reported
as one warning, so a broken engine cannot make the window run out of memory.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import shlex
import subprocess
from typing import Any, Callable, Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from engine.core import protocol
from gui.context import engine_problem_for

DEFAULT_GRACE_S = 60.0
STDERR_RING_LINES = 40
SUMMARY_TAIL_LINES = 5
UNBUFFERED_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}


class ClientState(str, enum.Enum):
    IDLE = "idle"  # nothing started yet
    STARTING = "starting"  # process launched, waiting for its hello
    RUNNING = "running"  # hello accepted, messages flowing
    STOPPING = "stopping"  # cancel sent, waiting for the engine to save and exit
    EXITED = "exited"  # the process ended by itself (any exit code)
    CRASHED = "crashed"  # failed to start, wrong protocol, killed or died from a signal


ACTIVE_STATES = frozenset({ClientState.STARTING, ClientState.RUNNING, ClientState.STOPPING})


def format_command(argv: Sequence[str]) -> str:
    """The argv as one line a user can paste into their shell ("copy as command")."""
    if os.name == "nt":
        return subprocess.list2cmdline(list(argv))
    return shlex.join(argv)


class TooLongLine(str):
    """Stands for a line over the buffer's limit, whose bytes were dropped; the text says so."""

    def __new__(cls, size: int, limit: int) -> "TooLongLine":
        line = super().__new__(cls, f"(a line of {size} bytes, over the {limit}-byte limit, was dropped)")
        line.size = size
        return line


class LineBuffer:
    """Collects byte chunks and hands back whole lines, decoded as UTF-8 with replacement.

    Holds at most ``limit`` bytes of an unfinished line: past that the line is dropped (counted,
    not kept) until its newline arrives, and handed back as a TooLongLine."""

    def __init__(self, limit: int = protocol.MAX_LINE_BYTES) -> None:
        self._pending = bytearray()
        self._limit = limit
        self._dropped = 0  # bytes of the current over-long line seen so far

    def feed(self, chunk: bytes) -> list[str]:
        *complete, rest = chunk.split(b"\n")
        found = [self._finish(piece) for piece in complete]
        self._absorb(rest)
        return found

    def flush(self) -> list[str]:
        """The last line when the stream ended without a newline."""
        if self._dropped:
            return [self._finish(b"")]
        rest, self._pending = bytes(self._pending), bytearray()
        return [_decode(rest)] if rest.strip() else []

    def _absorb(self, piece: bytes) -> None:
        """Keeps the start of an unfinished line, or only counts it once it is over the limit."""
        if self._dropped or len(self._pending) + len(piece) > self._limit:
            self._dropped += len(self._pending) + len(piece)
            self._pending = bytearray()
        else:
            self._pending += piece

    def _finish(self, piece: bytes) -> str:
        """The line that ``piece`` (the bytes before a newline) completes."""
        size = self._dropped + len(self._pending) + len(piece)
        line = (TooLongLine(size, self._limit) if self._dropped or size > self._limit
                else _decode(bytes(self._pending) + piece))
        self._pending, self._dropped = bytearray(), 0
        return line


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


class EngineClient(QObject):
    """Owns one QProcess running an engine command and turns its output into Qt signals."""

    sig_state_changed = Signal(str)
    sig_hello = Signal(dict)
    sig_log = Signal(str, str)  # level, message
    sig_progress = Signal(dict)
    sig_metrics = Signal(dict)
    sig_token = Signal(dict)
    sig_artifact = Signal(dict)
    sig_result = Signal(dict)
    sig_error = Signal(dict)
    sig_pong = Signal()
    sig_stderr = Signal(str)
    sig_finished = Signal(int, str)  # exit code, one-sentence summary (plus detail lines)

    def __init__(self, parent: QObject | None = None, grace_s: float = DEFAULT_GRACE_S) -> None:
        super().__init__(parent)
        self._grace_s = grace_s
        self._state = ClientState.IDLE
        self._argv: list[str] = []
        self._stdout = LineBuffer()
        self._stderr = LineBuffer()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_RING_LINES)
        self._last_error = ""
        self._greeted = False  # a valid hello has arrived
        self._failure = ""  # why this side gave up on the process (handshake, kill after grace)
        self._refusal = ""
        self._process = QProcess(self)
        self._process.readyReadStandardOutput.connect(self._on_process_stdout)
        self._process.readyReadStandardError.connect(self._on_process_stderr)
        self._process.finished.connect(self._on_process_finished)
        self._process.errorOccurred.connect(self._on_process_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._on_kill_timer_timeout)
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            protocol.LOG: lambda m: self.sig_log.emit(str(m["level"]), str(m["message"])),
            protocol.PROGRESS: self.sig_progress.emit,
            protocol.METRICS: self.sig_metrics.emit,
            protocol.TOKEN: self.sig_token.emit,
            protocol.ARTIFACT: self.sig_artifact.emit,
            protocol.RESULT: self.sig_result.emit,
            protocol.ERROR: self._on_engine_error,
            protocol.PONG: lambda m: self.sig_pong.emit(),
        }

    # -- public API ------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    def is_active(self) -> bool:
        return self._state in ACTIVE_STATES

    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def command_line(self) -> str:
        """The command of the current (or last) job, quoted for this platform's shell."""
        return format_command(self._argv)

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Launches ``argv`` (program first). Refused while a job is still active."""
        if self.is_active():
            raise RuntimeError("the engine client is already running a job")
        if not argv:
            raise ValueError("empty engine command")
        self._reset(list(argv))
        self._set_state(ClientState.STARTING)
        # The one place every engine job passes: an interpreter without torch (the installed
        # app's GUI environment before the engine is set up) gets one line, not a traceback.
        # A missing interpreter fails to start by itself (FailedToStart names it).
        engine = self._argv[1:3] == ["-m", "engine"] and os.path.isfile(self._argv[0])
        problem = engine_problem_for(self._argv[0]) if engine else None
        if problem:
            self._refusal = problem
            QTimer.singleShot(0, self, self._on_refused)  # callers connect after start(), like a process
            return
        self._process.setProcessEnvironment(_environment(env or {}))
        self._process.start(self._argv[0], self._argv[1:])

    def cancel(self) -> None:
        """Asks the engine to stop at the next step boundary; kills it after the grace period."""
        if self._state not in (ClientState.STARTING, ClientState.RUNNING) or self._refusal:
            return
        self._send(protocol.make(protocol.CANCEL))
        self._set_state(ClientState.STOPPING)
        self._kill_timer.start(int(self._grace_s * 1000))

    def send(self, message: dict[str, Any]) -> None:
        """Writes one request line to a running engine (a long-lived ``session``'s generate,
        cancel with an id, unload). Not validated here: the engine answers a bad one with an
        ``error`` message."""
        if self.is_active():
            line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
            self._process.write(line.encode("utf-8"))

    def ping(self) -> None:
        if self.is_active():
            self._send(protocol.make(protocol.PING))

    def kill(self, wait_ms: int = 3000) -> None:
        """Ends the process now (window closing); blocks up to ``wait_ms`` for it to go."""
        if self._process.state() != QProcess.ProcessState.NotRunning:
            self._failure = self._failure or "The engine was stopped because the window closed."
            self._process.kill()
            self._process.waitForFinished(wait_ms)

    # -- process events ----------------------------------------------------------------------

    def _on_process_stdout(self) -> None:
        self._handle_lines(self._stdout.feed(self._process.readAllStandardOutput().data()))

    def _on_process_stderr(self) -> None:
        self._handle_stderr(self._stderr.feed(self._process.readAllStandardError().data()))

    def _on_process_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        # Drain what is left, including a last line written without a newline.
        self._on_process_stdout()
        self._on_process_stderr()
        self._handle_lines(self._stdout.flush())
        self._handle_stderr(self._stderr.flush())
        code = exit_code if exit_status == QProcess.ExitStatus.NormalExit else -abs(exit_code or 9)
        crashed = exit_status != QProcess.ExitStatus.NormalExit or self._state == ClientState.CRASHED
        self._set_state(ClientState.CRASHED if crashed else ClientState.EXITED)
        self.sig_finished.emit(code, self._summary(code))

    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart:
            return  # crashes and kills also arrive through finished(), handled there
        message = (f"Could not start the engine: {self._argv[0]!r} is missing or not executable "
                   f"({self._process.errorString()}).")
        self._set_state(ClientState.CRASHED)
        self.sig_error.emit({"type": protocol.ERROR, "code": -1, "message": message})
        self.sig_finished.emit(-1, message)

    def _on_refused(self) -> None:
        message = self._refusal
        self._set_state(ClientState.CRASHED)
        code = int(protocol.ExitCode.MISSING_DEPENDENCY)
        self.sig_error.emit({"type": protocol.ERROR, "code": code, "message": message})
        self.sig_finished.emit(code, message)

    def _on_kill_timer_timeout(self) -> None:
        self._failure = f"The engine did not stop within {self._grace_s:g} s of the cancel request and was killed."
        self._process.kill()

    # -- messages ------------------------------------------------------------------------------

    def _handle_lines(self, lines: list[str]) -> None:
        for line in lines:
            if self._state == ClientState.CRASHED:
                return  # handshake failed: nothing more from this process is trusted
            if line.strip():
                self._handle_line(line)

    def _handle_line(self, line: str) -> None:
        if isinstance(line, TooLongLine):
            self.sig_log.emit("warning", f"engine wrote a line too long to read: {line}")
            return
        try:
            message = protocol.decode(line)
        except protocol.ProtocolError as exc:
            self.sig_log.emit("warning", f"engine wrote a non-protocol line: {exc}")
            return
        if not self._greeted:
            self._check_handshake(message)
        elif message["type"] in self._handlers:
            self._handlers[message["type"]](message)

    def _check_handshake(self, message: dict[str, Any]) -> None:
        try:
            protocol.check_hello(message)
        except protocol.ProtocolError as exc:
            self._failure = f"The engine speaks a different protocol: {exc}."
            self._set_state(ClientState.CRASHED)
            self._process.kill()
            self.sig_error.emit({"type": protocol.ERROR, "code": int(protocol.ExitCode.PROTOCOL),
                                 "message": self._failure})
            return
        self._greeted = True
        if self._state == ClientState.STARTING:  # not when cancel came before the hello
            self._set_state(ClientState.RUNNING)
        self.sig_hello.emit(message)

    def _on_engine_error(self, message: dict[str, Any]) -> None:
        self._last_error = str(message["message"])
        self.sig_error.emit(message)

    def _handle_stderr(self, lines: list[str]) -> None:
        for line in lines:
            self._stderr_tail.append(line)
            self.sig_stderr.emit(line)

    # -- helpers -----------------------------------------------------------------------------

    def _summary(self, code: int) -> str:
        if self._failure:
            return self._failure
        sentence = f"The engine {protocol.describe_exit(code)}."
        if code in (protocol.ExitCode.OK, protocol.ExitCode.CANCELLED):
            return sentence  # what the user expected: no log lines needed
        if self._last_error:
            return f"{sentence} {self._last_error}"
        tail = [line for line in self._stderr_tail if line.strip()][-SUMMARY_TAIL_LINES:]
        return "\n".join([sentence, *tail])

    def _send(self, message: dict[str, Any]) -> None:
        self._process.write(protocol.encode(message).encode("utf-8"))

    def _reset(self, argv: list[str]) -> None:
        self._argv = argv
        self._stdout = LineBuffer()
        self._stderr = LineBuffer()
        self._stderr_tail.clear()
        self._last_error = ""
        self._greeted = False
        self._failure = ""
        self._refusal = ""  # why start() did not launch the engine (see _on_refused)

    def _set_state(self, state: ClientState) -> None:
        if state != self._state:
            self._state = state
            self.sig_state_changed.emit(state.value)


def _environment(extra: dict[str, str]) -> QProcessEnvironment:
    env = QProcessEnvironment.systemEnvironment()
    for key, value in {**UNBUFFERED_ENV, **extra}.items():
        env.insert(key, value)
    return env
