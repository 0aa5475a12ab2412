"""A training run's folder from start to finish: created, attached to this process's events and
log, failures recorded, and the result (adapter or whole model) saved atomically.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.core import config, errors, protocol, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job

log = logging.getLogger("engine.train")


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


def start_run(cfg: TrainConfig, job: Job) -> workspace.RunFolder:
    run = workspace.create_run(cfg.name)
    attach_run(run, job)
    workspace.atomic_write_text(
        run.config_toml, config.to_toml(cfg, "As given; run.json records what auto resolved to.")
    )
    run.update_info(id=run.id, name=cfg.name, status=workspace.RUNNING, pid=os.getpid(),
                    created=_now(), model=cfg.model, dataset=cfg.dataset, method=cfg.method,
                    command=["tunebench-engine", *sys.argv[1:]])
    job.channel.send(protocol.artifact("run_dir", str(run.path), run_id=run.id))
    log.info("Run %s in %s", run.id, run.path)
    return run


def attach_run(run: workspace.RunFolder, job: Job, watch_cancel: bool = True) -> None:
    """Appends this process's events and log to the run folder (a resumed run continues both).

    ``watch_cancel``: poll for cancel.request (clearing an old one first). Rank 0 of a
    multi-process run leaves that to its parent and to the per-step check every rank makes."""
    job.channel.record_to(run.events)
    if watch_cancel:
        job.control.watch_cancel_file(run.path / "cancel.request")
    handler = logging.FileHandler(run.engine_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)


def detach_run(run: workspace.RunFolder, job: Job) -> None:
    """Undoes :func:`attach_run` for a process that goes on to other runs (a sweep worker): the
    run's log handler is closed and its event log no longer written."""
    job.channel.stop_recording()
    for handler in logging.getLogger().handlers[:]:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(run.engine_log):
            logging.getLogger().removeHandler(handler)
            handler.close()


def finish(run: workspace.RunFolder, job: Job, trainer: Any, callback: Any, status: str) -> int:
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


def is_full_fine_tune(trainer: Any) -> bool:
    """True when the trainer holds a plain model (no peft adapter): the whole model is saved."""
    from peft import PeftModel

    return not isinstance(trainer.model, PeftModel)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
