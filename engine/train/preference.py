"""Preference tuning: DPO (TRL's DPOTrainer) and ORPO (TRL's ORPOTrainer) on preference pairs.

The pairs are the importer's ``preference`` rows -- ``prompt`` (messages ending with a user
turn), ``chosen`` and ``rejected`` (one assistant message each) -- which is TRL's conversational
preference format, so the trainers apply the model's chat template themselves. Everything else
(run folder, events, cancel, checkpoints, early stopping, resume) is the SFT path's, in train.py.
DPO's reference model is the base with the adapter switched off, so it costs no extra memory
with LoRA/QLoRA; a full fine-tune keeps a frozen copy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from engine.core import errors, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.data.conversations import common_system_prompt
from engine.train import setup
from engine.train.adapters import peft_config_for
from engine.train.events import make_callback

log = logging.getLogger("engine.train.run")

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def load_preference_data(cfg: TrainConfig) -> tuple[Any, data_import.DatasetVersion, str | None]:
    version = data_import.resolve(cfg.dataset)
    data = data_split.load_split(version, "train")
    if not set(PAIR_COLUMNS) <= set(data.column_names):
        raise errors.invalid_input(
            f"dataset: {version.ref} has shape '{version.manifest.get('shape')}'; objective "
            f"{cfg.objective} needs preference pairs (prompt, chosen, rejected)")
    data = data.select_columns(list(PAIR_COLUMNS))
    log.info("Dataset %s: %d preference pairs", version.ref, len(data))
    return data, version, common_system_prompt(data["prompt"])


def build_preference_trainer(cfg: TrainConfig, run: workspace.RunFolder, job: Job, model_dir: Path,
                             method: str, device_name: str, data: Any, eval_data: Any = None,
                             init_adapter: Path | None = None) -> tuple[Any, Any]:
    tokenizer, model = setup.load_for_training(cfg, model_dir, method, device_name, init_adapter)
    trainer_class, args = _trainer_and_arguments(cfg, run, device_name)
    callback = make_callback(job, run)
    trainer = trainer_class(model=model, args=args, train_dataset=data, eval_dataset=eval_data,
                            processing_class=tokenizer,
                            peft_config=None if init_adapter else peft_config_for(cfg, method),
                            callbacks=setup.run_callbacks(cfg, run, job, callback, data, eval_data))
    if cfg.fused_lora:
        from engine.train import fused_lora  # torch at import

        fused_lora.install(trainer.model)
    setup.ready(trainer)
    return trainer, callback


def _trainer_and_arguments(cfg: TrainConfig, run: workspace.RunFolder, device_name: str) -> tuple[Any, Any]:
    common = setup.trainer_arguments(cfg, run, device_name)
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig(**common, beta=cfg.beta, max_length=cfg.max_length)
    # ORPO lives in trl.experimental in TRL 1.x; it is chosen knowingly, so the import-time
    # notice (which would greet every ORPO run in the log) is switched off.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig(**common, beta=cfg.beta, max_length=cfg.max_length)
