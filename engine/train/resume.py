"""Runs that go on: `train --resume` continues a stopped, cancelled or crashed run in its own
folder from its last complete checkpoint; `train --continue-from` starts a new run whose adapter
begins as another run's."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from engine.core import config, errors, workspace
from engine.core.config import TrainConfig
from engine.runtime import model_files

log = logging.getLogger("engine.train.run")


def find_run(ref: str, field_name: str) -> workspace.RunFolder:
    run = workspace.open_run(ref)
    if run is None:
        raise errors.not_found(f"{field_name}: no run {ref!r} (give a run id from the runs list or a run folder)")
    return run


# -- continue training: a new run whose adapter starts from another run's ------------------------

def continued_config(source: workspace.RunFolder) -> TrainConfig:
    """The source run's resolved settings are the starting point; preset, file and flags
    still override them."""
    if not source.config_toml.is_file():
        raise errors.not_found(f"continue_from: run {source.id} has no config.toml")
    return config.load_toml(source.config_toml)


def continuation_adapter(source: workspace.RunFolder, cfg: TrainConfig) -> Path:
    if not (source.adapter / "adapter_config.json").is_file():
        raise errors.not_found(f"continue_from: run {source.id} has no finished adapter to continue from "
                               "(a full fine-tune's model/ folder can be given as --model instead)")
    if cfg.method == "full":
        raise errors.usage("method: full cannot continue an adapter; use lora or qlora")
    model_files.check_folder(source.adapter, "adapter_config.json", "continue_from")
    return source.adapter


def load_adapter_for_training(model: Any, adapter: Path) -> Any:
    """The adapter's own LoRA settings (r, alpha, targets) win over the config's: the weights
    only fit the shape they were trained in."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)


# -- resume: the same run folder, from its last complete checkpoint ------------------------------

# Settings a resumed run may change: only how long it goes on. Anything else would make the
# checkpoint's optimiser and scheduler state describe a different run.
RESUME_OVERRIDES = ("max_steps", "epochs")


def refuse_flags_besides_resume(args: argparse.Namespace) -> None:
    given = [config.flag_name(f.name) for f in config.fields_of()
             if getattr(args, f.name, None) is not None and f.name not in RESUME_OVERRIDES]
    given += [flag for flag, name in (("--preset", "preset"), ("--config", "config"),
                                      ("--continue-from", "continue_from")) if getattr(args, name, None)]
    if given:
        raise errors.usage(f"resume: a resumed run keeps its config.toml; only --max-steps and --epochs "
                           f"may change (got {', '.join(given)})")


def check_resumable(run: workspace.RunFolder, info: dict[str, Any]) -> None:
    status = info.get("status")
    if status == workspace.FINISHED:
        raise errors.usage(f"resume: run {run.id} already finished; use continue "
                           f"(--continue-from {run.id}) to train its adapter further as a new run")
    pid = info.get("pid")
    if status == workspace.RUNNING and pid != os.getpid() and workspace.pid_alive(pid):
        raise errors.usage(f"resume: run {run.id} is still running (process {pid})")
    if not run.config_toml.is_file():
        raise errors.not_found(f"resume: run {run.id} has no config.toml")
