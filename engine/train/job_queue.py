"""The training queue: runs wait in the workspace and one worker trains them one at a time.

Standard library only (plus engine.paths/workspace/protocol/errors), so the window imports it to
add, reorder and show jobs with the same code the worker uses.

Layout::

    queue/
        queue.json      {"jobs": [entry, ...]} in run order, rewritten atomically
        queue.lock      held (exclusive create) for each read-modify-write of queue.json
        worker.json     {"pid": N}: the one worker of this workspace, created exclusively
        worker.log      the detached worker's stdout/stderr

An entry is ``{"id", "name", "kind", "args", "created", "status", ...}``. A ``train`` job's
``args`` are the flags given to ``tunebench-engine train`` (``--preset``, ``--config``, ``--resume``,
settings); a ``sweep`` job's are the sweep's name, run as ``tunebench-engine sweep run NAME`` (its
trials one after another, each an ordinary run folder; the entry's run_id follows the trial being
trained). Status is queued, running, finished, failed, cancelled or interrupted. The worker runs
each job as its own engine process, so the job's run folders (and a sweep's study) record
everything and a job outlives both the window and (as a folder) the worker. A sweep job that was
killed resumes when it is queued again: the study keeps its finished trials and the interrupted
one is retried.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.core import config, errors, names, paths, protocol, workspace
from engine.core.job import Job

log = logging.getLogger("engine")

QUEUE_JSON = "queue.json"
QUEUE_LOCK = "queue.lock"
WORKER_JSON = "worker.json"
WORKER_LOG = "worker.log"
CANCEL_REQUEST = "cancel.request"  # in a run folder: the engine polls for it (engine.core.control)

QUEUED, RUNNING, INTERRUPTED = "queued", "running", "interrupted"
TRAIN, SWEEP = "train", "sweep"  # a job's kind: the engine command it runs
SWEEP_CANCEL = ".cancel"  # sweeps/NAME.cancel: `sweep run NAME` polls for it and stops the sweep
LOCK_TIMEOUT_S = 10.0
STALE_LOCK_S = 30.0  # no read-modify-write takes this long; an older lock was left by a crash
EXIT_STATUS = {int(protocol.ExitCode.OK): workspace.FINISHED, int(protocol.ExitCode.CANCELLED): workspace.CANCELLED}

Entry = dict[str, Any]


def queue_dir(root: Path | None = None) -> Path:
    """``root`` is the workspace folder (default: the one engine.core.paths names)."""
    folder = (root or paths.workspace_dir()) / "queue"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- the queue file ------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(root: Path | None) -> Iterator[Path]:
    """Holds queue.lock (created exclusively) for one read-modify-write, so the window and the
    worker never overwrite each other's change. A lock older than STALE_LOCK_S is a crash's."""
    folder = queue_dir(root)
    lock = folder / QUEUE_LOCK
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _age(lock) > STALE_LOCK_S or _holder_gone(lock):
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() > deadline:
                raise errors.EngineError(protocol.ExitCode.FAILED, f"queue: {lock} is held by another process")
            time.sleep(0.02)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield folder
    finally:
        lock.unlink(missing_ok=True)


def _holder_gone(lock: Path) -> bool:
    """Whether the process named in the lock has ended (killed mid-write): its lock is stale at
    once, instead of blocking every other writer until STALE_LOCK_S has passed."""
    try:
        pid = int(lock.read_text(encoding="ascii").strip() or "0")
    except (OSError, ValueError):
        return False
    return pid > 0 and pid != os.getpid() and not workspace.pid_alive(pid)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _read(folder: Path) -> list[Entry]:
    data = workspace.read_json(folder / QUEUE_JSON) or {}
    jobs = data.get("jobs")
    return [job for job in jobs if isinstance(job, dict) and "id" in job] if isinstance(jobs, list) else []


def _write(folder: Path, jobs: list[Entry]) -> None:
    workspace.atomic_write_json(folder / QUEUE_JSON, {"jobs": jobs})


def load(root: Path | None = None) -> list[Entry]:
    """The jobs in run order (a snapshot; no lock needed thanks to atomic writes)."""
    return _read(queue_dir(root))


def add(args: list[str], name: str = "", root: Path | None = None, kind: str = TRAIN) -> Entry:
    """Appends a job: ``args`` are `tunebench-engine train` flags, or for ``kind`` sweep the
    sweep's name (see :func:`add_sweep`)."""
    entry = {"id": time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2), "name": name or _name_in(args),
             "kind": kind, "args": [str(a) for a in args], "created": round(time.time(), 3), "status": QUEUED}
    with _locked(root) as folder:
        _write(folder, [*_read(folder), entry])
    return entry


