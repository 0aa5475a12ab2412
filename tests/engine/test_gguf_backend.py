"""The llama.cpp backend (engine/infer/gguf_backend.py) through the session's model pool, on the
tiny random model written as an F32 GGUF file: it answers as transformers does, with a Tunebench
adapter turned on, scaled and off; a JSON schema becomes a grammar no answer can leave; and the
backend choice. The llama.cpp tests are skipped, saying so, where llama-cpp-python is not installed
(the test command installs it)."""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core import errors
from engine.infer import gguf_backend
from engine.infer.sampling import parse
from engine.infer.session import ModelPool, parse_request, prompt_ids, run_on

from .test_structured import SCHEMA, schema_problems

needs_llama_cpp = pytest.mark.skipif(not gguf_backend.installed(), reason="llama-cpp-python is not installed "
                                     "(installer/bootstrap.py setup builds it)")
QUESTIONS = ["hello there", "What is 2+2?", "Write a poem about rivers", "Name three colours"]


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA with random A and B at a scale that changes the tiny model's greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), config).save_pretrained(str(folder))
    return folder


def answers(pool: ModelPool, model: Path, adapter: str = "", scale: float = 1.0, backend: str = "") -> list[str]:
    target = pool.target(str(model), adapter, lambda c, t: None, backend, scale)
    out = []
    for question in QUESTIONS:
        ids = prompt_ids(target.tokenizer, "chat", [{"role": "user", "content": question}], "")
        outcome = run_on(target, ids, parse({"temperature": 0, "max_new_tokens": 24}), 0, threading.Event(), None)
        out.append(outcome.text)
    return out


@needs_llama_cpp
def test_a_gguf_model_runs_in_llama_cpp_and_answers_as_transformers(tiny_gguf, adapter, workspace_home) -> None:
    llama = ModelPool("cpu")  # auto: a .gguf model goes to llama.cpp
    plain = ModelPool("cpu", backend="transformers")
    target = llama.target(str(tiny_gguf), "", lambda c, t: None)
    assert target.backend == "llama.cpp" and target.base.weights == "F32"
    assert answers(llama, tiny_gguf) == answers(plain, tiny_gguf)
    tuned = answers(llama, tiny_gguf, str(adapter))
    assert tuned == answers(plain, tiny_gguf, str(adapter))
    assert tuned != answers(llama, tiny_gguf)  # the adapter is really on
    # Scale 0 is the base; half scale is between, and the same in both backends.
    assert answers(llama, tiny_gguf, str(adapter), 0.0) == answers(llama, tiny_gguf)
    assert answers(llama, tiny_gguf, str(adapter), 0.5) == answers(plain, tiny_gguf, str(adapter), 0.5)
    assert answers(llama, tiny_gguf, str(adapter)) == tuned  # back on after off: the cache was dropped
    assert len(list((workspace_home / "cache").rglob("*.gguf"))) == 1  # the adapter was written once


@needs_llama_cpp
def test_the_chats_earlier_turns_are_reused_from_the_cache(tiny_gguf, workspace_home) -> None:
    target = ModelPool("cpu").target(str(tiny_gguf), "", lambda c, t: None)
    history = [{"role": "user", "content": "hello there"}]
    params = parse({"temperature": 0, "max_new_tokens": 8})
    first = run_on(target, prompt_ids(target.tokenizer, "chat", history, ""), params, 2, threading.Event(), None)
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and again"}]
    events: list = []
    second = run_on(target, prompt_ids(target.tokenizer, "chat", history, ""), params, 2, threading.Event(),
                    events.append)
    assert second.cached_tokens >= first.prompt_tokens and second.prompt_tokens > first.prompt_tokens
    assert all(e.logprob <= 0 and len(e.top) == 2 for e in events if e.token_id >= 0)
    assert 1 >= events[0].top[0][1] >= events[0].top[1][1] > 0  # probabilities, as transformers' decoder gives


@needs_llama_cpp
def test_every_answer_under_a_schema_parses_and_follows_it_in_llama_cpp(tiny_gguf, workspace_home) -> None:
    """The schema without its maxLength: the random model writes invalid UTF-8, which llama.cpp's
    grammar counts as one character and the decoded text as several U+FFFD (the module says so)."""
    target = ModelPool("cpu").target(str(tiny_gguf), "", lambda c, t: None)
    schema = json.loads(json.dumps(SCHEMA))
    del schema["properties"]["name"]["maxLength"]
    params = parse({"temperature": 1.0, "max_new_tokens": 400, "json_schema": json.dumps(schema)})
    outcomes = []
    for i in range(50):
        ids = target.tokenizer.encode(f"{QUESTIONS[i % len(QUESTIONS)]} #{i}")
        outcomes.append(run_on(target, ids, replace(params, seed=i), 0, threading.Event(), None))
    finished = [o for o in outcomes if o.finish_reason == "stop"]
    assert len(finished) >= 45, [(o.finish_reason, o.text) for o in outcomes if o.finish_reason != "stop"]
    bad = [(o.text, problems) for o in finished
           if (problems := [p for p in schema_problems(o.text) if "is too long" not in p and p != "name"])]
    assert not bad, bad[:3]
    assert len({o.text for o in finished}) > 10  # sampled, not one forced answer
    unaided = [run_on(target, target.tokenizer.encode(f"hello #{i}"), parse({"temperature": 1.0, "seed": i,
                                                                            "max_new_tokens": 40}),
                      0, threading.Event(), None).text for i in range(10)]
    assert all(schema_problems(text) for text in unaided)


