"""The training queue as a list with remove / move up / move down.

Reads and writes the queue through engine.train.job_queue (the same file and lock the worker uses),
so what it shows survives a restart and matches `tunebench-engine queue list`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.core import errors
from engine.train import job_queue

STATUS_WORDS = {"queued": "waiting", "running": "training", "finished": "finished", "failed": "failed",
                "cancelled": "stopped", "interrupted": "interrupted"}


def describe(entry: dict) -> str:
    """One line per job: status, name and the flags that matter."""
    status = STATUS_WORDS.get(str(entry.get("status")), str(entry.get("status")))
    if entry.get("kind") == job_queue.SWEEP:  # a sweep's trials, one after another
        live = entry.get("run_id") and entry.get("status") == job_queue.RUNNING
        trial = f"    trial run {entry['run_id']}" if live else ""
        return f"{status} — {entry.get('name') or 'sweep'}{trial}"
    name = entry.get("name") or entry.get("run_id") or "new run"
    flags = " ".join(str(a) for a in entry.get("args", []))
    return f"{status} — {name}    {flags}"


class QueuePanel(QGroupBox):
    """Waiting, running and recently ended jobs, in run order."""

    sig_error = Signal(str)

    def __init__(self, workspace_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__("Queue", parent)
        self._root = workspace_dir
        self._shown: list[dict] | None = None  # None: never read, so the first refresh draws
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        # One line per job, cut at the right edge; the tooltip has the whole command.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.currentRowChanged.connect(self._update_buttons)
        self.empty_label = QLabel("No jobs waiting. Start adds a job; one trains at a time.", objectName="hint")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.remove_button = QPushButton("Remove")
        self.clear_button = QPushButton("Clear ended")
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(1))
        self.remove_button.clicked.connect(self._remove)
        self.clear_button.clicked.connect(self._clear_ended)
        buttons = QHBoxLayout()
        for button in (self.up_button, self.down_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.refresh()

    def jobs(self) -> list[dict]:
        return list(self._shown or [])

    def refresh(self) -> None:
        """Re-reads queue.json; the selection follows its job."""
        jobs = job_queue.load(self._root)
        if jobs == self._shown:
            return
        selected = self.selected_job()
        self._shown = jobs
        self.list.clear()
        for entry in jobs:
            item = QListWidgetItem(describe(entry), self.list)
            item.setData(Qt.ItemDataRole.UserRole, entry["id"])
            item.setToolTip(" ".join(job_queue.command_of(entry)))
        if selected is not None:
            self.select_job(selected["id"])
        self.empty_label.setVisible(not jobs)
        self.list.setVisible(bool(jobs))
        self._update_buttons()

    def selected_job(self) -> dict | None:
        row, shown = self.list.currentRow(), self._shown or []
        return shown[row] if 0 <= row < len(shown) and self.list.currentItem() else None

    def select_job(self, job_id: str) -> None:
        for row, entry in enumerate(self._shown or []):
            if entry["id"] == job_id:
                self.list.setCurrentRow(row)

    def _update_buttons(self) -> None:
        entry = self.selected_job()
        waiting = entry is not None and entry.get("status") == job_queue.QUEUED
        self.up_button.setEnabled(waiting)
        self.down_button.setEnabled(waiting)
        self.remove_button.setEnabled(entry is not None and entry.get("status") != job_queue.RUNNING)
        self.clear_button.setEnabled(any(e.get("status") not in (job_queue.QUEUED, job_queue.RUNNING)
                                         for e in self._shown or []))

    def _move(self, offset: int) -> None:
        entry = self.selected_job()
        if entry is not None:
            self._apply(lambda: job_queue.move(entry["id"], offset, self._root))
            self.select_job(entry["id"])

    def _remove(self) -> None:
        entry = self.selected_job()
        if entry is not None:
            self._apply(lambda: job_queue.remove(entry["id"], self._root))

    def _clear_ended(self) -> None:
        self._apply(lambda: job_queue.clear_ended(self._root))

    def _apply(self, change) -> None:  # noqa: ANN001 (a no-argument callable)
        try:
            change()
        except errors.EngineError as exc:  # e.g. the worker started the job a moment ago
            self.sig_error.emit(exc.message)
        self.refresh()
