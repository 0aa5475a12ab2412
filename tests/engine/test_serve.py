"""`serve`: the OpenAI-compatible endpoint, driven by the official `openai` client.

One real `tunebench-engine serve` process on the tiny model serves the whole module; the
client talks to it as any application would.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from engine.core import protocol

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[dict[str, Any]]:
    import os
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
               TUNEBENCH_HOME=str(tmp_path_factory.mktemp("home")))
    process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--json", "--device", "cpu",
                                "--model", str(tiny_model_dir)], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = None
    for line in process.stdout:
        message = protocol.decode(line)
        if message["type"] == "result":
            info = message["data"]
            break
        assert message["type"] != "error", message
    assert info and info["url"].startswith("http://127.0.0.1:")
    yield {**info, "process": process}
    if process.poll() is None:
        process.stdin.write(protocol.encode(protocol.make("cancel")))
        process.stdin.flush()
        process.wait(timeout=60)


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


def test_cancel_stops_the_server_with_the_cancelled_code(server) -> None:
    process = server["process"]
    process.stdin.write(protocol.encode(protocol.make("cancel")))
    process.stdin.flush()
    assert process.wait(timeout=60) == protocol.ExitCode.CANCELLED
