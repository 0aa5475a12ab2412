"""Any OpenAI-compatible server (Ollama, LM Studio, llama-server, vLLM, Tunebench's own `serve`)
as a playground column or a batch configuration.

The session (engine/infer/session.py) and `batch` drive it like a local model: a request
streams text pieces and ends in the same result fields (text, finish_reason, token counts, time
to first token, tokens/s). The HTTP client is the official ``openai`` package. Every failure a
server or the network can cause (refused connection, 401, a timeout, an answer that is not
OpenAI's JSON) becomes an EngineError with one line that names the URL, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from engine.core import errors
from engine.infer.decode import Outcome
from engine.infer.sampling import SamplingParams

log = logging.getLogger("engine.infer.remote")

DEFAULT_TIMEOUT_S = 60.0  # a server that says nothing for this long is reported, not waited on
BACKEND = "server"  # what rows and results name as the backend of an answer from an OpenAI-compatible server
OnText = Callable[[str], None]


@dataclass(frozen=True)
class Server:
    """Where to send requests; the key travels only in memory (see gui/state/remote_keys.py)."""

    base_url: str
    api_key: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S


def normalise_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; a bare host gets ``/v1``, the
    path every OpenAI-compatible server serves (Ollama's and LM Studio's addresses are often
    given without it)."""
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port  # reading it checks the port: urlsplit alone accepts "host:abc"
    except ValueError:  # "http://[::1" or a port that is not a number
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.usage(f"base_url: must look like http://host:port/v1, not {url!r}")
    return url if parts.path else url + "/v1"


def server_of(fields: Any) -> Server:
    """A request's ``remote`` object ({base_url, api_key}) as a Server, or a USAGE error."""
    if not isinstance(fields, dict) or not isinstance(fields.get("base_url"), str):
        raise errors.usage("remote: expected {base_url, api_key} with base_url a string")
    key = fields.get("api_key") or ""
    if not isinstance(key, str):
        raise errors.usage("remote.api_key: must be a string")
    return Server(normalise_url(fields["base_url"]), key)


def list_models(server: Server) -> list[str]:
    """The ids the server's ``/v1/models`` lists, sorted."""
    try:
        return sorted(model.id for model in _client(server).models.list())
    except _failures() as exc:
        raise _one_line_error(server, exc) from None


def generate(server: Server, model: str, mode: str, messages: list[dict[str, str]], prompt: str,
             params: SamplingParams, cancelled: threading.Event, on_text: OnText | None) -> Outcome:
    """Streams one answer; ``on_text`` gets each piece as it arrives. Cancelling closes the
    stream, which is how a server learns to stop."""
    openai = _openai()
    if not model:
        raise errors.usage(f"model: pick one of the models {server.base_url} lists")
    client = _client(server)
    options = request_options(params)
    started = time.perf_counter()
    create = client.chat.completions.create if mode == "chat" else client.completions.create
    body = {"messages": messages} if mode == "chat" else {"prompt": prompt}
    try:
        try:
            # Asks for the token counts at the end of the stream (vLLM, Ollama, llama-server and
            # LM Studio send them); a server that refuses the field is asked again without it.
            stream = create(model=model, stream=True, stream_options={"include_usage": True}, **body, **options)
        except openai.BadRequestError:
            stream = create(model=model, stream=True, **body, **options)
        return _read_stream(stream, mode, started, cancelled, on_text)
    except _failures() as exc:
        raise _one_line_error(server, exc) from None


def request_options(params: SamplingParams) -> dict[str, Any]:
    """The sampling parameters every OpenAI-compatible server accepts. top_k, min_p and the
    repetition penalty are not OpenAI's, and some servers refuse unknown fields, so they stay
    local-only; a JSON Schema is out of scope for remote columns."""
    options: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                               "max_tokens": params.max_new_tokens}
    if params.seed is not None:
        options["seed"] = params.seed
    if params.stop:
        options["stop"] = list(params.stop)
    return options


