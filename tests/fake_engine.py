"""A fake engine: a real subprocess that speaks the real protocol by replaying a transcript.

Usage::

    python tests/fake_engine.py TRANSCRIPT.ndjson [--delay S] [--exit CODE] [--mode MODE]
                                [ENGINE ARGS ...]

Any further engine arguments (``train --json --max-steps 60`` ...) are accepted and ignored, so
GUI pages can prepend ``[python, fake_engine.py, transcript]`` where they would put the engine.
Each transcript line is written to stdout and flushed, with ``delay`` seconds between lines; a
few human log lines go to stderr. stdin is watched in a thread: ``cancel`` makes the engine emit a
cancelled result and exit 7, ``ping`` is answered with ``pong``.

Modes:
    normal          replay as recorded
    garbage         also write non-JSON lines between messages
    split           write each line in two chunks with a pause between them, and the last line
                    without its newline (exercises the reader's line buffering)
    wrong-protocol  the hello announces protocol 99
    ignore-cancel   read cancel but keep going (exercises kill after the grace period)
    hostile         after the hello, also write a line over protocol.MAX_LINE_BYTES, a line
                    nested far deeper than JSON readers allow, and a message cut off mid-line
                    (each must cost one warning, not the window)
    die-mid-line    after the third message, write half a line and die by SIGKILL

The exit code is ``--exit`` when given, else the code of the last error message in the
transcript, else 0.

Session transcripts (a long-lived ``session`` engine) hold directive lines that are not
messages: ``{"fake": "await", "request": "generate"}`` waits for a request line of that type on
stdin before the following block is replayed; in that block the value ``"$id"`` (of ``id`` and of
``data.id``) becomes the id of the request awaited. A ``cancel`` whose id is the current request's
(or no id) ends the block at once with a ``result`` whose finish_reason is "cancelled" and the
text streamed so far; a cancel for a request still queued makes that request's block end the
same way as soon as it is awaited. While awaiting, stdin closing or a ``shutdown`` request ends
the fake with exit 0. ``{"fake": "await", "request": "cancel"}`` waits for a cancel without an
id (a ``serve`` engine running until stopped); ``{"fake": "exit", "code": 7}`` ends the replay
with that code. Requests are read with plain ``json``: their types need not be known to this
checkout's protocol module.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core import protocol  # noqa: E402

CANCELLED_EXIT = int(protocol.ExitCode.CANCELLED)
MODES = ("normal", "garbage", "split", "wrong-protocol", "ignore-cancel", "hostile", "die-mid-line")


class Output:
    """stdout shared by the replay loop and the stdin thread; one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hostile_done = False  # --mode hostile writes its bad lines once
        self.sent = 0  # messages written, for --mode die-mid-line

    def write(self, text: str, pause: float = 0.0) -> None:
        with self._lock:
            sys.stdout.write(text)
            sys.stdout.flush()
            if pause:
                time.sleep(pause)

    def message(self, message: dict) -> None:
        self.write(protocol.encode(message))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("transcript", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--exit", dest="exit_code", type=int, default=None)
    parser.add_argument("--mode", choices=MODES, default="normal")
    # The fake's own options come right after the transcript; everything from the first other
    # word on is the engine's command line (whose --mode or --exit must not be taken as ours).
    own = argv[:1]
    rest = argv[1:]
    while len(rest) >= 2 and rest[0] in ("--delay", "--exit", "--mode"):
        own += rest[:2]
        rest = rest[2:]
    return parser.parse_args(own)


def load_transcript(path: Path, mode: str) -> list[dict]:
    messages = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if mode == "wrong-protocol" and messages and messages[0].get("type") == protocol.HELLO:
        messages[0]["protocol"] = 99
    return messages


def exit_code_for(messages: list[dict], given: int | None) -> int:
    if given is not None:
        return given
    errors = [m for m in messages if m.get("type") == protocol.ERROR]
    return int(errors[-1]["code"]) if errors else 0


AWAIT = "await"
EOF_REQUEST = {"type": "eof"}


class Session:
    """What the stdin thread knows of session requests: those waiting, those cancelled."""

    def __init__(self) -> None:
        self.requests: queue.Queue[dict] = queue.Queue()
        self.cancelled_ids: set[str] = set()
        self.current_id = ""
        self.lock = threading.Lock()

    def cancel(self, request_id: str, cancelled: threading.Event) -> None:
        with self.lock:
            if not request_id or request_id == self.current_id:
                cancelled.set()
            if request_id:
                self.cancelled_ids.add(request_id)


def watch_stdin(out: Output, cancelled: threading.Event, mode: str, session: Session | None = None) -> None:
    for line in sys.stdin:
        try:
            request = json.loads(line)
            kind = request["type"]
        except (ValueError, TypeError, KeyError):
            print(f"fake engine: ignoring stdin line {line.strip()!r}", file=sys.stderr, flush=True)
            continue
        if kind == protocol.PING:
            out.message(protocol.make(protocol.PONG))
        elif kind == protocol.CANCEL:
            print("fake engine: cancel received", file=sys.stderr, flush=True)
            if mode == "ignore-cancel":
                continue
            if session is not None:
                session.cancel(str(request.get("id") or ""), cancelled)
                if not request.get("id"):
                    session.requests.put({"type": protocol.CANCEL})
            else:
                cancelled.set()
        elif session is not None:
            session.requests.put(request)
    if session is not None:
        session.requests.put(EOF_REQUEST)


def finish_cancelled(out: Output, step: int) -> int:
    out.message(protocol.log("Cancelled; saving what was done so far", level="warning"))
    out.message(protocol.result({"status": "cancelled", "steps": step}))
    return CANCELLED_EXIT


def replay(out: Output, messages: list[dict], args: argparse.Namespace, cancelled: threading.Event) -> int:
    step = 0
    for index, message in enumerate(messages):
        if cancelled.is_set() and index > 0:  # like the real engine, hello always comes first
            return finish_cancelled(out, step)
        step = int(message.get("current", step)) if message.get("type") == protocol.PROGRESS else step
        write_message(out, message, args.mode, last=index == len(messages) - 1)
        if args.delay:
            cancelled.wait(args.delay)
    if cancelled.is_set():
        return finish_cancelled(out, step)
    return exit_code_for(messages, args.exit_code)


def is_directive(line: dict) -> bool:
    return "fake" in line and "type" not in line


def with_id(message: dict, request_id: str) -> dict:
    """The message with ``"$id"`` placeholders replaced by the awaited request's id."""
    message = dict(message)
    if message.get("id") == "$id":
        message["id"] = request_id
    if isinstance(message.get("data"), dict) and message["data"].get("id") == "$id":
        message["data"] = {**message["data"], "id": request_id}
    return message


def cancelled_result(request_id: str, pieces: list[str]) -> dict:
    return protocol.result({"id": request_id, "text": "".join(pieces), "finish_reason": "cancelled",
                            "prompt_tokens": 0, "completion_tokens": len(pieces), "ttft_s": None,
                            "tokens_per_s": None, "model": "default", "adapter": ""})


def await_request(session: Session, wanted: str) -> dict | None:
    """The next request of type ``wanted``; None when stdin closed or shutdown was asked."""
    while True:
        request = session.requests.get()
        if request is EOF_REQUEST or request.get("type") == "shutdown":
            return None
        if request.get("type") == wanted:
            return request
        print(f"fake engine: no block for a {request.get('type')!r} request", file=sys.stderr, flush=True)


def replay_session(out: Output, lines: list[dict], args: argparse.Namespace, cancelled: threading.Event,
                   session: Session) -> int:
    """Replays a session transcript block by block, each block after the request it answers."""
    request_id, pieces, skipping = "", [], False
    for index, line in enumerate(lines):
        if is_directive(line) and line["fake"] == "exit":
            return int(line.get("code", 0))
        if is_directive(line):
            if line["fake"] != AWAIT:
                raise SystemExit(f"fake engine: unknown directive {line!r}")
            request = await_request(session, str(line.get("request", "generate")))
            if request is None:
                return 0
            request_id, pieces = str(request.get("id") or ""), []
            with session.lock:
                session.current_id = request_id
                cancelled.clear()
                skipping = request_id in session.cancelled_ids
            if skipping:
                out.message(cancelled_result(request_id, pieces))
            continue
        if skipping:
            continue
        if cancelled.is_set() and request_id:
            out.message(cancelled_result(request_id, pieces))
            skipping = True
            continue
        message = with_id(line, request_id)
        if message.get("type") == protocol.TOKEN:
            pieces.append(str(message.get("text", "")))
        write_message(out, message, args.mode, last=index == len(lines) - 1)
        if args.delay and message.get("type") != protocol.HELLO:
            cancelled.wait(args.delay)
    return exit_code_for([m for m in lines if not is_directive(m) and "id" not in m], args.exit_code)


def write_message(out: Output, message: dict, mode: str, last: bool) -> None:
    line = protocol.encode(message)
    if mode == "hostile" and message.get("type") != protocol.HELLO and not out.hostile_done:
        out.hostile_done = True
        out.write(
            '{"type": "log", "t": 0, "level": "info", "message": "' + "x" * (protocol.MAX_LINE_BYTES + 10) + '"}\n'
        )
        out.write('{"type": "log", "t": 0, "level": "info", "message": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
        out.write(line[: len(line) // 2] + "\n")
    if mode == "die-mid-line":
        out.sent += 1
        if out.sent == 4:
            out.write(line[: len(line) // 2])
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    if mode == "garbage":
        out.write("this line is not JSON at all\n")
        out.write('{"type": "progress", "current": \n')
    if mode == "split":
        middle = len(line) // 2
        out.write(line[:middle], pause=0.02)
        out.write(line[middle:-1] if last else line[middle:])
        return
    out.write(line)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    messages = load_transcript(args.transcript, args.mode)
    out = Output()
    cancelled = threading.Event()
    session = Session() if any(is_directive(m) for m in messages) else None
    threading.Thread(target=watch_stdin, args=(out, cancelled, args.mode, session), daemon=True).start()
    print(f"fake engine: replaying {args.transcript.name} ({len(messages)} messages)", file=sys.stderr, flush=True)
    if session is not None:
        code = replay_session(out, messages, args, cancelled, session)
    else:
        code = replay(out, messages, args, cancelled)
    print(f"fake engine: last stderr line before exit {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
