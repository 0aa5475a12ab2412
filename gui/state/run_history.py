"""The runs in the workspace as table rows, and their loss curves. Qt-free.

Reads what the engine wrote (run.json, events.ndjson) with engine.workspace, so a run shows
the same after the window restarts as while it was live.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import protocol, workspace

from gui.state.metric_buffer import MetricBuffer
from gui.state.timefmt import format_time

INTERRUPTED = "interrupted"
CURVE_NAMES = ("loss", "eval_loss", "learning_rate", "tokens_per_s")


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

    @property
    def title(self) -> str:
        return self.name or self.id


def list_rows(root: Path | None = None) -> list[RunRow]:
    """Every run folder, newest first."""
    return [row_of(run) for run in workspace.list_runs(root)]


def row_of(run: workspace.RunFolder) -> RunRow:
    info = run.info()
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
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


def load_curves(run_path: Path, up_to_step: float | None = None) -> MetricBuffer:
    """The run's metrics from its event log (the same messages the live plot received), up to
    ``up_to_step`` when given."""
    buffer = MetricBuffer()
    for message in workspace.RunFolder(run_path).read_events():
        if up_to_step is not None and isinstance(message.get("step"), (int, float)) and message["step"] > up_to_step:
            continue
        if message["type"] == protocol.METRICS and isinstance(message["values"], dict):
            buffer.append_values(message["step"], message["values"], CURVE_NAMES)
    return buffer


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
