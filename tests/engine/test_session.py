"""The playground session: streaming, sampling controls, adapters on one base, cancel, errors.

Most tests drive :class:`engine.infer.session.Session` in this process (a model load is the slow
part, so one pool serves the module); the streaming test drives a real `session` subprocess.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from engine.core import protocol
from engine.infer.decode import TextAssembler

CHAT = [{"role": "user", "content": "Is the kettle good?"}]


class Recorder:
    """A channel that keeps every message, and may react to one (e.g. send a cancel)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.hook: Callable[[dict[str, Any]], None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        protocol.encode(message)  # every message must be valid on the wire
        self.messages.append(message)
        if self.hook:
            self.hook(message)

    def of(self, rid: str, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("id") == rid and m["type"] == kind]

    def result(self, rid: str) -> dict[str, Any]:
        found = self.of(rid, "result")
        assert found, f"no result for {rid}: {self.messages[-3:]}"
        return found[-1]["data"]


def make_adapter(model_dir: Path, folder: Path) -> Path:
    """A LoRA adapter with random non-zero weights (no training needed to change the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pool() -> Any:
    from engine.infer.session import ModelPool

    return ModelPool("cpu", max_models=2)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "adapter")


@pytest.fixture
def run(pool: Any, tiny_model_dir: Path) -> Any:
    """run(**request fields) -> (recorder, session): one generate request, answered in full."""
    from engine.infer.session import Session

    recorder = Recorder()
    session = Session(SimpleNamespace(channel=recorder), pool)

    def go(rid: str = "r1", **fields: Any) -> dict[str, Any]:
        request = {"type": "generate", "id": rid, "model": str(tiny_model_dir), "mode": "chat",
                   "messages": CHAT, **fields}
        request["params"] = {"temperature": 0, "max_new_tokens": 12, **fields.get("params", {})}
        session.accept(protocol.decode(protocol.encode(protocol.make("generate", **{
            k: v for k, v in request.items() if k != "type"}))))
        session.accept(protocol.make("shutdown"))
        assert session.serve() == protocol.ExitCode.OK
        return recorder.result(rid) if recorder.of(rid, "result") else recorder.of(rid, "error")[-1]

    go.recorder = recorder
    go.session = session
    return go


def test_a_real_session_streams_tokens_then_the_result(tiny_model_dir, engine_argv, engine_env) -> None:
    requests = [
        {"type": "ping", "id": 1},
        {"type": "generate", "id": "a", "model": str(tiny_model_dir), "mode": "chat", "messages": CHAT,
         "params": {"temperature": 0, "max_new_tokens": 10}, "top_logprobs": 3},
        {"type": "generate", "id": "b", "model": str(tiny_model_dir), "mode": "raw", "prompt": "The kettle",
         "params": {"temperature": 0.8, "max_new_tokens": 6, "seed": 5}},
        {"type": "shutdown"},
    ]
    done = subprocess.run(engine_argv("session", "--json", "--device", "cpu"), env=engine_env, timeout=300,
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    assert messages[0]["type"] == "hello" and "device" in messages[0]
    assert any(m["type"] == "pong" and m["id"] == 1 for m in messages)
    for rid, top in (("a", 3), ("b", 0)):
        mine = [m for m in messages if m.get("id") == rid and m["type"] in ("token", "result")]
        assert [m["type"] for m in mine][-1] == "result" and {m["type"] for m in mine[:-1]} == {"token"}
        tokens, result = mine[:-1], mine[-1]["data"]
        assert [t["index"] for t in tokens] == list(range(len(tokens)))
        assert "".join(t["text"] for t in tokens) == result["text"]
        assert result["completion_tokens"] == len(tokens) and result["finish_reason"] in ("length", "stop")
        assert all(t["logprob"] <= 0 for t in tokens)
        assert all(len(t.get("top", [])) == top for t in tokens)
        assert result["ttft_s"] > 0 and result["tokens_per_s"] > 0 and result["prompt_tokens"] > 0
    # Requests are answered in arrival order.
    kinds = [(m.get("id"), m["type"]) for m in messages if m["type"] == "result"]
    assert kinds == [("a", "result"), ("b", "result")]


def test_greedy_is_deterministic_and_sampling_follows_the_seed(run) -> None:
    assert run("g1")["text"] == run("g2")["text"]
    hot = {"temperature": 1.5, "seed": 7, "max_new_tokens": 16}
    first, again = run("s1", params=hot)["text"], run("s2", params=hot)["text"]
    other = run("s3", params={**hot, "seed": 8})["text"]
    assert first == again and first != other


def test_top_k_one_is_greedy_and_min_p_top_p_run(run) -> None:
    greedy = run("g")["text"]
    assert run("k", params={"temperature": 1.3, "top_k": 1, "seed": 3})["text"] == greedy
    assert run("p", params={"temperature": 0.9, "top_p": 0.5, "min_p": 0.05, "repetition_penalty": 1.3,
                            "seed": 3})["finish_reason"] in ("length", "stop")


def test_a_stop_string_ends_the_answer_and_is_not_returned(run) -> None:
    full = run("full", mode="raw", prompt="The kettle", params={"max_new_tokens": 24})["text"]
    printable = [i for i in range(2, len(full) - 2) if full[i:i + 2].isprintable()]
    assert printable, f"need some printable text in {full!r}"
    stop = full[printable[0]:printable[0] + 2]
    result = run("cut", mode="raw", prompt="The kettle", params={"max_new_tokens": 24, "stop": [stop]})
    assert result["finish_reason"] == "stop_string"
    assert result["text"] == full[:full.find(stop)]
    pieces = "".join(m["text"] for m in run.recorder.of("cut", "token"))
    assert pieces == result["text"] and stop not in pieces


class CharTokenizer:
    """One character per id: enough to test how text is assembled and held back."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def test_text_held_back_for_a_possible_stop_string_is_released_when_it_is_not_one() -> None:
    assembler = TextAssembler(CharTokenizer(), ["\n\n", "END"])
    pieces = [assembler.add(ord(c)) for c in "ab\nc E"]
    assert pieces == ["a", "b", "", "\nc", " ", ""] and assembler.finish() == "E"
    assembler = TextAssembler(CharTokenizer(), ["\n\n", "END"])
    pieces = [assembler.add(ord(c)) for c in "xEN\n\n"]
    assert "".join(pieces) == "xEN" and assembler.stopped


def test_adapter_toggles_on_the_same_base_without_reloading(run, pool, adapter_dir) -> None:
    base = run("b1")["text"]
    loaded = next(iter(pool._bases.values()))
    tuned = run("t1", adapter=str(adapter_dir))
    assert tuned["text"] != base and tuned["adapter"] == str(adapter_dir)
    assert run("b2")["text"] == base  # adapters disabled again
    assert run("t2", adapter=str(adapter_dir))["text"] == tuned["text"]
    assert next(iter(pool._bases.values())) is loaded and len(pool) == 1
    assert not any(m["type"] == "progress" for m in run.recorder.messages if m["id"] in ("b2", "t1", "t2"))


def test_the_next_chat_turn_reuses_the_cached_prefix_and_answers_the_same(run, pool) -> None:
    first = run("turn1")
    history = CHAT + [{"role": "assistant", "content": first["text"]}, {"role": "user", "content": "Why?"}]
    second = run("turn2", messages=history)
    assert second["cached_tokens"] > 0
    next(iter(pool._bases.values())).decoder.reset()
    fresh = run("turn2-fresh", messages=history)
    assert fresh["cached_tokens"] == 0 and fresh["text"] == second["text"]


def test_cancel_stops_the_running_request_between_tokens(run) -> None:
    def cancel_at_third(message: dict[str, Any]) -> None:
        if message["type"] == "token" and message["index"] == 2:
            run.session.accept(protocol.make("cancel", id="long"))

    run.recorder.hook = cancel_at_third
    result = run("long", params={"max_new_tokens": 200})
    assert result["finish_reason"] == "cancelled" and result["completion_tokens"] == 3


def test_a_request_cancelled_while_queued_never_runs(run, pool, tiny_model_dir) -> None:
    session = run.session
    session.accept(protocol.make("generate", id="q", model=str(tiny_model_dir), messages=CHAT))
    session.accept(protocol.make("cancel"))  # no id: the current and every queued request
    result = run("after")  # the session goes on
    assert run.recorder.result("q")["finish_reason"] == "cancelled"
    assert not run.recorder.of("q", "token") and result["finish_reason"] in ("length", "stop")


@pytest.mark.parametrize("fields, code, words", [
    ({"params": {"temperature": -1}}, protocol.ExitCode.USAGE, "params.temperature"),
    ({"params": {"max_new_tokens": 0}}, protocol.ExitCode.USAGE, "params.max_new_tokens"),
    ({"params": {"stop": 3}}, protocol.ExitCode.USAGE, "params.stop"),
    ({"params": {"topp": 1}}, protocol.ExitCode.USAGE, "unknown field 'topp'"),
    ({"mode": "poem"}, protocol.ExitCode.USAGE, "mode"),
    ({"messages": [{"role": "robot", "content": "x"}]}, protocol.ExitCode.USAGE, "messages[1]"),
    ({"top_logprobs": 9}, protocol.ExitCode.USAGE, "top_logprobs"),
    ({"model": "no-such-model"}, protocol.ExitCode.NOT_FOUND, "model: 'no-such-model'"),
    ({"adapter": "no-such-run"}, protocol.ExitCode.NOT_FOUND, "adapter: 'no-such-run'"),
])
def test_a_bad_request_gets_an_error_with_its_id_and_the_session_goes_on(
        run, workspace_home, fields, code, words) -> None:
    error = run("bad", **fields)
    assert error["type"] == "error" and error["id"] == "bad" and error["code"] == code
    assert words in error["message"]
    assert run("good")["finish_reason"] in ("length", "stop")


def test_ping_is_answered_while_a_generation_runs(run) -> None:
    answered = threading.Event()

    def ping_once(message: dict[str, Any]) -> None:
        if message["type"] == "token" and message["index"] == 0:
            run.session.accept(protocol.make("ping", id="p"))
        if message["type"] == "pong":
            answered.set()

    run.recorder.hook = ping_once
    run("busy")
    pong = next(i for i, m in enumerate(run.recorder.messages) if m["type"] == "pong")
    result = next(i for i, m in enumerate(run.recorder.messages) if m["type"] == "result")
    assert answered.is_set() and pong < result


def test_unload_frees_the_models_and_the_next_request_loads_again(run, pool) -> None:
    run("before")
    run.session.accept(protocol.make("unload"))
    run("after")
    assert len(pool) == 1 and run.recorder.of("after", "progress")


def test_an_int8_session_answers_and_adapters_still_change_the_output(tiny_model_dir, adapter_dir) -> None:
    import torch

    from engine.infer.int8 import int8_supported
    from engine.infer.session import ModelPool, Session

    if not int8_supported():
        pytest.skip("this torch has no CPU int8-weight matmul")
    pool = ModelPool("cpu", max_models=1, int8=True)
    recorder = Recorder()
    session = Session(SimpleNamespace(channel=recorder), pool)
    for rid, adapter in (("base", ""), ("tuned", str(adapter_dir)), ("again", "")):
        session.accept(protocol.make("generate", id=rid, model=str(tiny_model_dir), adapter=adapter, messages=CHAT,
                                     params={"temperature": 0, "max_new_tokens": 6}))
    session.accept(protocol.make("shutdown"))
    session.serve()
    base, tuned = recorder.result("base"), recorder.result("tuned")
    assert base["completion_tokens"] > 0 and base["weights"] == tuned["weights"] == "int8"
    assert tuned["text"] != base["text"] and recorder.result("again")["text"] == base["text"]
    model = next(iter(pool._bases.values())).model.get_base_model()
    assert model.lm_head.weight.dtype == model.model.layers[0].mlp.down_proj.weight.dtype == torch.int8
    assert model.model.embed_tokens.weight.dtype == torch.float32  # the lookup stays fp32
