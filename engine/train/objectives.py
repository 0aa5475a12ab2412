"""What a run trains on: the objective's data loader and trainer builder, and the seeded
validation split. Shared by the run (``run``) and the fit probe (``probe``), which must build the
same trainer from the same rows."""

from __future__ import annotations

import logging
from typing import Any

from engine.core import errors
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
