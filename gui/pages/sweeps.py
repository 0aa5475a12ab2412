"""The Sweeps page: a sweep's trials (state, value, knobs, duration), its optimisation history,
parallel coordinates and knob importance, and the best trial with what to do next.

Everything comes from `tunebench-engine sweep status NAME --json` (the engine reads the Optuna
study), so this page imports neither optuna nor torch. The sweeps listed are the study files in
the workspace's sweeps/ folder; sweeps are made with the Train page's Sweep… button (which queues
them) or from a terminal (README, "The engine CLI"), and their trials are ordinary runs on the Runs
page.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state import sweep_view
from gui.state.sweep_view import SweepSummary
from gui.widgets.status_line import StatusLine
from gui.widgets.sweep_plots import SweepPlots
from gui.widgets.tables import make_read_only

NUMERIC = {"#", "Value", "Duration", "Pruned at", "Retry of"}


class BestTrialCard(QGroupBox):
    """The best finished trial: its value, knobs and run, and what to do with it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Best trial", parent)
        self.value_label = QLabel("No finished trial yet.")
        self.knobs_label = QLabel(wordWrap=True)
        self.run_label = QLabel(objectName="hint", wordWrap=True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open run")
        self.open_button.setToolTip("Show the best trial's run (curves, samples, settings) on the Runs page")
        self.longer_button = QPushButton("Train best config longer")
        self.longer_button.setToolTip("Queue a new run that starts from the best trial's adapter with its "
                                      "settings (train --continue-from), on the Train page")
        self.evaluate_button = QPushButton("Evaluate best")
        self.evaluate_button.setToolTip("Open the Evaluate page with the best trial's adapter ticked")
        form = QFormLayout()
        self.value_name = QLabel("Validation loss")  # the objective: validation loss or a metric's title
        form.addRow(self.value_name, self.value_label)
        form.addRow("Knobs", self.knobs_label)
        form.addRow("Run", self.run_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for button in (self.open_button, self.longer_button, self.evaluate_button):
            layout.addWidget(button)
        layout.addStretch(1)
        self.run_id = ""
        self.show_trial(None)

    def show_trial(self, trial: dict[str, Any] | None) -> None:
        self.run_id = (trial or {}).get("run_id") or ""
        for button in (self.open_button, self.longer_button, self.evaluate_button):
            button.setEnabled(bool(self.run_id))
        if trial is None:
            self.value_label.setText("No finished trial yet.")
            self.knobs_label.setText("")
            self.run_label.setText("")
            return
        self.value_label.setText(f"{sweep_view.format_value(trial.get('value'))}  (trial {trial['number']})")
        self.knobs_label.setText("\n".join(f"{k} = {sweep_view.format_value(v)}" for k, v in trial["params"].items()))
        self.run_label.setText(self.run_id)


class SweepsPage(QWidget):
    sig_open_run = Signal(str)  # run id: show it on the Runs page
    sig_continue_requested = Signal(str)  # run id: the Train page queues `train --continue-from`
    sig_evaluate_requested = Signal(str)  # run id: the Evaluate page with its adapter ticked

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.client = EngineClient(self)
        self.summary: SweepSummary | None = None
        self._build()
        self._connect()
        self.refresh()

    def _build(self) -> None:
        self.sweep_combo = QComboBox()
        self.sweep_combo.setMinimumWidth(220)
        self.sweep_combo.setToolTip("The sweeps in the workspace (sweeps/NAME.db); create and run them with "
                                    "the Train page's Sweep… button, or `tunebench-engine sweep create` and "
                                    "`sweep run`")
        self.refresh_button = QPushButton("Refresh")
        self.headline = QLabel(objectName="hint")
        top = QHBoxLayout()
        top.addWidget(QLabel("Sweep"))
        top.addWidget(self.sweep_combo)
        top.addWidget(self.headline, 1)
        top.addWidget(self.refresh_button)
        self.table = QTableWidget()
        make_read_only(self.table, stretch_column=0)
        self.best_card = BestTrialCard()
        self.best_card.setMaximumWidth(320)
        upper = QWidget()
        upper_layout = QHBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addWidget(self.table, 1)
        upper_layout.addWidget(self.best_card)
        self.plots = SweepPlots()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(upper)
        splitter.addWidget(self.plots)
        splitter.setSizes([330, 380])
        self.status = StatusLine("")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.refresh_button.clicked.connect(self.refresh)
        self.sweep_combo.currentTextChanged.connect(self.load)
        self.client.sig_result.connect(self._on_result)
        self.client.sig_finished.connect(self._on_finished)
        self.best_card.open_button.clicked.connect(lambda: self.sig_open_run.emit(self.best_card.run_id))
        self.best_card.longer_button.clicked.connect(lambda: self.sig_continue_requested.emit(self.best_card.run_id))
        self.best_card.evaluate_button.clicked.connect(lambda: self.sig_evaluate_requested.emit(self.best_card.run_id))

    # -- data ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-lists the sweeps, keeping the chosen one, and reloads it."""
        current = self.sweep_combo.currentText()
        names = sweep_view.list_sweeps()
        self.sweep_combo.blockSignals(True)
        self.sweep_combo.clear()
        self.sweep_combo.addItems(names)
        if current in names:
            self.sweep_combo.setCurrentText(current)
        self.sweep_combo.blockSignals(False)
        if not names:
            self.headline.setText("No sweeps yet: make one with Sweep… on the Train page, or "
                                  "`tunebench-engine sweep create SWEEP.toml`.")
            return
        self.load(self.sweep_combo.currentText())

    def load(self, name: str) -> None:
        """Asks the engine for the sweep's summary (`sweep status NAME --json`)."""
        if not name or self.client.is_active():
            return
        self.status.show_message(f"Reading sweep {name}…")
        self.client.start([*self._context.engine_command(), "sweep", "status", name, "--json"],
                          env=self._context.engine_env())

    def show_summary(self, summary: SweepSummary) -> None:
        self.summary = summary
        self.headline.setText(summary.headline())
        label = str(summary.data.get("objective_label") or "validation loss")
        self.best_card.value_name.setText(label[:1].upper() + label[1:])
        note = str(summary.data.get("pruning_note") or "")
        self.headline.setToolTip(note[:1].upper() + note[1:] + "." if note else "")
        header, rows = sweep_view.table(summary)
        self.table.clear()
        self.table.setColumnCount(len(header))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(header)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if header[c] in NUMERIC or header[c] in summary.knobs:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.best_card.show_trial(summary.best)
        self.plots.show_summary(summary)

    def is_busy(self) -> bool:
        return self.client.is_active()

    def shutdown(self) -> None:
        if self.client.is_active():
            self.client.kill()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        if not self.is_busy():
            self.refresh()  # trials finished since the page was last shown
        super().showEvent(event)

    def _on_result(self, message: dict) -> None:
        self.show_summary(SweepSummary(message.get("data", {})))
        self.status.show_message(f"Sweep {self.summary.name if self.summary else ''}: read from its study.")

    def _on_finished(self, code: int, summary: str) -> None:
        if code != 0:
            self.status.show_message(summary, error=True)
