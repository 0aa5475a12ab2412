"""Evaluation metrics: a registry of text metrics, a bootstrap confidence interval, and
log-likelihood multiple-choice scoring.

Every metric takes a model's prediction (a string) and one or more references per example.
The field's reference implementations do the scoring wherever one exists: sacrebleu for BLEU
and chrF, rouge-score for ROUGE, the official SQuAD v1.1 definitions for exact match and token
F1, and lm-evaluation-harness's recipe for multiple choice. Tunebench only wires them up, so a
number on the Evaluate page is the number a paper would report for the same outputs.

Scales follow the reference implementations: BLEU and chrF are 0-100 (sacrebleu), everything
else is 0-1. Each :class:`Metric` says its scale in ``unit``.

This module imports only the standard library, numpy, sacrebleu and rouge-score at call time;
torch is imported inside the multiple-choice functions so metrics load without it.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

from engine.eval.catalog import GENERATION

# One example's references: a single string or several (multi-reference metrics take the best).
References = Sequence[str]
PerExampleFn = Callable[..., float]
AggregateFn = Callable[..., float]


@dataclass(frozen=True)
class Metric:
    """A metric the user can pick, with the words shown next to it.

    Attributes:
        name: Registry key, used in evaluation specs and on the command line.
        title: Short display name.
        definition: One paragraph shown where the user picks the metric.
        unit: ``"0-100"`` or ``"0-1"``: the scale of both functions' results.
        per_example: ``f(prediction, references, **options) -> float`` for one example.
        aggregate: ``f(predictions, references_per_example, **options) -> float`` for a set.
        corpus_level: True when the aggregate is not the mean of per-example scores (BLEU and
            chrF pool n-gram statistics over the corpus), so a bootstrap must recompute it.
        options: Names of the options the metric needs or accepts (e.g. ``pattern``).
    """

    name: str
    title: str
    definition: str
    unit: str
    per_example: PerExampleFn
    aggregate: AggregateFn
    corpus_level: bool = False
    options: tuple[str, ...] = ()


# --- helpers shared by several metrics --------------------------------------------------------


def _as_references(references: str | References) -> list[str]:
    """One example's references as a list, so a bare string counts as one reference."""
    return [references] if isinstance(references, str) else list(references)


def _mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0


def _mean_of(per_example: PerExampleFn) -> AggregateFn:
    """An aggregate that averages ``per_example`` over the set."""

    def aggregate(predictions: Sequence[str], references: Sequence[str | References], **options: Any) -> float:
        _check_lengths(predictions, references)
        return _mean([per_example(p, r, **options) for p, r in zip(predictions, references)])

    return aggregate


