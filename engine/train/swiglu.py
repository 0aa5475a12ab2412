"""The gated MLP's activation (``silu(gate) * up``) with less kept for the backward pass.

Why: transformers computes a Llama-family MLP as ``down(silu(gate(x)) * up(x))``; autograd then
keeps four [tokens x intermediate] tensors per layer until the backward pass -- the gate, its silu,
the up projection and their product (the input of ``down``, kept for its LoRA update). The silu and
the product are cheap to recompute from the gate and the up projection, and the intermediate width
is 2.7x the hidden width on the default model, so they are a large part of a step's peak memory.

Here one autograd function computes the product and keeps only the gate and the up projection; its
backward pass recomputes the silu. Inside a compacting decoder layer (engine/train/
compact_activations.py) the product that ``down`` keeps is not stored either: it is recomputed
from the same two tensors when ``down``'s backward pass needs it. The forward pass is transformers'
own, operation for operation; the gradients are the same up to the rounding that compacted
activations already bring.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
import torch.nn.functional as F

from engine.train import compact_activations


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _product_keeping_silu(kept: dict[str, torch.Tensor], gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The product recomputed for ``down``'s backward pass, which runs just before this layer's
    :class:`SwiGLU` backward: the silu is kept for it rather than computed twice."""
    kept["silu"] = F.silu(gate)
    return kept["silu"] * up


class SwiGLU(torch.autograd.Function):
    """``silu(gate) * up``, keeping only ``gate`` and ``up`` for the backward pass."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        product = swiglu(gate, up)
        ctx.save_for_backward(gate, up)
        ctx.kept = {}
        compact_activations.derive(product, functools.partial(_product_keeping_silu, ctx.kept), gate, up)
        return product

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        silu = ctx.kept.pop("silu", None)
        if silu is None:  # no recomputed product (outside a compacting layer)
            silu = F.silu(gate)
        # The same operations autograd runs for transformers' forward: mul's, then silu's backward.
        return torch.ops.aten.silu_backward(grad * up, gate), grad * silu


def _forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def is_gated_silu_mlp(module: torch.nn.Module) -> bool:
    """A Llama-style MLP (gate_proj, up_proj, down_proj and a SiLU) whose forward is
    ``down(act(gate(x)) * up(x))``, as transformers writes it for Llama, Mistral and Qwen."""
    act = getattr(module, "act_fn", None)
    return (all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj"))
            and type(act).__name__ in ("SiLU", "SiLUActivation") and type(module).__name__.endswith("MLP"))


def install(model: torch.nn.Module) -> int:
    """Switches every gated SiLU MLP of the model to :class:`SwiGLU`; returns how many."""
    mlps = [m for m in model.modules() if is_gated_silu_mlp(m)]
    for mlp in mlps:
        mlp.forward = types.MethodType(_forward, mlp)
    return len(mlps)
