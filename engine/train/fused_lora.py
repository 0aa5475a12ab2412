"""LoRA layers that share an input computed as one group: fewer, larger matrix multiplies.

Why: in a Llama-family layer the q, k and v projections read the same input, and so do the MLP's
gate and up projections. peft computes each one alone: for q, k and v that is three frozen
multiplies, three LoRA-A multiplies over the same input, three scaled adds and, in the backward
pass, three more multiplies for the input gradient plus their sum. On a CPU, where the step is
bound by matrix multiplies and every one of them re-reads its input, one multiply with the
stacked weights does the same work faster (measured: benchmarks/results/fused_lora_ab.json).

Here a group's frozen weights are stored as one tensor (each Linear keeps a view of its rows, so
nothing is copied twice) and one autograd function computes the whole group:

    y = x @ [Wq; Wk; Wv]^T,   z = x @ [Aq; Ak; Av]^T,   y_m += s_m * z_m @ B_m^T

with the input gradient as one multiply by the stacked weights plus one by the stacked A's. The
result is peft's, up to float rounding, dropout included: each member draws its dropout mask in
peft's order (then the A's cannot be stacked, the frozen multiply still is). A LoRA Linear with no
sibling is a group of one, which still saves the scaled add.

It runs only where it is exactly peft's vanilla LoRA on float32 activations: one active adapter,
not merged, no DoRA or other variant, a plain Linear base with frozen weights stored in float32
or bf16 (``compact_weights``: widened to float32 per use, as engine/train/precise_forward.py
does). Anything else at call time -- autocast (bf16 runs), adapters disabled (sample generation
of the base), extra arguments -- runs peft's own forward.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger("engine.train")

# Siblings that read the same input in Llama, Mistral, Qwen and Gemma layers; stacked in this order.
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


@dataclass
class Plan:
    """What the autograd function needs besides tensors: each member's output width, LoRA rank and
    scale, and whether the members' LoRA inputs are the group's input itself (no dropout)."""

    widths: tuple[int, ...]
    ranks: tuple[int, ...]
    scales: tuple[float, ...]
    shared_input: bool


class GroupLinear(torch.autograd.Function):
    """``x @ weight^T (+ bias)`` with each member's LoRA update added into its columns.

    Inputs after the plan: the members' LoRA inputs (none when ``shared_input``), their A weights,
    then their B weights."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, plan: Plan,
                *lora: torch.Tensor) -> torch.Tensor:
        count = len(plan.widths)
        inputs, a_weights, b_weights = _split_lora(lora, count, plan.shared_input)
        wide = weight.to(x.dtype)  # bf16-stored weights are widened per use, never kept
        y = x @ wide.T if bias is None else torch.addmm(bias.to(x.dtype), x, wide.T)
        if plan.shared_input:
            downs = (x @ _stack(a_weights).T).split(plan.ranks, dim=1)
        else:
            downs = tuple(inp @ a.T for inp, a in zip(inputs, a_weights))
        for columns, down, b, scale in zip(_columns(plan.widths), downs, b_weights, plan.scales):
            y[:, columns].addmm_(down, b.T, alpha=scale)
        ctx.plan = plan
        ctx.save_for_backward(x, weight, *inputs, *downs, *a_weights, *b_weights)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        plan: Plan = ctx.plan
        count = len(plan.widths)
        x, weight, *rest = ctx.saved_tensors
        inputs = rest[:0] if plan.shared_input else rest[:count]
        rest = rest[len(inputs):]
        downs, a_weights, b_weights = rest[:count], rest[count:2 * count], rest[2 * count:]
        grad = grad.contiguous()
        grad_x = grad @ weight.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_downs, grad_b = [], []
        for columns, down, b, scale in zip(_columns(plan.widths), downs, b_weights, plan.scales):
            part = grad[:, columns]
            grad_downs.append((part @ b).mul_(scale))
            grad_b.append((part.T @ down).mul_(scale))
        if plan.shared_input:
            stacked = _stack([g.T for g in grad_downs]).T
            if grad_x is not None:
                grad_x.addmm_(stacked, _stack(a_weights))
            grad_a = list((stacked.T @ x).split(plan.ranks, dim=0))
            grad_inputs: list[torch.Tensor] = []
        else:
            grad_a = [g.T @ inp for g, inp in zip(grad_downs, inputs)]
            grad_inputs = [g @ a for g, a in zip(grad_downs, a_weights)]
        return (grad_x, None, None, None, *grad_inputs, *grad_a, *grad_b)


