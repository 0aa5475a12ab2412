"""`serve`: the OpenAI-compatible endpoint, driven by the official `openai` client.

One real `tunebench-engine serve` process on the tiny model serves the whole module; the
client talks to it as any application would. A second one, with tight limits and one allowed
browser origin, is probed with `http.client` for what the endpoint must refuse: foreign Host
names (DNS rebinding), browser origins not allowed, oversized bodies and `max_tokens`, a full
queue, and a client that hangs up mid-stream.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from engine.core import protocol

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[dict[str, Any]]:
    yield from _serve(tiny_model_dir, tmp_path_factory)


def _serve(tiny_model_dir, tmp_path_factory, *flags: str) -> Iterator[dict[str, Any]]:
    """A real serve process; its log messages are collected in ``info["log"]`` as they come."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
               TUNEBENCH_HOME=str(tmp_path_factory.mktemp("home")))
    process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--json", "--device", "cpu",
                                "--model", str(tiny_model_dir), *flags], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = None
    for line in process.stdout:
        message = protocol.decode(line)
        if message["type"] == "result":
            info = message["data"]
            break
        assert message["type"] != "error", message
    assert info and info["url"].startswith("http://127.0.0.1:")
    logs: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_collect_logs, args=(process.stdout, logs), daemon=True).start()
    yield {**info, "process": process, "log": logs, "port": urlsplit(info["url"]).port}
    if process.poll() is None:
        process.stdin.write(protocol.encode(protocol.make("cancel")))
        process.stdin.flush()
        process.wait(timeout=60)


def _collect_logs(stdout: Any, logs: queue.Queue[str]) -> None:
    for line in stdout:
        message = protocol.decode(line)
        if message["type"] == "log":
            logs.put(message["message"])


def client(server: dict[str, Any], token: str | None = None) -> Any:
    return openai.OpenAI(base_url=server["url"], api_key=token or server["token"], max_retries=0, timeout=120)


def test_chat_completion_whole(server) -> None:
    answer = client(server).chat.completions.create(
        model=server["model"], messages=[{"role": "user", "content": "Is the kettle good?"}],
        temperature=0, max_tokens=8)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert 0 < answer.usage.completion_tokens <= 8 and answer.usage.prompt_tokens > 0


