"""The training configuration: TrainConfig and what only training needs (docs/architecture.md).

Standard library only, so the GUI builds its forms and tooltips from the same fields that
make the CLI flags and the TOML run files. The generic machinery (knobs, type and limit checks,
TOML tables, flags, copy-as-command) is :mod:`engine.core.schema`'s; this module adds the
training fields, :func:`validate` for the combinations that only training refuses, and presets.

Precedence when resolving a run: field defaults < preset < TOML run file < command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import paths, schema

# Re-exported: callers and tests know these as config.ConfigError, config.flag_name, ...
from engine.core.schema import ConfigError, flag_name, read_toml_table  # noqa: F401


def knob(default: Any, help: str, *, label: str = "", minimum: float | None = None,
         maximum: float | None = None, choices: tuple[str, ...] = (), group: str = "Training") -> Any:
    """A TrainConfig field: :func:`engine.core.schema.knob` with the form's default group."""
    return schema.knob(default, help, label=label, minimum=minimum, maximum=maximum, choices=choices,
                       group=group)


# best_metric -> (the Trainer's metric name, greater is better)
BEST_METRICS = {"loss": ("eval_loss", False), "rewards_margin": ("eval_rewards/margins", True),
                "rewards_accuracy": ("eval_rewards/accuracies", True)}
METHODS = ("auto", "qlora", "lora", "full", "prompt_tuning", "prefix_tuning")
PROMPT_LEARNING = ("prompt_tuning", "prefix_tuning")
OBJECTIVES = ("sft", "dpo", "orpo")
OPTIMIZERS = ("adamw_torch", "paged_adamw_8bit")
CUDA_ONLY_OPTIMIZERS = ("paged_adamw_8bit",)
# cosine_with_restarts with one cycle is plain cosine; three makes the restarts visible.
RESTART_CYCLES = 3


