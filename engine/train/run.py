"""`train`: LoRA, QLoRA, prompt/prefix tuning (``adapters``) or full fine-tuning with peft + TRL's
SFTTrainer -- or DPO/ORPO on preference pairs (``preference``) -- streamed as protocol events.
Loading and Trainer settings live in ``setup``, the run folder's life in ``lifecycle``, resume
and continue-from in ``resume``, live events in ``events``, hardware figures and TensorBoard in
``monitor``, sample generations in ``samples``, several processes (``--gpus N``, the cluster
launch files) in ``distributed``.

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
import shutil
from pathlib import Path
from typing import Any

from engine.core import config, errors, names, protocol, workspace
from engine.core.config import TrainConfig
from engine.core.job import Job
from engine.data import importer as data_import
from engine.runtime import device, models, pickles
from engine.train import distributed
from engine.train import probe as fit_probe
from engine.train.lifecycle import attach_run, finish, run_guarded, start_run
from engine.train.objectives import load_inputs
from engine.train.resume import (
    check_resumable,
    continuation_adapter,
    continued_config,
    find_run,
    refuse_flags_besides_resume,
)
from engine.train.setup import (
    check_runtime,
    resolve_method,
)

log = logging.getLogger("engine.train.run")


# -- setup -------------------------------------------------------------------------------------

def resolve_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """defaults (or ``base``) < preset < TOML run file < flags (ConfigError names the bad field)."""
    cfg = base or TrainConfig()
    if args.preset:
        cfg = config.from_mapping(config.get_preset(args.preset).values, cfg, source=f"preset {args.preset}")
    if args.config:
        cfg = config.load_toml(Path(args.config).expanduser(), cfg)
    return config.from_arguments(args, cfg)


# -- the job -----------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace, job: Job) -> int:
    if getattr(args, "worker_of", None):
        return cmd_worker(args, job)
    _check_launch_flags(args)
    if getattr(args, "resume", None):
        if getattr(args, "probe", False):
            raise errors.usage("--probe checks a new run's settings; a resumed run keeps its own")
        return cmd_resume(args, job)
    source = find_run(args.continue_from, "continue_from") if getattr(args, "continue_from", None) else None
    cfg = resolve_config(args, base=continued_config(source) if source else None)
    if getattr(args, "export_launch", None):
        folder = names.check_out_path(args.export_launch, "--export-launch")
        return distributed.export_launch(folder, cfg, 1 if args.nodes is None else args.nodes, job)
    init_adapter = continuation_adapter(source, cfg) if source else None
    if getattr(args, "probe", False):
        return fit_probe.cmd_probe(cfg, job, init_adapter=init_adapter)  # writes nothing to runs/
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)  # refuse before a run folder exists for a run that cannot start
    run = start_run(cfg, job)
    if source:
        run.update_info(continued_from=source.id, initial_adapter=str(init_adapter))
        log.info("Continuing from run %s: the adapter starts from %s", source.id, init_adapter)
    if distributed.processes(cfg) > 1:
        return run_guarded(run, lambda: launch_workers(cfg, run, job, device_name))
    return run_guarded(run, lambda: train(cfg, run, job, device_name, init_adapter=init_adapter))


def _check_launch_flags(args: argparse.Namespace) -> None:
    """--export-launch writes a fresh run's settings; --nodes only means something with it."""
    if getattr(args, "nodes", None) is not None and not getattr(args, "export_launch", None):
        raise errors.usage("nodes: applies to --export-launch only")
    if getattr(args, "export_launch", None) and (getattr(args, "resume", None) or getattr(args, "continue_from", None)):
        raise errors.usage("export_launch: a cluster run starts fresh from config.toml; it cannot take "
                           "--resume or --continue-from (their adapter and checkpoints live in this workspace)")


