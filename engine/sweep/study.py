"""The Optuna side of a sweep: its storage, the study, samplers and pruners.

A study lives in a relational database through SQLAlchemy: by default one SQLite file per sweep,
``sweeps/NAME.db`` in the workspace; with ``--storage URL`` any database Optuna's RDBStorage
takes, e.g. ``postgresql+psycopg://user@host/db`` so workers on several machines share it.
The storage runs a heartbeat: a trial whose worker died stops beating, the next worker to look
marks it failed, and the retry callback queues its knobs again (``max_retries`` times).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from engine.core import errors, names, paths, workspace
from engine.sweep import spec

log = logging.getLogger("engine.sweep")

DEFINITION = "tunebench_sweep"  # the study's user attribute holding spec.to_dict()
# SQLite waits this long for a lock another worker holds, instead of failing at once.
SQLITE_TIMEOUT_S = 60


def optuna() -> Any:
    """The optuna module, quiet, or MISSING_DEPENDENCY naming the extra that brings it."""
    try:
        import optuna as module
    except ModuleNotFoundError:
        raise errors.missing_dependency("sweep: optuna is not installed; install the engine extra "
                                        "(pip install 'tunebench[engine]')") from None
    module.logging.set_verbosity(module.logging.WARNING)
    warnings.filterwarnings("ignore", category=module.exceptions.ExperimentalWarning)
    return module


def default_storage(name: str) -> str:
    """The workspace's SQLite file for sweep ``name``; a name that would leave sweeps/ is refused."""
    folder = paths.sweeps_dir()
    return f"sqlite:///{names.child(folder, name, 'sweep').with_name(f'{name}.db').as_posix()}"


def storage_url(name: str, storage: str | None) -> str:
    return storage or default_storage(name)


def open_storage(url: str, heartbeat_s: int | None = None, max_retries: int = 0) -> Any:
    """An RDBStorage; with ``heartbeat_s``, one that fails silent trials and retries them."""
    module = optuna()
    kwargs: dict[str, Any] = {}
    if heartbeat_s:
        kwargs = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                  "heartbeat_stale_trial_callback": RetryKilledTrial(max_retries)}
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    try:
        return module.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ModuleNotFoundError as exc:
        raise errors.missing_dependency(f"storage: the database driver {exc.name} is not installed "
                                        "(PostgreSQL needs psycopg: pip install 'psycopg[binary]')") from None
    except Exception as exc:  # SQLAlchemy's errors: bad URL, server down, no permission
        raise errors.not_found(f"storage: cannot open {shown_url(url)}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0]}") from None


def shown_url(url: str) -> str:
    """The URL without a password."""
    return url.split("://", 1)[0] + "://" + url.split("@", 1)[-1] if "@" in url else url


class RetryKilledTrial:
    """Optuna's RetryHeartbeatStaleTrialCallback (the successor of RetryFailedTrialCallback),
    plus the run folder of the killed trial marked failed, so the Runs page does not show it
    running forever. The storage calls it once per stale trial, in whichever worker noticed."""

    def __init__(self, max_retries: int) -> None:
        self.retry = optuna().storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)

    def __call__(self, study: Any, trial: Any) -> None:
        run_id = trial.user_attrs.get("run_id")
        run = workspace.open_run(run_id) if run_id else None
        if run is not None and run.info().get("status") == workspace.RUNNING:
            run.update_info(status=workspace.FAILED, error="its sweep worker stopped (killed or lost); "
                            "the trial is queued again", exit_code=None)
        log.warning("Trial %d of sweep %s stopped without finishing; queued again", trial.number,
                    study.study_name)
        self.retry(study, trial)


def create(sweep: spec.Sweep, url: str) -> Any:
    """A new study holding the definition; USAGE when the name is taken in that storage."""
    module = optuna()
    storage = open_storage(url)
    try:
        study = module.create_study(study_name=sweep.name, storage=storage, direction=sweep.settings.direction)
    except module.exceptions.DuplicatedStudyError:
        raise errors.usage(f"name: a sweep called {sweep.name} already exists in {shown_url(url)}; "
                           "pick another name or run it with `sweep run`") from None
    study.set_user_attr(DEFINITION, spec.to_dict(sweep))
    return study


