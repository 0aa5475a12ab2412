"""Remote columns: a real `session` process streams from a real `serve` (Tunebench's own
OpenAI-compatible server on 127.0.0.1, tiny model) as it would from Ollama or vLLM.

Checked: the model list, a streamed answer equal to what serve returns to the official client,
stop strings, a bad key and a server that is down as one-line errors naming the URL.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest
from served import serving

from engine.core import protocol

openai = pytest.importorskip("openai")

CHAT = [{"role": "user", "content": "Is the kettle good?"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[dict[str, Any]]:
    with serving(tiny_model_dir, tmp_path_factory.mktemp("serve-home")) as info:
        yield info


def session(engine_argv, engine_env, *requests: dict[str, Any], flags: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every message a real session process sends for ``requests`` (then shutdown)."""
    lines = "".join(protocol.encode(protocol.make(r.pop("type"), **r)) for r in requests)
    lines += protocol.encode(protocol.make("shutdown"))
    done = subprocess.run(engine_argv("session", "--json", "--device", "cpu", *flags), input=lines, env=engine_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [protocol.decode(line) for line in done.stdout.splitlines()]


def of(messages: list[dict[str, Any]], rid: str, kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("id") == rid and m["type"] == kind]


def remote(server: dict[str, Any], key: str | None = None) -> dict[str, str]:
    return {"base_url": server["url"], "api_key": server["token"] if key is None else key}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_models_streamed_chat_raw_and_stop_strings(server, engine_argv, engine_env) -> None:
    direct = openai.OpenAI(base_url=server["url"], api_key=server["token"], max_retries=0)
    whole = direct.chat.completions.create(model=server["model"], messages=CHAT, temperature=0,
                                           max_tokens=12).choices[0].message.content
    raw_whole = direct.completions.create(model=server["model"], prompt="The kettle", temperature=0,
                                          max_tokens=12).choices[0].text
    stop = raw_whole[2:4]
    params = {"temperature": 0, "max_new_tokens": 12}
    messages = session(
        engine_argv, engine_env,
        {"type": "models", "id": "m", "remote": remote(server)},
        {"type": "generate", "id": "c", "model": server["model"], "mode": "chat", "messages": CHAT,
         "params": params, "remote": remote(server)},
        {"type": "generate", "id": "s", "model": server["model"], "mode": "raw", "prompt": "The kettle",
         "params": {**params, "stop": [stop]}, "remote": remote(server)})
    assert of(messages, "m", "result")[0]["data"]["models"] == [server["model"]]
    chat = of(messages, "c", "result")[0]["data"]
    tokens = of(messages, "c", "token")
    assert chat["text"] == whole and "".join(t["text"] for t in tokens) == whole and len(tokens) >= 2
    assert chat["finish_reason"] in ("stop", "length") and chat["ttft_s"] is not None and chat["ttft_s"] > 0
    assert chat["completion_tokens"] == len(tokens) and chat["tokens_per_s"] > 0
    assert chat["model"] == server["model"] and chat["base_url"] == server["url"]
    assert of(messages, "s", "result")[0]["data"]["text"] == raw_whole[:raw_whole.find(stop)]


def test_a_bad_key_and_a_server_that_is_down_are_one_line_errors(server, engine_argv, engine_env) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    messages = session(
        engine_argv, engine_env,
        {"type": "models", "id": "k", "remote": remote(server, key="wrong")},
        {"type": "generate", "id": "g", "model": server["model"], "mode": "chat", "messages": CHAT,
         "remote": remote(server, key="wrong")},
        {"type": "generate", "id": "d", "model": "x", "mode": "chat", "messages": CHAT,
         "remote": {"base_url": down}},
        {"type": "models", "id": "u", "remote": {"base_url": "ftp://nowhere"}})
    for rid in ("k", "g"):
        error = of(messages, rid, "error")[0]["message"]
        assert error == f"{server['url']}: 401 unauthorized: the server refused the API key"
    error = of(messages, "d", "error")[0]["message"]
    assert error.startswith(f"cannot reach {down}") and "\n" not in error and "Traceback" not in error
    assert "base_url" in of(messages, "u", "error")[0]["message"]


def test_batch_runs_a_configuration_that_names_a_server(server, tmp_path, engine_argv, engine_env) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"q": "Is the kettle good?"}\n{"q": "hello"}\n', encoding="utf-8")
    configs = tmp_path / "configs.toml"
    configs.write_text(f'[[config]]\nname = "served"\nbase_url = "{server["url"]}"\nmodel = "{server["model"]}"\n'
                       'api_key_env = "SERVED_KEY"\nparams = {max_new_tokens = 8}\n'
                       f'[[config]]\nname = "wrong key"\nbase_url = "{server["url"]}"\nmodel = "{server["model"]}"\n',
                       encoding="utf-8")
    env = dict(engine_env, SERVED_KEY=server["token"])
    done = subprocess.run(engine_argv("batch", "--json", "--file", str(prompts), "--column", "q", "--config",
                                      str(configs)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [m["row"] for m in map(protocol.decode, done.stdout.splitlines()) if "row" in m]
    direct = openai.OpenAI(base_url=server["url"], api_key=server["token"], max_retries=0)
    served = [r for r in rows if r["config"] == "served"]
    assert [r["text"] for r in served] == [direct.chat.completions.create(
        model=server["model"], messages=[{"role": "user", "content": q}], temperature=0,
        max_tokens=8).choices[0].message.content for q in ("Is the kettle good?", "hello")]
    assert all(r["tokens_per_s"] is not None and r["model"] == server["model"] for r in served)
    assert {r["error"] for r in rows if r["config"] == "wrong key"} == {
        f"{server['url']}: 401 unauthorized: the server refused the API key"}
    assert server["token"] not in done.stdout  # the key is never recorded


class Broken(http.server.BaseHTTPRequestHandler):
    """A server that is not OpenAI-compatible: /v1/models answers HTML, a completion never comes."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's API)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"<html>not json</html>")

    def do_POST(self) -> None:  # noqa: N802
        time.sleep(5)  # past the session's --remote-timeout 1

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_bad_json_and_a_silent_server_are_one_line_errors(broken, engine_argv, engine_env) -> None:
    messages = session(
        engine_argv, engine_env,
        {"type": "models", "id": "j", "remote": {"base_url": broken}},
        {"type": "generate", "id": "t", "model": "m", "mode": "chat", "messages": CHAT, "remote": {"base_url": broken}},
        flags=("--remote-timeout", "1"))
    bad_json = of(messages, "j", "error")[0]["message"]
    assert bad_json.startswith(f"{broken}: the answer is not OpenAI-compatible JSON") and "\n" not in bad_json
    assert of(messages, "t", "error")[0]["message"] == f"{broken}: no answer within 1 s (timed out)"


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:port/v1", "ftp://127.0.0.1/v1", "127.0.0.1:8000"])
def test_a_malformed_base_url_is_one_usage_line(url: str) -> None:
    from engine.core.errors import EngineError
    from engine.infer import remote

    with pytest.raises(EngineError) as caught:
        remote.normalise_url(url)
    assert caught.value.code == protocol.ExitCode.USAGE and caught.value.message.startswith("base_url:")
