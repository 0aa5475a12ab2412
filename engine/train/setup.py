"""Loading a model for training and the Trainer settings every objective shares.

The SFT path (``run``) and the preference path (``preference``) both build their trainers
from these pieces: the base model (4-bit for QLoRA), an optional adapter to continue, the
TrainingArguments, and the callbacks (protocol events, early stopping, TensorBoard, samples).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from engine.core import config, errors, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.train import distributed, precision
from engine.train import monitor as train_monitor
from engine.train import samples as train_samples
from engine.train.resume import load_adapter_for_training

log = logging.getLogger("engine.train")


def resolve_method(method: str, device_name: str) -> str:
    if method == "auto":
        return "qlora" if device_name == "cuda" else "lora"
    return method


def check_runtime(cfg: TrainConfig, device_name: str) -> None:
    """Checks that need the resolved device (`auto` is only known here), before any load."""
    source = f"device {cfg.device} resolved to {device_name}"
    config.check_optimizer_device(cfg.optimizer, device_name, source=source)
    if cfg.offload_activations and device_name != "cuda":
        raise config.ConfigError("offload_activations", "needs a CUDA GPU; turn it off on the cpu", source)
    distributed.check_processes(cfg, device_name)


def compute_precision(cfg: TrainConfig, device_name: str) -> str:
    """The ``precision`` knob resolved for the device: 'fp32', 'bf16' or 'fp16'.

    On the CPU, auto gives bf16 to adapter methods only: bitsandbytes' CPU 4-bit kernels and a
    full fine-tune's fp32 master weights were measured and tested in fp32 there."""
    if (cfg.precision == "auto" and device_name == "cpu"
            and resolve_method(cfg.method, device_name) in ("qlora", "full")):
        return "fp32"
    return precision.resolve(cfg.precision, device_name)


def resolve_compute_dtype(name: str, cfg: TrainConfig, device_name: str) -> Any:
    """QLoRA's compute dtype: auto = the run's precision (bf16 where the device has it), else
    the named dtype."""
    import torch

    if name == "auto":
        return precision.torch_dtype(compute_precision(cfg, device_name))
    return getattr(torch, name)


def load_base_model(model_dir: Path, method: str, device_name: str, cfg: TrainConfig) -> Any:
    """The base model, 4-bit for QLoRA, in the dtype the device handles well."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": storage_dtype(cfg, method, device_name)}
    if method == "qlora":
        kwargs["quantization_config"] = quantization_config(cfg, device_name)
        # Each process of a multi-GPU run keeps its 4-bit copy on its own GPU.
        kwargs["device_map"] = {"": distributed.local_rank() if device_name == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if keeps_fp32_stream(cfg, method, device_name):
        dtype = precision.torch_dtype(compute_precision(cfg, device_name))
        cast_frozen_linears(model, dtype)
        cast_layer_norm_outputs(model, dtype)
        if cfg.precise_forward:
            from engine.train import precise_forward  # torch at import

            precise_forward.install(model, dtype)
    elif compacts_weights(cfg, method, device_name):
        store_frozen_linears_compact(model)
    if compacts_activations(cfg, device_name):
        from engine.train import compact_activations, swiglu  # torch at import

        compact_activations.install(model)
        swiglu.install(model)  # its product is recomputed, not stored, in the compacting layers
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def compacts_activations(cfg: TrainConfig, device_name: str) -> bool:
    """Saved activations in bf16: on the CPU, where they are float32 and memory is the limit;
    gradient checkpointing already drops them (and its own hooks must see every saved tensor)."""
    return device_name == "cpu" and cfg.compact_activations and not cfg.gradient_checkpointing


def storage_dtype(cfg: TrainConfig, method: str, device_name: str) -> Any:
    """The dtype weights load in.

    A full fine-tune keeps fp32 master weights (bf16 runs as autocast): AdamW updates of a
    well-trained weight are often below bf16's resolution and would be lost. On a GPU the frozen
    base of an adapter is stored in the compute precision, the field's usual setting: half the
    memory, no cast per step. On the CPU it loads in fp32 and only its Linear layers are cast
    (:func:`keeps_fp32_stream`)."""
    import torch

    half = compute_precision(cfg, device_name) != "fp32" and method != "full"
    if half and not keeps_fp32_stream(cfg, method, device_name):
        return precision.torch_dtype(compute_precision(cfg, device_name))
    return torch.float32


def keeps_fp32_stream(cfg: TrainConfig, method: str, device_name: str) -> bool:
    """bf16 on the CPU: the frozen Linear weights in bf16 (most of the memory and all of the
    matmul time) while embeddings, norms and the residual stream stay fp32 under autocast. A
    residual stream summed in bf16 over every layer drifts: measured on the default model, the
    final loss of an all-bf16 run was 1.3% off the fp32 run's; the CPU path promises fp32's loss."""
    return (device_name == "cpu" and method not in ("full", "qlora")
            and compute_precision(cfg, device_name) == "bf16")


def compacts_weights(cfg: TrainConfig, method: str, device_name: str) -> bool:
    """fp32 on the CPU (one without native bf16): the frozen Linear weights stored in bf16, the
    arithmetic still fp32. A 4-bit base is smaller already; a full fine-tune trains them."""
    return (device_name == "cpu" and cfg.compact_weights and method not in ("full", "qlora")
            and compute_precision(cfg, device_name) == "fp32")


def store_frozen_linears_compact(model: Any) -> None:
    """Linear weights to bf16, each widened back to fp32 as it is used, forward and backward."""
    import torch

    from engine.train import precise_forward  # torch at import

    cast_frozen_linears(model, torch.bfloat16)
    precise_forward.install(model, torch.bfloat16, backward_dtype=torch.float32)


def cast_frozen_linears(model: Any, dtype: Any) -> None:
    """Casts every Linear layer except the output head (often tied to the input embedding).

    The weights that stay fp32 are copied out of the loaded file: while any tensor still views
    the memory-mapped checkpoint, every page read from it stays resident (measured: the whole
    fp32 file, 0.5 GB for the default model, on top of the bf16 copies)."""
    import torch

    head = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            module.to(dtype)
    for param in model.parameters():
        if param.dtype == torch.float32:
            param.data = param.data.clone()


def cast_layer_norm_outputs(model: Any, dtype: Any) -> None:
    """Hands each decoder layer's norm output to its projections already in ``dtype``.

    Autocast would round it to the same values at every Linear it enters, but it makes a copy per
    Linear (q, k, v, gate, up, and each LoRA A), and backward keeps every copy: rounding once
    lets them all share one tensor (measured: the saved activations about halve). The final norm,
    which feeds the fp32 loss head, is left alone."""
    def to_dtype(module: Any, inputs: Any, output: Any) -> Any:
        return output.to(dtype)

    for name, module in model.named_modules():
        if ".layers." in name and type(module).__name__.endswith(("RMSNorm", "LayerNorm")):
            module.register_forward_hook(to_dtype)


def quantization_config(cfg: TrainConfig, device_name: str) -> Any:
    """bitsandbytes 4-bit settings from the QLoRA knobs (bnb >= 0.47 runs all of them on CPU)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:
        raise errors.missing_dependency(f"method: qlora needs bitsandbytes, which failed to load: {exc}") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type,
                              bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=resolve_compute_dtype(cfg.compute_dtype, cfg, device_name))