def add_sweep(sweep: str, root: Path | None = None) -> Entry:
    """Appends a job that runs the sweep ``sweep`` (its study sweeps/NAME.db in the workspace)
    until it has its trials; NOT_FOUND when there is no such sweep."""
    if not (sweeps_dir(root) / f"{names.child(sweeps_dir(root), sweep, 'sweep').name}.db").is_file():
        raise errors.not_found(f"sweep: no sweep called {sweep} in {sweeps_dir(root)} (create it with `sweep create`)")
    return add([sweep], f"sweep {sweep}", root, kind=SWEEP)


def sweeps_dir(root: Path | None = None) -> Path:
    return root / "sweeps" if root is not None else paths.sweeps_dir()


def command_of(entry: Entry) -> list[str]:
    """The engine command a job runs, without the engine's own argv."""
    if entry.get("kind") == SWEEP:
        return ["sweep", "run", *entry["args"]]
    return ["train", *entry["args"]]


def sweep_cancel_file(sweep: str, root: Path | None = None) -> Path:
    return names.child(sweeps_dir(root), sweep, "sweep").with_name(sweep + SWEEP_CANCEL)


def request_sweep_cancel(sweep: str, root: Path | None = None) -> None:
    """Asks `sweep run NAME` to stop: the trial training now stops at its next step and is
    queued again in the study for the next run of the sweep."""
    target = sweep_cancel_file(sweep, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_text(target, f"{time.time()}\n")


def _name_in(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg.startswith("--name="):
            return arg.split("=", 1)[1]
        if arg == "--name" and i + 1 < len(args):
            return args[i + 1]
        if arg in ("--resume", "--continue-from") and i + 1 < len(args):
            return f"{arg[2:]} {args[i + 1]}"
    return ""


def remove(job_id: str, root: Path | None = None) -> Entry:
    """Takes a waiting or ended job off the list; a running one must be cancelled instead."""
    with _locked(root) as folder:
        jobs = _read(folder)
        entry = _find(jobs, job_id)
        if entry["status"] == RUNNING:
            raise errors.usage(f"queue: job {job_id} is running; cancel its run instead")
        _write(folder, [job for job in jobs if job["id"] != job_id])
    return entry


def move(job_id: str, offset: int, root: Path | None = None) -> int:
    """Moves a waiting job ``offset`` places (negative: earlier) among the waiting jobs; returns
    its new index in the list. Running and ended jobs keep their places."""
    with _locked(root) as folder:
        jobs = _read(folder)
        entry = _find(jobs, job_id)
        if entry["status"] != QUEUED:
            raise errors.usage(f"queue: job {job_id} is {entry['status']}; only waiting jobs move")
        waiting = [i for i, job in enumerate(jobs) if job["status"] == QUEUED]
        here = waiting.index(jobs.index(entry))
        there = waiting[max(0, min(len(waiting) - 1, here + offset))]
        jobs.remove(entry)
        jobs.insert(there, entry)
        _write(folder, jobs)
    return there


def update(job_id: str, root: Path | None = None, **changes: Any) -> Entry:
    with _locked(root) as folder:
        jobs = _read(folder)
        entry = _find(jobs, job_id)
        entry.update(changes)
        _write(folder, jobs)
    return entry


def clear_ended(root: Path | None = None) -> int:
    """Drops jobs that have ended (their run folders keep the record); returns how many."""
    with _locked(root) as folder:
        jobs = _read(folder)
        kept = [job for job in jobs if job["status"] in (QUEUED, RUNNING)]
        _write(folder, kept)
    return len(jobs) - len(kept)


def _find(jobs: list[Entry], job_id: str) -> Entry:
    for job in jobs:
        if job["id"] == job_id:
            return job
    raise errors.not_found(f"queue: no job {job_id!r} (see `tunebench-engine queue list`)")


def request_cancel(run_path: Path) -> None:
    """Asks the engine training in ``run_path`` to stop at its next step (it polls for the file)."""
    workspace.atomic_write_text(Path(run_path) / CANCEL_REQUEST, f"{time.time()}\n")


# -- the worker --------------------------------------------------------------------------------

def worker_pid(root: Path | None = None) -> int | None:
    """The live worker's process id, or None when no worker runs."""
    pid = (workspace.read_json(queue_dir(root) / WORKER_JSON) or {}).get("pid")
    return pid if isinstance(pid, int) and workspace.pid_alive(pid) else None


def _claim_worker(folder: Path) -> bool:
    """Creates worker.json exclusively; replaces one left by a dead worker. Under the queue lock."""
    marker = folder / WORKER_JSON
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if worker_pid(folder.parent) is not None:
                return False
            marker.unlink(missing_ok=True)  # left by a worker that died
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "started": round(time.time(), 3)}, handle)
        return True
    return False


