"""`train`: LoRA, QLoRA, prompt/prefix tuning (train_peft) or full fine-tuning with peft + TRL's
SFTTrainer -- or DPO/ORPO on preference pairs (train_preference) -- streamed as protocol events.
Resume and continue-from live in train_resume; live events in train_events, hardware figures
and TensorBoard in train_monitor, sample generations in train_samples.

setup (resolve config, run folder, data, model) -> train (SFTTrainer with a protocol callback)
-> finish (adapter/ -- or model/ for a full fine-tune -- saved atomically, run.json updated). The
run folder is written by the engine itself, so a run survives the window that started it.

Loss covers the answer only by default: rows become conversational prompt/completion pairs
(everything before the last assistant turn is the prompt), and TRL's ``completion_only_loss``
masks the prompt, end-of-turn token of the answer included in the loss (the knob of the same
name turns the mask off).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine import config, data_import, data_split, device, errors, models, protocol, workspace
from engine.config import TrainConfig
from engine.train_events import make_callback
from engine.train_peft import peft_config_for
from engine import train_resume
from engine.train_resume import continuation_adapter, continued_config, find_run, load_adapter_for_training

log = logging.getLogger("engine.train")


# -- setup -------------------------------------------------------------------------------------

def resolve_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """defaults (or ``base``) < preset < TOML run file < flags (ConfigError names the bad field)."""
    cfg = base or TrainConfig()
    if args.preset:
        cfg = config.from_mapping(config.get_preset(args.preset).values, cfg, source=f"preset {args.preset}")
    if args.config:
        cfg = config.load_toml(Path(args.config).expanduser(), cfg)
    return config.from_arguments(args, cfg)


def resolve_method(method: str, device_name: str) -> str:
    if method == "auto":
        return "qlora" if device_name == "cuda" else "lora"
    return method


def to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_training_data(cfg: TrainConfig) -> tuple[Any, data_import.DatasetVersion, str | None]:
    version = data_import.resolve(cfg.dataset)
    data = data_split.load_split(version, "train")  # a split version trains on its train split
    if "messages" not in data.column_names:
        # Text and classification datasets import fine but need other trainers (continued
        # pre-training, a classification head); preference pairs go to train_preference.
        raise errors.invalid_input(
            f"dataset: {version.ref} has shape '{version.manifest.get('shape')}'; supervised fine-tuning "
            "needs conversations (messages, Alpaca, ShareGPT or prompt/completion); preference pairs train "
            "with --objective dpo or orpo")
    system = common_system_prompt(data["messages"])
    data = data.map(to_prompt_completion, remove_columns=data.column_names)
    log.info("Dataset %s: %d examples", version.ref, len(data))
    return data, version, system


def split_validation(data: Any, fraction: float, seed: int) -> tuple[Any, Any | None]:
    """(train, validation): a seeded split so a resumed run holds out the same rows; at least
    one row each side, however small the dataset."""
    if fraction <= 0:
        return data, None
    if len(data) < 2:
        raise errors.invalid_input(f"val_fraction: the dataset has {len(data)} row; validation needs at least 2")
    held_out = min(max(1, round(len(data) * fraction)), len(data) - 1)
    parts = data.train_test_split(test_size=held_out, seed=seed, shuffle=True)
    log.info("Validation: %d rows held out, %d train", held_out, len(parts["train"]))
    return parts["train"], parts["test"]


def common_system_prompt(conversations: list[list[dict]]) -> str | None:
    """The system prompt shared by at least 90% of the rows, if there is one: the run records
    it so that `generate` with this run's adapter asks the way training did."""
    counts: dict[str, int] = {}
    for messages in conversations:
        if messages and messages[0]["role"] == "system":
            counts[messages[0]["content"]] = counts.get(messages[0]["content"], 0) + 1
    if not counts:
        return None
    prompt, count = max(counts.items(), key=lambda item: item[1])
    return prompt if count >= 0.9 * len(conversations) else None


def check_runtime(cfg: TrainConfig, device_name: str) -> None:
    """Checks that need the resolved device (`auto` is only known here), before any load."""
    config.check_optimizer_device(cfg.optimizer, device_name, source=f"device {cfg.device} resolved to {device_name}")


def _bf16_available(device_name: str) -> bool:
    import torch

    return device_name == "cuda" and torch.cuda.is_bf16_supported()


