"""Workspace folders and atomic writes (docs/architecture.md, 'The run folder is the record').

Standard library only (plus engine.core.paths), so the GUI reads run folders with the same code the
engine writes them with.

A run folder::

    runs/<id>/
        run.json        status and summary, rewritten atomically as the run goes
        config.toml     the resolved configuration
        events.ndjson   every protocol message of the run, appended as it happens
        engine.log      the human log
        checkpoints/    trainer checkpoints (checkpoint-<step>/)
        adapter/        the final PEFT adapter, present only once complete
        model/          instead of adapter/ for a full fine-tune: the whole tuned model
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from engine.core import names, paths, protocol, untrusted

RUN_JSON = "run.json"
CONFIG_TOML = "config.toml"
EVENTS = "events.ndjson"
ENGINE_LOG = "engine.log"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MODEL = "model"

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
PRUNED = "pruned"  # a sweep's trial stopped early by its pruner (run.json: pruned_step)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes via a temp file in the same folder and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yields a temp folder beside ``target`` to fill; on success it is renamed to ``target``,
    on any failure (cancel included) it is removed, so a half-written folder is never visible.

    Args:
        target: The folder to create.
        replace: Remove an existing ``target`` first (e.g. an adapter saved earlier in the run).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if replace and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, torn or hostile (too large, too
    deep...: run.json, manifests and summaries may have been edited by hand)."""
    try:
        data = untrusted.json_loads(untrusted.read_text(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def new_run_id(name: str = "") -> str:
    """Sortable by time, unique, safe as a folder name on Windows and Linux."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]
    return "-".join(part for part in (stamp, slug, secrets.token_hex(2)) if part)


@dataclass
class RunFolder:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def config_toml(self) -> Path:
        return self.path / CONFIG_TOML

    @property
    def events(self) -> Path:
        return self.path / EVENTS

    @property
    def engine_log(self) -> Path:
        return self.path / ENGINE_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    @property
    def model(self) -> Path:
        return self.path / MODEL

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint the Trainer finished writing (:func:`checkpoint_complete`); a
        newer folder that is not complete was cut off mid-save by a crash or a kill."""
        numbered = [folder for folder in self.checkpoints.glob("checkpoint-*")
                    if folder.name.rsplit("-", 1)[-1].isdigit()]
        return next((folder for folder in sorted(numbered, key=checkpoint_step, reverse=True)
                     if checkpoint_complete(folder)), None)

    def info(self) -> dict[str, Any]:
        return read_json(self.run_json) or {"id": self.id, "status": "unknown"}

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = self.info()
        info.update(changes)
        atomic_write_json(self.run_json, info)
        return info

    def read_events(self) -> Iterator[dict[str, Any]]:
        """Every valid message in the event log; a torn last line (crash mid-write) is skipped."""
        try:
            handle = self.events.open(encoding="utf-8", errors="replace")
        except OSError:
            return
        with handle:
            for line in untrusted.bounded_lines(handle, protocol.MAX_LINE_BYTES):
                if isinstance(line, untrusted.LineTooLong):
                    continue
                try:
                    yield protocol.decode(line)
                except protocol.ProtocolError:
                    continue


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[-1])


TRAINER_STATE = "trainer_state.json"


def checkpoint_complete(folder: Path) -> bool:
    """Whether the Trainer finished writing this checkpoint folder.

    The Trainer writes a checkpoint in place (transformers' ``Trainer._save_checkpoint``: the
    weights, optimizer, scheduler and RNG state, then trainer_state.json last, then it deletes
    checkpoints beyond ``save_total_limit``), so a SIGKILL mid-save leaves a visible, partial
    ``checkpoint-N``. Tunebench treats trainer_state.json as the completion marker instead of
    saving into a temporary sibling and renaming it: the folder name and the rotation are
    internal to ``_save_checkpoint``, so redirecting them means copying that method (and
    following it across transformers versions), and a marker of our own written after it
    returns would come after the rotation had already deleted the previous checkpoint (with
    ``save_total_limit = 1`` a kill in between would leave nothing to resume from). The Trainer
    writes trainer_state.json with a plain open-and-write, so a kill in between leaves it empty
    or cut short: complete means it parses and names this folder's step. Every file before it
    was fully written by then (a SIGKILL loses nothing already handed to the kernel). Resume
    deletes the folders that are not complete (``engine.train.run.remove_cut_off_checkpoints``);
    tests/engine/test_train_resume.py::test_a_checkpoint_cut_off_mid_save_is_never_resumed_from
    fails without this check.
    """
    state = read_json(folder / TRAINER_STATE)
    step = state.get("global_step") if state is not None else None
    return isinstance(step, int) and folder.name == f"checkpoint-{step}"


def create_run(name: str = "", root: Path | None = None) -> RunFolder:
    root = root or paths.runs_dir()
    folder = RunFolder(names.child(root, new_run_id(name), "run name"))
    folder.path.mkdir(parents=True)
    return folder


def open_run(run_id_or_path: str) -> RunFolder | None:
    candidate = Path(run_id_or_path)
    if not (candidate / RUN_JSON).is_file():
        candidate = paths.runs_dir() / run_id_or_path
    return RunFolder(candidate) if (candidate / RUN_JSON).is_file() else None


def list_runs(root: Path | None = None) -> list[RunFolder]:
    """Run folders, newest first."""
    root = root or paths.runs_dir()
    runs = [RunFolder(p) for p in root.iterdir() if (p / RUN_JSON).is_file()] if root.is_dir() else []
    return sorted(runs, key=lambda run: run.id, reverse=True)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id still exists (for runs whose window was closed)."""
    if not pid:
        return False
    if os.name == "nt":
        import ctypes  # Windows only

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]  # Windows only
        handle = kernel32.OpenProcess(0x1000, False, int(pid))  # QUERY_LIMITED_INFO
        if not handle:
            return False
        kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SAMPLES_FILE = "samples.jsonl"  # a run's sample generations, one line per sampled step (train/samples.py)


def read_samples(run_path: Path) -> list[tuple[int, list[dict[str, str]]]]:
    """The run's sample generations as (step, [{"prompt", "output"}]) oldest first, from
    samples.jsonl, else from the event log's samples artifacts (runs whose file was removed).
    A step sampled twice (a resumed run redoing it) shows its latest answers."""
    records = _samples_file_records(run_path / SAMPLES_FILE)
    if not records:
        records = [message for message in RunFolder(run_path).read_events()
                   if message["type"] == protocol.ARTIFACT and message.get("kind") == "samples"]
    by_step: dict[int, list[dict[str, str]]] = {}
    for record in records:
        step, samples = record.get("step"), record.get("samples")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and isinstance(samples, list):
            rows = [{"prompt": str(s.get("prompt", "")), "output": str(s.get("output", ""))}
                    for s in samples if isinstance(s, dict)]
            if rows:
                by_step[int(step)] = rows
    return sorted(by_step.items())


def _samples_file_records(path: Path) -> list[dict[str, Any]]:
    """samples.jsonl's whole lines; a torn or foreign line is skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = untrusted.json_loads(line)
        except ValueError:  # InputError too
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
