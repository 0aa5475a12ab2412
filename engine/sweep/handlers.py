"""The `sweep` commands: create, run, worker, status, best, export and list.

`sweep create` stores the definition inside a new study; every other command reads it back
from the storage, so a worker on another machine needs only the URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from engine.core import config, errors, names, paths, protocol, workspace
from engine.core.job import Job
from engine.sweep import report, spec, study, worker
from engine.train import job_queue

log = logging.getLogger("engine.sweep")


def cmd_init(args: argparse.Namespace, job: Job) -> int:
    target = names.check_out_path(args.file, "file")
    if target.exists():
        raise errors.usage(f"file: {target} exists; pick another name")
    workspace.atomic_write_text(target, spec.template(args.name or target.stem))
    log.info("Wrote %s: edit it, then `sweep create %s`", target, target)
    job.channel.send(protocol.result({"written": str(target)}))
    return protocol.ExitCode.OK


def cmd_create(args: argparse.Namespace, job: Job) -> int:
    sweep = spec.load_toml(Path(args.config).expanduser())
    url = study.storage_url(sweep.name, args.storage)
    study.create(sweep, url)
    log.info("Sweep %s created in %s: %d trials over %s, scored by %s", sweep.name, study.shown_url(url),
             sweep.settings.n_trials, ", ".join(sweep.space), spec.objective_label(sweep.settings))
    if spec.pruning_note(sweep):
        log.warning("Sweep %s: %s", sweep.name, spec.pruning_note(sweep))
    job.channel.send(protocol.result({"name": sweep.name, "storage": study.shown_url(url),
                                      "definition": spec.to_dict(sweep)}))
    return protocol.ExitCode.OK


def cmd_run(args: argparse.Namespace, job: Job) -> int:
    # The queue (and the window) stop a sweep it runs through sweeps/NAME.cancel: no stdin to use.
    job.control.watch_cancel_file(job_queue.sweep_cancel_file(args.sweep))
    return _work(args.sweep, study.storage_url(args.sweep, args.storage), job)


def cmd_worker(args: argparse.Namespace, job: Job) -> int:
    return _work(args.sweep, args.storage, job)


def _work(name: str | None, url: str, job: Job) -> int:
    optuna_study, sweep = study.load(name, url, heartbeat=True)
    log.info("Sweep %s: working on %s", sweep.name, study.shown_url(url))
    if spec.pruning_note(sweep):
        log.warning("Sweep %s: %s", sweep.name, spec.pruning_note(sweep))
    code = worker.work(optuna_study, sweep, job)
    job.channel.send(protocol.result(_brief(report.summary(optuna_study, sweep, url))))
    return code


def _brief(summary: dict) -> dict:
    """The summary without the per-step values, for a terminal."""
    return {**summary, "trials": [{k: v for k, v in row.items() if k != "intermediate"} for row in summary["trials"]]}


def cmd_status(args: argparse.Namespace, job: Job) -> int:
    url = study.storage_url(args.sweep, args.storage)
    optuna_study, sweep = study.load(args.sweep, url)
    job.channel.send(protocol.result(report.summary(optuna_study, sweep, url)))
    return protocol.ExitCode.OK


def cmd_best(args: argparse.Namespace, job: Job) -> int:
    target = names.check_out_path(args.write, "--write") if args.write else None
    url = study.storage_url(args.sweep, args.storage)
    optuna_study, sweep = study.load(args.sweep, url)
    best, cfg = report.best_config(optuna_study, sweep)
    data = {"number": best.number, "value": best.value, "params": best.params,
            "run_id": best.user_attrs.get("run_id"), "config": dataclasses.asdict(cfg)}
    if target is not None:
        workspace.atomic_write_text(target, config.to_toml(cfg, f"Best trial ({best.number}) of sweep {sweep.name}: "
                                                          f"{spec.objective_label(sweep.settings)} {best.value:.6g}."))
        data["written"] = str(target)
    job.channel.send(protocol.result(data))
    return protocol.ExitCode.OK


def cmd_export(args: argparse.Namespace, job: Job) -> int:
    chosen = names.check_out_path(args.out, "--out") if args.out else None
    url = study.storage_url(args.sweep, args.storage)
    optuna_study, sweep = study.load(args.sweep, url)
    out = chosen or paths.sweeps_dir() / f"{sweep.name}-export"
    written = report.export(optuna_study, url, out)
    log.info("Sweep %s exported to %s", sweep.name, out)
    job.channel.send(protocol.result(written))
    return protocol.ExitCode.OK


def cmd_list(args: argparse.Namespace, job: Job) -> int:
    """The sweeps whose SQLite file is in the workspace (a server's are listed by the server)."""
    rows = []
    for file in sorted(paths.sweeps_dir().glob("*.db")):
        try:
            optuna_study, sweep = study.load(file.stem, study.default_storage(file.stem))
        except errors.EngineError as exc:
            log.warning("%s: %s", file.name, exc.message)
            continue
        states = worker.counts(optuna_study)
        best = report.best_trial(optuna_study)
        rows.append({"name": sweep.name, "n_trials": sweep.settings.n_trials,
                     "done": states["COMPLETE"] + states["PRUNED"], "running": states["RUNNING"],
                     "best_value": best.value if best is not None else None, "space": list(sweep.space)})
    job.channel.send(protocol.result({"sweeps": rows}))
    return protocol.ExitCode.OK
