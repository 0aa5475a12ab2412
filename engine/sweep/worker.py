"""The sweep worker: runs trials until the study has ``n_trials`` finished or pruned ones.

Any number of workers may share one study (`sweep run` here, `sweep worker --storage URL` on
other machines). Each trial is asked from the storage, which hands a queued (retried) trial to
exactly one worker; the worker only starts a new trial while the finished, pruned and running
ones leave room for it, so together they run ``n_trials`` (workers that ask at the same moment
may each start the last one, as with Optuna's own MaxTrialsCallback). When the study is full but
trials still run elsewhere, the worker waits: if their worker died, their heartbeat stops, they
are failed and queued again, and this worker runs them.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from engine.core import errors, protocol
from engine.core.job import Job
from engine.sweep import spec, study, trial

log = logging.getLogger("engine.sweep")

# This many failed trials in a row (a dataset that is gone, a model that does not load) is a
# broken sweep, not bad luck with the knobs: stop rather than fail every remaining trial.
MAX_FAILURES_IN_A_ROW = 3


def counts(optuna_study: Any) -> collections.Counter:
    """Trials per state name: COMPLETE, PRUNED, RUNNING, WAITING, FAIL."""
    return collections.Counter(t.state.name for t in optuna_study.get_trials(deepcopy=False))


def work(optuna_study: Any, sweep: spec.Sweep, job: Job) -> int:
    """Runs trials until the sweep is done, the time budget is spent or a cancel arrives."""
    optuna = study.optuna()
    settings = sweep.settings
    started = time.monotonic()
    failures: list[str] = []
    run_trial = trial.objective(sweep, job, failures)
    while not job.control.cancelled.is_set():
        optuna.storages.fail_stale_trials(optuna_study)  # a killed worker's trial is queued again
        state = counts(optuna_study)
        finished = state["COMPLETE"] + state["PRUNED"]
        job.channel.send(protocol.progress(finished, settings.n_trials, stage="sweep"))
        if finished >= settings.n_trials:
            log.info("Sweep %s is complete: %d trials", sweep.name, finished)
            return protocol.ExitCode.OK
        if settings.timeout_s and time.monotonic() - started >= settings.timeout_s:
            log.info("Sweep %s: time budget of %d s spent; %d of %d trials done", sweep.name,
                     settings.timeout_s, finished, settings.n_trials)
            return protocol.ExitCode.OK
        if not state["WAITING"] and finished + state["RUNNING"] >= settings.n_trials:
            job.control.cancelled.wait(max(1.0, settings.heartbeat_s / 2))  # others are on the last trials
            continue
        code = _one_trial(optuna_study, sweep, run_trial)
        if code is not None:
            return code
        if len(failures) >= MAX_FAILURES_IN_A_ROW:
            raise errors.EngineError(protocol.ExitCode.FAILED, f"sweep {sweep.name}: {len(failures)} trials failed "
                                     f"in a row; the last: {failures[-1]}")
    return protocol.ExitCode.CANCELLED


def _one_trial(optuna_study: Any, sweep: spec.Sweep, run_trial: Any) -> int | None:
    """Runs one trial; an exit code when the sweep must stop (cancelled), else None."""
    # A fresh sampler seeded by the trial's number: one worker's sweep is reproducible, and two
    # workers (whose trial numbers differ) do not draw the same knobs.
    optuna_study.sampler = study.sampler(sweep, sweep.settings.seed + len(optuna_study.get_trials(deepcopy=False)))
    optuna_study.pruner = study.pruner(sweep)
    try:
        optuna_study.optimize(run_trial, n_trials=1, catch=(errors.EngineError,), gc_after_trial=True)
    except trial.SweepCancelled as cancelled:
        stopped = next(t for t in optuna_study.get_trials() if t.number == cancelled.number)
        study.RetryKilledTrial(sweep.settings.max_retries)(optuna_study, stopped)
        log.info("Sweep %s cancelled; trial %d is queued again for the next `sweep run`", sweep.name, stopped.number)
        return protocol.ExitCode.CANCELLED
    return None
