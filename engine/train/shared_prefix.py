"""Shared-prefix batches: a prompt beginning that every example of a micro-batch has in common
(a system prompt, an instruction preamble) is computed once, not once per example.

Why: datasets built from one template start every row with the same tokens. On the bundled sample
every row opens with the same system prompt and user header, 26 of its ~90 tokens, so a
padding-free micro-batch of four computes that beginning four times.

Layout: the micro-batch stays one padding-free row. The first example is whole; every later example
keeps only the tokens after the shared beginning, and its position ids go on from where that
beginning ends (they start at p, not at 0). A piece of the row whose positions start at p > 0
continues the row's first p tokens: the per-example attention (engine/train/varlen.py) lets its
queries see those p keys and values and then its own, causally. Rotary positions, the keys and the
values are then exactly those each example had on its own.

Exact only where the shared tokens feed no loss of their own: a prefix is shared only while every
example's labels are ignored up to and including the first token after it, so no prediction is
made from a shared position for more than one example. The loss, its token count and the
gradients are those of the same examples unshared, up to float rounding (tests/engine/
test_shared_prefix.py).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.train.loss import IGNORE

# Shorter shared beginnings are left alone: the saving would not pay for the extra attention pieces.
MIN_SHARED = 8


def shareable_length(examples: list[dict[str, Any]]) -> int:
    """How many leading tokens all examples can share (0: none worth sharing)."""
    if len(examples) < 2:
        return 0
    ids = [list(e["input_ids"]) for e in examples]
    labels = [list(e.get("labels", e["input_ids"])) for e in examples]
    # Every example keeps at least one token of its own, and the first token after the shared part
    # must carry no label: it is predicted from a shared position.
    limit = min(len(i) for i in ids) - 1
    length = 0
    while length < limit and all(i[length] == ids[0][length] for i in ids):
        length += 1
    for example_labels in labels:
        answer = next((t for t, label in enumerate(example_labels[1:], 1) if label != IGNORE), len(example_labels))
        length = min(length, answer - 1)
    return length if length >= MIN_SHARED else 0


class SharedPrefixCollator:
    """Wraps TRL's padding-free collator: shares the micro-batch's common prompt beginning."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling in a data-loader worker)
            raise AttributeError(name)
        return getattr(self.inner, name)  # padding_free, pad_token_id, ... as the wrapped collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        shared = shareable_length(examples)
        if not shared:
            return self.inner(examples)
        rest = [{**e, "input_ids": list(e["input_ids"])[shared:],
                 **({"labels": list(e["labels"])[shared:]} if "labels" in e else {})} for e in examples[1:]]
        batch = self.inner([examples[0], *rest])
        first_length = len(examples[0]["input_ids"])
        batch["position_ids"][0, first_length:] += shared
        return batch


def piece_prefixes(position_ids: torch.Tensor | None, bounds: list[int]) -> list[int]:
    """For each piece [a, b) of a padding-free row: how many of the row's first tokens it continues
    (its first position id); all 0 without position ids."""
    if position_ids is None:
        return [0] * (len(bounds) - 1)
    return [int(p) for p in position_ids[0, bounds[:-1]].tolist()]


def logical_tokens(position_ids: torch.Tensor, bounds: list[int]) -> int:
    """Tokens of the micro-batch's examples counted as if unshared (what tokens/s counts)."""
    return int(position_ids.size(1)) + sum(piece_prefixes(position_ids, bounds))


def is_shared(inputs: dict[str, Any]) -> bool:
    """Whether a padding-free row has pieces that continue a shared beginning."""
    positions = inputs.get("position_ids")
    if positions is None or "attention_mask" in inputs or positions.size(0) != 1:
        return False
    return any(piece_prefixes(positions, row_bounds(positions)))


def example_starts(position_ids: torch.Tensor) -> list[int]:
    """Where each example's piece of a padding-free row begins: wherever the positions do not
    go on by one (a restart at 0, or a shared piece's first position)."""
    positions = position_ids[0]
    return [0, *((positions[1:] != positions[:-1] + 1).nonzero().flatten() + 1).tolist()]


def row_bounds(position_ids: torch.Tensor) -> list[int]:
    """[0, start of piece 2, ..., row length]: the pieces of a padding-free row."""
    return [*example_starts(position_ids), position_ids.size(1)]


# The row tensors of a padding-free batch, and what their shared tokens read as once unshared.
ROW_KEYS = {"input_ids": None, "position_ids": None, "labels": IGNORE, "completion_mask": 0}


def unshare(inputs: dict[str, Any], boundary_keys: tuple[str, ...]) -> dict[str, Any]:
    """The same examples as a plain padding-free row (each example whole, positions from 0), for
    splitting a micro-batch by example; ``boundary_keys`` (the varlen fields) are left for the
    caller to recompute."""
    bounds = row_bounds(inputs["position_ids"])
    shared = piece_prefixes(inputs["position_ids"], bounds)
    out = {k: v for k, v in inputs.items() if k not in ROW_KEYS and k not in boundary_keys}
    for key, blank in ROW_KEYS.items():
        if key not in inputs:
            continue
        row, parts = inputs[key][0], []
        for (a, b), p in zip(zip(bounds, bounds[1:]), shared):
            head = row[:p].clone()
            if blank is not None:
                head.fill_(blank)  # shared tokens never carry a loss (see shareable_length)
            parts += [head, row[a:b]]
        out[key] = torch.cat(parts)[None]
    return out