@dataclass
class TrainConfig:
    """Everything a fine-tuning run needs; saved resolved as ``config.toml`` in the run folder."""

    model: str = knob(
        "default",
        "Base model: 'default' (the bundled SmolLM2-135M-Instruct), a name from `models list`, "
        "a local Hugging Face folder or a .gguf file.", label="Base model", group="Data")
    dataset: str = knob(
        "sample",
        "Training data: 'sample' (the bundled product-review dataset), a dataset name in the "
        "workspace, or a data file such as JSONL, CSV or Parquet (imported into the workspace first).",
        label="Dataset", group="Data")
    method: str = knob(
        "auto",
        "qlora: 4-bit base (bitsandbytes) + LoRA; least memory. lora: LoRA on the unquantised "
        "base; simplest, and enough for small models. full: trains every weight, no "
        "adapter; best quality but needs about 4x the model's size in memory (weights, "
        "gradients, optimiser state), so only for small models (under ~1B). auto: qlora on a "
        "CUDA GPU, lora otherwise. prompt_tuning: learns only a few virtual token embeddings put "
        "before every input (num_virtual_tokens); tiny, but learns less than LoRA. prefix_tuning: "
        "learns virtual keys and values at every layer; more capacity than prompt tuning, still "
        "far smaller than LoRA.", label="Method", choices=METHODS, group="Method")
    objective: str = knob(
        "sft",
        "What the run learns from. sft: supervised fine-tuning on conversations (the "
        "answers). dpo: Direct Preference Optimisation on preference pairs (prompt, chosen, "
        "rejected): raises the chosen answer's likelihood against the rejected one's, relative "
        "to a frozen copy of the model it starts from (the base, or the adapter continued from). "
        "orpo: Odds-Ratio Preference Optimisation: SFT on the chosen "
        "answer plus a penalty on the rejected one's odds; needs no reference model (less "
        "memory, one forward pass per answer instead of two).",
        label="Objective",
        choices=OBJECTIVES,
        group="Method",
    )
    beta: float = knob(
        0.1, "DPO/ORPO only. DPO: how far the model may drift from the base (the KL weight); "
        "0.1 is usual, 0.01-0.5 the range; lower follows the preferences harder and can drift "
        "into odd text. ORPO: the weight of the odds-ratio penalty against the SFT loss (the "
        "paper's lambda); 0.05-0.25 is usual.", label="Beta", minimum=1e-4, maximum=10.0,
        group="Method")
    num_virtual_tokens: int = knob(
        20, "Prompt/prefix tuning only: how many virtual tokens are learnt. 8-32 is usual for "
        "prompt tuning, 10-30 for prefix tuning; more learns more, and every input gets longer "
        "by this many positions.", label="Virtual tokens", minimum=1, maximum=1024, group="Method")
    max_steps: int = knob(
        0, "Stop after this many optimiser steps; 0 trains for `epochs` instead.",
        label="Max steps", minimum=0, maximum=10_000_000)
    epochs: float = knob(
        1.0, "Passes over the training data (used when max_steps is 0). 1-3 is usual for "
        "instruction tuning; more overfits small datasets.", label="Epochs", minimum=0.01, maximum=100)
    learning_rate: float = knob(
        2e-4, "Peak learning rate. LoRA usually works at 1e-4 to 3e-4; too high diverges, too "
        "low learns nothing.", label="Learning rate", minimum=1e-8, maximum=1.0)
    lr_scheduler: str = knob(
        "cosine", "How the learning rate changes after warmup. cosine: smooth fall to 0 (the "
        "usual choice). linear: straight fall to 0. constant: stays at the peak (short runs, "
        "debugging). cosine_with_restarts: the cosine fall repeated "
        f"{RESTART_CYCLES} times, jumping back to the peak each time; can escape a plateau on "
        "long runs, wasteful on short ones.", label="LR schedule",
        choices=("cosine", "linear", "constant", "cosine_with_restarts"))
    weight_decay: float = knob(
        0.0, "AdamW weight decay: pulls weights towards 0 each step (not biases or norms). 0 is "
        "usual for LoRA; 0.01-0.1 regularises full fine-tunes and long runs, too much underfits.",
        label="Weight decay", minimum=0.0, maximum=1.0)
    max_grad_norm: float = knob(
        1.0, "Gradient clipping: scales the gradient down when its norm exceeds this. 0.3-1.0 is "
        "usual; lower is steadier but can slow learning; 0 disables clipping.",
        label="Max grad. norm", minimum=0.0, maximum=1000.0)
    optimizer: str = knob(
        "adamw_torch", "adamw_torch: standard AdamW, works everywhere. paged_adamw_8bit: AdamW "
        "with 8-bit states paged to CPU memory under pressure (bitsandbytes); saves about 75% of "
        "optimiser memory, which matters for full fine-tunes and big adapters; needs a CUDA GPU.",
        label="Optimizer", choices=OPTIMIZERS)
    warmup_steps: int = knob(
        0, "Steps of linear warmup from 0 to the peak learning rate. A few percent of the run "
        "steadies the start.", label="Warmup steps", minimum=0, maximum=1_000_000)
    batch_size: int = knob(
        4, "Examples per forward pass (micro-batch). Larger is faster per example but needs "
        "more memory.", label="Micro-batch", minimum=1, maximum=1024)
    grad_accum: int = knob(
        1, "Micro-batches summed before each optimiser step; effective batch = micro-batch x "
        "this. Raises the batch without raising memory.", label="Grad. accumulation",
        minimum=1, maximum=1024)
    max_length: int = knob(
        512, "Longest example in tokens; longer ones are truncated. Memory grows with it.",
        label="Max length", minimum=16, maximum=131_072)
    packing: bool = knob(
        False, "Pack several short examples into each max_length row (best-fit, no padding) so "
        "fewer tokens are wasted; attention never crosses from one example into another. Much "
        "faster on datasets of short rows; changes the number of steps per epoch.",
        label="Packing")
    completion_only_loss: bool = knob(
        True, "Learn from the answer only: the prompt (system and user turns) is masked out of "
        "the loss. Usual for instruction tuning; turn off to also learn the prompts' text.",
        label="Completion-only loss")
    lora_r: int = knob(
        16, "LoRA rank: the adapter's capacity. 8-64 is usual; higher learns more and costs "
        "more memory.", label="LoRA r", minimum=1, maximum=1024, group="Method")
    lora_alpha: int = knob(
        32, "LoRA scaling; the update is multiplied by alpha/r. Often 2 x r.", label="LoRA alpha",
        minimum=1, maximum=4096, group="Method")
    lora_dropout: float = knob(
        0.05, "Dropout on the LoRA input; 0-0.1 is usual. Helps small datasets.",
        label="LoRA dropout", minimum=0.0, maximum=0.9, group="Method")
    target_modules: str = knob(
        "all-linear", "Which layers get LoRA: 'all-linear' (every linear layer; best quality), "
        "'attention' (q_proj, k_proj, v_proj, o_proj; about half the adapter size) or a "
        "comma-separated list such as 'q_proj,v_proj' (least memory).", label="Target modules",
        group="Method")
    use_rslora: bool = knob(
        False, "Rank-stabilised LoRA: scales the update by alpha/sqrt(r) instead of alpha/r, so "
        "high ranks (64+) keep learning; at low ranks it mostly acts as a higher learning rate.",
        label="rsLoRA", group="Method")
    use_dora: bool = knob(
        False, "DoRA: splits each weight into magnitude and direction and trains both; often "
        "closer to full fine-tuning at low rank, but slower (about 1.5-2x) and more memory.",
        label="DoRA", group="Method")
    quant_type: str = knob(
        "nf4", "QLoRA only: 4-bit format of the base. nf4 (normal float) fits the bell-shaped "
        "weights of trained models and is the usual choice; fp4 is the plain 4-bit float, "
        "slightly less accurate.", label="4-bit type", choices=("nf4", "fp4"), group="QLoRA")
    double_quant: bool = knob(
        True, "QLoRA only: quantise the quantisation constants too; saves about 0.4 bits per "
        "weight (~3 GB on a 65B model) at a small speed cost and no measurable quality loss.",
        label="Double quantisation", group="QLoRA")
    compute_dtype: str = knob(
        "auto", "QLoRA only: dtype the 4-bit weights are unpacked to for each matrix multiply. "
        "auto: bfloat16 on a CUDA GPU that supports it, else float32. bfloat16/float16 are "
        "faster with less memory; float32 is the most precise and slowest.",
        label="Compute dtype", choices=("auto", "bfloat16", "float16", "float32"), group="QLoRA")
    seed: int = knob(42, "Random seed for weights of the adapter and data order.", label="Seed",
                     minimum=0, maximum=2**31 - 1)
    save_steps: int = knob(
        50, "Save a checkpoint every this many steps (and always at the end).",
        label="Save every", minimum=1, maximum=1_000_000, group="Checkpoints")
    save_total_limit: int = knob(
        2, "Keep at most this many checkpoints; older ones are deleted.",
        label="Keep checkpoints", minimum=1, maximum=1000, group="Checkpoints")
    val_fraction: float = knob(
        0.0, "Share of the training rows held out (seeded split, at least one row) to measure "
        "validation loss during training. 0 = no validation. 0.05-0.1 is usual; the rows held "
        "out are not trained on. With validation on, the saved adapter is the checkpoint with "
        "the lowest validation loss.", label="Validation share", minimum=0.0, maximum=0.5,
        group="Validation")
    eval_steps: int = knob(
        0, "Measure validation loss every this many steps; 0 = at each checkpoint save. "
        "save_steps must be a multiple of it (the best checkpoint must be a saved one).",
        label="Evaluate every", minimum=0, maximum=1_000_000, group="Validation")
    early_stopping_patience: int = knob(
        0, "Stop when the validation metric (best_metric: loss unless chosen) has not improved "
        "for this many evaluations in a row; "
        "0 = off. 2-5 is usual; needs a validation share above 0.", label="Early-stop patience",
        minimum=0, maximum=1000, group="Validation")
    early_stopping_min_delta: float = knob(
        0.0, "How much lower validation loss must be to count as an improvement for early "
        "stopping. 0 counts any fall; 0.001-0.01 ignores noise.", label="Early-stop min. delta",
        minimum=0.0, maximum=1000.0, group="Validation")
    sample_count: int = knob(
        3, "Sample generations: at each evaluation (at each checkpoint save when there is no "
        "validation share) the model answers this many fixed prompts greedily, so you see what "
        "it says now; they are the first validation prompts (training prompts without "
        "validation) unless sample_prompts names them. 0 = off; each sample costs a short "
        "generation.", label="Sample prompts", minimum=0, maximum=20, group="Monitoring")
    sample_prompts: str = knob(
        "", "Your own prompts for the sample generations, one per line (in a TOML run file, "
        "a multi-line string). Empty = taken from the data.", label="Own sample prompts",
        group="Monitoring")
    sample_max_tokens: int = knob(
        64, "Longest sample answer in new tokens; longer is slower at each evaluation.",
        label="Sample length", minimum=1, maximum=4096, group="Monitoring")
    best_metric: str = knob(
        "loss", "What 'best' means for early stopping and the checkpoint kept: loss (validation "
        "loss, lower is better). DPO/ORPO runs can instead use rewards_margin (how much higher "
        "the chosen answer scores than the rejected one) or rewards_accuracy (share of "
        "held-out pairs where the chosen answer scores higher); both higher is better.",
        label="Best by", choices=("loss", "rewards_margin", "rewards_accuracy"), group="Validation")
    gradient_checkpointing: bool = knob(
        False, "Recompute activations in the backward pass: about 30% slower, much less "
        "memory. Turn on for long sequences on a small GPU.", label="Gradient checkpointing")
    padding_free: bool = knob(
        True, "Padding-free batches: the micro-batch's examples are laid end to end in one row "
        "instead of being padded to the longest, and attention stays inside each example (position "
        "ids restart per example). Same examples per step and the same per-example loss as padded "
        "batches, without computing the padding. Off: padded batches (length-grouped, see "
        "group_by_length).", label="Padding-free batches", group="Speed")
    shared_prefix: bool = knob(
        True, "With padding-free batches: a prompt beginning that all examples of a micro-batch share "
        "(a system prompt, an instruction template) is computed once per micro-batch instead of once "
        "per example; the others attend to that one copy. Only beginnings of 8 or more tokens that "
        "carry no loss are shared (with completion-only loss, the prompt). The same loss and gradients "
        "as unshared batches, up to float rounding, and tokens/s still counts every example's tokens. "
        "On the sample, where every row opens with the same 26-token system prompt and user header, a "
        "micro-batch of four computes about a fifth fewer tokens: 12% more tokens/s and 0.09 GB less "
        "peak memory (2-core CPU). Off: every example computed whole.", label="Shared prompt prefix", group="Speed")
    group_by_length: bool = knob(
        True, "Only without padding_free or packing: draw each micro-batch from examples of similar "
        "length (seeded), so little padding is computed. The order of examples changes, not which "
        "ones are trained on.", label="Length-grouped batches", group="Speed")
    chunked_loss: bool = knob(
        True, "Compute the output head and the loss only at the positions that count in the loss "
        "(the answers, with completion-only loss), a chunk of positions at a time, so the "
        "[tokens x vocabulary] logits are never held at once. Same loss and gradients as the full "
        "head; less time and memory. Off: the trainer's own loss over every position.",
        label="Answer-only chunked loss", group="Speed")
    offload_activations: bool = knob(
        False, "CUDA only: move the activations saved for the backward pass to CPU memory while the "
        "forward pass goes on, and back when needed (TRL's activation offloading). Frees GPU memory "
        "for longer sequences or larger micro-batches at some speed cost; with gradient_checkpointing "
        "only the checkpoints are offloaded. Off on the CPU, where activations already are in CPU "
        "memory.", label="Offload activations", group="Speed")
    precise_forward: bool = knob(
        True, "bf16 on the CPU only: the frozen layers compute their forward pass in float32 from "
        "their bf16 weights, and only the backward pass multiplies in bf16. The final loss then "
        "matches an fp32 run's within 1% (with a bf16 forward it was 2.3% worse on the sample), "
        "with bf16's memory; the forward pass runs at float32's speed. Off: bf16 forward, faster "
        "and less precise.", label="Precise forward (CPU bf16)", group="Speed")
    compact_activations: bool = knob(
        True, "CPU only, without gradient_checkpointing: the large float32 activations each layer "
        "keeps for the backward pass are stored in bf16, half their memory (on the default model "
        "and the sample the run's peak fell from 1.83 to 1.73 GB at the same speed). The forward "
        "pass and the loss are unchanged; the gradients see the rounded copies, as in a bf16 "
        "backward. The gated MLP's silu and product are not stored at all but recomputed from its "
        "gate and up projections in the backward pass (0.05 GB less on the sample, at the same "
        "speed). Off: kept in float32, the most precise gradients.",
        label="Compact saved activations (CPU)", group="Speed")
    compact_weights: bool = knob(
        False, "float32 runs on the CPU, adapter methods other than QLoRA: the frozen Linear "
        "weights are stored in bf16, half their memory, and every multiply still runs in float32 "
        "(each weight is widened as it is used). The model the adapter trains on is the base with "
        "its weights rounded to bf16. On the default model and the sample the peak fell from 1.90 "
        "to 1.63 GB, at about 10% fewer tokens/s, and the final loss moved by 0.2%. Turn on when "
        "memory is short. Off: weights kept in float32, the base exactly as loaded.",
        label="Compact frozen weights (CPU fp32)", group="Speed")
    fused_lora: bool = knob(
        True, "LoRA layers that read the same input (q, k and v; the MLP's gate and up) run as one "
        "matrix multiply over their stacked frozen weights, with each LoRA update added inside it; "
        "the input gradient is one multiply too. The same loss and gradients as peft's layer-by-layer "
        "LoRA, dropout included, up to float rounding. float32 runs of LoRA (not QLoRA, DoRA or "
        "bf16/fp16 precision). On the default model and the sample (2-core CPU): 9% more tokens/s "
        "and 0.07-0.1 GB more peak memory (the allocator keeps more free memory). Off: peft's own "
        "layers.",
        label="Fused LoRA projections", group="Speed")
    precision: str = knob(
        "auto", "Number format of the frozen weights and the matrix multiplies. auto: bfloat16 on "
        "a CUDA GPU that supports it and on a CPU with native bfloat16 instructions (AVX-512 BF16 "
        "or AMX), float16 on older CUDA GPUs, float32 elsewhere. Adapter weights and the optimiser "
        "always stay float32. bf16 halves the base's memory and runs about twice as fast where the "
        "hardware has it; fp32 is the most precise.", label="Precision",
        choices=("auto", "fp32", "bf16", "fp16"), group="Speed")
    device: str = knob(
        "auto", "Where to train: auto picks a CUDA GPU when there is one.", label="Device",
        choices=("auto", "cpu", "cuda"), group="Method")
    name: str = knob("", "A name for the run; the run folder gets a unique id anyway.",
                     label="Run name", group="Data")
    gpus: int = knob(
        1, "Processes that train together on this machine, one per GPU (data parallel, DDP through "
        "accelerate): each takes its own micro-batches and the gradients are averaged, so one step "
        "learns from micro-batch x grad. accumulation x gpus examples (the global batch). 0 or 1: "
        "one process. With device cpu the processes share the CPU (gloo): the same results, not "
        "faster. With --export-launch: the processes on each node of a cluster.",
        label="GPUs (processes)", minimum=0, maximum=64, group="Method")


