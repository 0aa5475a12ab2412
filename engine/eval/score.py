"""Scores of an evaluation from the models' outputs: per-row values, set values with bootstrap
intervals, slices and robustness deltas. No model code here: everything is computed from
strings and NLL sums, so it is tested on hand-checkable cases.

Metric kinds:

- generation metrics (engine.eval.metrics registry) score the generated text against the reference;
- ``mc_accuracy`` scores the label the model ranks most likely (lm-eval's ``acc``);
- ``perplexity`` (answer perplexity) is exp(token-weighted mean NLL of the reference answers);
  per row it is the row's own perplexity. Lower is better.
- the text metrics of text datasets (``token_perplexity``, ``word_perplexity``,
  ``byte_perplexity``, ``bits_per_byte``) divide the total NLL of the raw texts (scored as
  lm-eval's ``loglikelihood_rolling``) by their tokens, words or UTF-8 bytes, as lm-eval's
  ``weighted_perplexity`` and ``bits_per_byte`` aggregations do: sums over the set, not a mean
  of per-row values. Words and bytes are counted as lm-eval's ``count_words`` and
  ``count_bytes`` count them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.eval import catalog as eval_catalog
from engine.eval import metrics as metric_registry
from engine.eval.catalog import (
    BITS_PER_BYTE,
    BYTE_PERPLEXITY,
    MC_ACCURACY,
    PERPLEXITY,
    TEXT_METRICS,
    WORD_PERPLEXITY,
)
from engine.eval.robust import robustness_delta, slice_scores
from engine.eval.spec import EvalSpec


def metric_info(name: str) -> dict[str, str]:
    """Title, direction, unit and definition of any metric an evaluation can compute."""
    return eval_catalog.metric_info(name)


def known_metrics() -> tuple[str, ...]:
    return eval_catalog.known_metrics()


def default_metrics(shape: str) -> list[str]:
    if shape == "classification":
        return [PERPLEXITY, "accuracy", MC_ACCURACY]
    if shape == "text":
        return list(TEXT_METRICS)
    return [PERPLEXITY, "token_f1", "rougeL", "chrf"]


# Scored from the fixed reference text: the model's answer does not change them.
REFERENCE_METRICS = (PERPLEXITY, *TEXT_METRICS)


def generation_metrics(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in (*REFERENCE_METRICS, MC_ACCURACY)]


def count_words(text: str) -> int:
    r"""Words as lm-eval counts them for word perplexity (``len(re.split(r"\s+", text))``:
    leading or trailing whitespace adds an empty piece, as there)."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    """UTF-8 bytes, as lm-eval counts them for byte perplexity and bits per byte."""
    return len(text.encode("utf-8"))


def metric_options(name: str, spec: EvalSpec) -> dict[str, Any]:
    if name == "regex_match":
        return {"pattern": spec.regex}
    if name == "json_field_match":
        return {"fields": spec.json_fields or None}
    return {}


@dataclass
class ModelOutputs:
    """What one model produced on the clean rows and on each perturbed copy."""

    texts: list[str] = field(default_factory=list)
    picks: list[str] = field(default_factory=list)
    nll_sums: list[float] = field(default_factory=list)  # answer NLL, or the raw text's for text rows
    token_counts: list[int] = field(default_factory=list)
    word_counts: list[int] = field(default_factory=list)  # text rows only
    byte_counts: list[int] = field(default_factory=list)  # text rows only
    perturbed_texts: dict[str, list[str]] = field(default_factory=dict)
    perturbed_picks: dict[str, list[str]] = field(default_factory=dict)


def _units(name: str, out: ModelOutputs) -> list[int]:
    """What a likelihood metric divides the NLL by, per row: tokens, words or bytes."""
    if name == WORD_PERPLEXITY:
        return out.word_counts
    if name in (BYTE_PERPLEXITY, BITS_PER_BYTE):
        return out.byte_counts
    return out.token_counts


def _from_nll(name: str, nll: float, units: float) -> float:
    """The metric of a total NLL (nats) over ``units`` tokens, words or bytes."""
    if name == BITS_PER_BYTE:
        return nll / units / math.log(2)
    return math.exp(nll / units)


def row_score(name: str, out: ModelOutputs, i: int, reference: str, spec: EvalSpec) -> float | None:
    if name in REFERENCE_METRICS:
        count = _units(name, out)[i]
        return _from_nll(name, out.nll_sums[i], count) if count else None
    if name == MC_ACCURACY:
        return float(out.picks[i] == reference)
    return metric_registry.get_metric(name).per_example(out.texts[i], reference, **metric_options(name, spec))


def subset_value(name: str, texts: Sequence[str], picks: Sequence[str], out: ModelOutputs,
                 references: Sequence[str], rows: Sequence[int], spec: EvalSpec) -> float:
    """The metric's set-level value over ``rows``."""
    if name in REFERENCE_METRICS:
        units = sum(_units(name, out)[i] for i in rows)
        return _from_nll(name, sum(out.nll_sums[i] for i in rows), units) if units else float("nan")
    if name == MC_ACCURACY:
        return sum(picks[i] == references[i] for i in rows) / len(rows) if rows else float("nan")
    metric = metric_registry.get_metric(name)
    return metric.aggregate([texts[i] for i in rows], [references[i] for i in rows], **metric_options(name, spec))


