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

The exit code is ``--exit`` when given, else the code of the last error message in the
transcript, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import protocol  # noqa: E402

CANCELLED_EXIT = int(protocol.ExitCode.CANCELLED)
MODES = ("normal", "garbage", "split", "wrong-protocol", "ignore-cancel")


class Output:
    """stdout shared by the replay loop and the stdin thread; one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

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
    args, _engine_args = parser.parse_known_args(argv)
    return args


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


def watch_stdin(out: Output, cancelled: threading.Event, mode: str) -> None:
    for line in sys.stdin:
        try:
            kind = protocol.decode(line)["type"]
        except protocol.ProtocolError:
            print(f"fake engine: ignoring stdin line {line.strip()!r}", file=sys.stderr, flush=True)
            continue
        if kind == protocol.PING:
            out.message(protocol.make(protocol.PONG))
        elif kind == protocol.CANCEL:
            print("fake engine: cancel received", file=sys.stderr, flush=True)
            if mode != "ignore-cancel":
                cancelled.set()


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


def write_message(out: Output, message: dict, mode: str, last: bool) -> None:
    line = protocol.encode(message)
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
    threading.Thread(target=watch_stdin, args=(out, cancelled, args.mode), daemon=True).start()
    print(f"fake engine: replaying {args.transcript.name} ({len(messages)} messages)", file=sys.stderr, flush=True)
    code = replay(out, messages, args, cancelled)
    print(f"fake engine: last stderr line before exit {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
