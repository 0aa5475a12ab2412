"""Input perturbations for robustness checks, and slice / robustness aggregation.

Standard library only. Each perturbation is seeded per example, so the same spec perturbs the
same rows the same way for every model (a fair comparison) and on every re-run.

- ``typos``: in about one word in five (at least one word) two neighbouring letters swap.
- ``casing``: the whole input in lower case.
- ``whitespace``: doubled spaces between words, and stray spaces and a newline around the text.
- ``shuffle_choices``: classification rows list their labels in a shuffled order.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from engine.eval.examples import EvalExample, classification_prompt

TYPO_RATE = 0.2


def _rng(seed: int, example: EvalExample, name: str) -> random.Random:
    return random.Random(f"{seed}:{example.index}:{name}")


def add_typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if sum(ch.isalpha() for ch in w) >= 2]
    if not candidates:
        return text
    count = max(1, round(len(candidates) * TYPO_RATE))
    for i in rng.sample(candidates, count):
        word = words[i]
        spots = [j for j in range(len(word) - 1) if word[j].isalpha() and word[j + 1].isalpha()
                 and word[j] != word[j + 1]]
        if spots:
            j = rng.choice(spots)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    return " ".join(words)


def _typos(example: EvalExample, seed: int) -> EvalExample:
    rng = _rng(seed, example, "typos")
    if example.choices:  # keep the label list intact: the perturbation is of the text
        text = example.columns.get("text", "")
        return example.with_input(classification_prompt(add_typos(text, rng), example.choices))
    return example.with_input(add_typos(example.input, rng))


def _casing(example: EvalExample, seed: int) -> EvalExample:
    if example.choices:
        text = example.columns.get("text", "")
        return example.with_input(classification_prompt(text.lower(), example.choices))
    return example.with_input(example.input.lower())


def add_whitespace(text: str) -> str:
    return "  " + "  ".join(text.split(" ")) + " \n"


def _whitespace(example: EvalExample, seed: int) -> EvalExample:
    if example.choices:
        text = example.columns.get("text", "")
        return example.with_input(classification_prompt(add_whitespace(text), example.choices))
    return example.with_input(add_whitespace(example.input))


def _shuffle_choices(example: EvalExample, seed: int) -> EvalExample:
    if not example.choices:
        return example
    choices = list(example.choices)
    rng = _rng(seed, example, "shuffle")
    if len(choices) > 1:
        while choices == list(example.choices):  # a shuffle that changes nothing tests nothing
            rng.shuffle(choices)
    text = example.columns.get("text", "")
    return example.with_input(classification_prompt(text, choices), choices)


PERTURB: dict[str, Callable[[EvalExample, int], EvalExample]] = {
    "typos": _typos, "casing": _casing, "whitespace": _whitespace, "shuffle_choices": _shuffle_choices}


def perturb(examples: Sequence[EvalExample], name: str, seed: int) -> list[EvalExample]:
    """The examples with perturbation ``name`` applied to each one's input."""
    return [PERTURB[name](e, seed) for e in examples]


def group_indices(values: Sequence[str]) -> dict[str, list[int]]:
    """Row indices per distinct value, values in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(value, []).append(i)
    return groups


def slice_scores(values: Sequence[str], aggregate: Callable[[list[int]], float]) -> dict[str, dict[str, Any]]:
    """``{value: {"n": rows, "value": aggregate(rows of that value)}}``, largest slice first."""
    groups = group_indices(values)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    return {value: {"n": len(rows), "value": aggregate(rows)} for value, rows in ordered}


def robustness_delta(clean: float, perturbed: float) -> dict[str, float]:
    """The clean and perturbed scores and their difference (perturbed minus clean)."""
    return {"clean": clean, "perturbed": perturbed, "delta": perturbed - clean}
