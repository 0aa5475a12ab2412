"""One trial of a sweep: an ordinary training run, linked to the sweep and pruned by it.

The trial trains through the same code as `train` (engine/train/run.py: start_run, train,
finish), so its folder has its curves, samples, checkpoints and adapter like any run, and
run.json adds ``sweep``, ``trial`` and the knob values tried. A pruned trial stops through the
cooperative cancel (its own cancel flag, set by the pruning callback), saves what it has and is
marked ``pruned`` with the step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from typing import Any, Callable, Iterator

from engine.core import errors, protocol, workspace
from engine.core.channel import Channel
from engine.core.control import Control
from engine.core.job import Job
from engine.eval.run import evaluate
from engine.runtime import device
from engine.sweep import spec, study
from engine.train.lifecycle import detach_run, run_guarded, start_run
from engine.train.run import train
from engine.train.setup import check_runtime

log = logging.getLogger("engine.sweep")


class SweepCancelled(Exception):
    """The sweep itself was asked to stop while trial ``number`` ran (Ctrl+C, cancel on stdin)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"sweep cancelled during trial {number}")
        self.number = number


class TrialStopped(errors.EngineError):
    """The trial's own run was stopped by hand (its cancel.request): it fails, the sweep goes on."""

    def __init__(self, run_id: str) -> None:
        super().__init__(protocol.ExitCode.CANCELLED, f"trial run {run_id} was stopped by hand")


@contextlib.contextmanager
def trial_control(parent: Control, channel: Channel) -> Iterator[Control]:
    """A cancel flag of the trial's own, which the pruner may set without stopping the sweep;
    a cancel of the sweep reaches it within a fraction of a second."""
    child = Control(channel)
    done = threading.Event()

    def follow() -> None:
        while not done.is_set():
            if parent.cancelled.wait(0.2):
                child.cancelled.set()
                return

    threading.Thread(target=follow, name="sweep-trial-cancel", daemon=True).start()
    try:
        yield child
    finally:
        done.set()
        child.cancelled.set()  # ends the run's cancel-file watcher too


def pruning_callback(trial: Any, control: Control, sign: float = 1.0) -> Any:
    """A TrainerCallback that reports each validation loss to the trial and, when the pruner
    says so, stops the run the way Stop does. Built in a function: transformers loads torch.

    ``sign`` -1 reports the negated loss: the pruner compares values in the study's direction,
    so a study that maximises a metric still prunes the trials whose loss is highest."""
    from transformers import TrainerCallback

    class PruneOnValidation(TrainerCallback):
        pruned_step: int | None = None
        best: float | None = None  # the lowest validation loss reported, checkpoint saved or not

        def on_evaluate(self, args: Any, state: Any, flow: Any, metrics: dict | None = None, **kw: Any) -> None:
            value = (metrics or {}).get("eval_loss")
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return
            trial.report(sign * float(value), state.global_step)
            self.best = float(value) if self.best is None else min(self.best, float(value))
            if self.pruned_step is None and trial.should_prune():
                self.pruned_step = state.global_step
                log.info("Trial %d pruned at step %d (validation loss %.4f)", trial.number, state.global_step, value)
                control.cancelled.set()
                flow.should_training_stop = True  # now, not after one more step

    return PruneOnValidation()


def objective(sweep: spec.Sweep, job: Job, failures: list[str]) -> Callable[[Any], float]:
    """The function Optuna calls per trial: runs it and returns its validation loss. Failures
    are appended to ``failures`` (the worker stops after several in a row)."""
    def run_trial(trial: Any) -> float:
        values = study.suggest(trial, sweep)
        cfg = sweep.trial_config(values, name=f"{sweep.name}-trial-{trial.number}")
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        log.info("Sweep %s, trial %d: %s", sweep.name, trial.number, shown)
        pruned = study.optuna().TrialPruned
        try:
            value = _train_trial(trial, sweep, cfg, values, job)
        except pruned:
            failures.clear()  # a pruned trial worked as it should
            raise
        except BaseException as exc:
            failures.append(getattr(exc, "message", str(exc)) or type(exc).__name__)
            raise
        failures.clear()
        return value

    return run_trial


