"""`train`: LoRA or QLoRA fine-tuning with peft + TRL's SFTTrainer, streamed as protocol events.

setup (resolve config, run folder, data, model) -> train (SFTTrainer with a protocol callback)
-> finish (adapter saved atomically, run.json updated). The run folder is written by the engine
itself, so a run survives the window that started it.

Loss covers the answer only: rows become conversational prompt/completion pairs (everything
before the last assistant turn is the prompt), and TRL's ``completion_only_loss`` masks the
prompt, end-of-turn token of the answer included in the loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import config, data_import, device, errors, models, protocol, workspace
from engine.config import TrainConfig

log = logging.getLogger("engine.train")


# -- setup -------------------------------------------------------------------------------------

def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """defaults < preset < TOML run file < flags (ConfigError names the bad field)."""
    cfg = TrainConfig()
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
    import datasets

    version = data_import.resolve(cfg.dataset)
    data = datasets.load_from_disk(str(version.path / "data"))
    system = common_system_prompt(data["messages"])
    data = data.map(to_prompt_completion, remove_columns=data.column_names)
    log.info("Dataset %s: %d examples", version.ref, len(data))
    return data, version, system


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


def load_base_model(model_dir: Path, method: str, device_name: str, cfg: TrainConfig) -> Any:
    """The base model, 4-bit NF4 for QLoRA, in the dtype the device handles well."""
    import torch
    from transformers import AutoModelForCausalLM

    bf16 = device_name == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if method == "qlora":
        kwargs["quantization_config"] = _nf4_config(dtype)
        kwargs["device_map"] = {"": 0 if device_name == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def _nf4_config(compute_dtype: Any) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:
        raise errors.missing_dependency(f"method: qlora needs bitsandbytes, which failed to load: {exc}") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    targets = cfg.target_modules.strip()
    return LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        task_type="CAUSAL_LM",
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()])


def sft_config(cfg: TrainConfig, run: workspace.RunFolder, device_name: str) -> Any:
    import torch
    from trl import SFTConfig

    bf16 = device_name == "cuda" and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(run.checkpoints),
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=device_name == "cpu",
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


# -- live events -------------------------------------------------------------------------------

def make_callback(job: Any, run: workspace.RunFolder) -> Any:
    """A TrainerCallback that streams progress/metrics and honours cancel at step boundaries.
    Built in a function so importing this module does not import transformers."""
    from transformers import TrainerCallback

    class ProtocolCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last_log = (self.started, 0.0)
            self.final_loss: float | None = None
            self.diverged = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.monotonic()
            self.last_log = (self.started, 0.0)
            job.channel.send(protocol.progress(state.global_step, state.max_steps, eta_s=None, stage="train"))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            elapsed = time.monotonic() - self.started
            remaining = state.max_steps - state.global_step
            eta = elapsed / max(state.global_step, 1) * remaining
            job.channel.send(protocol.progress(state.global_step, state.max_steps, eta_s=round(eta, 1),
                                               stage="train"))
            if job.control.cancelled.is_set() or self.diverged:
                control.should_training_stop = True
                control.should_save = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary has train_loss etc., not a step
            values = self._values(logs)
            self.final_loss = values.get("loss", self.final_loss)
            if not math.isfinite(values.get("loss", 0.0)):
                self.diverged = True
                log.error("Loss became %s at step %d; stopping.", values["loss"], state.global_step)
            job.channel.send(protocol.metrics(state.global_step, values))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            path = run.checkpoints / f"checkpoint-{state.global_step}"
            job.channel.send(protocol.artifact("checkpoint", str(path), step=state.global_step))

        def _values(self, logs: dict) -> dict[str, float]:
            values = {k: float(v) for k, v in logs.items()
                      if isinstance(v, (int, float)) and k != "num_tokens"}
            now, tokens = time.monotonic(), float(logs.get("num_tokens", 0.0))
            if tokens and now > self.last_log[0]:
                values["tokens_per_s"] = (tokens - self.last_log[1]) / (now - self.last_log[0])
            self.last_log = (now, tokens)
            values["memory_gb"] = _memory_gb()
            return {k: v if math.isfinite(v) else float("nan") for k, v in values.items()}

    return ProtocolCallback()


def _memory_gb() -> float:
    """Peak GPU memory when on CUDA, else this process's resident memory."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    import psutil

    return round(psutil.Process().memory_info().rss / 2**30, 3)


# -- the job -----------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace, job: Any) -> int:
    cfg = resolve_config(args)
    run = start_run(cfg, job)
    try:
        code = train(cfg, run, job)
    except errors.EngineError as exc:
        run.update_info(status=workspace.FAILED, exit_code=int(exc.code), error=exc.message, finished=_now())
        raise
    except BaseException as exc:
        run.update_info(status=workspace.FAILED, exit_code=int(protocol.ExitCode.FAILED),
                        error=f"{type(exc).__name__}: {exc}", finished=_now())
        raise
    return code