def _next_job(root: Path | None) -> Entry | None:
    """Marks the first waiting job running and returns it; with none left, gives the worker
    role up in the same locked step, so a job added a moment later finds no worker and starts
    a new one instead of waiting for this one forever."""
    with _locked(root) as folder:
        jobs = _read(folder)
        entry = next((job for job in jobs if job["status"] == QUEUED), None)
        if entry is None:
            (folder / WORKER_JSON).unlink(missing_ok=True)
            return None
        entry.update(status=RUNNING, started=round(time.time(), 3), worker_pid=os.getpid())
        _write(folder, jobs)
        return entry


def _mark_interrupted(root: Path | None) -> None:
    """Jobs left running by a worker that died (crash, power loss) are not running."""
    with _locked(root) as folder:
        jobs = _read(folder)
        for job in jobs:
            if job["status"] == RUNNING and not workspace.pid_alive(job.get("worker_pid")):
                job["status"] = INTERRUPTED
        _write(folder, jobs)


def run_worker(engine: list[str], root: Path | None = None, env: dict[str, str] | None = None,
               on_event: Callable[[str, Entry], None] = lambda what, entry: None,
               should_stop: Callable[[], bool] = lambda: False) -> int:
    """Trains the waiting jobs in order, one at a time, until none is left.

    Returns the number of jobs run; raises EngineError (USAGE) when another worker holds this
    workspace. ``engine`` is the argv prefix that starts the engine (`python -m engine`).
    ``should_stop`` (Ctrl+C in a terminal) ends the loop after the current job.
    """
    with _locked(root) as folder:
        if not _claim_worker(folder):
            raise errors.usage(f"queue: a worker is already running for this workspace "
                               f"(process {worker_pid(root)}); it will run the queued jobs")
    _mark_interrupted(root)
    count = 0
    try:
        while not should_stop() and (entry := _next_job(root)) is not None:
            on_event("start", entry)
            entry = _run_job(engine, entry, root, env)
            on_event("end", entry)
            count += 1
    finally:
        marker = queue_dir(root) / WORKER_JSON
        if (workspace.read_json(marker) or {}).get("pid") == os.getpid():
            marker.unlink(missing_ok=True)
    return count


def _run_job(engine: list[str], entry: Entry, root: Path | None, env: dict[str, str] | None) -> Entry:
    """One `train --json` (or `sweep run --json`) process; its stdout is read only to learn the run folder and an error
    line (the folder's event log is the record), and its exit code decides the job's status."""
    verb = ["sweep", "run"] if entry.get("kind") == SWEEP else ["train"]
    argv = [*engine, *verb, "--json", *entry["args"]]
    # A detached worker has no console on Windows: without this each job would open a window.
    flags = subprocess.CREATE_NO_WINDOW if os.name == "nt" else 0
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env,
                               text=True, encoding="utf-8", errors="replace", creationflags=flags)
    update(entry["id"], root, pid=process.pid)
    assert process.stdout is not None
    for line in process.stdout:
        try:
            message = protocol.decode(line)
        except protocol.ProtocolError:
            continue
        if message["type"] == protocol.ARTIFACT and message.get("kind") == "run_dir":
            update(entry["id"], root, run_id=Path(str(message["path"])).name, run_dir=str(message["path"]))
        elif message["type"] == protocol.ERROR:  # e.g. refused before a run folder existed
            update(entry["id"], root, error=str(message.get("message", "")))
    code = process.wait()
    status = EXIT_STATUS.get(code, workspace.FAILED)
    return update(entry["id"], root, status=status, exit_code=code, ended=round(time.time(), 3))


def launch_worker(engine: list[str], env: dict[str, str] | None = None, root: Path | None = None) -> int | None:
    """Starts `queue run` detached from the caller (its own session / process group, no console),
    so closing the window that started it stops nothing. Output goes to queue/worker.log.
    Returns the new process id, or None when a worker already runs."""
    if worker_pid(root) is not None:
        return None
    folder = queue_dir(root)
    options: dict[str, Any] = {}
    if os.name == "nt":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
    else:
        options["start_new_session"] = True
    with open(folder / WORKER_LOG, "a", encoding="utf-8") as log_file:
        process = subprocess.Popen([*engine, "queue", "run"], stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env, close_fds=True, **options)
    return process.pid


