"""bf16 on the CPU with fp32's forward pass: frozen Linear layers compute their outputs in fp32
from their bf16 weights, and only their backward pass multiplies in bf16.

Why: under bf16 autocast every projection's output is rounded to bf16 (8 bits of mantissa)
before attention, the MLP's gate and the residual stream see it. The adapter then learns to fit
that rounded model, and scored in fp32 it is measurably worse: on the default model and the
sample, one epoch's final answer loss was 2.3% above a plain fp32 run's (seed 42; 1.5% with
seed 43). Keeping only the backward pass (the gradient with respect to the input, the frozen
weights have none) in bf16 gave 0.55% (benchmarks/train_vs_plain_trl.py). The weights stay
stored in bf16, so the memory saving stays; the forward pass costs fp32's time.

The same layer serves fp32 runs that store their frozen weights in bf16 (``compact_weights``,
engine/train/setup.py): there the backward pass multiplies in fp32 too, and the weights' bf16
rounding is the only difference from fp32.
"""

from __future__ import annotations

import types
from typing import Any

import torch


class Fp32ForwardLinear(torch.autograd.Function):
    """``x @ weight.T`` computed in fp32; the gradient for ``x`` in ``backward_dtype`` (``None``:
    ``weight``'s dtype)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                backward_dtype: torch.dtype | None = None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.input_dtype = x.dtype
        ctx.backward_dtype = backward_dtype or weight.dtype
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.linear(x.float(), weight.float())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        dtype = ctx.backward_dtype
        with torch.autocast(grad.device.type, enabled=False):
            return (grad.to(dtype) @ weight.to(dtype)).to(ctx.input_dtype), None, None


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.weight.requires_grad:  # not frozen after all: the weight needs its own gradient
        return torch.nn.functional.linear(x, self.weight, self.bias)
    out = Fp32ForwardLinear.apply(x, self.weight, getattr(self, "precise_backward_dtype", None))
    return out if self.bias is None else out + self.bias.float()


def install(model: Any, dtype: torch.dtype, backward_dtype: torch.dtype | None = None) -> int:
    """Gives every Linear stored in ``dtype`` the fp32 forward, its backward pass in
    ``backward_dtype`` (``None``: ``dtype``); returns how many. Called before the adapter freezes
    the base, so the check for a frozen weight happens at each forward."""
    patched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == dtype:
            module.forward = types.MethodType(_forward, module)
            module.precise_backward_dtype = backward_dtype
            patched += 1
    return patched
