"""Will a run fit in memory: the memory model the fit probe measures (engine/train/probe.py) and
the proposal it makes when a run does not fit.

Standard library only: the window imports this module (the model picker's estimate lives in
engine/core/fit_estimate.py, beside it).

The model is a line in the tokens of one micro-batch: ``peak = fixed + per_token * tokens``, the
fixed part being the weights, gradients, optimiser state and the runtime, the slope the
activations (and the loss head) per token. A run's peak is also never below the peak of loading
and saving (``floor``), which no micro-batch changes. The probe measures both at two batch sizes
of the dataset's longest rows, so every figure here comes from a measurement of this run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 2**30
# A run fits when its measured peak stays below this share of the memory available: the real
# run's peak may differ from the probe's by a few percent (allocator history, other processes).
SAFETY = 0.9
SHORTEST_MAX_LENGTH = 16  # the config schema's lower limit of max_length


@dataclass(frozen=True)
class MemoryModel:
    fixed: float  # bytes whatever the micro-batch
    per_token: float  # bytes per token of one micro-batch
    floor: float = 0.0  # bytes: the peak outside the training steps (loading, saving)

    def peak(self, tokens: int) -> float:
        return max(self.floor, self.fixed + self.per_token * tokens)

    @classmethod
    def through(cls, small: tuple[int, float], large: tuple[int, float], floor: float = 0.0) -> MemoryModel | None:
        """The line through two measured (tokens, peak bytes) points; None when the points do
        not tell the slope apart (the same token count)."""
        (t1, p1), (t2, p2) = sorted((small, large))
        if t2 <= t1:
            return None
        per_token = max(0.0, (p2 - p1) / (t2 - t1))
        return cls(fixed=p2 - per_token * t2, per_token=per_token, floor=floor)


def batch_tokens(longest: list[int], batch: int, max_length: int, padded: bool) -> int:
    """Tokens one micro-batch of the ``batch`` longest rows computes (``longest``: row lengths,
    longest first), each cut to ``max_length``: their sum without padding, ``batch`` times the
    longest with it."""
    rows = [min(n, max_length) for n in longest[:batch]]
    if not rows:
        return 0
    return max(rows) * len(rows) if padded else sum(rows)


def propose(model: MemoryModel, longest: list[int], batch: int, grad_accum: int, max_length: int,
            budget: float, padded: bool) -> dict[str, Any] | None:
    """The settings that fit in ``budget`` bytes while training on the same examples per step:
    the largest micro-batch that divides the effective batch (micro-batch x grad. accumulation),
    grad. accumulation raised to keep it; when even a micro-batch of one does not fit, one with
    the longest max_length that does. None when nothing does (the floor alone is over)."""
    effective = batch * grad_accum
    if model.floor > budget:
        return None
    for size in sorted((d for d in range(1, batch) if effective % d == 0), reverse=True):
        peak = model.peak(batch_tokens(longest, size, max_length, padded))
        if peak <= budget:
            return _proposal(size, effective // size, max_length, peak)
    low, high = SHORTEST_MAX_LENGTH, max_length - 1
    if high < low or model.peak(batch_tokens(longest, 1, low, padded)) > budget:
        return None
    while low < high:  # the longest max_length whose peak fits; the peak grows with it
        middle = (low + high + 1) // 2
        if model.peak(batch_tokens(longest, 1, middle, padded)) <= budget:
            low = middle
        else:
            high = middle - 1
    length = max(SHORTEST_MAX_LENGTH, low - low % 8)  # a round number, still within the budget
    return _proposal(1, effective, length, model.peak(batch_tokens(longest, 1, length, padded)))


def _proposal(batch: int, grad_accum: int, max_length: int, peak: float) -> dict[str, Any]:
    return {"batch_size": batch, "grad_accum": grad_accum, "max_length": max_length,
            "predicted_peak_gb": round(peak / GB, 3)}


def format_gb(value: float) -> str:
    """1.94 -> "1.9 GB", 23.4 -> "23 GB", 0.0123 -> "0.012 GB": two significant figures."""
    if value >= 10:
        return f"{value:.0f} GB"
    if value >= 1:
        return f"{value:.1f} GB"
    return f"{value:.2g} GB"


def summary(result: dict[str, Any]) -> str:
    """The probe's answer in one line, as the log and the Train page show it."""
    peak, available = format_gb(result["peak_gb"]), format_gb(result["available_gb"])
    if result["fits"]:
        return f"Fits: peak {peak} of {available} (margin {format_gb(result['margin_gb'])})"
    text = f"Does not fit: peak {peak} of {available}"
    proposal = result.get("proposal")
    if not proposal:
        return text + "; no micro-batch or max length fits: try qlora, gradient checkpointing or a smaller model"
    change = f"micro-batch {proposal['batch_size']} with grad. accumulation {proposal['grad_accum']}"
    if proposal["max_length"] != result.get("max_length"):
        change += f" and max length {proposal['max_length']}"
    return f"{text}; try {change} (about {format_gb(proposal['predicted_peak_gb'])})"