def start_run(cfg: TrainConfig, job: Any) -> workspace.RunFolder:
    run = workspace.create_run(cfg.name)
    job.channel.record_to(run.events)
    handler = logging.FileHandler(run.engine_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    workspace.atomic_write_text(run.config_toml, config.to_toml(cfg, "As given; run.json records what auto resolved to."))
    run.update_info(id=run.id, name=cfg.name, status=workspace.RUNNING, pid=os.getpid(),
                    created=_now(), model=cfg.model, dataset=cfg.dataset, method=cfg.method,
                    command=["tunebench-engine", *sys.argv[1:]])
    job.channel.send(protocol.artifact("run_dir", str(run.path), run_id=run.id))
    log.info("Run %s in %s", run.id, run.path)
    return run


def train(cfg: TrainConfig, run: workspace.RunFolder, job: Any) -> int:
    device_name = device.pick(cfg.device)
    method = resolve_method(cfg.method, device_name)
    job.channel.send(protocol.progress(0, 0, stage="load", what="dataset"))
    data, version, system_prompt = load_training_data(cfg)
    job.channel.send(protocol.progress(0, 0, stage="load", what="model"))
    model_dir = models.prepare(cfg.model)
    run.update_info(method=method, device=device_name, model_dir=str(model_dir),
                    dataset=version.ref, dataset_rows=len(data), system_prompt=system_prompt)
    workspace.atomic_write_text(run.config_toml, config.to_toml(
        dataclasses.replace(cfg, method=method, device=device_name, dataset=version.ref),
        "Resolved configuration of this run."))
    trainer, callback = build_trainer(cfg, run, job, model_dir, method, device_name, data)
    if job.control.cancelled.is_set():
        return finish(run, job, trainer, callback, workspace.CANCELLED)
    trainer.train()
    status = workspace.CANCELLED if job.control.cancelled.is_set() else workspace.FINISHED
    if callback.diverged:
        finish(run, job, trainer, callback, workspace.FAILED)
        raise errors.EngineError(protocol.ExitCode.FAILED,
                                 "training diverged (loss is not finite); lower the learning rate")
    return finish(run, job, trainer, callback, status)


def _silence_known_deprecations() -> None:
    """peft still asks models for `is_gradient_checkpointing`, which transformers 5 renamed; the
    FutureWarning it raises is about library internals the user cannot act on."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def build_trainer(cfg: TrainConfig, run: workspace.RunFolder, job: Any, model_dir: Path, method: str,
                  device_name: str, data: Any) -> tuple[Any, Any]:
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    _silence_known_deprecations()
    log.info("Loading %s for %s on %s", model_dir.name, method, device_name)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_base_model(model_dir, method, device_name, cfg)
    callback = make_callback(job, run)
    trainer = SFTTrainer(model=model, args=sft_config(cfg, run, device_name), train_dataset=data,
                         processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=[callback])
    # With tqdm off, the Trainer prints every log dict to stdout (moved to stderr here); the
    # protocol already carries the same numbers, so that copy is only noise in the log pane.
    trainer.remove_callback(PrinterCallback)
    if len(trainer.train_dataset) == 0:
        raise errors.invalid_input(
            f"max_length: {cfg.max_length} tokens leaves no example with any answer tokens to "
            "learn from; raise max_length")
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("Trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return trainer, callback


def finish(run: workspace.RunFolder, job: Any, trainer: Any, callback: Any, status: str) -> int:
    save_adapter(trainer, run)
    job.channel.send(protocol.artifact("adapter", str(run.adapter)))
    steps = trainer.state.global_step
    info = run.update_info(status=status, finished=_now(), steps=steps, total_steps=trainer.state.max_steps,
                           final_loss=callback.final_loss, adapter=str(run.adapter))
    code = protocol.ExitCode.CANCELLED if status == workspace.CANCELLED else protocol.ExitCode.OK
    info["exit_code"] = int(code)
    run.update_info(exit_code=int(code))
    job.channel.send(protocol.result({"run_id": run.id, "run_dir": str(run.path), "adapter": str(run.adapter),
                                      "steps": steps, "final_loss": callback.final_loss, "status": status}))
    log.info("Run %s %s after %d steps; adapter in %s", run.id, status, steps, run.adapter)
    return code


def save_adapter(trainer: Any, run: workspace.RunFolder) -> None:
    """Writes the adapter (and the tokenizer, so its chat template travels with it) to a temp
    folder and renames it into place: an adapter/ folder is always complete."""
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=run.path))
    try:
        trainer.model.save_pretrained(str(tmp))
        trainer.processing_class.save_pretrained(str(tmp))
        if run.adapter.exists():
            shutil.rmtree(run.adapter)
        os.replace(tmp, run.adapter)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