def remove_cut_off_checkpoints(run: workspace.RunFolder) -> None:
    """A checkpoint folder that is not complete (``workspace.checkpoint_complete``: no
    trainer_state.json naming its step, the Trainer's last write) was cut off mid-save by a crash
    or a kill: it is never resumed from, and the resumed run would write into it again, so it
    goes before training restarts."""
    for folder in run.checkpoints.glob("checkpoint-*"):
        if folder.is_dir() and not workspace.checkpoint_complete(folder):
            log.info("Removing %s, cut off mid-save", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def cmd_resume(args: argparse.Namespace, job: Job) -> int:
    refuse_flags_besides_resume(args)
    run = find_run(args.resume, "resume")
    info = run.info()
    check_resumable(run, info)
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        raise errors.not_found(f"resume: run {run.id} has no complete checkpoint to resume from")
    # The Trainer unpickles optimizer.pt, scheduler.pt, rng_state.pth (weights_only=True); a run
    # folder may have come from elsewhere, so anything in them beyond tensors and plain data is
    # refused here in one line, before any of it is loaded.
    pickles.check_folder(checkpoint, "resume")
    remove_cut_off_checkpoints(run)
    cfg = config.from_arguments(args, config.load_toml(run.config_toml))
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)
    attach_run(run, job)
    step = workspace.checkpoint_step(checkpoint)
    run.update_info(status=workspace.RUNNING, pid=os.getpid(), error=None, exit_code=None, finished=None,
                    resumed_from=[*info.get("resumed_from", []), step])
    job.channel.send(protocol.artifact("run_dir", str(run.path), run_id=run.id, resumed_from=step))
    log.info("Resuming run %s from %s", run.id, checkpoint.name)
    if distributed.processes(cfg) > 1:
        return run_guarded(run, lambda: launch_workers(cfg, run, job, device_name, resume=True))
    init_adapter = Path(info["initial_adapter"]) if info.get("initial_adapter") else None
    return run_guarded(run, lambda: train(cfg, run, job, device_name, resume_from=checkpoint,
                                          init_adapter=init_adapter))


# -- several processes (engine/train/distributed.py) -------------------------------------------

def launch_workers(cfg: TrainConfig, run: workspace.RunFolder, job: Job, device_name: str,
                   resume: bool = False) -> int:
    """The parent of a multi-process run: resolves what only one process may write (a data
    file imported into the workspace, a GGUF model converted once) and the resolved
    config.toml the workers load, then starts them and relays rank 0."""
    cfg = _prepare_shared(cfg, run, job, device_name)
    return distributed.launch(cfg, run, job, device_name, resume=resume)


def _prepare_shared(cfg: TrainConfig, run: workspace.RunFolder, job: Job, device_name: str) -> TrainConfig:
    job.channel.send(protocol.progress(0, 0, stage="load", what="dataset"))
    version = data_import.resolve(cfg.dataset)
    job.channel.send(protocol.progress(0, 0, stage="load", what="model"))
    models.prepare(cfg.model)
    resolved = dataclasses.replace(cfg, method=resolve_method(cfg.method, device_name), device=device_name,
                                   dataset=version.ref)
    workspace.atomic_write_text(run.config_toml, config.to_toml(resolved, "Resolved configuration of this run."))
    return resolved


def cmd_worker(args: argparse.Namespace, job: Job) -> int:
    """One process of a multi-process run, started by accelerate launch or torchrun (never by
    hand): ``--worker-of RUN`` trains in that run folder with its config.toml; ``--worker-of
    new`` (cluster launch files) has rank 0 create the run from --config and the flags."""
    if distributed.world_size() < 2:
        raise errors.usage("worker_of: for the processes that accelerate launch or torchrun start "
                           "(WORLD_SIZE above 1); use train --gpus N instead")
    main = distributed.is_main_process()
    if not main:
        job = distributed.quiet(job)
    if args.worker_of == distributed.NEW_RUN:
        run, cfg, device_name = _join_new_run(args, job, main)
    else:
        run = find_run(args.worker_of, "worker_of")
        cfg = config.load_toml(run.config_toml)
        device_name = device.pick(cfg.device)
        distributed.init_group(device_name)
        if main:
            attach_run(run, job, watch_cancel=False)
    resume_from = None
    if args.resume:
        resume_from = run.last_checkpoint()
        if resume_from is None:
            raise errors.not_found(f"resume: run {run.id} has no complete checkpoint to resume from")
    initial = run.info().get("initial_adapter")
    body = lambda: train(cfg, run, job, device_name, resume_from=resume_from,  # noqa: E731
                         init_adapter=Path(initial) if initial else None)
    code = run_guarded(run, body) if main else body()
    distributed.leave_group()
    if code == protocol.ExitCode.CANCELLED and args.worker_of != distributed.NEW_RUN:
        # The parent exits 7 from run.json; a non-zero worker would have the launcher report a crash.
        return protocol.ExitCode.OK
    return code


