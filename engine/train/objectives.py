"""What a run trains on: the objective's data loader and trainer builder, and the seeded
validation split. Shared by the run (``run``) and the fit probe (``probe``), which must build the
same trainer from the same rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import errors, protocol
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.runtime import models
from engine.train import preference as train_preference
from engine.train import sft

log = logging.getLogger("engine.train.run")


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


def objective_functions(objective: str) -> tuple[Any, Any]:
    """(load data, build trainer) for the objective: SFT in ``sft``, DPO/ORPO in ``preference``."""
    if objective == "sft":
        return sft.load_training_data, sft.build_trainer
    return train_preference.load_preference_data, train_preference.build_preference_trainer


@dataclass
class Inputs:
    """What a run trains on, loaded: the trainer builder, the rows split as the run splits them,
    and the prepared model folder."""

    build: Any
    data: Any
    version: Any
    system_prompt: str | None
    train_data: Any
    eval_data: Any | None
    model_dir: Path


def load_inputs(cfg: TrainConfig, job: Job) -> Inputs:
    """The dataset and the model for ``cfg``, with progress messages; the run and the fit probe
    both start here, so the probe measures the rows the run will train on."""
    job.channel.send(protocol.progress(0, 0, stage="load", what="dataset"))
    load_data, build = objective_functions(cfg.objective)
    data, version, system_prompt = load_data(cfg)
    train_data, eval_data = split_validation(data, cfg.val_fraction, cfg.seed)
    job.channel.send(protocol.progress(0, 0, stage="load", what="model"))
    return Inputs(build, data, version, system_prompt, train_data, eval_data, models.prepare(cfg.model))