SECTION = "train"

# Preset keywords accepted by target_modules; anything else is a comma-separated module list.
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
TARGET_KEYWORDS = ("all-linear", "attention")


def fields_of(cls: type = TrainConfig) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def validate(config: TrainConfig, source: str = "") -> TrainConfig:
    """Raises ConfigError for the first bad value or combination; returns the config."""
    schema.check(config, source)
    if config.lora_alpha < 1:
        raise ConfigError("lora_alpha", "must be at least 1", source)
    if config.method == "qlora" and config.device == "cpu" and config.gradient_checkpointing:
        # Works, but bitsandbytes' CPU kernels are slow enough that recomputation doubles a
        # run that is already slow; refuse rather than surprise.
        raise ConfigError("gradient_checkpointing", "is not supported with qlora on cpu", source)
    if not lora_targets(config.target_modules):
        raise ConfigError("target_modules", "must not be empty", source)
    check_optimizer_device(config.optimizer, config.device, source)
    if config.offload_activations and config.device == "cpu":
        raise ConfigError("offload_activations", "needs a CUDA GPU; on the cpu activations are in CPU "
                          "memory already", source)
    if config.precision == "fp16" and config.device == "cpu":
        raise ConfigError("precision", "fp16 needs a CUDA GPU; on the cpu use auto, bf16 or fp32", source)
    _check_validation(config, source)
    _check_method_combinations(config, source)
    if config.max_steps and config.warmup_steps >= config.max_steps:
        raise ConfigError("warmup_steps", f"must be below max_steps ({config.max_steps}); got "
                          f"{config.warmup_steps}, so the peak learning rate would never be reached", source)
    return config


