"""`tunebench-engine serve`: a local OpenAI-compatible endpoint for one model ± adapter.

``/v1/chat/completions``, ``/v1/completions`` (streamed as server-sent events, or whole) and
``/v1/models``, on 127.0.0.1 unless ``--host`` and ``--allow-remote`` say otherwise, behind a
bearer token generated at start. Any OpenAI client works with ``base_url=<url>`` and
``api_key=<token>``. Answers come from the same decoder as the playground
(engine/infer/decode.py), one at a time (a lock), so two clients never share the KV cache. Beyond
OpenAI's fields a request may carry ``top_k``, ``min_p`` and ``repetition_penalty``, as vLLM and
llama.cpp's servers accept. engine/infer/serve_guard.py holds the checks made before a request
reaches the model (Host, Origin, sizes, the queue); a client that hangs up stops its generation.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from engine.core import errors, protocol
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.infer import sampling, structured
from engine.infer.serve_guard import Admission, ClientGone, RequestGuard, remote_warning
from engine.infer.session import ModelPool, _messages, prompt_ids, run_on, set_threads
from engine.runtime import device

log = logging.getLogger("engine.infer.serve")

FINISH = {"stop": "stop", "stop_string": "stop", "length": "length", "cancelled": "stop"}
MAX_BODY = 4 * 2**20
DEFAULT_MAX_TOKENS = 256
IDLE_TIMEOUT_S = 60  # a connection that sends nothing for this long is closed (slow clients hold a thread)


class Endpoint:
    """The served model, its limits, and what a request needs to run on it."""

    def __init__(self, target: Any, token: str, stopping: threading.Event, guard: RequestGuard,
                 max_tokens: int, max_waiting: int) -> None:
        self.target = target
        self.token = token
        self.stopping = stopping
        self.guard = guard
        self.max_tokens = max_tokens
        self.admission = Admission(max_waiting)
        self.model_id = target.label

    def params(self, body: dict[str, Any]) -> sampling.SamplingParams:
        """OpenAI's names mapped onto the engine's sampling parameters (OpenAI's defaults)."""
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(asked, int) and asked > self.max_tokens:
            raise errors.usage(f"max_tokens: at most {self.max_tokens} on this server (serve --max-tokens), "
                               f"got {asked}")
        raw = {"temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
               "max_new_tokens": asked or min(DEFAULT_MAX_TOKENS, self.max_tokens),
               "stop": body.get("stop") or [], "seed": body.get("seed")}
        for extra in ("top_k", "min_p", "repetition_penalty"):
            if body.get(extra) is not None:
                raw[extra] = body[extra]
        if body.get("n", 1) not in (1, None):
            raise errors.usage("n: only one choice per request is supported")
        raw["json_schema"] = response_schema(body.get("response_format"))
        params = sampling.parse(raw)
        structured.check(params.json_schema, "response_format.json_schema.schema")
        return params

    def run(self, ids: list[int], params: sampling.SamplingParams, on_piece: Callable[[str], None],
            gone: ClientGone) -> Any:
        """Generates once the model is free (the caller was admitted); stops early if the client goes."""
        stop = _Either(gone, self.stopping)
        with self.admission.running:
            outcome = run_on(self.target, ids, params, 0, stop, lambda event: on_piece(event.text))
        if gone.is_set():
            log.info("The client went away: stopped its generation after %d tokens", outcome.completion_tokens)
        return outcome


class _Either:
    """Cancelled when either is set: the client went away, or the server is stopping."""

    def __init__(self, *events: Any) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def response_schema(fmt: Any) -> str:
    """OpenAI's ``response_format`` as the ``json_schema`` sampling parameter: "" for text, "any"
    for ``json_object``, the schema's text for ``json_schema`` (its ``strict`` is always honoured)."""
    if fmt is None:
        return ""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return ""
    if kind == "json_object":
        return sampling.ANY_JSON
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema", {}) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise errors.usage("response_format.json_schema.schema: must be a JSON Schema object")
        return json.dumps(schema)
    raise errors.usage("response_format.type: must be 'text', 'json_object' or 'json_schema'")


def chat_ids(tokenizer: Any, body: dict[str, Any]) -> list[int]:

    messages = body.get("messages")
    if isinstance(messages, list):
        messages = [dict(m, content=_content_text(m.get("content"))) if isinstance(m, dict) else m
                    for m in messages]
        messages = [dict(m, role="system") if isinstance(m, dict) and m.get("role") == "developer" else m
                    for m in messages]
    return prompt_ids(tokenizer, "chat", _messages(messages), "")


def _content_text(content: Any) -> Any:
    """OpenAI allows content as a list of parts; text parts are joined, others refused."""
    if not isinstance(content, list):
        return content
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        raise errors.usage("messages: only text content is supported")
    return "".join(str(p.get("text", "")) for p in content)


def completion_ids(tokenizer: Any, body: dict[str, Any]) -> list[int]:

    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise errors.usage("prompt: must be a string")
    return prompt_ids(tokenizer, "raw", [], prompt)


class Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint  # set on the subclass made per server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_OPTIONS(self) -> None:  # noqa: N802 (a browser's CORS preflight, sent without the token)
        if not self._addressed_to_us():
            return
        self.send_response(204)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not (self._addressed_to_us() and self._authorised()):
            return
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": self.endpoint.model_id, "object": "model", "created": int(time.time()),
                 "owned_by": "tunebench"}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802
        if not (self._addressed_to_us() and self._authorised()):
            return
        route = self.path.rstrip("/")
        if route not in ("/v1/chat/completions", "/v1/completions"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        if not self._body_size_ok():
            return
        try:
            body = self._body()
            chat = route == "/v1/chat/completions"
            tokenizer = self.endpoint.target.tokenizer
            ids = chat_ids(tokenizer, body) if chat else completion_ids(tokenizer, body)
            params = self.endpoint.params(body)
        except EngineError as exc:
            self._error(400, exc.message, "invalid_request_error")
            return
        if not self.endpoint.admission.try_enter():
            self._error(429, "the server is busy: too many requests waiting for the model; retry shortly "
                        "(serve --max-waiting)", "rate_limit_exceeded", retry_after=1)
            return
        try:
            (self._stream if body.get("stream") else self._whole)(chat, ids, params)
        finally:
            self.endpoint.admission.leave()

    # -- answers
    def _whole(self, chat: bool, ids: list[int], params: sampling.SamplingParams) -> None:
        gone = ClientGone(self.connection)
        outcome = self.endpoint.run(ids, params, lambda piece: None, gone)
        if gone.is_set():  # nobody to answer
            self.close_connection = True
            return
        reason = FINISH[outcome.finish_reason]
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": outcome.text},
                      "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": outcome.text, "finish_reason": reason, "logprobs": None}
        self._json(200, {**self._head(chat, stream=False), "choices": [choice], "usage": {
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}})

    def _stream(self, chat: bool, ids: list[int], params: sampling.SamplingParams) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self._cors_headers()
        self.end_headers()
        self.close_connection = True
        head = self._head(chat, stream=True)
        gone = ClientGone(self.connection)

        def event(delta: dict[str, Any] | str, reason: str | None) -> None:
            choice = ({"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None} if chat
                      else {"index": 0, "text": delta, "finish_reason": reason, "logprobs": None})
            self._sse(json.dumps({**head, "choices": [choice]}, ensure_ascii=False), gone)

        if chat:
            event({"role": "assistant", "content": ""}, None)

        def on_piece(piece: str) -> None:
            if piece:
                event({"content": piece} if chat else piece, None)

        outcome = self.endpoint.run(ids, params, on_piece, gone)
        event({} if chat else "", FINISH[outcome.finish_reason])
        self._sse("[DONE]", gone)

    def _head(self, chat: bool, stream: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
        prefix = "chatcmpl" if chat else "cmpl"
        return {"id": f"{prefix}-{secrets.token_hex(12)}", "object": kind, "created": int(time.time()),
                "model": self.endpoint.model_id}

    # -- plumbing
    def _addressed_to_us(self) -> bool:
        """Host names this server (DNS rebinding) and a browser's Origin was allowed (CORS)."""
        guard = self.endpoint.guard
        if not guard.host_ok(self.headers.get("Host")):
            self._error(403, f"Host {self.headers.get('Host')!r} is not an address this server answers to",
                        "host_not_allowed")
            return False
        if not guard.origin_ok(self.headers.get("Origin")):
            self._error(403, f"Origin {self.headers.get('Origin')!r} is not allowed (serve --allow-origin)",
                        "origin_not_allowed")
            return False
        return True

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.endpoint.token}"
        if hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            return True
        self._error(401, "invalid or missing bearer token", "invalid_api_key")
        return False

    def _body_size_ok(self) -> bool:
        """Refuses, before reading it, a body without a length or larger than MAX_BODY."""
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:
            self._error(411, "Content-Length: required, as a number of bytes", "length_required")
        elif length > MAX_BODY:
            self._error(413, f"body: {length} bytes is more than this server takes "
                        f"({MAX_BODY // 2**20} MiB)", "request_too_large")
        else:
            return True
        self._close_unread()
        return False

    def _close_unread(self) -> None:
        """Ends a connection whose body was not read, after the answer has gone out: closing a
        socket with unread input sends a TCP reset, which can destroy the answer before the client
        reads it, so the write side is shut first and some input drained (a lingering close)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            for _ in range(64):  # at most 4 MiB, or until a second passes without input
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers["Content-Length"])
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.usage(f"body: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise errors.usage("body: expected a JSON object")
        return body

    def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self._cors_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _cors_headers(self) -> None:
        """An allowed browser origin may read the answer; no Origin, no CORS headers."""
        origin = self.headers.get("Origin")
        if origin is not None and self.endpoint.guard.origin_ok(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _error(self, status: int, message: str, code: str, retry_after: int | None = None) -> None:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error")
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        self._json(status, {"error": {"message": message, "type": kind, "code": code, "param": None}}, headers)

    def _sse(self, data: str, gone: ClientGone) -> None:
        if gone.is_set():
            return
        try:
            self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
            self.wfile.flush()
        except OSError:  # the client hung up: stop generating for it
            gone.set()


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """Listens before the model loads, so a taken port fails at once; :func:`attach` adds the endpoint."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("EndpointServer", (ThreadingHTTPServer,), {"address_family": family,
                                                                    "daemon_threads": True})
    return server_class((host, port), type("EndpointHandler", (Handler,), {}))