def trainer_arguments(cfg: TrainConfig, run: workspace.RunFolder, device_name: str) -> dict[str, Any]:
    """The TrainingArguments every objective shares (SFT, DPO and ORPO configs extend them)."""
    return dict(
        output_dir=str(run.checkpoints),
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=scheduler_type(cfg.lr_scheduler),
        lr_scheduler_kwargs=_scheduler_kwargs(cfg.lr_scheduler),
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optimizer,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=compute_precision(cfg, device_name) == "bf16",
        fp16=compute_precision(cfg, device_name) == "fp16",
        use_cpu=device_name == "cpu",
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        **_validation_kwargs(cfg),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Several processes (DDP): every trainable weight takes part in each step (LoRA, prompt and
        # prefix tuning, full); the unused-parameter search would only cost a graph traversal.
        ddp_find_unused_parameters=False,
    )


def _validation_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Evaluation on the held-out rows, keeping (and finally loading) the checkpoint with the
    best validation metric (best_metric; validation loss by default), which
    EarlyStoppingCallback also watches."""
    if cfg.val_fraction <= 0:
        return {"eval_strategy": "no"}
    metric, greater_is_better = config.BEST_METRICS[cfg.best_metric]
    return {"eval_strategy": "steps", "eval_steps": cfg.eval_steps or cfg.save_steps,
            "per_device_eval_batch_size": cfg.batch_size, "load_best_model_at_end": True,
            "metric_for_best_model": metric, "greater_is_better": greater_is_better}


def scheduler_type(scheduler: str) -> str:
    """transformers' "constant" ignores warmup_steps; its "constant_with_warmup" is the
    documented behaviour (and the same schedule when warmup is 0)."""
    return "constant_with_warmup" if scheduler == "constant" else scheduler


def _scheduler_kwargs(scheduler: str) -> dict[str, Any]:
    return {"num_cycles": config.RESTART_CYCLES} if scheduler == "cosine_with_restarts" else {}


def _silence_known_deprecations() -> None:
    """peft still asks models for `is_gradient_checkpointing`, which transformers 5 renamed; the
    FutureWarning it raises is about library internals the user cannot act on."""
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_for_training(cfg: TrainConfig, model_dir: Path, method: str, device_name: str,
                      init_adapter: Path | None) -> tuple[Any, Any]:
    """(tokenizer, model): the base model for ``method``, with a previous run's adapter when
    continuing one."""
    from transformers import AutoTokenizer

    _silence_known_deprecations()
    log.info("Loading %s for %s on %s", model_dir.name, method, device_name)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_base_model(model_dir, method, device_name, cfg)
    if init_adapter is not None:
        model = load_adapter_for_training(model, init_adapter)
    return tokenizer, model


def ready(trainer: Any) -> None:
    """Last touches on any built trainer: quiet its console printer, log what trains."""
    from transformers.trainer_callback import PrinterCallback

    # With tqdm off, the Trainer prints every log dict to stdout (moved to stderr here); the
    # protocol already carries the same numbers, so that copy is only noise in the log pane.
    trainer.remove_callback(PrinterCallback)
    trainable, total = _parameter_counts(trainer.model)
    log.info("Trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)


def run_callbacks(cfg: TrainConfig, run: workspace.RunFolder, job: Job, callback: Any, data: Any,
                  eval_data: Any) -> list[Any]:
    """The protocol callback first (cancel, divergence), then early stopping, TensorBoard files
    in runs/<id>/tensorboard and the sample generations."""

    prompts = train_samples.sample_conversations(cfg, data, eval_data)
    return [callback, *early_stopping_callbacks(cfg), *train_monitor.tensorboard_callbacks(run.path / "tensorboard"),
            *train_samples.make_samples_callback(cfg, run, job, prompts)]


def early_stopping_callbacks(cfg: TrainConfig) -> list[Any]:
    if cfg.early_stopping_patience <= 0:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience,
                                  early_stopping_threshold=cfg.early_stopping_min_delta)]


def _parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total): peft models count for themselves; a full fine-tune trains them all."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