def _check_lengths(predictions: Sequence[str], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")


def _reference_streams(references: Sequence[str | References]) -> list[list[str | None]]:
    """sacrebleu wants one stream per reference position; examples with fewer references are
    padded with None, which sacrebleu skips (variable reference counts are allowed)."""
    per_example = [_as_references(r) for r in references]
    width = max((len(r) for r in per_example), default=1)
    return [[refs[i] if i < len(refs) else None for refs in per_example] for i in range(width)]


# --- BLEU and chrF (sacrebleu) ----------------------------------------------------------------


def sentence_bleu(prediction: str, references: str | References) -> float:
    """sacrebleu's sentence BLEU (exponential smoothing), 0-100."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, _as_references(references)).score)


def corpus_bleu(predictions: Sequence[str], references: Sequence[str | References]) -> float:
    """sacrebleu's corpus BLEU with its default 13a tokeniser, 0-100."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score)


def sentence_chrf(prediction: str, references: str | References) -> float:
    """sacrebleu's sentence chrF (character 6-grams, beta 2), 0-100."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, _as_references(references)).score)


def corpus_chrf(predictions: Sequence[str], references: Sequence[str | References]) -> float:
    """sacrebleu's corpus chrF, 0-100."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), _reference_streams(references)).score)


# --- ROUGE (rouge-score) ----------------------------------------------------------------------

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    # Building the scorer loads the Porter stemmer; one instance serves every call.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_scores(prediction: str, references: str | References) -> dict[str, float]:
    """ROUGE F-measures of one prediction, best over its references (rouge-score's score_multi).

    rougeLsum splits both texts into sentences at newlines, as rouge-score expects; put one
    sentence per line for a summary-level score (without newlines it equals rougeL).
    """
    scores = _rouge_scorer().score_multi(_as_references(references), prediction)
    return {kind: float(scores[kind].fmeasure) for kind in ROUGE_TYPES}


def _rouge_metric_fn(kind: str) -> PerExampleFn:
    def per_example(prediction: str, references: str | References) -> float:
        return rouge_scores(prediction, references)[kind]

    return per_example


# --- SQuAD exact match and token F1 (official v1.1 definitions) -------------------------------

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, drop articles, squeeze spaces.

    Same steps in the same order as the official evaluate-v1.1.py, so scores match it exactly.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _exact_match_one(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _token_f1_one(prediction: str, reference: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:  # also covers empty answers, as in the official script
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: str | References) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0."""
    return max(_exact_match_one(prediction, r) for r in _as_references(references))


def token_f1(prediction: str, references: str | References) -> float:
    """SQuAD token F1 (bag of normalised words), best over the references."""
    return max(_token_f1_one(prediction, r) for r in _as_references(references))


# --- classification accuracy by generated label -----------------------------------------------


def normalize_label(text: str) -> str:
    """Casefold, squeeze whitespace and strip surrounding punctuation.

    Lighter than SQuAD normalisation on purpose: that one deletes the article "a", which would
    turn the label "A" of a multiple-choice answer into the empty string.
    """
    return " ".join(text.casefold().split()).strip(string.punctuation + " ")


def label_accuracy(prediction: str, references: str | References) -> float:
    """1.0 when the generated label equals a reference label after :func:`normalize_label`."""
    predicted = normalize_label(prediction)
    return float(any(predicted == normalize_label(r) for r in _as_references(references)))


# --- regex match --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled user pattern; an invalid one raises ValueError naming the problem."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex match: invalid pattern {pattern!r}: {exc}") from None


def regex_match(prediction: str, references: str | References = (), *, pattern: str) -> float:
    """1.0 when the whole prediction (surrounding whitespace stripped) matches ``pattern``.

    References are not used: the pattern is the specification of a valid output.
    """
    return float(compile_pattern(pattern).fullmatch(prediction.strip()) is not None)


# --- JSON-field match -----------------------------------------------------------------------------


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (models often wrap JSON in prose or code fences)."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _reference_object(reference: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(reference, Mapping):
        return dict(reference)
    parsed = first_json_object(reference)
    if parsed is None:
        raise ValueError(f"JSON-field match: reference is not a JSON object: {reference[:80]!r}")
    return parsed


def _field_agreement(predicted: dict[str, Any], expected: dict[str, Any], fields: Sequence[str] | None) -> float:
    chosen = list(fields) if fields else list(expected)
    if not chosen:
        return 1.0 if not predicted else 0.0
    missing = object()  # a field absent from the prediction never equals the reference's value
    hits = sum(predicted.get(f, missing) == expected.get(f) for f in chosen)
    return hits / len(chosen)


def json_field_match(prediction: str, references: str | References | Mapping[str, Any],
                     *, fields: Sequence[str] | None = None) -> float:
    """Fraction of the chosen fields whose values in the prediction's first JSON object equal the
    reference's (1.0 = all match); 0.0 when the prediction holds no parsable JSON object.

    Args:
        prediction: The generated text.
        references: A JSON object (as text or a mapping), or several; the best one counts.
        fields: Top-level field names to compare; None compares every field of the reference.
    """
    predicted = first_json_object(prediction)
    if predicted is None:
        return 0.0
    refs = [references] if isinstance(references, (str, Mapping)) else list(references)
    return max(_field_agreement(predicted, _reference_object(r), fields) for r in refs)


# --- the registry ---------------------------------------------------------------------------------


def _registry() -> dict[str, Metric]:
    """The metrics with their scoring functions; titles, scales and definitions come from
    engine.eval.catalog, which the window reads without importing this module."""

    mean = {name: (fn, _mean_of(fn)) for name, fn in (
        ("exact_match", exact_match), ("token_f1", token_f1), ("accuracy", label_accuracy),
        ("regex_match", regex_match), ("json_field_match", json_field_match))}
    for kind in ROUGE_TYPES:
        per_example = _rouge_metric_fn(kind)
        mean[kind] = (per_example, _mean_of(per_example))
    functions: dict[str, tuple[PerExampleFn, AggregateFn]] = {
        "bleu": (sentence_bleu, corpus_bleu), "chrf": (sentence_chrf, corpus_chrf), **mean}
    options = {"regex_match": ("pattern",), "json_field_match": ("fields",)}
    return {name: Metric(name, text.title, text.definition, text.unit, *functions[name],
                         corpus_level=name in ("bleu", "chrf"), options=options.get(name, ()))
            for name, text in GENERATION.items()}


METRICS: dict[str, Metric] = _registry()


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; an unknown name raises ValueError listing the known."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


# --- bootstrap confidence intervals ---------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile-bootstrap interval around it."""

    estimate: float
    low: float
    high: float
    confidence: float


def _percentile_interval(samples: Any, estimate: float, confidence: float) -> ConfidenceInterval:
    import numpy as np

    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return ConfidenceInterval(float(estimate), float(low), float(high), confidence)


def bootstrap_mean_ci(scores: Sequence[float], *, n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> ConfidenceInterval:
    """Percentile bootstrap interval of the mean of any per-example scores.

    Args:
        scores: One score per example.
        n_resamples: Number of resamples (with replacement, same size as ``scores``).
        confidence: Coverage of the interval, e.g. 0.95.
        seed: Seed of the resampling, so the same inputs give the same interval.
    """
    import numpy as np

    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap: no scores")
    rows = np.random.default_rng(seed).integers(0, values.size, size=(n_resamples, values.size))
    return _percentile_interval(values[rows].mean(axis=1), values.mean(), confidence)


def bootstrap_ci(metric: Metric | str, predictions: Sequence[str], references: Sequence[Any], *,
                 n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                 **options: Any) -> ConfidenceInterval:
    """Percentile bootstrap interval of a metric's aggregate over a set of examples.

    Per-example metrics resample their scores (cheap); corpus metrics such as BLEU resample the
    examples and recompute the corpus score each time, because pooled n-gram statistics are not
    a mean of per-sentence values.

    Args:
        metric: A :class:`Metric` or its registry name.
        predictions: One output per example.
        references: One reference (or a list of references) per example.
        n_resamples: Number of resamples.
        confidence: Coverage of the interval, e.g. 0.95.
        seed: Seed of the resampling, so the same inputs give the same interval.
        **options: Passed to the metric (e.g. ``pattern`` for regex match).
    """
    import numpy as np

    metric = get_metric(metric) if isinstance(metric, str) else metric
    _check_lengths(predictions, references)
    if not metric.corpus_level:
        scores = [metric.per_example(p, r, **options) for p, r in zip(predictions, references)]
        return bootstrap_mean_ci(scores, n_resamples=n_resamples, confidence=confidence, seed=seed)
    if not predictions:
        raise ValueError("bootstrap: no examples")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_resamples):
        rows = rng.integers(0, len(predictions), size=len(predictions))
        samples.append(metric.aggregate([predictions[i] for i in rows], [references[i] for i in rows], **options))
    return _percentile_interval(samples, metric.aggregate(predictions, references, **options), confidence)


# --- log-likelihood multiple choice (lm-evaluation-harness recipe) ------------------------------


@dataclass(frozen=True)
class MultipleChoiceScore:
    """Log-likelihoods of each choice and the choices picked from them.

    Attributes:
        logprobs: Sum of log-probabilities of each choice's continuation tokens given the context.
        byte_lengths: UTF-8 length of each choice, the denominator of ``acc_norm``.
        pred: Index of the highest log-likelihood (lm-eval's ``acc``).
        pred_norm: Index of the highest log-likelihood per byte (lm-eval's ``acc_norm``).
    """

    logprobs: list[float]
    byte_lengths: list[int]
    pred: int
    pred_norm: int


def pick_choices(logprobs: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(argmax of log-likelihood, argmax of log-likelihood / byte length of the choice).

    Normalising by length stops long choices losing just for having more tokens to pay for;
    bytes rather than tokens keep the normalisation independent of the tokenizer.
    """
    lengths = [max(len(c.encode("utf-8")), 1) for c in choices]
    pred = max(range(len(logprobs)), key=lambda i: logprobs[i])
    pred_norm = max(range(len(logprobs)), key=lambda i: logprobs[i] / lengths[i])
    return pred, pred_norm


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation token ids the way lm-evaluation-harness splits them.

    The pair is encoded as one string and the context's tokens are cut off the front, so a
    token that spans the boundary belongs to the continuation; trailing spaces of the context
    move to the continuation first (BPE tokenizers attach a space to the following word).
    An empty context becomes the BOS (or EOS) token so the first token has something to follow.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer.encode(continuation, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    return context_ids, whole[len(context_ids):]


def choice_logprobs(model: Any, tokenizer: Any, context: str, continuations: Sequence[str]) -> list[float]:
    """Sum of log-probabilities of each continuation's tokens given the context, in one batch.

    Rows are right-padded, so every real token sees exactly the tokens it would see alone.
    Inputs longer than the model's context are cut from the left, as lm-eval does.
    """
    import torch

    pairs = [encode_pair(tokenizer, context, c) for c in continuations]
    limit = getattr(model.config, "max_position_embeddings", None) or 10**9
    rows = [(ctx + cont)[-(limit + 1):][:-1] for ctx, cont in pairs]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention).logits.float(), dim=-1)
    sums = []
    for i, (row, (_, cont)) in enumerate(zip(rows, pairs)):
        # The logit at position t predicts token t+1: the continuation's tokens are predicted by
        # the last len(cont) positions of the (input) row.
        positions = torch.arange(len(row) - len(cont), len(row), device=device)
        targets = torch.tensor(cont, device=device)
        sums.append(float(logprobs[i, positions, targets].sum()))
    return sums


def score_multiple_choice(model: Any, tokenizer: Any, context: str, choices: Sequence[str], *,
                          delimiter: str = " ") -> MultipleChoiceScore:
    """Scores one multiple-choice question by log-likelihood, like lm-evaluation-harness.

    Args:
        model: A causal LM (transformers or peft), already on its device and in eval mode.
        tokenizer: Its tokenizer.
        context: The question as the model sees it, e.g. ``"Question: ...\\nAnswer:"``.
        choices: The answer texts; each is scored as ``delimiter + choice`` after the context.
        delimiter: lm-eval's ``target_delimiter``; not counted in the byte length.

    Returns:
        The per-choice log-likelihoods and the ``acc`` and ``acc_norm`` picks.
    """
    logprobs = choice_logprobs(model, tokenizer, context, [delimiter + c for c in choices])
    pred, pred_norm = pick_choices(logprobs, choices)
    lengths = [len(c.encode("utf-8")) for c in choices]
    return MultipleChoiceScore(logprobs, lengths, pred, pred_norm)


def multiple_choice_accuracy(model: Any, tokenizer: Any, questions: Sequence[tuple[str, Sequence[str], int]],
                             *, delimiter: str = " ") -> dict[str, float]:
    """``acc`` and ``acc_norm`` over (context, choices, gold index) questions."""
    scores = [score_multiple_choice(model, tokenizer, ctx, choices, delimiter=delimiter)
              for ctx, choices, _ in questions]
    golds = [gold for _, _, gold in questions]
    return {"acc": _mean([float(s.pred == g) for s, g in zip(scores, golds)]),
            "acc_norm": _mean([float(s.pred_norm == g) for s, g in zip(scores, golds)])}

