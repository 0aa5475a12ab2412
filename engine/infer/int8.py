"""Weight-only int8 Linear layers for CPU decoding (the playground, ``serve`` and ``batch``).

Standard library at import; torch loads when a layer is first built.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence


@functools.cache
def int8_linear_class() -> Any:
    """The weight-only int8 Linear (built on first use so importing this module needs no torch).

    Weights are int8 with one (bf16) scale per output channel; activations stay floating point.
    The matmul is torch's ``_weight_int8pack_mm`` fed bf16 activations: on CPU that path reads
    the int8 weights directly (a quarter of fp32's bytes), while its fp32-input path is slower
    than plain fp32 here. Unlike torch.ao dynamic quantisation the activations are never
    rounded to int8, which is what kept that mode's answers far from fp32's.

    It subclasses ``nn.Linear`` so peft wraps it like any Linear: a LoRA adapter adds its own
    (floating point) update to this layer's output."""
    import torch

    class WeightInt8Linear(torch.nn.Linear):
        def __init__(self, linear: torch.nn.Linear) -> None:
            torch.nn.Module.__init__(self)
            self.in_features, self.out_features = linear.in_features, linear.out_features
            weight = linear.weight.detach().float()
            # The kernel takes bf16 scales: round them up first (bf16 rounds by at most 2^-9), then
            # quantise against the rounded scale, so scale and int8 values match and never clip.
            scale = (weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0 * (1 + 2**-8)).to(torch.bfloat16)
            quantised = torch.round(weight / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
            self.weight = torch.nn.Parameter(quantised.contiguous(), requires_grad=False)
            self.register_buffer("scales", scale)
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
            out = torch._weight_int8pack_mm(flat, self.weight, self.scales).to(x.dtype)
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return WeightInt8Linear


def int8_supported() -> bool:
    """Whether this torch has the CPU int8-weight matmul the int8 decode mode uses."""
    import torch

    return hasattr(torch, "_weight_int8pack_mm")


def quantize_weights_int8(model: Any, skip: Sequence[str] = ()) -> Any:
    """Replaces every Linear of ``model`` (CPU, fp32) by its weight-only int8 version, in place.

    The output head is included: with the embedding tied to it, it gets its own int8 copy
    (the input embedding lookup stays fp32, and is no matmul), and the tie is cut so that
    re-tying cannot put the fp32 matrix back under the int8 layer. ``skip`` names modules
    (suffixes) to keep fp32."""
    import torch

    cls = int8_linear_class()
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and not isinstance(module, cls)
               and not any(name.endswith(s) for s in skip)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, cls(module))
    if getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False
    text_config = getattr(model.config, "get_text_config", None)
    if text_config is not None and getattr(text_config(), "tie_word_embeddings", False):
        text_config().tie_word_embeddings = False
    return model
