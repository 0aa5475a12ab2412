"""Activations kept for the backward pass stored in bf16, the forward pass left as it is.

Why: between the forward and the backward pass a training step holds every decoder layer's
activations that backward needs (the inputs of the norms, the MLP's gate and up projections, the
attention's queries, keys and values). On the CPU they are float32 -- in an fp32 run, and in a bf16
run with a float32 residual stream and precise forward -- and they are most of the step's peak
memory beyond the weights. Stored in bf16 they take half. The forward pass still computes with
the float32 values, so the loss is exactly the loss without this; only the gradients see the
rounded copies, as they already do in a bf16 backward.

Only inside the decoder layers: the loss's own saved tensors (the answer-only head keeps the
gradient of its hidden states) stay exact. Parameters are never copied, and small tensors
(norm statistics, attention's log-sum-exp) are left as they are: their copies would cost more
time than they save memory.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable

import torch

# Tensors smaller than this (float32 elements, 256 KiB) are kept as they are.
MIN_ELEMENTS = 1 << 16


class _Packed:
    """A saved float32 activation stored as bf16."""

    __slots__ = ("half",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.half = tensor.to(torch.bfloat16)


class _Derived:
    """A saved activation not stored at all: recomputed from other saved ones when unpacked."""

    __slots__ = ("compute", "sources", "shape")

    def __init__(self, compute: Callable[..., torch.Tensor], sources: list[Any], shape: torch.Size) -> None:
        self.compute, self.sources, self.shape = compute, sources, shape


# The compactor of the decoder layer whose forward pass runs now (None outside one), so that
# an operation that knows how to recompute its output can say so (engine/train/swiglu.py).
_current: contextvars.ContextVar[Compactor | None] = contextvars.ContextVar("compactor", default=None)


def derive(output: torch.Tensor, compute: Callable[..., torch.Tensor], *sources: torch.Tensor) -> None:
    """Within a compacting layer: when ``output`` is saved for backward, keep ``sources`` (packed
    as usual) and recompute ``compute(*sources)`` in the backward pass instead of storing it."""
    compactor = _current.get()
    if compactor is not None and output.is_contiguous():
        compactor.derived[_derived_key(output)] = (compute, sources)


def _derived_key(tensor: torch.Tensor) -> tuple:
    """The same elements whatever the view's shape: a linear layer saves its input flattened to
    two dimensions."""
    return tensor.data_ptr(), tensor.numel(), tensor._version


def _key(tensor: torch.Tensor) -> tuple:
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
            tensor._version)


class Compactor:
    """The pack/unpack pair for ``saved_tensors_hooks``.

    ``weights`` are the storages of the model's parameters: a linear layer saves its weight as a
    transposed view for the input gradient, which is no Parameter by type; a bf16 copy of it would
    add memory and round the weights, so anything on a parameter's storage stays as it is."""

    def __init__(self, weights: frozenset[int]) -> None:
        self.weights = weights
        # One copy per tensor however many operations save it: a norm's output is saved by the
        # q, k and v LoRA paths alike, and three bf16 copies would take more than the one float32
        # tensor they replace. The tensor is held with its copy until release(), so its memory
        # cannot be reused by another tensor with the same key; the version tells in-place changes.
        self.packed: dict[tuple, tuple[torch.Tensor, _Packed]] = {}
        self.derived: dict[tuple, tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]] = {}

    def pack(self, tensor: torch.Tensor) -> Any:
        if (tensor.dtype is not torch.float32 or tensor.numel() < MIN_ELEMENTS
                or tensor.untyped_storage().data_ptr() in self.weights):
            return tensor
        if self.derived and tensor.is_contiguous() and _derived_key(tensor) in self.derived:
            compute, sources = self.derived[_derived_key(tensor)]
            return _Derived(compute, [self.pack(source) for source in sources], tensor.shape)
        key = _key(tensor)
        if key not in self.packed:
            self.packed[key] = (tensor, _Packed(tensor))
        return self.packed[key][1]

    def release(self) -> None:
        """Drops the held tensors (the copies stay with the autograd graph)."""
        self.packed.clear()
        self.derived.clear()

    @staticmethod
    def unpack(saved: Any) -> torch.Tensor:
        if isinstance(saved, _Derived):
            return saved.compute(*(Compactor.unpack(source) for source in saved.sources)).view(saved.shape)
        return saved.half.float() if isinstance(saved, _Packed) else saved


def _compacting(layer: torch.nn.Module) -> Any:
    """``layer.forward`` with its saved activations packed."""
    original = layer.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # evaluation and sample generation save nothing
            return original(*args, **kwargs)
        # Read at each call: a QLoRA preparation step may recast parameters after install.
        compactor = Compactor(frozenset(p.untyped_storage().data_ptr() for p in layer.parameters()))
        token = _current.set(compactor)
        try:
            with torch.autograd.graph.saved_tensors_hooks(compactor.pack, compactor.unpack):
                return original(*args, **kwargs)
        finally:
            _current.reset(token)
            compactor.release()

    return forward


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The model's repeated blocks, found by the class names transformers lists as not to be
    split across devices (``LlamaDecoderLayer`` and the like)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def install(model: Any) -> int:
    """Stores the saved activations of every decoder layer in bf16; returns how many layers."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.forward = _compacting(layer)
    return len(layers)
