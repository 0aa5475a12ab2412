"""A lean forward pass for Llama-architecture models, used by the decoder on the CPU.

Why: at batch 1 on a CPU, transformers' forward spends about a third of each token's time in
Python and small tensor operations around the matmuls (masks, cache bookkeeping, hooks, dtype
round trips), not in the matmuls themselves. This module runs the same computation with the
model's own modules and weights and its own rotary table, but with a preallocated KV cache,
no mask for single-token steps, ``torch.nn.functional.rms_norm`` and, where a layer's
projections are plain (no active LoRA), the q/k/v and gate/up projections fused into one
matmul each. Its logits equal transformers' forward to float rounding (tests check it).

It covers exactly the Llama family (``model_type == "llama"``: SmolLM, TinyLlama, Llama 3.x)
with float32 activations on the CPU, bare or with LoRA adapters (peft's layers are called as
they are, so an enabled adapter applies). Anything else (other architectures, prompt or prefix
tuning, GPUs) takes transformers' forward: ``lean_model`` then returns None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.infer.int8 import int8_linear_class

SUPPORTED_TYPES = ("llama",)


def lean_model(model: Any) -> "LeanLlama | None":
    """A LeanLlama over ``model`` (a LlamaForCausalLM, possibly inside a peft model), or None
    when this model needs transformers' own forward."""
    import torch

    base = _causal_lm(model)
    if base is None:
        return None
    config = base.config
    if (getattr(config, "model_type", None) not in SUPPORTED_TYPES or config.hidden_act != "silu"
            or getattr(config, "pretraining_tp", 1) != 1):
        return None
    embed = base.model.embed_tokens.weight
    if embed.device.type != "cpu" or embed.dtype != torch.float32:
        return None
    return LeanLlama(base)


def _causal_lm(model: Any) -> Any:
    """The LlamaForCausalLM itself; None for peft methods that change the inputs or the cache
    (prompt and prefix tuning), which the lean pass does not reproduce."""
    configs = getattr(model, "peft_config", None)
    if configs is None:
        return model if hasattr(model, "model") and hasattr(model, "lm_head") else None
    if any(getattr(c, "is_prompt_learning", False) for c in configs.values()):
        return None
    return model.get_base_model()


class LeanCache:
    """Keys and values of every layer in buffers that grow by doubling, so a decode step
    writes in place instead of concatenating. Has DynamicCache's ``get_seq_length``/``crop``,
    which is all the decoder uses."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int) -> None:
        self._shape = (layers, kv_heads, head_dim)
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.length = 0

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, count: int) -> None:
        """Drop the last ``-count`` positions (a negative count, as DynamicCache takes)."""
        self.length = max(0, self.length + count if count < 0 else min(count, self.length))

    def reserve(self, needed: int) -> None:
        import torch

        capacity = self.keys[0].shape[2] if self.keys else 0
        if needed <= capacity:
            return
        layers, heads, dim = self._shape
        size = max(256, needed, 2 * capacity)
        for store in (self.keys, self.values):
            fresh = [torch.empty(1, heads, size, dim) for _ in range(layers)]
            for old, new in zip(store, fresh):
                new[:, :, :self.length] = old[:, :, :self.length]
            store[:] = fresh

    def write(self, layer: int, start: int, key: Any, value: Any) -> tuple[Any, Any]:
        """Store positions ``start..`` of one layer; returns all its keys and values so far."""
        end = start + key.shape[2]
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


@dataclass
class _Lora:
    """An enabled LoRA update of one Linear: ``x @ a.T @ b.T`` (b carries the scaling)."""

    a: Any
    b: Any


@dataclass
class _Projection:
    """One or several Linear layers with the same input (q/k/v, gate/up), computed as one
    matmul on their base weights plus, when adapters are on, one low-rank update for all.
    ``base`` is None when peft's layers must be called as they are."""

    modules: tuple[Any, ...]
    base: Any = None
    sizes: tuple[int, ...] = ()
    lora: tuple[Any, Any] | None = None  # (stacked A, block-diagonal B) of the enabled adapters

    def __call__(self, x: Any) -> tuple[Any, ...]:
        if self.base is None:
            return tuple(module(x) for module in self.modules)
        out = self.base(x)
        if self.lora is not None:
            a, b = self.lora
            out = out + (x @ a.t()) @ b.t()
        return tuple(out.split(self.sizes, dim=-1)) if len(self.sizes) > 1 else (out,)


