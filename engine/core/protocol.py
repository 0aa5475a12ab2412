"""The wire protocol between the engine and anything that drives it (the GUI, tests, scripts).

Standard library only: the GUI imports this module and must never pull in torch.

Shape: newline-delimited JSON on the engine's stdout, one message per line, every message a
JSON object with a ``type`` field and a ``t`` timestamp (seconds since the epoch). The first
message of every engine process is ``hello``. Towards the engine (on its stdin) jobs take
``cancel`` and ``ping``. A line that is not a valid message is reported as a ``ProtocolError`` by
:func:`decode`; readers log it and carry on, it is never fatal.

The playground session (``tunebench-engine session``, engine/infer/session.py) also takes
``generate`` (needs an ``id``; model, adapter, mode chat|raw, messages or prompt, params,
top_logprobs; or ``remote`` {base_url, api_key} with the server's model, to stream from an
OpenAI-compatible server instead, engine/infer/remote.py), ``models`` (needs an ``id`` and
``remote``; answered by a result whose data has ``models``, the ids the server lists),
``unload`` (free every loaded model) and ``shutdown`` (exit 0); its ``cancel``
may carry the ``id`` of one request (without one it cancels the current and every queued
request). Its token/progress/result/error messages carry the request ``id``; a token has
``index``, ``logprob`` (natural log) and, when asked for, ``top`` [[text, probability], ...];
a result's data has text, finish_reason (stop|length|stop_string|cancelled), prompt_tokens,
completion_tokens, ttft_s, tokens_per_s, model and adapter. docs/architecture.md describes the protocol
as a whole.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Any, Iterable, Iterator

from engine.core import untrusted

PROTOCOL_VERSION = 1
# The longest message line either side reads; a longer one is a ProtocolError, and readers drop
# its bytes as they arrive instead of buffering them (a result of a few thousand rows is ~1 MB).
MAX_LINE_BYTES = 16 * 1024 * 1024

# Messages the engine sends.
HELLO = "hello"
LOG = "log"
PROGRESS = "progress"
METRICS = "metrics"
TOKEN = "token"
ARTIFACT = "artifact"
RESULT = "result"
ERROR = "error"
PONG = "pong"
# Messages sent to the engine.
CANCEL = "cancel"
PING = "ping"
GENERATE = "generate"  # session only, like the three below
MODELS = "models"
UNLOAD = "unload"
SHUTDOWN = "shutdown"

ENGINE_TO_CLIENT = frozenset({HELLO, LOG, PROGRESS, METRICS, TOKEN, ARTIFACT, RESULT, ERROR, PONG})
CLIENT_TO_ENGINE = frozenset({CANCEL, PING, GENERATE, MODELS, UNLOAD, SHUTDOWN})

# Fields each message type must carry (beyond "type" and "t").
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    HELLO: ("protocol", "engine_version", "command"),
    LOG: ("level", "message"),
    PROGRESS: ("current", "total"),
    METRICS: ("step", "values"),
    TOKEN: ("text",),
    ARTIFACT: ("kind", "path"),
    RESULT: ("data",),
    ERROR: ("code", "message"),
    PONG: (),
    CANCEL: (),
    PING: (),
    GENERATE: ("id",),
    MODELS: ("id", "remote"),
    UNLOAD: (),
    SHUTDOWN: (),
}


class ExitCode(enum.IntEnum):
    """Exit codes of every engine process. Only these integers cross the process boundary."""

    OK = 0
    FAILED = 1  # an unexpected internal error; the stderr log has the traceback
    USAGE = 2  # bad command line or configuration value (argparse uses 2 too)
    INVALID_INPUT = 3  # the input data has rows or fields that cannot be used
    NOT_FOUND = 4  # a file, folder, model or dataset that does not exist
    MISSING_DEPENDENCY = 5  # a package or device the job needs is not installed or present
    OUT_OF_MEMORY = 6  # the device ran out of memory
    CANCELLED = 7  # stopped on request; what was done so far is saved
    PROTOCOL = 8  # the engine and its client do not speak the same protocol


EXIT_MESSAGES: dict[int, str] = {
    ExitCode.OK: "finished",
    ExitCode.FAILED: "failed with an internal error (see the engine log)",
    ExitCode.USAGE: "was given an invalid option or configuration value",
    ExitCode.INVALID_INPUT: "found invalid rows or fields in its input",
    ExitCode.NOT_FOUND: "could not find a file, model or dataset it was given",
    ExitCode.MISSING_DEPENDENCY: "is missing a package or device it needs",
    ExitCode.OUT_OF_MEMORY: "ran out of memory",
    ExitCode.CANCELLED: "was cancelled; work done so far was saved",
    ExitCode.PROTOCOL: "speaks a different protocol version than this window",
}


def describe_exit(code: int) -> str:
    """A short human phrase for an exit code, e.g. for "The engine <phrase>."."""
    if code in EXIT_MESSAGES:
        return EXIT_MESSAGES[code]
    if code < 0 or code > 128:
        return f"was killed (exit code {code})"
    return f"exited with unknown code {code}"


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


def make(message_type: str, /, **fields: Any) -> dict[str, Any]:
    """Builds a message with a timestamp, checking its required fields are there."""
    if message_type not in REQUIRED_FIELDS:
        raise ProtocolError(f"unknown message type {message_type!r}")
    missing = [name for name in REQUIRED_FIELDS[message_type] if name not in fields]
    if missing:
        raise ProtocolError(f"{message_type} message is missing {', '.join(missing)}")
    return {"type": message_type, "t": round(time.time(), 3), **fields}


def hello(command: str, engine_version: str, **extra: Any) -> dict[str, Any]:
    return make(HELLO, protocol=PROTOCOL_VERSION, engine_version=engine_version, command=command, **extra)


def log(message: str, level: str = "info") -> dict[str, Any]:
    return make(LOG, level=level, message=message)


def progress(current: int, total: int, **extra: Any) -> dict[str, Any]:
    return make(PROGRESS, current=current, total=total, **extra)


def metrics(step: int, values: dict[str, float], **extra: Any) -> dict[str, Any]:
    return make(METRICS, step=step, values=values, **extra)


def token(text: str, **extra: Any) -> dict[str, Any]:
    return make(TOKEN, text=text, **extra)


def artifact(kind: str, path: str, **extra: Any) -> dict[str, Any]:
    return make(ARTIFACT, kind=kind, path=path, **extra)


def result(data: dict[str, Any]) -> dict[str, Any]:
    return make(RESULT, data=data)


def error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return make(ERROR, code=int(code), message=message, **extra)


def encode(message: dict[str, Any]) -> str:
    """One message as one line of JSON, newline included. json.dumps escapes any newline
    inside strings, so a message can never span two lines."""
    kind = message.get("type")
    if kind not in REQUIRED_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}")
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """Parses one line into a message, or raises ProtocolError saying what is wrong with it."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"a line of {len(line)} bytes, over the {MAX_LINE_BYTES} limit")
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")
    try:
        message = untrusted.json_loads(text)
    except untrusted.InputError as exc:  # also too deep, NaN, duplicate keys, lone surrogates
        raise ProtocolError(f"not JSON ({exc}): {_clip(text)}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {_clip(text)}")
    kind = message.get("type")
    if kind not in REQUIRED_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}: {_clip(text)}")
    missing = [name for name in REQUIRED_FIELDS[kind] if name not in message]
    if missing:
        raise ProtocolError(f"{kind} message is missing {', '.join(missing)}: {_clip(text)}")
    return message


def read_lines(stream: Iterable[str]) -> Iterator[str]:
    """Lines of a text stream (stdin) for :func:`decode`, a line over MAX_LINE_BYTES replaced by
    a placeholder that decode refuses, so a reader never holds one."""
    readline = getattr(stream, "readline", None)
    if readline is None:  # a list of lines (tests)
        yield from stream
        return
    for line in untrusted.bounded_lines(stream, MAX_LINE_BYTES):  # type: ignore[arg-type]
        yield line if isinstance(line, str) else "(a line over the limit)"


def check_hello(message: dict[str, Any]) -> None:
    """Raises ProtocolError unless ``message`` is a hello this side can talk to."""
    if message.get("type") != HELLO:
        raise ProtocolError(f"expected hello first, got {message.get('type')!r}")
    if message.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"engine speaks protocol {message.get('protocol')}, this side speaks {PROTOCOL_VERSION}"
        )


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