def attach(server: ThreadingHTTPServer, endpoint: Endpoint) -> None:
    server.RequestHandlerClass.endpoint = endpoint  # type: ignore[attr-defined]


def url_of(host: str, port: int) -> str:
    """The address a client on this machine uses (the loopback one when listening on all addresses)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/v1"


def cmd_serve(args: argparse.Namespace, job: Job) -> int:

    if not 0 <= args.port <= 65535:
        raise errors.usage(f"port: must be 0 (any free port) to 65535, got {args.port}")
    warning = remote_warning(args.host, args.allow_remote, args.port)
    try:
        server = make_server(args.host, args.port)
    except OSError as exc:
        raise errors.usage(f"port: cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    port = server.server_address[1]
    guard = RequestGuard(args.host, port, args.allow_origin)
    if warning:
        log.warning("%s", warning)
    set_threads(args.threads)
    pool = ModelPool(device.pick(args.device), max_models=1, int8=args.int8, backend=args.backend,
                     threads=args.threads, context=args.context)
    target = pool.target(args.model or "", args.adapter,
                         lambda current, total: job.channel.send(protocol.progress(current, total,
                                                                                   stage="loading model")))
    token = secrets.token_urlsafe(32)
    attach(server, Endpoint(target, token, job.control.cancelled, guard, args.max_tokens, args.max_waiting))
    url = url_of(args.host, port)
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    log.info("Serving %s with %s at %s (bearer token %s); cancel or Ctrl+C stops it", target.label,
             target.backend, url, token)
    job.channel.send(protocol.result({"url": url, "token": token, "model": target.label,
                                      "adapter": args.adapter, "backend": target.backend}))
    while not job.control.cancelled.wait(0.5):  # a timeout lets Ctrl+C's handler run
        pass
    server.shutdown()
    server.server_close()
    log.info("Stopped serving")
    return protocol.ExitCode.CANCELLED