# -- commands ------------------------------------------------------------------------------------

def cmd_add(args: argparse.Namespace, job: Job) -> int:
    train_args = [a for a in args.train_args if a != "--"]
    if args.sweep:
        if train_args:
            raise errors.usage(f"queue add: --sweep takes no train flags ({' '.join(train_args)}); the sweep file "
                               "holds its settings")
        entry = add_sweep(args.sweep)
    else:
        _check_train_args(train_args, args.train_parser)
        entry = add(train_args, args.name)
    log.info("Queued job %s (%d waiting)", entry["id"], sum(j["status"] == QUEUED for j in load()))
    job.channel.send(protocol.result({"job": entry}))
    return protocol.ExitCode.OK


def _check_train_args(train_args: list[str], parser: argparse.ArgumentParser) -> None:
    """Refuses flags `train` would refuse (``parser`` is the CLI's train parser), now rather
    than when the job's turn comes."""

    parser.exit_on_error = False
    try:
        parsed, unknown = parser.parse_known_args(train_args)
    except argparse.ArgumentError as exc:
        raise errors.usage(f"queue add: {exc}") from None
    except SystemExit:  # argparse already printed the reason
        raise errors.usage("queue add: invalid train flags (see `tunebench-engine train --help`)") from None
    if unknown:
        raise errors.usage(f"queue add: train does not take {' '.join(unknown)}")
    if getattr(parsed, "probe", False):
        raise errors.usage("queue add: --probe answers at once and trains no run; run `train --probe` instead")
    if parsed.resume or parsed.continue_from:
        return  # those start from another run's config.toml; train checks them at their turn
    # defaults < preset < TOML file < flags, as train resolves them (engine.train.run is not imported:
    # the window imports this module and must not pull in torch). ConfigError names the field.
    cfg = config.TrainConfig()
    if parsed.preset:
        cfg = config.from_mapping(config.get_preset(parsed.preset).values, cfg, source=f"preset {parsed.preset}")
    if parsed.config:
        cfg = config.load_toml(Path(parsed.config).expanduser(), cfg)
    config.from_arguments(parsed, cfg)


def cmd_list(args: argparse.Namespace, job: Job) -> int:
    jobs = load()
    if job.channel.json_mode:
        job.channel.send(protocol.result({"jobs": jobs, "worker_pid": worker_pid()}))
    else:
        for index, entry in enumerate(jobs, start=1):
            run = f"  run {entry['run_id']}" if entry.get("run_id") else ""
            print(f"{index:>3}. {entry['id']}  {entry['status']:<11} {entry['name'] or '-'}{run}\n"
                  f"     {' '.join(command_of(entry))}")
        pid = worker_pid()
        print(f"{len(jobs)} job(s); " + (f"worker running (process {pid})" if pid else "no worker running"))
    return protocol.ExitCode.OK


def cmd_remove(args: argparse.Namespace, job: Job) -> int:
    entry = remove(args.job)
    job.channel.send(protocol.result({"removed": entry}))
    return protocol.ExitCode.OK


def cmd_move(args: argparse.Namespace, job: Job) -> int:
    offset = {"up": -1, "down": 1, "top": -10**6, "bottom": 10**6}[args.where]
    index = move(args.job, offset)
    job.channel.send(protocol.result({"job": args.job, "position": index + 1}))
    return protocol.ExitCode.OK


def cmd_clear(args: argparse.Namespace, job: Job) -> int:
    job.channel.send(protocol.result({"cleared": clear_ended()}))
    return protocol.ExitCode.OK


def cmd_run(args: argparse.Namespace, job: Job) -> int:
    def on_event(what: str, entry: Entry) -> None:
        if what == "start":
            log.info("Job %s started: %s", entry["id"], " ".join(command_of(entry)))
        else:
            log.info("Job %s %s (exit %s)%s", entry["id"], entry["status"], entry.get("exit_code"),
                     f"; run {entry['run_id']}" if entry.get("run_id") else "")
        job.channel.send(protocol.make(protocol.ARTIFACT, kind="queue_job", path=entry.get("run_dir", ""),
                                       job=entry, event=what))

    count = run_worker([sys.executable, "-m", "engine"], on_event=on_event,
                       should_stop=job.control.cancelled.is_set)
    job.channel.send(protocol.result({"jobs_run": count}))
    return protocol.ExitCode.OK
