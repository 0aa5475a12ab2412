"""Sampling parameters of one generation: validation (stdlib) and transformers' logits processors.

The same parameters drive the playground session, the OpenAI-compatible endpoint, batch runs
and `tunebench-engine generate`. ``temperature`` 0 means greedy decoding; the warpers are then
left out, the repetition penalty still applies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core import errors

MAX_STOP_STRINGS = 8


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

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
    return SamplingParams(
        temperature=_number(values, "temperature", 0.0, 10.0),
        top_p=_number(values, "top_p", 0.0, 1.0, low_open=True),
        top_k=_integer(values, "top_k", 0, 1_000_000),
        min_p=_number(values, "min_p", 0.0, 1.0),
        repetition_penalty=_number(values, "repetition_penalty", 0.0, 10.0, low_open=True),
        max_new_tokens=_integer(values, "max_new_tokens", 1, 32_768),
        stop=_stops(values["stop"]),
        seed=None if values["seed"] is None else _integer(values, "seed", 0, 2**63 - 1))


def _number(values: dict[str, Any], name: str, low: float, high: float, low_open: bool = False) -> float:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.usage(f"params.{name}: must be a number, got {value!r}")
    if value != value or value > high or value < low or (low_open and value == low):
        side = f"more than {low}" if low_open else f"at least {low}"
        raise errors.usage(f"params.{name}: must be {side} and at most {high}, got {value}")
    return float(value)


def _integer(values: dict[str, Any], name: str, low: int, high: int) -> int:
    value = values[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.usage(f"params.{name}: must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise errors.usage(f"params.{name}: must be between {low} and {high}, got {value}")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise errors.usage("params.stop: must be a list of strings")
    if len(value) > MAX_STOP_STRINGS:
        raise errors.usage(f"params.stop: at most {MAX_STOP_STRINGS} stop strings")
    return tuple(s for s in value if s)


def logits_processors(params: SamplingParams) -> tuple[Any, Any]:
    """(penalties, warpers): transformers' processors for these parameters. The penalties shape
    the model's distribution (its reported log-probabilities); the warpers only choose."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    penalties = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        penalties.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    warpers = LogitsProcessorList()
    if params.greedy:
        return penalties, warpers
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0.0:
        warpers.append(MinPLogitsWarper(params.min_p))
    return penalties, warpers