class LeanLlama:
    """The forward pass; ``refresh()`` before each answer re-reads which adapters apply."""

    def __init__(self, base: Any) -> None:
        config = base.config
        self.base = base
        self.layers = list(base.model.layers)
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.scaling = self.head_dim ** -0.5
        self._rope: tuple[Any, Any] | None = None
        self._fused: dict[tuple[int, str], tuple[tuple[int, ...], Any]] = {}
        self._plan: list[tuple[_Projection, ...]] = []
        self.refresh()

    def new_cache(self) -> LeanCache:
        return LeanCache(len(self.layers), self.kv_heads, self.head_dim)

    def refresh(self) -> None:
        """Fuse the projections of every layer whose Linear layers act plain right now."""
        self._plan = []
        for index, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            self._plan.append((self._projection(index, "qkv", (attn.q_proj, attn.k_proj, attn.v_proj)),
                               self._projection(index, "o", (attn.o_proj,)),
                               self._projection(index, "gate_up", (mlp.gate_proj, mlp.up_proj)),
                               self._projection(index, "down", (mlp.down_proj,))))

    def forward(self, ids: list[int], cache: LeanCache) -> Any:
        """Logits of the last of ``ids``, which follow the ``cache.length`` cached positions."""
        import torch
        import torch.nn.functional as F

        start, count = cache.length, len(ids)
        cache.reserve(start + count)
        x = self.base.model.embed_tokens(torch.tensor([ids]))
        cos, sin = self._rotary(start, start + count)
        # One new token attends to everything cached: no mask. Several attend causally.
        mask = None if count == 1 else _causal_mask(start, count)
        for index, layer in enumerate(self.layers):
            qkv, o_proj, gate_up, down = self._plan[index]
            h = F.rms_norm(x, (x.shape[-1],), layer.input_layernorm.weight, self.eps)
            x = x + o_proj(self._attention(index, qkv(h), cos, sin, cache, start, mask))[0]
            h = F.rms_norm(x, (x.shape[-1],), layer.post_attention_layernorm.weight, self.eps)
            gate, up = gate_up(h)
            x = x + down(F.silu(gate) * up)[0]
        cache.length = start + count
        last = F.rms_norm(x[:, -1:], (x.shape[-1],), self.base.model.norm.weight, self.eps)
        return self.base.lm_head(last)[:, -1, :]

    def _attention(self, index: int, qkv: tuple[Any, ...], cos: Any, sin: Any,
                   cache: LeanCache, start: int, mask: Any) -> Any:
        """Attention of the new positions over the cache, before the output projection."""
        import torch.nn.functional as F

        q, k, v = (t.view(1, -1, heads, self.head_dim).transpose(1, 2)
                   for t, heads in zip(qkv, (self.heads, self.kv_heads, self.kv_heads)))
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        keys, values = cache.write(index, start, k, v)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling,
                                             enable_gqa=self.heads != self.kv_heads)
        return out.transpose(1, 2).reshape(1, -1, self.heads * self.head_dim)

    def _rotary(self, start: int, end: int) -> tuple[Any, Any]:
        """cos/sin for positions start..end-1, from the model's own rotary module (so every
        rope scaling transformers knows applies), computed for a doubling range at a time."""
        import torch

        if self._rope is None or self._rope[0].shape[1] < end:
            size = max(1024, 2 * end)
            positions = torch.arange(size).unsqueeze(0)
            probe = torch.zeros(1, 1, self.head_dim)
            self._rope = self.base.model.rotary_emb(probe, positions)
        cos, sin = self._rope
        return cos[:, start:end].unsqueeze(1), sin[:, start:end].unsqueeze(1)

    def _projection(self, index: int, kind: str, modules: tuple[Any, ...]) -> _Projection:
        parts = [_decompose(m) for m in modules]
        if any(p is None for p in parts):
            return _Projection(modules)
        plain = [p[0] for p in parts]
        sizes = tuple(p.out_features for p in plain)
        base: Any = plain[0]
        if len(plain) > 1:
            cached = self._fused.get((index, kind))
            if cached is None or cached[0] != tuple(id(p.weight) for p in plain):
                fused = _fuse(plain)  # rebinds the layers' weights: the key is taken after
                cached = (tuple(id(p.weight) for p in plain), fused)
                self._fused[(index, kind)] = cached
            base = cached[1]
        if base is None:
            return _Projection(modules)
        updates = [p[1] for p in parts]
        lora = _stack_lora(updates, sizes) if any(updates) else None
        return _Projection(modules, base, sizes, lora)