def _join_new_run(args: argparse.Namespace, job: Job, main: bool) -> tuple[workspace.RunFolder, TrainConfig, str]:
    """Rank 0 creates the run folder (dataset and model resolved once); every rank gets its path
    and the resolved settings from rank 0."""
    cfg = resolve_config(args)
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)
    distributed.init_group(device_name)
    shared = None
    if main:
        run = start_run(cfg, job)
        shared = (str(run.path), dataclasses.asdict(run_guarded(run, lambda: _prepare_shared(cfg, run, job,
                                                                                             device_name))))
    path, values = distributed.share_from_main(shared)
    return workspace.RunFolder(Path(path)), config.from_mapping(values), device_name


# -- the run -----------------------------------------------------------------------------------


def train(cfg: TrainConfig, run: workspace.RunFolder, job: Job, device_name: str,
          resume_from: Path | None = None, init_adapter: Path | None = None,
          callbacks: tuple[Any, ...] = ()) -> int:
    """Trains in this process; in a multi-process run every rank calls it and rank 0 alone
    writes the run folder. ``callbacks``: more TrainerCallbacks, after the run's own (a sweep's
    pruning callback)."""
    main, group = distributed.is_main_process(), distributed.world_size()
    method = resolve_method(cfg.method, device_name)
    inputs = load_inputs(cfg, job)
    build, data, version, eval_data = inputs.build, inputs.data, inputs.version, inputs.eval_data
    model_dir, system_prompt, train_data = inputs.model_dir, inputs.system_prompt, inputs.train_data
    if main:
        run.update_info(method=method, objective=cfg.objective, device=device_name, model_dir=str(model_dir),
                        dataset=version.ref, dataset_rows=len(data), system_prompt=system_prompt,
                        validation_rows=len(eval_data) if eval_data is not None else 0)
        workspace.atomic_write_text(run.config_toml, config.to_toml(
            dataclasses.replace(cfg, method=method, device=device_name, dataset=version.ref),
            "Resolved configuration of this run."))
    if group > 1 and main:
        run.update_info(processes=group, global_batch=distributed.global_batch(cfg, group))
        log.info("Training on %d processes: global batch %d (micro-batch %d x grad. accumulation %d x %d)",
                 group, distributed.global_batch(cfg, group), cfg.batch_size, cfg.grad_accum, group)
    trainer, callback = build(cfg, run, job, model_dir, method, device_name, train_data,
                              eval_data=eval_data, init_adapter=init_adapter)
    for extra in callbacks:
        trainer.add_callback(extra)
    if group > 1:
        trainer.add_callback(distributed.stop_together_callback(job, run))
        cancelled = distributed.cancel_requested(job, run, trainer.args.device)
    else:
        cancelled = job.control.cancelled.is_set()
    if cancelled:
        return _end(run, job, trainer, callback, workspace.CANCELLED)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    status = workspace.CANCELLED if job.control.cancelled.is_set() else workspace.FINISHED
    if callback.diverged:
        code = _end(run, job, trainer, callback, workspace.FAILED)
        if not main:
            return code  # rank 0 reports it; an early non-zero exit here would cut its report short
        raise errors.EngineError(protocol.ExitCode.FAILED,
                                 "training diverged (loss is not finite or exploded); lower the learning rate")
    if main:
        _note_early_stop(cfg, run, trainer, status)
    return _end(run, job, trainer, callback, status)


def _end(run: workspace.RunFolder, job: Job, trainer: Any, callback: Any, status: str) -> int:
    """finish() in rank 0, the one writer. The other ranks wait until it has saved and then
    exit 0, so the launcher never stops rank 0 because another rank ended first."""
    code = finish(run, job, trainer, callback, status) if distributed.is_main_process() else protocol.ExitCode.OK
    distributed.wait_for_everyone()
    return code


def _note_early_stop(cfg: TrainConfig, run: workspace.RunFolder, trainer: Any, status: str) -> None:
    state = trainer.state
    if cfg.early_stopping_patience and status == workspace.FINISHED and state.global_step < state.max_steps:
        log.info("Early stop at step %d: validation %s did not improve for %d evaluations",
                 state.global_step, cfg.best_metric.replace("_", " "), cfg.early_stopping_patience)
        run.update_info(stopped_early=True)


