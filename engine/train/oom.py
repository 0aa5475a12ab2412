"""Out-of-memory recovery: a micro-batch that does not fit is split in two and each half trained
in turn, and every later micro-batch is split the same way -- the micro-batch halves, gradient
accumulation doubles in effect, and the optimiser step still sees the same examples and the
same loss (each piece is normalised by the whole window's token count, as the Trainer does).

Only a micro-batch of one example that does not fit ends the run, with exit code 6 and a line
that says what to change.

``TUNEBENCH_TEST_OOM=STEP[,MAX_EXAMPLES]`` is a test hook: from optimiser step STEP on, any
piece of more than MAX_EXAMPLES examples (default: half the first micro-batch seen) raises
``torch.OutOfMemoryError`` before its forward pass, as a real device would.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

import torch

from engine.core import errors, protocol
from engine.train import shared_prefix

log = logging.getLogger("engine.train")

TEST_HOOK = "TUNEBENCH_TEST_OOM"
# Keys of a padding-free batch that describe its sequence boundaries; recomputed for a piece.
BOUNDARY_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


def examples_in(inputs: dict[str, Any]) -> int:
    """How many examples a batch holds: rows, or in a padding-free row its restarts of position."""
    if _padding_free(inputs):
        return len(shared_prefix.example_starts(inputs["position_ids"]))
    return int(inputs["input_ids"].size(0))


def split(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Two pieces with the first and second half of the examples."""
    if _padding_free(inputs):
        # A shared-prefix row is split as the plain row of the same examples (each one whole).
        whole = shared_prefix.unshare(inputs, BOUNDARY_KEYS) if shared_prefix.is_shared(inputs) else inputs
        return _split_padding_free(whole, inputs)
    half = inputs["input_ids"].size(0) // 2
    rows = inputs["input_ids"].size(0)
    return [{k: (v[:half] if _is_row_tensor(v, rows) else v) for k, v in inputs.items()},
            {k: (v[half:] if _is_row_tensor(v, rows) else v) for k, v in inputs.items()}]


def pieces_until(inputs: dict[str, Any], most: int | None) -> list[dict[str, Any]]:
    """The batch halved until no piece has more than ``most`` examples (None: the whole batch)."""
    pieces = [inputs]
    while most is not None and any(examples_in(piece) > max(most, 1) for piece in pieces):
        pieces = [part for piece in pieces for part in (split(piece) if examples_in(piece) > most else [piece])]
    return pieces


# Adapters train few weights: their gradients are copied before each piece so that a backward
# pass that runs out of memory halfway can be undone. A full fine-tune's gradients are as big as
# the model, too big to copy when memory is short: a failed backward there drops the gradients
# gathered so far in this optimiser step instead (logged).
BACKUP_MAX_SHARE = 0.1


def backup_grads(model: Any) -> list[tuple[Any, Any]] | None:
    """(parameter, copy of its gradient) for every trainable one, or None if too big to copy."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    if sum(p.numel() for p in params) > BACKUP_MAX_SHARE * total:
        return None
    return [(p, None if p.grad is None else p.grad.detach().clone()) for p in params]


def restore_grads(model: Any, backup: list[tuple[Any, Any]] | None) -> None:
    """Gradients as they were before the failed piece (or all dropped, with no backup)."""
    if backup is None:
        log.warning("Out of memory in a full fine-tune's backward pass: this step's gradients so far are dropped")
        model.zero_grad(set_to_none=True)
        return
    for param, grad in backup:
        param.grad = grad


def free_memory() -> None:
    """Drops what the failed attempt left: Python cycles, and the CUDA caching allocator's blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TestHook:
    """The injected OOM of ``TUNEBENCH_TEST_OOM`` (inactive when the variable is unset)."""

    def __init__(self, value: str | None = None) -> None:
        text = os.environ.get(TEST_HOOK, "") if value is None else value
        parts = [int(p) for p in text.split(",") if p.strip()] if text else []
        self.step = parts[0] if parts else None
        self.max_examples = parts[1] if len(parts) > 1 else None

    def check(self, step: int, inputs: dict[str, Any]) -> None:
        if self.step is None or step < self.step:
            return
        count = examples_in(inputs)
        if self.max_examples is None:
            self.max_examples = max(count // 2, 1)
        if count > self.max_examples:
            raise torch.OutOfMemoryError(f"{TEST_HOOK}: injected at step {step} for {count} examples")


def too_big_error(max_length: int) -> errors.EngineError:
    return errors.EngineError(
        protocol.ExitCode.OUT_OF_MEMORY,
        f"out of memory even at micro-batch 1 (max_length {max_length}): lower max_length, use method "
        "qlora, turn on gradient_checkpointing, or pick a smaller model; the run can be resumed from its "
        "last checkpoint")


def _padding_free(inputs: dict[str, Any]) -> bool:
    return "attention_mask" not in inputs and "position_ids" in inputs and inputs["input_ids"].size(0) == 1


def _is_row_tensor(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == rows


def _split_padding_free(inputs: dict[str, Any], original: dict[str, Any]) -> list[dict[str, Any]]:
    positions = inputs["position_ids"]
    starts = (positions[0] == 0).nonzero().flatten()
    cut = int(starts[len(starts) // 2])
    length = positions.size(1)
    pieces = []
    for begin, end in ((0, cut), (cut, length)):
        piece = {k: v for k, v in inputs.items() if k not in BOUNDARY_KEYS}
        for key in ("input_ids", "labels", "position_ids", "completion_mask"):
            if key in piece:
                piece[key] = inputs[key][:, begin:end]
        pieces.append(_with_boundaries(piece, original))
    return pieces


def _with_boundaries(piece: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """The varlen-kernel fields TRL's collator adds, recomputed for the piece's own examples."""
    if not any(key in original for key in BOUNDARY_KEYS):
        return piece
    positions = piece["position_ids"][0]
    starts = (positions == 0).nonzero().flatten()
    bounds = torch.cat([starts, torch.tensor([positions.numel()], device=starts.device)]).to(torch.int32)
    piece["cu_seq_lens_q"] = piece["cu_seq_lens_k"] = bounds
    piece["max_length_q"] = piece["max_length_k"] = int(bounds.diff().max())
    if "seq_idx" in original:
        piece["seq_idx"] = torch.repeat_interleave(torch.arange(bounds.numel() - 1, dtype=torch.int32,
                                                                device=bounds.device), bounds.diff())[None]
    return piece