def resolve_compute_dtype(name: str, device_name: str) -> Any:
    """QLoRA's compute dtype: auto = bfloat16 on a CUDA GPU that supports it, else float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if _bf16_available(device_name) else torch.float32
    return getattr(torch, name)


def load_base_model(model_dir: Path, method: str, device_name: str, cfg: TrainConfig) -> Any:
    """The base model, 4-bit for QLoRA, in the dtype the device handles well."""
    import torch
    from transformers import AutoModelForCausalLM

    # A full fine-tune keeps fp32 master weights (bf16 runs as autocast): AdamW updates of a
    # well-trained weight are often below bf16's resolution and would be lost.
    bf16 = _bf16_available(device_name) and method != "full"
    dtype = torch.bfloat16 if bf16 else torch.float32
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
                              bnb_4bit_compute_dtype=resolve_compute_dtype(cfg.compute_dtype, device_name))


def sft_config(cfg: TrainConfig, run: workspace.RunFolder, device_name: str) -> Any:
    from trl import SFTConfig

    return SFTConfig(**trainer_arguments(cfg, run, device_name), max_length=cfg.max_length,
                     completion_only_loss=cfg.completion_only_loss, **_packing_kwargs(cfg.packing))


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
        bf16=_bf16_available(device_name),
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


def _packing_kwargs(packing: bool) -> dict[str, Any]:
    """Best-fit-decreasing packing, padding-free: the collator emits position_ids that restart
    at every example and no attention mask, and transformers turns those into a block-diagonal
    mask (flash attention, SDPA and eager alike, so CPU too): no attention across examples."""
    if not packing:
        return {"packing": False}
    return {"packing": True, "packing_strategy": "bfd", "padding_free": True}


# -- the job -----------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace, job: Any) -> int:
    if getattr(args, "resume", None):
        return train_resume.cmd_resume(args, job)
    source = find_run(args.continue_from, "continue_from") if getattr(args, "continue_from", None) else None
    cfg = resolve_config(args, base=continued_config(source) if source else None)
    init_adapter = continuation_adapter(source, cfg) if source else None
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)  # refuse before a run folder exists for a run that cannot start
    run = start_run(cfg, job)
    if source:
        run.update_info(continued_from=source.id, initial_adapter=str(init_adapter))
        log.info("Continuing from run %s: the adapter starts from %s", source.id, init_adapter)
    return run_guarded(run, lambda: train(cfg, run, job, device_name, init_adapter=init_adapter))


def run_guarded(run: workspace.RunFolder, body: Any) -> int:
    """Runs ``body`` and records any failure in run.json before it reaches the CLI's one line."""
    try:
        return body()
    except errors.EngineError as exc:
        run.update_info(status=workspace.FAILED, exit_code=int(exc.code), error=exc.message, finished=_now())
        raise
    except BaseException as exc:
        run.update_info(status=workspace.FAILED, exit_code=int(protocol.ExitCode.FAILED),
                        error=f"{type(exc).__name__}: {exc}", finished=_now())
        raise


# -- the run -----------------------------------------------------------------------------------

def start_run(cfg: TrainConfig, job: Any) -> workspace.RunFolder:
    run = workspace.create_run(cfg.name)
    attach_run(run, job)
    workspace.atomic_write_text(run.config_toml, config.to_toml(cfg, "As given; run.json records what auto resolved to."))
    run.update_info(id=run.id, name=cfg.name, status=workspace.RUNNING, pid=os.getpid(),
                    created=_now(), model=cfg.model, dataset=cfg.dataset, method=cfg.method,
                    command=["tunebench-engine", *sys.argv[1:]])
    job.channel.send(protocol.artifact("run_dir", str(run.path), run_id=run.id))
    log.info("Run %s in %s", run.id, run.path)
    return run


def attach_run(run: workspace.RunFolder, job: Any) -> None:
    """Appends this process's events and log to the run folder (a resumed run continues both)."""
    job.channel.record_to(run.events)
    job.control.watch_cancel_file(run.path / "cancel.request")
    handler = logging.FileHandler(run.engine_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)


def train(cfg: TrainConfig, run: workspace.RunFolder, job: Any, device_name: str,
          resume_from: Path | None = None, init_adapter: Path | None = None) -> int:
    method = resolve_method(cfg.method, device_name)
    job.channel.send(protocol.progress(0, 0, stage="load", what="dataset"))
    load_data, build = objective_functions(cfg.objective)
    data, version, system_prompt = load_data(cfg)
    train_data, eval_data = split_validation(data, cfg.val_fraction, cfg.seed)
    job.channel.send(protocol.progress(0, 0, stage="load", what="model"))
    model_dir = models.prepare(cfg.model)
    run.update_info(method=method, objective=cfg.objective, device=device_name, model_dir=str(model_dir),
                    dataset=version.ref, dataset_rows=len(data), system_prompt=system_prompt,
                    validation_rows=len(eval_data) if eval_data is not None else 0)
    workspace.atomic_write_text(run.config_toml, config.to_toml(
        dataclasses.replace(cfg, method=method, device=device_name, dataset=version.ref),
        "Resolved configuration of this run."))
    trainer, callback = build(cfg, run, job, model_dir, method, device_name, train_data,
                              eval_data=eval_data, init_adapter=init_adapter)
    if job.control.cancelled.is_set():
        return finish(run, job, trainer, callback, workspace.CANCELLED)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    status = workspace.CANCELLED if job.control.cancelled.is_set() else workspace.FINISHED
    if callback.diverged:
        finish(run, job, trainer, callback, workspace.FAILED)
        raise errors.EngineError(protocol.ExitCode.FAILED,
                                 "training diverged (loss is not finite or exploded); lower the learning rate")
    _note_early_stop(cfg, run, trainer, status)
    return finish(run, job, trainer, callback, status)