def _stack(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Row-stacked; a single tensor as it is (no copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _split_lora(lora: tuple[torch.Tensor, ...], count: int, shared: bool) -> tuple[tuple, tuple, tuple]:
    start = 0 if shared else count
    return lora[:start], lora[start:start + count], lora[start + count:]


def _columns(widths: tuple[int, ...]) -> list[slice]:
    bounds = [0]
    for width in widths:
        bounds.append(bounds[-1] + width)
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


@dataclass
class Group:
    """LoRA Linears that read one input; the first computes all and hands the others their part."""

    members: list[Any]
    adapter: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    originals: list[Any] = field(default_factory=list)
    handed: dict[int, torch.Tensor] = field(default_factory=dict)
    handed_input: torch.Tensor | None = None

    def runs_fused(self, x: torch.Tensor) -> bool:
        """peft's forward would be the vanilla LoRA one, on float32 activations."""
        if x.dtype is not torch.float32 or torch.is_autocast_enabled(x.device.type):
            return False
        return all(self._runs_vanilla_lora(m) for m in self.members)

    def _runs_vanilla_lora(self, member: Any) -> bool:
        return (_holds_view_of(member.base_layer.weight, self.weight) and not member.disable_adapters
                and not member.merged and list(member.active_adapters) == [self.adapter])

    def compute(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's output for ``x``, dropout drawn member by member as peft draws it."""
        lora_a = [m.lora_A[self.adapter].weight for m in self.members]
        lora_b = [m.lora_B[self.adapter].weight for m in self.members]
        dropouts = [m.lora_dropout[self.adapter] for m in self.members]
        flat = x.reshape(-1, x.shape[-1])
        shared = all(isinstance(d, torch.nn.Identity) or not d.training or d.p == 0 for d in dropouts)
        inputs = [] if shared else [d(flat) for d in dropouts]
        plan = Plan(widths=tuple(b.shape[0] for b in lora_b), ranks=tuple(a.shape[0] for a in lora_a),
                    scales=tuple(float(m.scaling[self.adapter]) for m in self.members), shared_input=shared)
        y = GroupLinear.apply(flat, self.weight, self.bias, plan, *inputs, *lora_a, *lora_b)
        return [part.view(*x.shape[:-1], part.shape[-1]) for part in y.split(plan.widths, dim=1)]


def _holds_view_of(weight: torch.Tensor, stacked: torch.Tensor) -> bool:
    """Still a view of the group's weights: moving or recasting the model replaces them."""
    return (weight.dtype == stacked.dtype and weight.device == stacked.device
            and weight.untyped_storage().data_ptr() == stacked.untyped_storage().data_ptr())


def _leader_forward(group: Group) -> Any:
    def forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or kwargs or not group.runs_fused(x):
            group.handed, group.handed_input = {}, None
            return group.originals[0](x, *args, **kwargs)
        first, *others = group.compute(x)
        group.handed = dict(enumerate(others, start=1))
        group.handed_input = x
        return first
    return forward


def _member_forward(group: Group, index: int) -> Any:
    def forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not args and not kwargs and x is group.handed_input and index in group.handed:
            out = group.handed.pop(index)
            if not group.handed:
                group.handed_input = None  # the group's input is no longer held here
            return out
        return group.originals[index](x, *args, **kwargs)
    return forward


def eligible_adapter(module: Any) -> str | None:
    """The adapter name of a LoRA Linear this module can run fused; None for anything else."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or type(module.base_layer) is not torch.nn.Linear:
        return None
    adapters = list(module.active_adapters)
    if len(adapters) != 1 or adapters[0] not in module.lora_A or adapters[0] in module.lora_variant:
        return None
    name = adapters[0]
    base = module.base_layer
    if (module.fan_in_fan_out or base.weight.requires_grad or base.weight.dtype not in (torch.float32, torch.bfloat16)
            or (base.bias is not None and base.bias.requires_grad)):
        return None
    if module.lora_A[name].bias is not None or module.lora_B[name].bias is not None:
        return None
    return name


def _stack_weights(members: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One new tensor holding the members' frozen weights (and biases); each member's parameter
    becomes a view of its rows, so the old storages are freed."""
    bases = [m.base_layer for m in members]
    weight = torch.cat([b.weight.data for b in bases]) if len(bases) > 1 else bases[0].weight.data.clone()
    biases = [b.bias for b in bases]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b.data if b is not None else _zero_bias(base) for b, base in zip(biases, bases)])
    start = 0
    for base in bases:
        rows = base.weight.shape[0]
        base.weight.data = weight[start:start + rows]
        if base.bias is not None:
            base.bias.data = bias[start:start + rows]
        start += rows
    return weight, bias


def _zero_bias(base: torch.nn.Linear) -> torch.Tensor:
    return torch.zeros(base.out_features, dtype=base.weight.dtype, device=base.weight.device)


def find_groups(model: Any) -> list[list[Any]]:
    """Sibling LoRA Linears with one input (see SIBLINGS), then every other eligible one alone."""
    groups: list[list[Any]] = []
    grouped: set[int] = set()
    for parent in model.modules():
        children = dict(parent.named_children())
        for names in SIBLINGS:
            members = [children.get(n) for n in names]
            if all(m is not None and eligible_adapter(m) for m in members) and _compatible(members):
                groups.append(members)
                grouped.update(id(m) for m in members)
    for module in model.modules():
        if id(module) not in grouped and eligible_adapter(module):
            groups.append([module])
    return groups


def _compatible(members: list[Any]) -> bool:
    first = members[0].base_layer.weight
    return all(eligible_adapter(m) == eligible_adapter(members[0])
               and m.base_layer.weight.dtype == first.dtype and m.base_layer.weight.device == first.device
               and m.base_layer.in_features == members[0].base_layer.in_features for m in members)


def _release_loaded_file(model: Any, stacked: set[int]) -> None:
    """Copies the other frozen tensors out of the loaded checkpoint file.

    transformers maps the safetensors file into memory and the weights view it; every page read
    stays resident while any tensor still views the file. Stacking copied the grouped weights
    out, so without this the process would hold both the copies and the file's pages (measured on
    the default model: 0.33 GB more at the peak). Copied out too, the file is unmapped, and the
    frozen weights take the memory they took before, as ordinary memory."""
    for param in model.parameters():
        if not param.requires_grad and param.untyped_storage().data_ptr() not in stacked:
            param.data = param.data.clone()


def install(model: Any) -> int:
    """Runs every eligible LoRA Linear of ``model`` (peft-wrapped) in its group; returns how many
    groups. Call after the adapter is added and before training."""
    groups = find_groups(model)
    for members in groups:
        weight, bias = _stack_weights(members)
        group = Group(members=members, adapter=eligible_adapter(members[0]) or "", weight=weight, bias=bias)
        group.originals = [m.forward for m in members]
        members[0].forward = types.MethodType(_leader_forward(group), members[0])
        for index, member in enumerate(members[1:], start=1):
            member.forward = types.MethodType(_member_forward(group, index), member)
    if groups:
        _release_loaded_file(model, {g[0].base_layer.weight.untyped_storage().data_ptr() for g in groups})
    if groups:
        sizes = sorted({len(g) for g in groups}, reverse=True)
        log.info("Fused LoRA: %d groups of LoRA layers (sizes %s) each run as one multiply", len(groups), sizes)
    return len(groups)