def _train_trial(trial: Any, sweep: spec.Sweep, cfg: Any, values: dict[str, Any], job: Job) -> float:
    device_name = device.pick(cfg.device)
    check_runtime(cfg, device_name)
    with trial_control(job.control, job.channel) as control:
        trial_job = Job(job.channel, control, job.command)
        run = start_run(cfg, trial_job)
        trial.set_user_attr("run_id", run.id)
        run.update_info(sweep=sweep.name, trial=trial.number, sweep_params=values)
        pruning = pruning_callback(trial, control, -1.0 if sweep.settings.direction == "maximize" else 1.0)
        try:
            code = run_guarded(run, lambda: train(cfg, run, trial_job, device_name, callbacks=(pruning,)))
        finally:
            detach_run(run, trial_job)
    return _outcome(trial, sweep, run, code, pruning.pruned_step, pruning.best, job)


def _outcome(trial: Any, sweep: spec.Sweep, run: workspace.RunFolder, code: int, pruned_step: int | None,
             best: float | None, job: Job) -> float:
    """The trial's value, or the exception that tells Optuna it was pruned or stopped."""
    if pruned_step is not None:
        run.update_info(status=workspace.PRUNED, pruned_step=pruned_step, exit_code=int(protocol.ExitCode.OK))
        trial.set_user_attr("pruned_step", pruned_step)
        raise study.optuna().TrialPruned(f"pruned at step {pruned_step}")
    if code == protocol.ExitCode.CANCELLED:
        if job.control.cancelled.is_set():
            raise SweepCancelled(trial.number)
        raise TrialStopped(run.id)
    if code != protocol.ExitCode.OK:
        raise errors.EngineError(protocol.ExitCode.FAILED, f"trial run {run.id} ended with exit code {code}")
    if sweep.settings.objective == "metric":
        return _scored(trial, sweep, run, job)
    # The best evaluation, not the best checkpoint: run.json's best_eval_loss exists only when a
    # checkpoint was saved at that evaluation's step.
    value = best if best is not None else run.info().get("best_eval_loss")
    if value is None:
        raise errors.EngineError(protocol.ExitCode.FAILED, f"trial run {run.id} recorded no validation loss")
    run.update_info(sweep_value=value)
    log.info("Trial %d: validation loss %.4f (run %s)", trial.number, value, run.id)
    return float(value)


def _scored(trial: Any, sweep: spec.Sweep, run: workspace.RunFolder, job: Job) -> float:
    """objective = metric: evaluates the trial's adapter with the sweep's evaluation spec (the
    code of `evaluate run`, without the base model) and returns the metric from that
    evaluation's summary.json; run.json and the trial record the evaluation's id."""
    metric = str(sweep.settings.metric)
    evaluation = spec.trial_evaluation(sweep, run.id, trial.number)
    log.info("Trial %d: evaluating its adapter (%s on %s)", trial.number, metric, evaluation.dataset)
    with trial_control(job.control, job.channel) as control:
        try:
            folder, summary = evaluate(evaluation, Job(job.channel, control, job.command), with_base=False)
        except errors.EngineError as exc:
            if exc.code == protocol.ExitCode.CANCELLED and job.control.cancelled.is_set():
                raise SweepCancelled(trial.number) from None
            run.update_info(sweep_error=f"evaluation: {exc.message}")
            raise errors.EngineError(exc.code, f"trial {trial.number}: evaluation failed: {exc.message}") from None
    if job.control.cancelled.is_set():
        raise SweepCancelled(trial.number)
    label = summary["models"][0]["label"]
    value = summary["metrics"][metric]["values"][label]["estimate"]
    trial.set_user_attr("evaluation", folder.name)
    run.update_info(sweep_evaluation=folder.name)
    if value is None or not math.isfinite(float(value)):
        raise errors.EngineError(protocol.ExitCode.FAILED, f"trial {trial.number}: the evaluation {folder.name} "
                                 f"gave no {metric} value")
    run.update_info(sweep_value=float(value))
    log.info("Trial %d: %s %.4f (run %s, evaluation %s)", trial.number, metric, value, run.id, folder.name)
    return float(value)
