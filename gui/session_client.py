"""A long-lived engine ``session`` (see the playground session protocol): requests with ids in,
messages routed back by id.

One EngineClient runs ``session --json``. Requests sent before the session's hello wait in a
queue and go out once it arrives. Every answer ends in exactly one ``sig_result`` or
``sig_request_error`` for its id, even when the process dies: then each open request gets an
error, the user is told through ``sig_notice``, and the session is started again (a few times
in a row at most, so a session that cannot start does not loop).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from engine.core import protocol
from gui.engine_client import ClientState, EngineClient

MAX_RESTARTS = 3  # restarts in a row without a request answered in between
CANCEL_GRACE_S = 10.0  # a cancelled request still open after this: the process is stuck; restart it
SHUTDOWN_WAIT_MS = 2000

CommandFactory = Callable[[], list[str]]
EnvFactory = Callable[[], dict[str, str]]


class SessionClient(QObject):
    """Owns one engine session process; every signal carries the request id it belongs to."""

    sig_ready = Signal(dict)  # the session's hello (device probe), after each (re)start
    sig_progress = Signal(str, dict)  # request id, progress message (model loading)
    sig_token = Signal(str, dict)  # request id, token message (text, logprob, top)
    sig_result = Signal(str, dict)  # request id, result data (text, finish_reason, ttft_s, ...)
    sig_request_error = Signal(str, str)  # request id, one-line message
    sig_notice = Signal(str, bool)  # a line for the user, whether it is an error
    sig_busy_changed = Signal(bool)  # some request is open

    def __init__(self, command: CommandFactory, env: EnvFactory | None = None,
                 parent: QObject | None = None, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        super().__init__(parent)
        self._command = command
        self._env = env or dict
        self._ids = itertools.count(1)
        self._open: list[str] = []  # ids sent or queued and not yet answered, in order
        self._queued: list[dict[str, Any]] = []  # requests waiting for the hello
        self._restarts = 0
        self._closing = False
        self._kill_reason = ""
        self.client = EngineClient(self, grace_s=cancel_grace_s)
        self.client.sig_hello.connect(self._on_client_hello)
        self.client.sig_progress.connect(lambda m: self._route(m, self.sig_progress))
        self.client.sig_token.connect(lambda m: self._route(m, self.sig_token))
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_error.connect(self._on_client_error)
        self.client.sig_finished.connect(self._on_client_finished)
        self._cancel_timer = QTimer(self)
        self._cancel_timer.setSingleShot(True)
        self._cancel_timer.setInterval(int(cancel_grace_s * 1000))
        self._cancel_timer.timeout.connect(self._on_cancel_timer_timeout)

    # -- public API ------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.client.is_active()

    def is_busy(self) -> bool:
        return bool(self._open)

    def open_ids(self) -> list[str]:
        return list(self._open)

    def start(self) -> None:
        """Starts the session process now (it also starts on the first request)."""
        if not self.client.is_active():
            self._closing = False
            self.client.start(self._command() + ["session", "--json"], self._env())

    def generate(self, request: dict[str, Any]) -> str:
        """Sends a generate request (fields as in the protocol, without type and id) and
        returns the id its messages will carry."""
        return self._request("generate", request)

    def list_models(self, remote: dict[str, str]) -> str:
        """Asks the session for the models an OpenAI-compatible server lists ({base_url, api_key});
        the answer is a ``sig_result`` whose data has ``models``, or a ``sig_request_error``."""
        return self._request("models", {"remote": remote})

    def _request(self, kind: str, request: dict[str, Any]) -> str:
        request_id = f"r{next(self._ids)}"
        message = {**request, "type": kind, "id": request_id}
        was_busy = self.is_busy()
        self._open.append(request_id)
        if self.client.state == ClientState.RUNNING:
            self.client.send(message)
        else:
            self._queued.append(message)
            self.start()
        if not was_busy:
            self.sig_busy_changed.emit(True)
        return request_id

    def cancel(self, request_id: str = "") -> None:
        """Stops one request (or, without an id, every open one) at once."""
        ids = [request_id] if request_id else list(self._open)
        queued = {m["id"] for m in self._queued}
        for rid in ids:
            if rid in queued:  # never sent: answer it here
                self._queued = [m for m in self._queued if m["id"] != rid]
                self._close(rid)
                self.sig_result.emit(rid, {"id": rid, "text": "", "finish_reason": "cancelled"})
            elif rid in self._open:
                self.client.send({"type": "cancel", "id": rid})
        if self._open:
            self._cancel_timer.start()

    def unload(self) -> bool:
        """Asks a running session to free every loaded model (the next request loads again)."""
        if self.client.state != ClientState.RUNNING or self.is_busy():
            return False
        self.client.send({"type": "unload"})
        return True

    def shutdown(self) -> None:
        """Asks the session to exit (window closing); kills it if it does not go at once."""
        self._closing = True
        self._cancel_timer.stop()
        if self.client.is_active():
            self.client.send({"type": "shutdown"})
            self.client.kill(SHUTDOWN_WAIT_MS)

    # -- engine messages ---------------------------------------------------------------------

    def _route(self, message: dict[str, Any], signal: Any) -> None:
        request_id = str(message.get("id") or "")
        if request_id in self._open:
            signal.emit(request_id, message)

    def _on_client_hello(self, message: dict[str, Any]) -> None:
        queued, self._queued = self._queued, []
        for request in queued:
            self.client.send(request)
        self.sig_ready.emit(message)

    def _on_client_result(self, message: dict[str, Any]) -> None:
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        request_id = str(message.get("id") or data.get("id") or "")
        if request_id in self._open:
            self._restarts = 0
            self._close(request_id)
            self.sig_result.emit(request_id, data)

    def _on_client_error(self, message: dict[str, Any]) -> None:
        request_id = str(message.get("id") or "")
        if request_id in self._open:
            self._close(request_id)
            self.sig_request_error.emit(request_id, _one_line(message.get("message")))
        # An error without a request id is fatal: the process ends, and the summary that
        # _on_client_finished shows already carries its message.

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        self._cancel_timer.stop()
        if self._closing:
            return
        lost = list(self._open)
        reason = self._kill_reason or (_one_line(summary) if exit_code else "it exited without answering")
        self._kill_reason = ""
        for request_id in lost:
            self._close(request_id)
            self.sig_request_error.emit(request_id, f"The engine session stopped: {reason}")
        if exit_code == protocol.ExitCode.OK and not lost:
            return  # it ended by itself with nothing open; the next request starts it again
        self._queued.clear()
        if self._restarts >= MAX_RESTARTS:
            self.sig_notice.emit(f"The engine session stopped again ({reason}); it will start with "
                                 "the next request.", True)
            return
        self._restarts += 1
        self.sig_notice.emit(f"The engine session stopped ({reason}); restarting it.", True)
        self.start()

    def _on_cancel_timer_timeout(self) -> None:
        if self._open and self.client.is_active():
            # Killing ends in _on_client_finished, which answers every open request.
            self._kill_reason = "it did not stop within the grace period after Stop"
            self.client.kill(SHUTDOWN_WAIT_MS)

    def _close(self, request_id: str) -> None:
        if request_id in self._open:
            self._open.remove(request_id)
            if not self._open:
                self._cancel_timer.stop()
                self.sig_busy_changed.emit(False)


def _one_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