def _check_validation(config: TrainConfig, source: str) -> None:
    """Early stopping needs validation loss; keeping the best checkpoint needs every
    evaluation to land on a save (transformers refuses otherwise, after the model has loaded)."""
    if config.early_stopping_patience > 0 and config.val_fraction == 0:
        raise ConfigError("early_stopping_patience", "needs validation data; set val_fraction "
                          "above 0 (e.g. 0.1)", source)
    if config.best_metric != "loss" and config.objective == "sft":
        raise ConfigError("best_metric", f"{config.best_metric} exists for objective dpo or orpo only; "
                          "use loss", source)
    if config.val_fraction > 0 and config.eval_steps > 0 and config.save_steps % config.eval_steps:
        raise ConfigError("save_steps", f"must be a multiple of eval_steps ({config.eval_steps}) "
                          f"when validating; got {config.save_steps}", source)


def _check_method_combinations(config: TrainConfig, source: str) -> None:
    """Settings that the chosen method or objective cannot honour are refused, not ignored."""
    if config.objective != "sft" and config.packing:
        raise ConfigError("packing", f"works with objective sft only (a {config.objective} pair is "
                          "scored as a whole); turn packing off", source)
    if config.objective != "sft" and config.method in PROMPT_LEARNING:
        raise ConfigError("method", f"{config.method} trains with objective sft only; use lora or "
                          f"qlora for {config.objective}", source)
    if config.method in PROMPT_LEARNING:
        for name in ("use_dora", "use_rslora", "packing"):
            if getattr(config, name):
                # Packing relies on position ids restarting per example, which virtual tokens
                # prepended to the whole row would break.
                raise ConfigError(name, f"does not apply to {config.method}; turn it off", source)


LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora")
QLORA_FIELDS = ("quant_type", "double_quant", "compute_dtype")
VALIDATION_FIELDS = ("eval_steps", "early_stopping_patience", "early_stopping_min_delta", "best_metric")


def unused_fields(values: dict[str, Any]) -> dict[str, str]:
    """The fields that the chosen method, objective and validation settings ignore, each with
    the reason; the window greys them out so a user does not tune a knob that does nothing."""
    method, objective = values.get("method", "auto"), values.get("objective", "sft")
    unused: dict[str, str] = {}
    if objective == "sft":
        unused["beta"] = "used by the dpo and orpo objectives only"
    else:
        unused["completion_only_loss"] = "the sft objective's setting; dpo/orpo score whole answers"
    if method not in PROMPT_LEARNING:
        unused["num_virtual_tokens"] = "used by prompt_tuning and prefix_tuning only"
    if method == "full" or method in PROMPT_LEARNING:
        unused.update(dict.fromkeys(LORA_FIELDS, f"not used by method {method}"))
    if method not in ("auto", "qlora"):
        unused.update(dict.fromkeys(QLORA_FIELDS, f"QLoRA only; method {method} keeps the base unquantised"))
    if method in ("full", "qlora"):
        unused["compact_weights"] = f"method {method} keeps no frozen float32 Linear weights"
    elif values.get("precision", "auto") in ("bf16", "fp16"):
        unused["compact_weights"] = "float32 runs only; this precision stores the frozen weights in 16 bits already"
    unused.update(_fused_lora_unused(method, values))
    unused.update(_shared_prefix_unused(method, objective, values))
    if values.get("max_steps", 0):
        unused["epochs"] = "max_steps is set, so it decides the length of the run"
    if not values.get("val_fraction", 0):
        unused.update(dict.fromkeys(VALIDATION_FIELDS, "needs validation data (val_fraction above 0)"))
    return unused