def objective_functions(objective: str) -> tuple[Any, Any]:
    """(load data, build trainer) for the objective: SFT here, DPO/ORPO in train_preference."""
    if objective == "sft":
        return load_training_data, build_trainer
    from engine import train_preference

    return train_preference.load_preference_data, train_preference.build_preference_trainer


def _note_early_stop(cfg: TrainConfig, run: workspace.RunFolder, trainer: Any, status: str) -> None:
    state = trainer.state
    if cfg.early_stopping_patience and status == workspace.FINISHED and state.global_step < state.max_steps:
        log.info("Early stop at step %d: validation %s did not improve for %d evaluations",
                 state.global_step, cfg.best_metric.replace("_", " "), cfg.early_stopping_patience)
        run.update_info(stopped_early=True)


def _silence_known_deprecations() -> None:
    """peft still asks models for `is_gradient_checkpointing`, which transformers 5 renamed; the
    FutureWarning it raises is about library internals the user cannot act on."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def build_trainer(cfg: TrainConfig, run: workspace.RunFolder, job: Any, model_dir: Path, method: str,
                  device_name: str, data: Any, eval_data: Any = None,
                  init_adapter: Path | None = None) -> tuple[Any, Any]:
    from trl import SFTTrainer

    tokenizer, model = load_for_training(cfg, model_dir, method, device_name, init_adapter)
    callback = make_callback(job, run)
    trainer = SFTTrainer(model=model, args=sft_config(cfg, run, device_name), train_dataset=data,
                         eval_dataset=eval_data, processing_class=tokenizer,
                         peft_config=None if init_adapter else peft_config_for(cfg, method),
                         callbacks=run_callbacks(cfg, run, job, callback, data, eval_data))
    if len(trainer.train_dataset) == 0:
        raise errors.invalid_input(
            f"max_length: {cfg.max_length} tokens leaves no example with any answer tokens to "
            "learn from; raise max_length")
    ready(trainer)
    return trainer, callback


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


def run_callbacks(cfg: TrainConfig, run: workspace.RunFolder, job: Any, callback: Any, data: Any,
                  eval_data: Any) -> list[Any]:
    """The protocol callback first (cancel, divergence), then early stopping, TensorBoard files
    in runs/<id>/tensorboard and the sample generations."""
    from engine import train_monitor, train_samples

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


def is_full_fine_tune(trainer: Any) -> bool:
    """True when the trainer holds a plain model (no peft adapter): the whole model is saved."""
    from peft import PeftModel

    return not isinstance(trainer.model, PeftModel)


def finish(run: workspace.RunFolder, job: Any, trainer: Any, callback: Any, status: str) -> int:
    kind, folder = ("model", run.model) if is_full_fine_tune(trainer) else ("adapter", run.adapter)
    save_atomically(trainer, folder)
    job.channel.send(protocol.artifact(kind, str(folder)))
    steps = trainer.state.global_step
    best = best_checkpoint(trainer)
    info = run.update_info(status=status, finished=_now(), steps=steps, total_steps=trainer.state.max_steps,
                           final_loss=callback.final_loss, artifact_kind=kind, **{_info_key(kind): str(folder)},
                           **best)
    code = protocol.ExitCode.CANCELLED if status == workspace.CANCELLED else protocol.ExitCode.OK
    info["exit_code"] = int(code)
    run.update_info(exit_code=int(code))
    job.channel.send(protocol.result({"run_id": run.id, "run_dir": str(run.path), kind: str(folder),
                                      "artifact_kind": kind, "steps": steps,
                                      "final_loss": callback.final_loss, "status": status, **best}))
    log.info("Run %s %s after %d steps; %s in %s", run.id, status, steps, kind, folder)
    return code


def best_checkpoint(trainer: Any) -> dict[str, Any]:
    """With validation on, the Trainer has loaded the checkpoint of best validation metric
    before the final save, so the adapter saved is that one; run.json says which it was."""
    state = trainer.state
    if state.best_model_checkpoint is None or state.best_metric is None:
        return {}
    name = trainer.args.metric_for_best_model
    key = "best_eval_loss" if name == "eval_loss" else "best_" + name.replace("/", "_")
    return {"best_checkpoint": str(state.best_model_checkpoint), key: float(state.best_metric)}


def _info_key(kind: str) -> str:
    # run.json's "model" already names the base model; the tuned one gets its own key.
    return "adapter" if kind == "adapter" else "tuned_model"


def save_atomically(trainer: Any, target: Path) -> None:
    """Writes the adapter or whole model (and the tokenizer, so its chat template travels with
    it) to a temp folder beside ``target`` and renames it into place: the folder is always
    complete."""
    # DPO continuing an adapter keeps a frozen copy of it as "ref"; only the trained one is the result.
    extra = {"selected_adapters": ["default"]} if "ref" in getattr(trainer.model, "peft_config", {}) else {}
    with workspace.atomic_folder(target, replace=True) as tmp:
        trainer.model.save_pretrained(str(tmp), **extra)
        trainer.processing_class.save_pretrained(str(tmp))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
