"""The tiny model as a GGUF file behind two OpenAI-compatible servers on 127.0.0.1:

- Tunebench's own `serve`, which runs a .gguf model with llama.cpp: the official `openai` client
  gets answers, streamed and whole, and ``response_format`` (a schema, and any JSON) holds;
- llama-cpp-python's server, as a remote column of a real `session` and a `batch` configuration
  (what an analyst does with llama-server, Ollama or LM Studio).

Skipped, saying so, where llama-cpp-python (or its server's packages) is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any, Iterator

import pytest
from served import serving

from engine.core import protocol

from .test_remote import CHAT, free_port, of, session

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (installer/bootstrap.py setup builds it)")

PERSON = {"type": "object", "required": ["name", "mood", "age"], "additionalProperties": False,
          "properties": {"name": {"type": "string"}, "mood": {"enum": ["happy", "sad"]}, "age": {"type": "integer"}}}


@pytest.fixture(scope="module")
def tunebench_serve(tiny_gguf, tmp_path_factory) -> Iterator[dict[str, Any]]:
    with serving(tiny_gguf, tmp_path_factory.mktemp("serve-home")) as info:
        yield info


@pytest.fixture(scope="module")
def llama_server(tiny_gguf) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server packages are not installed")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--host",
                                "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--model_alias", "tiny"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama-cpp-python's server did not start")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_runs_a_gguf_model_with_llama_cpp_for_the_openai_client(tunebench_serve) -> None:
    assert tunebench_serve["backend"] == "llama.cpp"
    client = openai.OpenAI(base_url=tunebench_serve["url"], api_key=tunebench_serve["token"], max_retries=0)
    whole = client.chat.completions.create(model=tunebench_serve["model"], messages=CHAT, temperature=0,
                                           max_tokens=12).choices[0].message.content
    streamed = client.chat.completions.create(model=tunebench_serve["model"], messages=CHAT, temperature=0,
                                              max_tokens=12, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == whole and whole


def test_serve_response_format_holds_in_llama_cpp(tunebench_serve) -> None:
    client = openai.OpenAI(base_url=tunebench_serve["url"], api_key=tunebench_serve["token"], max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in range(10):
        choice = client.chat.completions.create(
            model=tunebench_serve["model"], messages=[{"role": "user", "content": "a person"}], seed=seed,
            max_tokens=300, response_format=fmt).choices[0]
        assert choice.finish_reason == "stop", choice
        value = json.loads(choice.message.content)
        assert set(value) == {"name", "mood", "age"} and value["mood"] in ("happy", "sad")
        assert isinstance(value["age"], int) and not isinstance(value["age"], bool)
    any_json = client.chat.completions.create(
        model=tunebench_serve["model"], messages=[{"role": "user", "content": "hi"}], seed=1, max_tokens=300,
        response_format={"type": "json_object"}).choices[0].message.content
    assert isinstance(json.loads(any_json), dict)


def test_llama_cpp_python_server_as_a_remote_column(llama_server, engine_argv, engine_env) -> None:
    direct = openai.OpenAI(base_url=llama_server, api_key="none", max_retries=0)
    whole = direct.chat.completions.create(model="tiny", messages=CHAT, temperature=0,
                                           max_tokens=10).choices[0].message.content
    remote = {"base_url": llama_server}
    messages = session(
        engine_argv, engine_env,
        {"type": "models", "id": "m", "remote": remote},
        {"type": "generate", "id": "c", "model": "tiny", "mode": "chat", "messages": CHAT,
         "params": {"temperature": 0, "max_new_tokens": 10}, "remote": remote})
    assert "tiny" in of(messages, "m", "result")[0]["data"]["models"]
    chat = of(messages, "c", "result")[0]["data"]
    tokens = of(messages, "c", "token")
    assert chat["text"] == whole and "".join(t["text"] for t in tokens) == whole
    assert chat["ttft_s"] is not None and chat["base_url"] == llama_server


def test_batch_runs_a_configuration_on_llama_cpp_python_server(llama_server, tmp_path, engine_argv,
                                                               engine_env) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"q": "Is the kettle good?"}\n{"q": "hello"}\n', encoding="utf-8")
    done = subprocess.run(engine_argv("batch", "--json", "--file", str(prompts), "--column", "q", "--base-url",
                                      llama_server, "--model", "tiny", "--max-new-tokens", "8"),
                          env=engine_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [m["row"] for m in map(protocol.decode, done.stdout.splitlines()) if "row" in m]
    assert len(rows) == 2 and all(not r.get("error") and r["text"] for r in rows), rows