def _read_stream(stream: Any, mode: str, started: float, cancelled: threading.Event,
                 on_text: OnText | None) -> Outcome:
    pieces: list[str] = []
    first: float | None = None
    reason, usage = "stop", None
    with stream:
        for chunk in stream:
            if cancelled.is_set():
                reason = "cancelled"
                break
            usage = getattr(chunk, "usage", None) or usage
            for choice in chunk.choices or []:
                piece = (choice.delta.content if mode == "chat" else choice.text) or ""
                if piece:
                    first = first or time.perf_counter()
                    pieces.append(piece)
                    if on_text:
                        on_text(piece)
                reason = choice.finish_reason or reason
    return _outcome(pieces, reason, usage, started, first)


def _outcome(pieces: list[str], reason: str, usage: Any, started: float, first: float | None) -> Outcome:
    """Token counts come from the server's usage when it sends one; otherwise each streamed piece
    counts as a token (servers stream one token per chunk) and the prompt's count is unknown."""
    completion = int(getattr(usage, "completion_tokens", 0) or len(pieces))
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    ended = time.perf_counter()
    rate = (completion - 1) / (ended - first) if first and completion > 1 and ended > first else 0.0
    reason = {"length": "length", "cancelled": "cancelled"}.get(reason, "stop")
    return Outcome("".join(pieces), reason, prompt_tokens, completion,
                   None if first is None else first - started, rate)


def _openai() -> Any:
    try:
        import openai  # heavy: only remote columns need it
    except ImportError:
        raise errors.missing_dependency("remote columns need the openai package (pip install openai)") from None
    # The client's retry notices are not the user's: the one-line error says what failed.
    logging.getLogger("openai").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return openai


def _failures() -> tuple[type[BaseException], ...]:
    """What a server or the network can make the client raise. A stream that breaks or stalls
    midway raises httpx's own errors, unwrapped; a malformed answer raises ValueError (bad JSON)
    or a TypeError/AttributeError on a field of the wrong shape."""
    return (_openai().OpenAIError, _transport().HTTPError, ValueError, TypeError, AttributeError)


def _transport() -> Any:
    """The HTTP library under the openai client: httpx2 from openai 3 on, httpx before."""
    try:
        import httpx2 as transport  # imported by openai already; only its name differs by version
    except ImportError:
        import httpx as transport  # openai 1 and 2
    return transport


@functools.lru_cache(maxsize=8)
def _client(server: Server) -> Any:
    """One client per server (and key) for the session's life: building a client per request
    added ~25 ms to the time to first token against a local `serve` (7 ms with this cache, 4 ms
    for the client used directly, medians of 9 requests of 64 tokens on a CPU)."""
    # An empty key would make the client refuse to start; local servers accept any.
    return _openai().OpenAI(base_url=server.base_url, api_key=server.api_key or "none",
                            timeout=server.timeout_s, max_retries=0)


def _one_line_error(server: Server, exc: Exception) -> errors.EngineError:
    """The failure as one line that names the URL."""
    httpx = _transport()
    openai = _openai()
    url = server.base_url
    if isinstance(exc, openai.AuthenticationError):
        return errors.invalid_input(f"{url}: 401 unauthorized: the server refused the API key")
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return errors.not_found(f"{url}: no answer within {server.timeout_s:g} s (timed out)")
    if isinstance(exc, openai.APIConnectionError):
        return errors.not_found(f"cannot reach {url}: {errors.one_line(exc.__cause__ or exc)}")
    if isinstance(exc, httpx.HTTPError):
        return errors.invalid_input(f"{url}: the connection broke mid-answer: {errors.one_line(exc)}")
    if isinstance(exc, openai.NotFoundError):
        return errors.not_found(f"{url}: 404 not found: {errors.one_line(_server_message(exc))}")
    if isinstance(exc, openai.APIStatusError):
        return errors.invalid_input(f"{url}: HTTP {exc.status_code}: {errors.one_line(_server_message(exc))}")
    return errors.invalid_input(f"{url}: the answer is not OpenAI-compatible JSON ({type(exc).__name__}: "
                                f"{errors.one_line(exc)})")


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return str(getattr(exc, "message", "") or exc)
