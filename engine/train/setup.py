"""Loading a model for training and the Trainer settings every objective shares.

The SFT path (``run``) and the preference path (``preference``) both build their trainers
from these pieces: the base model (4-bit for QLoRA), an optional adapter to continue, the
TrainingArguments, and the callbacks (protocol events, early stopping, TensorBoard, samples).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.core import config, errors, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.train import monitor as train_monitor
from engine.train import precision
from engine.train import samples as train_samples
from engine.train.resume import load_adapter_for_training

log = logging.getLogger("engine.train")


def resolve_method(method: str, device_name: str) -> str:
    if method == "auto":
        return "qlora" if device_name == "cuda" else "lora"
    return method


def check_runtime(cfg: TrainConfig, device_name: str) -> None:
    """Checks that need the resolved device (`auto` is only known here), before any load."""
    config.check_optimizer_device(cfg.optimizer, device_name, source=f"device {cfg.device} resolved to {device_name}")


def compute_precision(cfg: TrainConfig, device_name: str) -> str:
    """The ``precision`` knob resolved for the device: 'fp32', 'bf16' or 'fp16'."""
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
    import torch
    from transformers import AutoModelForCausalLM

    # A full fine-tune keeps fp32 master weights (bf16 runs as autocast): AdamW updates of a
    # well-trained weight are often below bf16's resolution and would be lost. Frozen weights
    # (LoRA's base) are stored in the compute precision: half the memory, no cast per step.
    half = compute_precision(cfg, device_name) != "fp32" and method != "full"
    dtype = precision.torch_dtype(compute_precision(cfg, device_name)) if half else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if method == "qlora":
        kwargs["quantization_config"] = quantization_config(cfg, device_name)
        kwargs["device_map"] = {"": 0 if device_name == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


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
    import warnings

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
