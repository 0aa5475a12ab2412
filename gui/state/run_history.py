"""The runs in the workspace as table rows, and their loss curves. Qt-free.

Reads what the engine wrote (run.json, events.ndjson) with engine.core.workspace, so a run shows
the same after the window restarts as while it was live.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import protocol, workspace
from engine.core.config import PROMPT_LEARNING
from engine.train import job_queue
from gui.state.metric_buffer import MetricBuffer
from gui.state.timefmt import format_time

INTERRUPTED = "interrupted"
# Every metric the plots draw (gui.widgets.metric_plot.SERIES_KEYS; this module stays Qt-free).
CURVE_NAMES = ("loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_s", "memory_gb", "gpu_util",
               "gpu_temp_c")


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    status: str
    method: str
    model: str
    dataset: str
    steps: int | None
    final_loss: float | None
    created: str
    path: Path

    @property
    def adapter_dir(self) -> Path:
        return self.path / workspace.ADAPTER

    def has_adapter(self) -> bool:
        return self.adapter_dir.is_dir()

    def can_resume(self) -> bool:
        """A run that stopped before its end and left a complete checkpoint."""
        resumable = (workspace.CANCELLED, workspace.FAILED, INTERRUPTED)
        return self.status in resumable and workspace.RunFolder(self.path).last_checkpoint() is not None

    def can_continue(self) -> bool:
        """A finished run with a saved adapter can be trained further as a new run."""
        return self.status == workspace.FINISHED and (self.adapter_dir / "adapter_config.json").is_file()

    def can_export_model(self) -> bool:
        """A finished LoRA/QLoRA adapter or full fine-tune can be merged and exported; prompt and
        prefix tuning change no weights, so they have nothing to merge."""
        if self.status != workspace.FINISHED or self.method in PROMPT_LEARNING:
            return False
        return ((self.adapter_dir / "adapter_config.json").is_file()
                or (self.path / workspace.MODEL / "config.json").is_file())

    @property
    def title(self) -> str:
        return self.name or self.id


def list_rows(root: Path | None = None) -> list[RunRow]:
    """Every run folder, newest first."""
    return [row_of(run) for run in workspace.list_runs(root)]


def row_of(run: workspace.RunFolder) -> RunRow:
    info = run.info()
    config: dict[str, Any] = info["config"] if isinstance(info.get("config"), dict) else {}
    pick = lambda key: str(info.get(key) or config.get(key) or "")  # noqa: E731
    return RunRow(
        id=run.id,
        name=str(info.get("name") or ""),
        status=_status(info),
        method=pick("method"),
        model=pick("model"),
        dataset=pick("dataset"),
        steps=_number(info.get("steps"), int),
        final_loss=_number(info.get("final_loss"), float),
        created=format_time(info.get("created"), _mtime(run.path)),
        path=run.path,
    )


def curves_before_resume(run_path: Path) -> MetricBuffer:
    """The curves a resumed run continues: only the steps its last checkpoint holds, since a
    crashed run may have logged steps after that checkpoint which the resumed run repeats."""
    checkpoint = workspace.RunFolder(run_path).last_checkpoint()
    return load_curves(run_path, workspace.checkpoint_step(checkpoint) if checkpoint else None)


def finished_with_adapter(root: Path | None = None) -> list[RunRow]:
    """Runs whose adapter can be loaded into the playground."""
    return [row for row in list_rows(root) if row.has_adapter() and row.status != workspace.RUNNING]


def trained_system_prompt(adapter_dir: str | Path) -> str | None:
    """The system prompt the run that made this adapter trained with (its run.json), or None for
    a folder outside a run or a run trained without one."""
    if not adapter_dir:
        return None
    system = workspace.RunFolder(Path(adapter_dir).parent).info().get("system_prompt")
    return system if isinstance(system, str) and system.strip() else None


def load_curves(run_path: Path, up_to_step: float | None = None) -> MetricBuffer:
    """The run's metrics from its event log (the same messages the live plot received), up to
    ``up_to_step`` when given."""
    buffer = MetricBuffer()
    for message in workspace.RunFolder(run_path).read_events():
        if up_to_step is not None and isinstance(message.get("step"), (int, float)) and message["step"] > up_to_step:
            continue
        if message["type"] == protocol.METRICS and isinstance(message["values"], dict):
            buffer.append_values(message["step"], message["values"], CURVE_NAMES)
        elif (resumed := resumed_from(message)) is not None:
            # A resumed attempt redoes the steps its crashed predecessor logged after the checkpoint.
            buffer.truncate_after(resumed)
    return buffer


def resumed_from(message: dict[str, Any]) -> float | None:
    """The checkpoint step a resumed attempt starts from (its run_dir artifact says so)."""
    value = message.get("resumed_from")
    if message["type"] != protocol.ARTIFACT or message.get("kind") != "run_dir":
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


Samples = list[tuple[int, list[dict[str, str]]]]
SAMPLES_FILE = workspace.SAMPLES_FILE


def load_samples(run_path: Path) -> Samples:
    """The run's sample generations as (step, [{"prompt", "output"}]) oldest first."""
    return workspace.read_samples(run_path)


class RunDeleteError(Exception):
    """A run that must not be deleted (still training) or could not be; one line for the user."""


def delete_run(run_path: Path, queue_root: Path | None = None) -> None:
    """Removes a run folder that is not training and that no queued job (of the workspace at
    ``queue_root``) resumes or continues from. The folder is first renamed to a hidden name
    beside it, so the run vanishes from the listing at once even if removing its files is slow
    or fails half-way (a file held open on Windows)."""
    row = row_of(workspace.RunFolder(run_path))
    if row.status == workspace.RUNNING:
        raise RunDeleteError(f"{row.title} is still training; stop it before deleting it.")
    waiting = [job for job in job_queue.load(queue_root) if job.get("status") in (job_queue.QUEUED, job_queue.RUNNING)
               and row.id in job.get("args", [])]
    if waiting:  # a queued Resume or Continue training of this run would fail without its folder
        raise RunDeleteError(f"{row.title} is waiting in the queue to be resumed or continued; remove that "
                             "job on the Train page first.")
    trash = run_path.with_name(f".deleting-{run_path.name}")
    try:
        os.replace(run_path, trash)
    except OSError as exc:
        raise RunDeleteError(f"Could not delete {run_path}: {exc.strerror or exc}") from None
    shutil.rmtree(trash, ignore_errors=True)
    if trash.exists():  # something was held open: at least never list the remains as a run
        (trash / workspace.RUN_JSON).unlink(missing_ok=True)


def _status(info: dict[str, Any]) -> str:
    status = str(info.get("status") or "unknown")
    # A run still marked running whose engine process is gone was cut off (crash, power loss).
    if status == workspace.RUNNING and not workspace.pid_alive(info.get("pid")):
        return INTERRUPTED
    return status


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)


def _mtime(folder: Path) -> float | None:
    try:
        return folder.stat().st_mtime
    except OSError:
        return None
