"""Transformers' logits processors for a generation's sampling parameters.

The parameters themselves, their limits and their validation are the stdlib schema in
:mod:`engine.infer.params` (the Prompt page imports that one); they are re-exported here for the
engine's callers. ``temperature`` 0 means greedy decoding; the warpers are then left out, the
repetition penalty still applies.
"""

from __future__ import annotations

from typing import Any

from engine.infer.params import ANY_JSON, MAX_STOP_STRINGS, SamplingParams, parse, schema_problem

__all__ = ["ANY_JSON", "MAX_STOP_STRINGS", "SamplingParams", "logits_processors", "parse", "schema_problem"]


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
