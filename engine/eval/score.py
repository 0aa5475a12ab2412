"""Scores of an evaluation from the models' outputs: per-row values, set values with bootstrap
intervals, slices and robustness deltas. No model code here: everything is computed from
strings and NLL sums, so it is tested on hand-checkable cases.

Metric kinds:

- generation metrics (engine.eval.metrics registry) score the generated text against the reference;
- ``mc_accuracy`` scores the label the model ranks most likely (lm-eval's ``acc``);
- ``perplexity`` is exp(token-weighted mean NLL of the reference answers); per row it is the
  row's own perplexity. Lower is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.eval import catalog as eval_catalog
from engine.eval import metrics as metric_registry
from engine.eval.catalog import MC_ACCURACY, PERPLEXITY
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
        return [PERPLEXITY]
    return [PERPLEXITY, "token_f1", "rougeL", "chrf"]


def generation_metrics(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in (PERPLEXITY, MC_ACCURACY)]


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
    nll_sums: list[float] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    perturbed_texts: dict[str, list[str]] = field(default_factory=dict)
    perturbed_picks: dict[str, list[str]] = field(default_factory=dict)


def row_score(name: str, out: ModelOutputs, i: int, reference: str, spec: EvalSpec) -> float | None:
    if name == PERPLEXITY:
        count = out.token_counts[i]
        return math.exp(out.nll_sums[i] / count) if count else None
    if name == MC_ACCURACY:
        return float(out.picks[i] == reference)
    return metric_registry.get_metric(name).per_example(out.texts[i], reference, **metric_options(name, spec))


def subset_value(name: str, texts: Sequence[str], picks: Sequence[str], out: ModelOutputs,
                 references: Sequence[str], rows: Sequence[int], spec: EvalSpec) -> float:
    """The metric's set-level value over ``rows``."""
    if name == PERPLEXITY:
        tokens = sum(out.token_counts[i] for i in rows)
        return math.exp(sum(out.nll_sums[i] for i in rows) / tokens) if tokens else float("nan")
    if name == MC_ACCURACY:
        return sum(picks[i] == references[i] for i in rows) / len(rows) if rows else float("nan")
    metric = metric_registry.get_metric(name)
    return metric.aggregate([texts[i] for i in rows], [references[i] for i in rows], **metric_options(name, spec))


def perplexity_ci(out: ModelOutputs, n_resamples: int, seed: int, confidence: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap of the set perplexity, resampling rows (with their token counts)."""
    import numpy as np

    sums, counts = np.asarray(out.nll_sums), np.asarray(out.token_counts, dtype=float)
    estimate = math.exp(sums.sum() / counts.sum())
    rows = np.random.default_rng(seed).integers(0, sums.size, size=(n_resamples, sums.size))
    samples = np.exp(sums[rows].sum(axis=1) / np.maximum(counts[rows].sum(axis=1), 1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def set_value_ci(name: str, out: ModelOutputs, references: Sequence[str], spec: EvalSpec) -> dict[str, float]:
    """The set value of a metric with its 95% bootstrap interval."""
    if name == PERPLEXITY:
        return perplexity_ci(out, spec.bootstrap, spec.seed)
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
    depend on the model's answer (perplexity scores the fixed reference, so it is left out)."""
    rows = list(range(len(references)))
    report: dict[str, Any] = {}
    for perturbation in spec.robustness:
        per_metric: dict[str, Any] = {}
        for name in names:
            if name == PERPLEXITY:
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
