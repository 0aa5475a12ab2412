"""`tunebench-engine serve`: a local OpenAI-compatible endpoint for one model ± adapter.

``/v1/chat/completions``, ``/v1/completions`` (streamed as server-sent events, or whole) and
``/v1/models``, on 127.0.0.1 only, behind a bearer token generated at start. Any OpenAI
client works with ``base_url=<url>`` and ``api_key=<token>``. Answers come from the same
decoder as the playground (engine/infer/decode.py), one at a time (a lock), so two clients never
share the KV cache. Beyond OpenAI's fields a request may carry ``top_k``, ``min_p`` and
``repetition_penalty``, as vLLM and llama.cpp's servers accept.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from engine.core import errors, protocol
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.infer import sampling
from engine.infer.session import ModelPool, _messages, prompt_ids, run_on, set_threads
from engine.runtime import device

log = logging.getLogger("engine.infer.serve")

FINISH = {"stop": "stop", "stop_string": "stop", "length": "length", "cancelled": "stop"}
MAX_BODY = 4 * 2**20


class Endpoint:
    """The served model and what a request needs to run on it."""

    def __init__(self, target: Any, token: str, stopping: threading.Event) -> None:
        self.target = target
        self.token = token
        self.stopping = stopping
        self.lock = threading.Lock()
        self.model_id = target.label

    def params(self, body: dict[str, Any]) -> sampling.SamplingParams:
        """OpenAI's names mapped onto the engine's sampling parameters (OpenAI's defaults)."""
        raw = {"temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
               "max_new_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or 256,
               "stop": body.get("stop") or [], "seed": body.get("seed")}
        for extra in ("top_k", "min_p", "repetition_penalty"):
            if body.get(extra) is not None:
                raw[extra] = body[extra]
        if body.get("n", 1) not in (1, None):
            raise errors.usage("n: only one choice per request is supported")
        return sampling.parse(raw)

    def run(self, ids: list[int], params: sampling.SamplingParams, on_piece: Callable[[str], None],
            gone: threading.Event) -> Any:

        stop = _Either(gone, self.stopping)
        with self.lock:
            return run_on(self.target, ids, params, 0, stop, lambda event: on_piece(event.text))


class _Either:
    """Cancelled when either event is set: the client went away, or the server is stopping."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": self.endpoint.model_id, "object": "model", "created": int(time.time()),
                 "owned_by": "tunebench"}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        route = self.path.rstrip("/")
        if route not in ("/v1/chat/completions", "/v1/completions"):
            self._error(404, f"no route {self.path}", "not_found")
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
        if body.get("stream"):
            self._stream(chat, ids, params)
        else:
            self._whole(chat, ids, params)

    # -- answers
    def _whole(self, chat: bool, ids: list[int], params: sampling.SamplingParams) -> None:
        outcome = self.endpoint.run(ids, params, lambda piece: None, threading.Event())
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
        self.end_headers()
        self.close_connection = True
        head = self._head(chat, stream=True)
        gone = threading.Event()

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
    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.endpoint.token}"
        if secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            return True
        self._error(401, "invalid or missing bearer token", "invalid_api_key")
        return False

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise errors.usage("Content-Length: not a number") from None
        if length <= 0 or length > MAX_BODY:
            raise errors.usage("body: expected a JSON object of at most 4 MiB")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.usage(f"body: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise errors.usage("body: expected a JSON object")
        return body

    def _json(self, status: int, data: dict[str, Any]) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, code: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "code": code, "param": None}})

    def _sse(self, data: str, gone: threading.Event) -> None:
        if gone.is_set():
            return
        try:
            self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
            self.wfile.flush()
        except OSError:  # the client hung up: stop generating for it
            gone.set()


def make_server(endpoint: Endpoint, port: int) -> ThreadingHTTPServer:
    handler = type("EndpointHandler", (Handler,), {"endpoint": endpoint})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def cmd_serve(args: argparse.Namespace, job: Job) -> int:

    if not 0 <= args.port <= 65535:
        raise errors.usage(f"port: must be 0 (any free port) to 65535, got {args.port}")
    set_threads(args.threads)
    pool = ModelPool(device.pick(args.device), max_models=1, int8=args.int8)
    target = pool.target(args.model or "", args.adapter,
                         lambda current, total: job.channel.send(protocol.progress(current, total,
                                                                                   stage="loading model")))
    token = secrets.token_urlsafe(24)
    endpoint = Endpoint(target, token, job.control.cancelled)
    try:
        server = make_server(endpoint, args.port)
    except OSError as exc:
        raise errors.usage(f"port: cannot listen on 127.0.0.1:{args.port} ({exc.strerror})") from None
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    log.info("Serving %s at %s (bearer token %s); cancel or Ctrl+C stops it", target.label, url, token)
    job.channel.send(protocol.result({"url": url, "token": token, "model": target.label,
                                      "adapter": args.adapter}))
    while not job.control.cancelled.wait(0.5):  # a timeout lets Ctrl+C's handler run
        pass
    server.shutdown()
    server.server_close()
    log.info("Stopped serving")
    return protocol.ExitCode.CANCELLED