def load(name: str | None, url: str, heartbeat: bool = False) -> tuple[Any, spec.Sweep]:
    """(study, definition) of the sweep ``name`` (or the only one) in ``url``."""
    module = optuna()
    storage = open_storage(url)
    names = [s.study_name for s in module.get_all_study_summaries(storage, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            raise errors.usage(f"sweep: the storage holds {len(names)} sweeps ({', '.join(names) or 'none'}); "
                               "name one with --sweep")
        name = names[0]
    if name not in names:
        raise errors.not_found(f"sweep: no sweep called {name} in {shown_url(url)} (create it with `sweep create`)")
    definition = module.load_study(study_name=name, storage=storage).user_attrs.get(DEFINITION)
    if definition is None:
        raise errors.invalid_input(f"sweep: study {name} was not made by `sweep create` (no definition)")
    sweep = spec.from_dict(definition, source=f"sweep {name}")
    if heartbeat:
        storage = open_storage(url, sweep.settings.heartbeat_s, sweep.settings.max_retries)
    return module.load_study(study_name=name, storage=storage), sweep


def sampler(sweep: spec.Sweep, seed: int) -> Any:
    """The sweep's sampler with ``seed``. Samplers keep no state outside the storage that matters
    here, so a fresh one per trial (seeded by the trial's number) keeps one worker's sweep
    reproducible while two workers do not draw the same knobs."""
    module = optuna()
    settings = sweep.settings
    if settings.sampler == "tpe":
        return module.samplers.TPESampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)
    if settings.sampler == "random":
        return module.samplers.RandomSampler(seed=seed)
    if settings.sampler == "grid":
        return module.samplers.GridSampler(grid(sweep), seed=seed)
    try:
        import cmaes  # noqa: F401  (CmaEsSampler imports it lazily and fails late)
    except ModuleNotFoundError:
        raise errors.missing_dependency("sampler: cmaes needs the cmaes package (pip install cmaes)") from None
    return module.samplers.CmaEsSampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)


def grid(sweep: spec.Sweep) -> dict[str, list[Any]]:
    """Every value each knob takes: its choices, or its range walked by its step."""
    values: dict[str, list[Any]] = {}
    for param in sweep.space.values():
        if not param.is_range:
            values[param.name] = list(param.choices)
            continue
        count = int(round((param.high - param.low) / param.step)) + 1
        points = [param.low + i * param.step for i in range(count)]
        values[param.name] = [type(param.low)(p) for p in points if p <= param.high + 1e-12]
    return values


def pruner(sweep: spec.Sweep) -> Any:
    module = optuna()
    settings = sweep.settings
    if spec.pruning_note(sweep):  # no validation loss to prune on
        return module.pruners.NopPruner()
    if settings.pruner == "median":
        return module.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                           n_warmup_steps=settings.pruner_warmup_steps)
    if settings.pruner == "successive_halving":
        return module.pruners.SuccessiveHalvingPruner()
    return module.pruners.NopPruner()


def suggest(trial: Any, sweep: spec.Sweep) -> dict[str, Any]:
    """The knob values of ``trial`` (a retried trial gets its earlier values back)."""
    values = {}
    for param in sweep.space.values():
        if not param.is_range:
            values[param.name] = trial.suggest_categorical(param.name, param.choices)
        elif isinstance(param.low, int) and not isinstance(param.low, bool):
            values[param.name] = trial.suggest_int(param.name, param.low, param.high,
                                                   step=int(param.step or 1), log=param.log)
        else:
            values[param.name] = trial.suggest_float(param.name, param.low, param.high, step=param.step,
                                                     log=param.log)
    return values


def database_file(url: str) -> Path | None:
    """The file of a SQLite URL, else None."""
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite:///") else None