@needs_llama_cpp
def test_stop_strings_seed_and_cancel(tiny_gguf, workspace_home) -> None:
    target = ModelPool("cpu").target(str(tiny_gguf), "", lambda c, t: None)
    ids = target.tokenizer.encode("hello there")
    sampled = parse({"temperature": 1.0, "max_new_tokens": 30, "seed": 7})
    first = run_on(target, ids, sampled, 0, threading.Event(), None)
    assert run_on(target, ids, sampled, 0, threading.Event(), None).text == first.text
    cut = first.text[len(first.text) // 2:][:2]
    stopped = run_on(target, ids, replace(sampled, stop=(cut,)), 0, threading.Event(), None)
    assert stopped.finish_reason == "stop_string" and cut not in stopped.text
    cancelled = threading.Event()
    cancelled.set()
    assert run_on(target, ids, sampled, 0, cancelled, None).finish_reason == "cancelled"


def test_auto_keeps_the_bundled_model_and_folders_on_transformers(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gguf_backend, "installed", lambda: True)
    file = tmp_path / "m.gguf"
    assert gguf_backend.choose("auto", file, "cpu") == "llama.cpp"
    assert gguf_backend.choose("auto", file, "cpu", bundled=True) == "transformers"
    assert gguf_backend.choose("auto", None, "cpu") == "transformers"
    assert gguf_backend.choose("llama.cpp", file, "cpu", bundled=True) == "llama.cpp"
    assert gguf_backend.choose("transformers", file, "cpu") == "transformers"
    with pytest.raises(errors.EngineError, match="^backend: llama.cpp runs .gguf models"):
        gguf_backend.choose("llama.cpp", None, "cpu")
    monkeypatch.setattr(gguf_backend, "installed", lambda: False)
    assert gguf_backend.choose("auto", file, "cpu") == "transformers"
    with pytest.raises(errors.EngineError, match="^backend: llama-cpp-python is not installed"):
        gguf_backend.choose("llama.cpp", file, "cpu")


@pytest.mark.parametrize("fields, message", [
    ({"backend": "vllm"}, "backend: must be one of auto, llama.cpp, transformers, got 'vllm'"),
    ({"adapter_scale": -1}, "adapter_scale: must be a number from 0 to 4.0"),
    ({"adapter_scale": "1"}, "adapter_scale: must be a number from 0 to 4.0"),
])
def test_bad_backend_or_scale_is_a_one_line_error(fields, message) -> None:
    with pytest.raises(errors.EngineError) as caught:
        parse_request({"id": "1", "messages": [{"role": "user", "content": "hi"}], **fields})
    assert caught.value.message == message


def test_adapter_scale_zero_is_the_base_in_transformers(tiny_model_dir, adapter, workspace_home) -> None:
    pool = ModelPool("cpu", backend="transformers")
    base = answers(pool, tiny_model_dir)
    assert answers(pool, tiny_model_dir, str(adapter), 0.0) == base
    assert answers(pool, tiny_model_dir, str(adapter)) != base


@needs_llama_cpp
def test_a_batch_runs_each_configuration_on_its_own_backend_and_adapter_scale(
        tiny_gguf, adapter, tmp_path, engine_argv, engine_env) -> None:
    from .test_batch import batch

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"q": q}) + "\n" for q in QUESTIONS[:2]), encoding="utf-8")
    common = {"model": str(tiny_gguf), "params": {"max_new_tokens": 12}}
    tuned = {**common, "adapter": str(adapter)}
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"name": "base", **common}, {"name": "tuned", **tuned, "backend": "llama.cpp"},
        {"name": "off", **tuned, "adapter_scale": 0},
        {"name": "half", **tuned, "adapter_scale": 0.5},
        {"name": "half-hf", **tuned, "adapter_scale": 0.5, "backend": "transformers"}]), encoding="utf-8")
    code, messages, stderr = batch(engine_argv, engine_env, "--file", str(questions), "--column", "q",
                                   "--config", str(configs))
    assert code == 0, stderr[-2000:]
    rows = [m["row"] for m in messages if "row" in m]
    assert not [r["error"] for r in rows if r["error"]]
    text = {name: [r["text"] for r in rows if r["config"] == name]
            for name in ("base", "tuned", "off", "half", "half-hf")}
    backend = {r["config"]: r["backend"] for r in rows}
    assert backend == {"base": "llama.cpp", "tuned": "llama.cpp", "off": "llama.cpp", "half": "llama.cpp",
                       "half-hf": "transformers"}
    assert text["off"] == text["base"] != text["tuned"]
    assert text["half"] == text["half-hf"]
    with open(messages[-1]["data"]["csv"], encoding="utf-8", newline="") as handle:
        assert [r["backend"] for r in csv.DictReader(handle)] == [r["backend"] for r in rows]