def _shared_prefix_unused(method: str, objective: str, values: dict[str, Any]) -> dict[str, str]:
    if objective != "sft" or method in PROMPT_LEARNING:
        return {"shared_prefix": "sft with a LoRA, QLoRA or full fine-tune only"}
    if not values.get("padding_free", True) or values.get("packing", False):
        return {"shared_prefix": "padding-free batches without packing only"}
    if not values.get("completion_only_loss", True):
        return {"shared_prefix": "needs completion-only loss: without it the shared prompt carries a loss of its own"}
    return {}


def _fused_lora_unused(method: str, values: dict[str, Any]) -> dict[str, str]:
    if method in ("full", "qlora") or method in PROMPT_LEARNING:
        return {"fused_lora": f"method {method} has no LoRA layers over float32 weights to fuse"}
    if values.get("use_dora"):
        return {"fused_lora": "DoRA runs through peft's own layers"}
    if values.get("precision", "auto") in ("bf16", "fp16"):
        return {"fused_lora": "float32 runs only; this precision runs peft's own layers"}
    return {}


def sample_prompt_list(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_optimizer_device(optimizer: str, device: str, source: str = "") -> None:
    """Paged 8-bit optimisers page their states between GPU and CPU memory; there is no CPU
    version. Called at validation (device cpu) and again once `auto` has resolved a device."""
    if optimizer in CUDA_ONLY_OPTIMIZERS and device == "cpu":
        raise ConfigError("optimizer", f"{optimizer} needs a CUDA GPU and this run is on the cpu; "
                          "use adamw_torch", source)


def lora_targets(target_modules: str) -> str | list[str]:
    """'all-linear' (peft's own keyword), 'attention' (the four projections), or a list."""
    text = target_modules.strip()
    if text == "all-linear":
        return text
    if text == "attention":
        return list(ATTENTION_MODULES)
    return [name.strip() for name in text.split(",") if name.strip()]


def from_mapping(values: dict[str, Any], base: TrainConfig | None = None, source: str = "") -> TrainConfig:
    """Overlays ``values`` on ``base`` (or the defaults), refusing unknown keys."""
    cfg = schema.from_mapping(TrainConfig, values, base, source, hint="see `tunebench-engine train --help`")
    return validate(cfg, source)


def load_toml(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """Reads a run file: the settings sit in a ``[train]`` table (or at the top level)."""
    return from_mapping(read_toml_table(path, SECTION), base, source=str(path))


def to_toml(config: TrainConfig, comment: str = "") -> str:
    """The config as a TOML run file that :func:`load_toml` reads back unchanged."""
    # tomli_w, not schema.to_toml: run folders keep the config.toml format they always had.
    import tomli_w  # light, pure Python; kept local so importing this module stays stdlib-only

    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + tomli_w.dumps({SECTION: dataclasses.asdict(config)})


# -- presets ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    description: str
    values: dict[str, Any]


def list_presets(folder: Path | None = None) -> list[Preset]:
    folder = folder or paths.presets_dir()
    presets = []
    for file in sorted(folder.glob("*.toml")):
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        meta = data.get("preset", {})
        presets.append(Preset(file.stem, meta.get("title", file.stem), meta.get("description", ""),
                              data.get(SECTION, {})))
    return presets


def get_preset(key: str) -> Preset:
    for preset in list_presets():
        if key in (preset.key, preset.title):
            return preset
    names = ", ".join(p.key for p in list_presets())
    raise ConfigError("preset", f"unknown preset {key!r}; available: {names}")


# -- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per field, with the field's help text; unset flags stay None."""
    schema.add_arguments(parser, TrainConfig, settings=True)


def from_arguments(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    return from_mapping(schema.given(TrainConfig, args), base, source="command line")


def to_arguments(config: TrainConfig, base: TrainConfig | None = None) -> list[str]:
    """The flags that turn ``base`` (default: the defaults) into ``config``: "copy as command"."""
    return schema.to_arguments(config, base or TrainConfig(), settings=True)
