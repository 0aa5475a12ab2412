"""The engine's outgoing side: protocol lines on the reserved stdout, or text for a person.

stdout belongs to the protocol (docs/architecture.md, 'The protocol'): before anything heavy is
imported, :func:`reserve_stdout` duplicates fd 1 for the protocol and points fd 1 at stderr, so
a library that prints cannot corrupt the stream. With ``--json`` every message is one NDJSON
line on the reserved stream; without it the same messages are rendered for a person (tokens and
results on stdout, the rest on stderr). A job with a run folder also appends every message to
its ``events.ndjson``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from engine.core import protocol

log = logging.getLogger("engine")


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            if handle.tell() == 0:
                return False
            handle.seek(-1, 2)
            return handle.read(1) != b"\n"
    except OSError:
        return False


def reserve_stdout() -> TextIO:
    """Returns a text stream on the real stdout and sends everything else written to fd 1
    (C libraries included) to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return open(protocol_fd, "w", encoding="utf-8", buffering=1, newline="\n", closefd=True)


class Channel:
    """Sends protocol messages; thread-safe (tokens and pongs come from other threads)."""

    def __init__(self, stream: TextIO, json_mode: bool) -> None:
        self._stream = stream
        self._json = json_mode
        self._lock = threading.Lock()
        self._events: TextIO | None = None
        self._hello: dict[str, Any] | None = None

    @property
    def json_mode(self) -> bool:
        return self._json

    def record_to(self, events_path: Path) -> None:
        """Also append every message to ``events_path`` (the run's event log), starting with
        the hello already sent, so the log reads like the stream a client saw."""
        with self._lock:
            if self._events is not None:
                self._events.close()
            torn = _ends_mid_line(events_path)
            self._events = events_path.open("a", encoding="utf-8", newline="\n")
            if torn:  # a process killed mid-line: its fragment must not swallow our first line
                self._record("\n")
            if self._hello is not None:
                self._record(protocol.encode(self._hello))

    def stop_recording(self) -> None:
        """Stops appending to the event log :meth:`record_to` opened (a sweep's next trial has
        its own)."""
        with self._lock:
            if self._events is not None:
                self._events.close()
                self._events = None

    def send(self, message: dict[str, Any]) -> None:
        line = protocol.encode(message)
        if message["type"] == protocol.HELLO:
            self._hello = message
        with self._lock:
            if self._events is not None:
                self._record(line)
            if self._json:
                self._write(line)
            else:
                self._render(message)

    def close(self) -> None:
        with self._lock:
            if self._events is not None:
                with contextlib.suppress(OSError):  # a full disk: what could be written, was
                    self._events.close()
                self._events = None

    def _record(self, line: str) -> None:
        """Appends to the event log. A full disk stops the log, not the job: the client still
        gets every message, and the error the job then meets says "disk full" once."""
        events = self._events
        if events is None:
            return
        try:
            events.write(line)
            events.flush()
        except OSError as exc:
            # Not log.warning: the log handler sends through this channel, whose lock we hold.
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"warning: the run's event log stopped: {exc.strerror or exc}\n")
            with contextlib.suppress(OSError):
                events.close()
            self._events = None

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line)
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            # The reader went away (window closed). The job goes on: its event log is its record.
            pass

    def _render(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == protocol.TOKEN:
            self._stream.write(message["text"])
            self._stream.flush()
        elif kind == protocol.RESULT:
            self._stream.write(human_result(message["data"]) + "\n")
            self._stream.flush()
        elif kind == protocol.METRICS:
            print(human_metrics(message), file=sys.stderr, flush=True)
        elif kind == protocol.ERROR:
            print(f"error: {message['message']}", file=sys.stderr, flush=True)
        elif kind == protocol.ARTIFACT:
            print(f"{message['kind']}: {message['path']}", file=sys.stderr, flush=True)


def human_metrics(message: dict[str, Any]) -> str:
    parts = [f"step {message['step']}"]
    for key, value in message["values"].items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


def human_result(data: dict[str, Any]) -> str:
    if "text" in data and len(data) <= 6:
        return f"\n[{data.get('tokens', '?')} tokens, {data.get('tokens_per_s', 0):.1f} tokens/s]"
    return json.dumps(data, indent=2, ensure_ascii=False)


class ChannelLogHandler(logging.Handler):
    """Turns the engine's log records into protocol ``log`` messages (JSON mode)."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.INFO)
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.send(protocol.log(self.format(record), record.levelname.lower()))
        except Exception:  # a log line must never take the job down
            self.handleError(record)