def test_chat_completion_streamed_adds_up_to_the_whole_answer(server) -> None:
    args = dict(model=server["model"], messages=[{"role": "user", "content": "hello"}], temperature=0,
                max_tokens=10)
    whole = client(server).chat.completions.create(**args).choices[0].message.content
    chunks = list(client(server).chat.completions.create(stream=True, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len(chunks) >= 3


def test_completions_whole_and_streamed(server) -> None:
    args = dict(model=server["model"], prompt="The kettle", temperature=0, max_tokens=6)
    whole = client(server).completions.create(**args)
    assert whole.choices[0].finish_reason in ("stop", "length")
    streamed = list(client(server).completions.create(stream=True, **args))
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_seed_and_stop_are_honoured(server) -> None:
    args = dict(model=server["model"], prompt="The kettle", temperature=1.2, max_tokens=12, seed=4)
    first = client(server).completions.create(**args).choices[0].text
    assert client(server).completions.create(**args).choices[0].text == first
    greedy = client(server).completions.create(model=server["model"], prompt="The kettle", temperature=0,
                                                max_tokens=12).choices[0].text
    stop = greedy[2:4]
    cut = client(server).completions.create(model=server["model"], prompt="The kettle", temperature=0,
                                             max_tokens=12, stop=[stop]).choices[0].text
    assert cut == greedy[:greedy.find(stop)]


def test_models_lists_the_served_model(server) -> None:
    assert [m.id for m in client(server).models.list()] == [server["model"]]


def test_a_wrong_token_is_refused(server) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(server, token="not-the-token").chat.completions.create(
            model=server["model"], messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    request = urllib.request.Request(server["url"] + "/models")  # no Authorization header at all
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 401


def test_a_bad_request_is_a_400_with_a_reason(server) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client(server).chat.completions.create(model=server["model"], temperature=-3,
                                               messages=[{"role": "user", "content": "hi"}])
    request = urllib.request.Request(server["url"] + "/chat/completions", data=b"{nope", method="POST",
                                     headers={"Authorization": f"Bearer {server['token']}",
                                              "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and "not JSON" in json.loads(caught.value.read())["error"]["message"]


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "mood", "age"],
          "properties": {"name": {"type": "string", "maxLength": 12}, "mood": {"enum": ["happy", "sad"]},
                         "age": {"type": "integer"}}}


def test_response_format_json_schema_gives_schema_valid_json(server) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in range(3):
        answer = client(server).chat.completions.create(
            model=server["model"], messages=[{"role": "user", "content": "a person"}], seed=seed,
            max_tokens=150, response_format=fmt)
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", choice
        value = json.loads(choice.message.content)
        assert set(value) == {"name", "mood", "age"} and value["mood"] in ("happy", "sad")
        assert isinstance(value["age"], int) and not isinstance(value["age"], bool)
        assert isinstance(value["name"], str) and len(value["name"]) <= 12
    streamed = client(server).chat.completions.create(
        model=server["model"], messages=[{"role": "user", "content": "hi"}], seed=1, max_tokens=150,
        response_format={"type": "json_object"}, stream=True)
    assert isinstance(json.loads("".join(c.choices[0].delta.content or "" for c in streamed)), dict)


def test_a_bad_response_format_is_a_one_line_400(server) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integr"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(model=server["model"], response_format=bad,
                                               messages=[{"role": "user", "content": "hi"}])
    message = caught.value.body["message"]
    assert message == "response_format.json_schema.schema: not a usable JSON Schema: Invalid type: integr"
    with pytest.raises(openai.BadRequestError, match="response_format.type"):
        client(server).chat.completions.create(model=server["model"], response_format={"type": "yaml"},
                                               messages=[{"role": "user", "content": "hi"}])


def test_cancel_stops_the_server_with_the_cancelled_code(server) -> None:
    process = server["process"]
    process.stdin.write(protocol.encode(protocol.make("cancel")))
    process.stdin.flush()
    assert process.wait(timeout=60) == protocol.ExitCode.CANCELLED


# -- what the endpoint refuses ---------------------------------------------------------------

GUARDED_MAX_TOKENS = 2000
ALLOWED_ORIGIN = "http://app.example:3000"


@pytest.fixture(scope="module")
def guarded(tiny_model_dir, tmp_path_factory) -> Iterator[dict[str, Any]]:
    yield from _serve(tiny_model_dir, tmp_path_factory, "--max-waiting", "0", "--max-tokens",
                      str(GUARDED_MAX_TOKENS), "--allow-origin", ALLOWED_ORIGIN, "--threads", "1")


def call(server: dict[str, Any], method: str = "GET", path: str = "/v1/models", body: Any = None,
         headers: dict[str, str] | None = None, token: bool = True) -> tuple[int, Any, Any]:
    """One request with http.client: (status, headers, JSON body or None)."""
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    sent = {"Authorization": f"Bearer {server['token']}"} if token else {}
    payload = json.dumps(body).encode() if body is not None else None
    if payload is not None:
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    try:
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


def test_the_token_is_long_and_random(guarded, server) -> None:
    assert len(guarded["token"]) >= 40 and guarded["token"] != server["token"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}",
                                  "10.0.0.5:{port}", ""])