def perplexity_ci(out: ModelOutputs, n_resamples: int, seed: int, confidence: float = 0.95,
                  name: str = PERPLEXITY) -> dict[str, float]:
    """Percentile bootstrap of a likelihood metric (answer perplexity by default), resampling
    rows with their token, word or byte counts."""
    import numpy as np

    sums, counts = np.asarray(out.nll_sums), np.asarray(_units(name, out), dtype=float)
    estimate = _from_nll(name, float(sums.sum()), float(counts.sum()))
    rows = np.random.default_rng(seed).integers(0, sums.size, size=(n_resamples, sums.size))
    ratio = sums[rows].sum(axis=1) / np.maximum(counts[rows].sum(axis=1), 1)
    samples = ratio / math.log(2) if name == BITS_PER_BYTE else np.exp(ratio)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def set_value_ci(name: str, out: ModelOutputs, references: Sequence[str], spec: EvalSpec) -> dict[str, float]:
    """The set value of a metric with its 95% bootstrap interval."""
    if name in REFERENCE_METRICS:
        return perplexity_ci(out, spec.bootstrap, spec.seed, name=name)
    if name == MC_ACCURACY:
        ci = metric_registry.bootstrap_mean_ci([float(p == r) for p, r in zip(out.picks, references)],
                                               n_resamples=spec.bootstrap, seed=spec.seed)
    else:
        ci = metric_registry.bootstrap_ci(name, out.texts, list(references), n_resamples=spec.bootstrap,
                                          seed=spec.seed, **metric_options(name, spec))
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high}


def summarize(names: Sequence[str], outputs: dict[str, ModelOutputs], references: Sequence[str],
              slice_values: Sequence[str] | None, spec: EvalSpec) -> dict[str, Any]:
    """The ``metrics``, ``slices`` and ``robustness`` parts of summary.json."""
    summary: dict[str, Any] = {"metrics": {}}
    for name in names:
        values = {label: set_value_ci(name, out, references, spec) for label, out in outputs.items()}
        summary["metrics"][name] = {**metric_info(name), "values": values}
    if slice_values is not None:
        summary["slices"] = {"column": spec.slice_column, "groups": slices(names, outputs, references,
                                                                             slice_values, spec)}
    if spec.robustness:
        summary["robustness"] = robustness(names, outputs, references, spec)
    return summary


def slices(names: Sequence[str], outputs: dict[str, ModelOutputs], references: Sequence[str],
           values: Sequence[str], spec: EvalSpec) -> dict[str, Any]:
    """``{value: {"n": rows, "metrics": {metric: {model: value}}}}``."""
    groups: dict[str, Any] = {}
    for name in names:
        for label, out in outputs.items():
            scores = slice_scores(values, lambda rows: subset_value(name, out.texts, out.picks, out, references,
                                                                    rows, spec))
            for value, entry in scores.items():
                group = groups.setdefault(value, {"n": entry["n"], "metrics": {}})
                group["metrics"].setdefault(name, {})[label] = entry["value"]
    return groups


def robustness(names: Sequence[str], outputs: dict[str, ModelOutputs], references: Sequence[str],
               spec: EvalSpec) -> dict[str, Any]:
    """``{perturbation: {metric: {model: {clean, perturbed, delta}}}}`` for the metrics that
    depend on the model's answer (the perplexities score the fixed reference, so they are left out)."""
    rows = list(range(len(references)))
    report: dict[str, Any] = {}
    for perturbation in spec.robustness:
        per_metric: dict[str, Any] = {}
        for name in names:
            if name in REFERENCE_METRICS:
                continue
            per_model = {}
            for label, out in outputs.items():
                texts = out.perturbed_texts.get(perturbation, out.texts)
                picks = out.perturbed_picks.get(perturbation, out.picks)
                clean = subset_value(name, out.texts, out.picks, out, references, rows, spec)
                moved = subset_value(name, texts, picks, out, references, rows, spec)
                per_model[label] = robustness_delta(clean, moved)
            per_metric[name] = per_model
        report[perturbation] = per_metric
    return report