@pytest.fixture(scope="module")
def dora_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("dora") / "dora"
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), config).save_pretrained(str(folder))
    return folder


@needs_llama_cpp
def test_auto_leaves_an_adapter_llama_cpp_cannot_hold_to_transformers(tiny_gguf, dora_adapter, workspace_home) -> None:
    """A DoRA adapter on a GGUF base: Auto answers through transformers (as a transformers column
    does), an explicit llama.cpp is one line saying why and what to pick instead."""
    target = ModelPool("cpu").target(str(tiny_gguf), str(dora_adapter), lambda c, t: None)
    assert target.backend == "transformers"
    plain = ModelPool("cpu", backend="transformers")
    assert answers(ModelPool("cpu"), tiny_gguf, str(dora_adapter)) == answers(plain, tiny_gguf, str(dora_adapter))
    with pytest.raises(errors.EngineError) as caught:
        ModelPool("cpu", backend="llama.cpp").target(str(tiny_gguf), str(dora_adapter), lambda c, t: None)
    assert caught.value.message == ("adapter: llama.cpp cannot run dora: it uses DoRA; pick the transformers "
                                    "backend (Auto does), or load its merged GGUF export")


@pytest.mark.parametrize("config, problem", [
    ({"peft_type": "LORA", "target_modules": ["q_proj", "v_proj"]}, ""),
    ({"peft_type": "LORA", "use_dora": True}, "it uses DoRA"),
    ({"peft_type": "LORA", "modules_to_save": ["lm_head"]}, "it also trains lm_head in full"),
    ({"peft_type": "LORA", "target_modules": ["q_proj", "embed_tokens"]},
     "it trains embed_tokens, outside the decoder layers"),
    ({"peft_type": "IA3"}, "it is a IA3 adapter, not LoRA"),
])
def test_what_llama_cpp_cannot_hold_is_read_from_the_adapter_config(config, problem, tmp_path) -> None:
    from engine.eval import llama_generation
    from engine.eval.generation import ModelRef

    (tmp_path / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert gguf_backend.adapter_problem(tmp_path) == problem
    ref = ModelRef("run", tmp_path)
    pool = ModelPool("cpu", backend="llama.cpp")
    assert llama_generation.runs_here(pool, ref, "auto") is (not problem)
    assert llama_generation.runs_here(pool, ref, "llama.cpp") is True  # explicit: the attach says why not
    assert llama_generation.runs_here(None, ref, "auto") is False


@needs_llama_cpp
def test_a_gguf_lora_file_is_an_adapter_too(tiny_gguf, adapter, workspace_home, tmp_path) -> None:
    """The GGUF LoRA file Tunebench writes (as LM Studio's would be) chosen directly as the adapter:
    the same answers as its peft folder, scaled the same; a model file, a damaged file or the
    transformers backend are one line each."""
    lora_file = tmp_path / "reviews-lora.gguf"
    lora_file.write_bytes(gguf_backend.gguf_lora_file(adapter, tiny_gguf).read_bytes())
    pool = ModelPool("cpu")
    target = pool.target(str(tiny_gguf), str(lora_file), lambda c, t: None)
    assert target.backend == "llama.cpp" and target.label == "tiny-f32 + reviews-lora"
    assert answers(pool, tiny_gguf, str(lora_file)) == answers(pool, tiny_gguf, str(adapter))
    assert answers(pool, tiny_gguf, str(lora_file), 0.5) == answers(pool, tiny_gguf, str(adapter), 0.5)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + b"\0" * 7)
    for spec, backend, message in [
            (tiny_gguf, "", "adapter: tiny-f32.gguf is a GGUF model, not a LoRA adapter file: choose it as the model"),
            (damaged, "", "adapter: damaged.gguf is not a readable GGUF file ("),
            (lora_file, "transformers", "backend: a GGUF LoRA file runs in llama.cpp; pick Auto or llama.cpp")]:
        with pytest.raises(errors.EngineError) as caught:
            pool.target(str(tiny_gguf), str(spec), lambda c, t: None, backend)
        assert caught.value.message.startswith(message), caught.value.message