def test_a_foreign_host_header_is_refused_even_with_the_token(guarded, host) -> None:
    status, _, answer = call(guarded, headers={"Host": host.format(port=guarded["port"])})
    assert status == 403 and answer["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_loopback_host_headers_are_answered(guarded, host) -> None:
    status, _, answer = call(guarded, headers={"Host": host.format(port=guarded["port"])})
    assert status == 200 and answer["data"][0]["id"] == guarded["model"]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://app.example:3001", "http://localhost"])
def test_a_browser_origin_not_allowed_is_refused(guarded, origin) -> None:
    status, headers, answer = call(guarded, headers={"Origin": origin})
    assert status == 403 and answer["error"]["code"] == "origin_not_allowed"
    assert headers.get("Access-Control-Allow-Origin") is None
    status, headers, _ = call(guarded, "OPTIONS", token=False, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert status == 403 and headers.get("Access-Control-Allow-Origin") is None


def test_an_allowed_origin_gets_cors_for_itself_only(guarded) -> None:
    status, headers, _ = call(guarded, "OPTIONS", token=False, headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, answer = call(guarded, headers={"Origin": ALLOWED_ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    status, _, _ = call(guarded, headers={"Origin": ALLOWED_ORIGIN}, token=False)
    assert status == 401  # an allowed page still needs the token


def test_a_request_without_origin_gets_no_cors_headers(guarded) -> None:
    status, headers, _ = call(guarded)
    assert status == 200 and headers.get("Access-Control-Allow-Origin") is None


def test_an_oversized_body_is_refused_before_it_is_read(guarded) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", guarded["port"], timeout=30)
    connection.putrequest("POST", "/v1/completions")
    for name, value in {"Authorization": f"Bearer {guarded['token']}", "Content-Type": "application/json",
                        "Content-Length": str(64 * 2**20)}.items():
        connection.putheader(name, value)
    connection.endheaders(b'{"prompt": "')  # 64 MiB announced, a few bytes sent
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and answer["error"]["code"] == "request_too_large"


def test_a_body_without_a_length_is_refused(guarded) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", guarded["port"], timeout=30)
    connection.request("POST", "/v1/completions", body=iter([b'{"prompt": "hi"}']), encode_chunked=True,
                       headers={"Authorization": f"Bearer {guarded['token']}", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 411


def test_max_tokens_above_the_server_limit_is_a_400(guarded) -> None:
    with pytest.raises(openai.BadRequestError, match="max_tokens: at most 2000"):
        client(guarded).completions.create(model=guarded["model"], prompt="hi",
                                           max_tokens=GUARDED_MAX_TOKENS + 1)
    status, _, answer = call(guarded, "POST", "/v1/chat/completions", body={
        "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 10**9})
    assert status == 400 and "max_tokens" in answer["error"]["message"]


def _drain(logs: queue.Queue[str]) -> list[str]:
    lines = []
    while not logs.empty():
        lines.append(logs.get_nowait())
    return lines


def test_a_full_queue_is_a_429_and_a_client_that_hangs_up_stops_its_generation(guarded) -> None:
    _drain(guarded["log"])
    stream = http.client.HTTPConnection("127.0.0.1", guarded["port"], timeout=60)
    stream.request("POST", "/v1/completions", body=json.dumps({
        "prompt": "The kettle", "temperature": 0, "max_tokens": GUARDED_MAX_TOKENS, "stream": True}),
        headers={"Authorization": f"Bearer {guarded['token']}", "Content-Type": "application/json"})
    response = stream.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")  # generating now

    status, headers, answer = call(guarded, "POST", "/v1/completions",
                                   body={"prompt": "hi", "max_tokens": 2})  # --max-waiting 0: no room
    assert status == 429 and answer["error"]["code"] == "rate_limit_exceeded" and headers["Retry-After"]

    response.close()
    stream.close()  # hang up mid-stream
    deadline = time.monotonic() + 60
    stopped = None
    while stopped is None and time.monotonic() < deadline:
        try:
            line = guarded["log"].get(timeout=1)
        except queue.Empty:
            continue
        if "client went away" in line:
            stopped = line
    assert stopped, "the server did not stop the generation of a client that hung up"
    tokens = int(stopped.split("after ")[1].split()[0])
    assert tokens < GUARDED_MAX_TOKENS
    status, _, answer = call(guarded, "POST", "/v1/completions", body={"prompt": "hi", "max_tokens": 2})
    assert status == 200 and answer["usage"]["completion_tokens"] <= 2


def test_a_whole_answer_also_stops_when_its_client_hangs_up(guarded) -> None:
    _drain(guarded["log"])
    connection = http.client.HTTPConnection("127.0.0.1", guarded["port"], timeout=60)
    connection.request("POST", "/v1/completions", body=json.dumps({
        "prompt": "The kettle", "temperature": 0, "max_tokens": GUARDED_MAX_TOKENS}),
        headers={"Authorization": f"Bearer {guarded['token']}", "Content-Type": "application/json"})
    time.sleep(0.3)
    connection.close()  # before the answer: nothing is ever written to this client
    line = guarded["log"].get(timeout=60)
    assert "client went away" in line and int(line.split("after ")[1].split()[0]) < GUARDED_MAX_TOKENS


def _engine(tmp_path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TUNEBENCH_HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "engine", "serve", "--device", "cpu", *flags], env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_non_loopback_host_needs_allow_remote(tmp_path) -> None:
    done = _engine(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == protocol.ExitCode.USAGE
    assert "--allow-remote" in done.stderr and "Traceback" not in done.stderr


def test_allow_remote_prints_a_warning(tmp_path) -> None:
    done = _engine(tmp_path, "--host", "0.0.0.0", "--allow-remote", "--model", str(tmp_path / "no-such-model"))
    assert "not loopback" in done.stderr and "plain HTTP" in done.stderr  # warned before the model loads


def test_a_wildcard_origin_is_refused(tmp_path) -> None:
    done = _engine(tmp_path, "--allow-origin", "*")
    assert done.returncode == protocol.ExitCode.USAGE and "allow-origin" in done.stderr