def _decompose(module: Any) -> tuple[Any, "_Lora | None"] | None:
    """(the plain Linear ``module`` computes on, its enabled LoRA update or None), or None
    when peft would compute something this pass does not reproduce (DoRA and other variants,
    several adapters at once, merged weights, training mode, LoRA biases)."""
    import torch


    if type(module) in (torch.nn.Linear, int8_linear_class()):
        return module, None
    base = getattr(module, "base_layer", None)
    lora_a = getattr(module, "lora_A", None)
    if base is None or lora_a is None or getattr(module, "merged", False):
        return None
    inner = _decompose(base)
    if inner is None or inner[1] is not None:
        return None
    active = [a for a in getattr(module, "active_adapters", []) if a in lora_a]
    if getattr(module, "disable_adapters", False) or not active:
        return inner[0], None
    name = active[0]
    a, b = lora_a[name], module.lora_B[name]
    if (len(active) > 1 or module.training or getattr(module, "use_dora", {}).get(name)
            or getattr(module, "lora_variant", {}).get(name) is not None
            or type(a) is not torch.nn.Linear or type(b) is not torch.nn.Linear
            or a.bias is not None or b.bias is not None):
        return None
    return inner[0], _Lora(a.weight, b.weight * module.scaling[name])


def _stack_lora(updates: list["_Lora | None"], sizes: tuple[int, ...]) -> tuple[Any, Any]:
    """One (A, B) pair doing every layer's update at once: A stacked, B block-diagonal (zero
    where a layer has no adapter), so the fused output gets all updates from two matmuls."""
    import torch

    present = [u for u in updates if u is not None]
    a = torch.cat([u.a for u in present])
    b = torch.zeros(sum(sizes), a.shape[0], dtype=a.dtype)
    row = col = 0
    for update, size in zip(updates, sizes):
        if update is not None:
            rank = update.a.shape[0]
            b[row:row + size, col:col + rank] = update.b
            col += rank
        row += size
    return a, b


def _fuse(linears: list[Any]) -> Any:
    """One callable computing every Linear of ``linears`` (same input) with a single matmul."""
    import torch
    import torch.nn.functional as F


    bias = None
    if any(linear.bias is not None for linear in linears):
        bias = torch.cat(
            [linear.bias if linear.bias is not None else torch.zeros(linear.out_features) for linear in linears]
        )
    if all(type(linear) is int8_linear_class() for linear in linears):
        weight = _share(linears, "weight", torch.cat([linear.weight for linear in linears]))
        scales = _share(linears, "scales", torch.cat([linear.scales for linear in linears]))
        in_features = linears[0].in_features

        def int8(x: Any) -> Any:
            flat = x.reshape(-1, in_features).to(torch.bfloat16)
            out = torch._weight_int8pack_mm(flat, weight, scales).to(x.dtype)
            out = out.reshape(*x.shape[:-1], -1)
            return out if bias is None else out + bias
        return int8
    if all(type(linear) is torch.nn.Linear for linear in linears):
        weight = _share(linears, "weight", torch.cat([linear.weight for linear in linears]))
        return lambda x: F.linear(x, weight, bias)
    return None


def _share(linears: list[Any], name: str, fused: Any) -> Any:
    """Make each layer's ``name`` a view into ``fused`` (rows are contiguous), so fusing costs
    no memory and the layers, still used by transformers' forward, read the same numbers."""
    import torch

    row = 0
    for linear in linears:
        rows = getattr(linear, name).shape[0]
        part = fused[row:row + rows]
        if isinstance(getattr(linear, name), torch.nn.Parameter):
            part = torch.nn.Parameter(part, requires_grad=False)
        setattr(linear, name, part)
        row += rows
    return fused


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _causal_mask(start: int, count: int) -> Any:
    """True where new position i (at start + i) may attend to key j: j <= start + i."""
    import torch

    keys = torch.arange(start + count)
    return keys.unsqueeze(0) <= (start + torch.arange(count)).unsqueeze(1)
