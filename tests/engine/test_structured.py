"""Structured output (engine.infer.structured): a JSON Schema enforced by a token mask at every
step of the decoder, on the tiny random model, which never writes JSON unaided."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core import errors
from engine.infer import params as params_module
from engine.infer.decode import Decoder
from engine.infer.sampling import parse

pytest.importorskip("llguidance")

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "mood": {"enum": ["happy", "sad", "angry"]},
        "age": {"type": "integer"},
    },
    "required": ["name", "mood", "age"],
    "additionalProperties": False,
}


def schema_problems(text: str) -> list[str]:
    """What is wrong with ``text`` as an answer to SCHEMA (empty when it parses and follows it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc.msg}"]
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        return [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(value)]
    if not isinstance(value, dict):
        return ["not an object"]
    problems = [f"missing {key}" for key in SCHEMA["required"] if key not in value]
    problems += [f"extra {key}" for key in value if key not in SCHEMA["properties"]]
    if not isinstance(value.get("name"), str) or len(value.get("name", "")) > 12:
        problems.append("name")
    if value.get("mood") not in ("happy", "sad", "angry"):
        problems.append("mood")
    if isinstance(value.get("age"), bool) or not isinstance(value.get("age"), int):
        problems.append("age")
    return problems


@pytest.fixture(scope="module")
def decoder(tiny_model_dir: Path) -> Decoder:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    return Decoder(model, AutoTokenizer.from_pretrained(str(tiny_model_dir)))


def prompts(decoder: Decoder, count: int) -> list[list[int]]:
    words = ["Describe a person as JSON.", "hello", "What is 2+2?", "Write a poem", "{"]
    return [decoder.tokenizer.encode(f"{words[i % len(words)]} #{i}") for i in range(count)]


def test_every_answer_under_a_schema_parses_and_follows_it(decoder: Decoder) -> None:
    params = parse({"temperature": 1.0, "max_new_tokens": 120, "json_schema": json.dumps(SCHEMA)})
    answers = [decoder.run(ids, replace(params, seed=i)) for i, ids in enumerate(prompts(decoder, 50))]
    finished = [o for o in answers if o.finish_reason == "stop"]
    assert len(finished) >= 45, [(o.finish_reason, o.text) for o in answers if o.finish_reason != "stop"]
    bad = [(o.text, schema_problems(o.text)) for o in finished if schema_problems(o.text)]
    assert not bad, bad[:3]
    assert len({o.text for o in finished}) > 10  # sampled, not one forced answer
    for o in answers:
        if o.finish_reason == "length":  # cut short: reported as such, never as a finished answer
            assert o.completion_tokens == 120


def test_without_the_schema_the_same_model_writes_no_valid_json(decoder: Decoder) -> None:
    params = parse({"temperature": 1.0, "max_new_tokens": 40})
    texts = [decoder.run(ids, replace(params, seed=i)).text for i, ids in enumerate(prompts(decoder, 50))]
    assert sum(not schema_problems(text) for text in texts) == 0
    assert sum(_parses(text) for text in texts) == 0  # not even JSON of another shape


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def test_greedy_any_json_and_a_short_limit_is_length(decoder: Decoder) -> None:
    ids = prompts(decoder, 1)[0]
    whole = decoder.run(ids, parse({"temperature": 0, "max_new_tokens": 200, "json_schema": "any"}))
    assert whole.finish_reason == "stop" and isinstance(json.loads(whole.text), dict)
    cut = decoder.run(ids, parse({"temperature": 0, "max_new_tokens": 3, "json_schema": json.dumps(SCHEMA)}))
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)


@pytest.mark.parametrize("text, message", [
    ("{not json", "params.json_schema: not valid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "params.json_schema: a JSON Schema must be an object"),
])
def test_a_schema_that_is_not_json_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(errors.EngineError) as caught:
        parse({"json_schema": text})
    assert caught.value.message.startswith(message) and "\n" not in caught.value.message
    assert params_module.schema_problem("any") is None and params_module.schema_problem("") is None


def test_a_schema_the_library_rejects_fails_before_generating(decoder: Decoder) -> None:
    params = parse({"json_schema": '{"type": "object", "properties": {"a": {"type": "integr"}}}'})
    with pytest.raises(errors.EngineError) as caught:
        decoder.run(prompts(decoder, 1)[0], params)
    assert caught.value.message == "params.json_schema: not a usable JSON Schema: Invalid type: integr"


