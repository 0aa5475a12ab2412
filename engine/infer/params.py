"""Sampling parameters of one generation: the schema and its validation. Standard library only.

The same parameters drive the playground session, the OpenAI-compatible endpoint, batch runs
and `tunebench-engine generate`, and the Prompt page builds its fields, limits and tooltips from
these knobs. ``temperature`` 0 means greedy decoding. Transformers' logits processors for these
parameters are :mod:`engine.infer.sampling`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.core import errors, untrusted
from engine.core.schema import Knob, knob, knobs

MAX_STOP_STRINGS = 8
ANY_JSON = "any"  # json_schema's value for "any JSON object"


@dataclass(frozen=True)
class SamplingParams:
    # ui_* narrow what the Prompt page offers to the useful range; the engine accepts the rest.
    temperature: float = knob(
        0.7, "Randomness of sampling. 0 = greedy; 0.2–0.5 focused; 0.7–1.0 varied; above 1.2 "
        "often incoherent.", label="Temperature", minimum=0.0, maximum=10.0, ui_maximum=2.0, step=0.05)
    top_p: float = knob(
        1.0, "Nucleus sampling: sample only from the most likely tokens whose probabilities add up "
        "to this. 1 = off.", label="Top-p", minimum=0.0, min_exclusive=True, maximum=1.0, step=0.05)
    top_k: int = knob(0, "Sample only from the k most likely tokens. 0 = off.", label="Top-k",
                      minimum=0, maximum=1_000_000, ui_maximum=1000)
    min_p: float = knob(
        0.0, "Drop tokens less likely than this fraction of the most likely token's probability "
        "(0.05 is a common choice). 0 = off.", label="Min-p", minimum=0.0, maximum=1.0, step=0.01)
    repetition_penalty: float = knob(
        1.0, "Above 1 makes tokens already in the text less likely (1.1 curbs loops). 1 = off.",
        label="Repetition penalty", minimum=0.0, min_exclusive=True, maximum=10.0, ui_minimum=0.5,
        ui_maximum=2.0, step=0.05)
    max_new_tokens: int = knob(256, "Stop after this many generated tokens.", label="Max new tokens",
                               minimum=1, maximum=32_768, ui_maximum=8192, step=32)
    stop: tuple[str, ...] = knob(
        (), "Stop as soon as the answer contains one of these strings (one per line; write \\n "
        "for a newline). The stop string is not shown.", label="Stop strings")
    seed: int | None = knob(
        None, "Fixes the random choices: the same seed, prompt and settings give the same answer. "
        "Empty = a new random answer each time.", label="Seed", minimum=0, maximum=2**63 - 1)
    json_schema: str = knob(
        "", "Structured output: empty = off; 'any' = any JSON object; or a JSON Schema such as "
        '{"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}. '
        "Every token is drawn from those the schema allows, so the answer always parses and follows "
        "it, and ends when the JSON is complete (stop strings are then not used). Cut short by "
        "Max new tokens, it ends with finish reason 'length'.", label="JSON schema")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


def parse(raw: Any, defaults: SamplingParams | None = None) -> SamplingParams:
    """Validates a ``params`` object from a request; a bad value raises a USAGE EngineError
    naming the field. Missing fields take ``defaults`` (the protocol's defaults if None)."""
    base = (defaults or SamplingParams()).as_dict()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise errors.usage("params: must be an object")
    unknown = sorted(set(raw) - set(base))
    if unknown:
        raise errors.usage(f"params: unknown field {unknown[0]!r}")
    values = {**base, **{k: v for k, v in raw.items() if v is not None or k == "seed"}}
    return SamplingParams(**{k.name: _value(k, values[k.name]) for k in knobs(SamplingParams)})


def _value(k: Knob, value: Any) -> Any:
    if k.kind is tuple:
        return _stops(value)
    if k.kind is str:
        problem = schema_problem(value)
        if problem:
            raise errors.usage(f"params.{k.name}: {problem}")
        return value.strip()
    if value is None and k.optional:
        return None
    return _integer(k, value) if k.kind is int else _number(k, value)


def _limits(k: Knob) -> tuple[float, float]:
    assert k.minimum is not None and k.maximum is not None, f"{k.name} needs limits"
    return k.minimum, k.maximum


def _number(k: Knob, value: Any) -> float:
    (low, high), low_open = _limits(k), k.meta["min_exclusive"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.usage(f"params.{k.name}: must be a number, got {value!r}")
    if value != value or value > high or value < low or (low_open and value == low):
        side = f"more than {low}" if low_open else f"at least {low}"
        raise errors.usage(f"params.{k.name}: must be {side} and at most {high}, got {value}")
    return float(value)


def _integer(k: Knob, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.usage(f"params.{k.name}: must be a whole number, got {value!r}")
    low, high = _limits(k)
    if not low <= value <= high:
        raise errors.usage(f"params.{k.name}: must be between {low} and {high}, got {value}")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise errors.usage("params.stop: must be a list of strings")
    if len(value) > MAX_STOP_STRINGS:
        raise errors.usage(f"params.stop: at most {MAX_STOP_STRINGS} stop strings")
    return tuple(s for s in value if s)



def schema_problem(value: Any) -> str | None:
    """Why ``value`` is not a json_schema (empty, "any" or the text of a JSON object), in one
    line, or None. The schema's own errors (an unknown type, say) are engine.infer.structured's."""
    if not isinstance(value, str):
        return "must be a string: empty, 'any' or a JSON Schema"
    text = value.strip()
    if text in ("", ANY_JSON):
        return None
    try:
        schema = untrusted.json_loads(text)
    except untrusted.InputError as exc:
        return f"not valid JSON: {exc.problem} (line {exc.line}, column {exc.column})"
    if not isinstance(schema, dict):
        return 'a JSON Schema must be an object, e.g. {"type": "object"}'
    return None
