"""The Train page: a config form on the left, the live run on the right.

The page writes nothing itself: it validates the form with the engine's schema and starts
``engine train --json`` with the flags that differ from the defaults; the engine makes the run
folder and its event log.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine import config, protocol

from gui.context import AppContext
from gui.engine_client import EngineClient, format_command
from gui.state import dataset_catalog, run_history
from gui.widgets.config_form import ConfigForm
from gui.widgets.log_view import LogView
from gui.widgets.status_line import StatusLine
from gui.widgets.metric_plot import MetricPlot

DEFAULT_PRESET_TITLE = "CPU quick demo"
MODEL_SUGGESTIONS = [("SmolLM2-135M-Instruct (bundled)", "default")]
SAMPLE_DATASET = ("Product reviews (bundled sample)", "sample")


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class TrainPage(QWidget):
    """Edit a run configuration, start it, watch it, stop it."""

    sig_run_finished = Signal(str)  # the run folder (empty when the engine never made one)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self._presets = config.list_presets()
        self._run_dir = ""
        self._result: dict[str, Any] = {}
        self.client = EngineClient(self)
        self._build()
        self._connect_client()
        self._select_default_preset()
        self._set_running(False)

    # -- layout --------------------------------------------------------------------------

    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_settings_panel())
        splitter.addWidget(self._build_run_panel())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([460, 800])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _build_settings_panel(self) -> QWidget:
        self.preset_combo = QComboBox()
        for preset in self._presets:
            self.preset_combo.addItem(preset.title, preset.key)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_combo_changed)
        self.preset_description = QLabel(wordWrap=True, objectName="hint")
        preset_box = QGroupBox("Preset")
        preset_layout = QVBoxLayout(preset_box)
        preset_layout.addWidget(self.preset_combo)
        preset_layout.addWidget(self.preset_description)

        self.form = ConfigForm({"model": MODEL_SUGGESTIONS, "dataset": self._dataset_suggestions()})
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        column = QWidget()
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 6, 0)
        column_layout.addWidget(preset_box)
        column_layout.addWidget(self.form)
        scroll.setWidget(column)
        # Never scroll sideways: the panel is as wide as the widest form row.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(column.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())

        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addLayout(self._build_buttons())
        return panel

    def _build_buttons(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start", objectName="primary")
        self.stop_button = QPushButton("Stop")
        self.copy_button = QPushButton("Copy as command")
        self.copy_button.setToolTip("Copy the engine command for these settings; it runs the same job in a terminal")
        self.start_button.clicked.connect(self._on_start_clicked)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        row.addStretch(1)
        row.addWidget(self.copy_button)
        return row

    def _build_run_panel(self) -> QWidget:
        self.plot = MetricPlot()
        self.progress = QProgressBar(textVisible=True)
        self._reset_progress("no run yet")
        self.status_label = StatusLine("Ready.")
        self.log_view = LogView()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.plot)
        splitter.addWidget(self.log_view)
        splitter.setSizes([520, 200])
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(splitter, 1)
        return panel

    def _connect_client(self) -> None:
        self.client.sig_log.connect(self._on_client_log)
        self.client.sig_stderr.connect(self.log_view.append_line)
        self.client.sig_progress.connect(self._on_client_progress)
        self.client.sig_metrics.connect(self._on_client_metrics)
        self.client.sig_artifact.connect(self._on_client_artifact)
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_error.connect(self._on_client_error)
        self.client.sig_finished.connect(self._on_client_finished)

    # -- presets and form ------------------------------------------------------------------

    def _dataset_suggestions(self) -> list[tuple[str, str]]:
        names = dataset_catalog.dataset_names(self._context.datasets_dir)
        return [SAMPLE_DATASET, *((name, name) for name in names)]

    def refresh_datasets(self) -> None:
        self.form.set_suggestions("dataset", self._dataset_suggestions())

    def _select_default_preset(self) -> None:
        index = self.preset_combo.findText(DEFAULT_PRESET_TITLE)
        self.preset_combo.setCurrentIndex(max(index, 0))
        self._on_preset_combo_changed(self.preset_combo.currentIndex())

    def _on_preset_combo_changed(self, index: int) -> None:
        if not 0 <= index < len(self._presets):
            return
        preset = self._presets[index]
        self.preset_description.setText(preset.description)
        self.form.set_values(preset.values)

    def build_command(self) -> list[str]:
        """The full engine argv for the form; raises config.ConfigError for a bad value."""
        cfg = config.from_mapping(self.form.values())
        return self._context.engine_command() + ["train", "--json"] + config.to_arguments(cfg)

    # -- buttons ---------------------------------------------------------------------------

    def _on_start_clicked(self) -> None:
        try:
            argv = self.build_command()
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        self._reset_run_view()
        self.log_view.append_line("$ " + format_command(argv))
        self.client.start(argv, self._context.engine_env())
        self._set_running(True)
        self.status_label.show_message("Starting the engine…")

    def resume(self, run_id: str) -> bool:
        """Continues a stopped run (`train --resume`): the plot starts from the run's recorded
        curves so the new points carry on from them. False if a job is already running."""
        if self.is_busy():
            self.status_label.show_message("A run is already in progress; stop it first.", error=True)
            return False
        argv = self._context.engine_command() + ["train", "--json", "--resume", run_id]
        self._reset_run_view()
        self.plot.set_buffer(run_history.curves_before_resume(self._context.runs_dir / run_id))
        self.log_view.append_line("$ " + format_command(argv))
        self.client.start(argv, self._context.engine_env())
        self._set_running(True)
        self.status_label.show_message(f"Resuming {run_id}…")
        return True

    def _on_stop_clicked(self) -> None:
        self.status_label.show_message("Stopping: the engine saves a checkpoint at the next step…")
        self.stop_button.setEnabled(False)
        self.client.cancel()

    def _on_copy_clicked(self) -> None:
        try:
            command = format_command(self.build_command())
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        QGuiApplication.clipboard().setText(command)
        self.status_label.show_message("Copied the command to the clipboard.")

    def _show_config_error(self, exc: config.ConfigError) -> None:
        """One line naming the setting by its form label; the form keeps what was typed."""
        known = self.form.has_field(exc.field)
        reason = str(exc).removeprefix(f"{exc.field}: ")
        self.status_label.show_message(f"{self.form.label(exc.field) if known else exc.field}: {reason}", error=True)
        if known:
            self.form.widget(exc.field).setFocus()

    # -- engine events -----------------------------------------------------------------------

    def _on_client_log(self, level: str, message: str) -> None:
        self.log_view.append_line(f"[{level}] {message}")

    def _on_client_progress(self, message: dict) -> None:
        current, total = int(message.get("current") or 0), int(message.get("total") or 0)
        if total <= 0:
            # Loading phases have no step count: a busy bar and the phase's own words.
            self.progress.setRange(0, 0)
            what = message.get("what")
            self.status_label.show_message(str(message.get("message") or (f"Loading the {what}…" if what else "Loading…")))
            return
        self.progress.setRange(0, total)
        self.progress.setValue(min(current, total))
        self.progress.setFormat(f"step {current} / {total} — ETA {format_eta(message.get('eta_s'))}")
        if message.get("stage") == "train":
            self.status_label.show_message("Training…")

    def _on_client_metrics(self, message: dict) -> None:
        if isinstance(message.get("values"), dict):
            self.plot.add_metrics(message["step"], message["values"])

    def _on_client_artifact(self, message: dict) -> None:
        if message.get("kind") == "run_dir":
            self._run_dir = str(message["path"])
        self.log_view.append_line(f"[artifact] {message.get('kind')}: {message.get('path')}")

    def _on_client_result(self, message: dict) -> None:
        self._result = message["data"] if isinstance(message.get("data"), dict) else {}
        self._run_dir = str(self._result.get("run_dir") or self._run_dir)

    def _on_client_error(self, message: dict) -> None:
        self.log_view.append_line(f"[error] {message.get('message')}")

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        self._set_running(False)
        self.plot.redraw()  # the last points may still be waiting for the redraw timer
        if exit_code == 0:
            self.status_label.show_message(self._finished_text())
        else:
            # Cancelling is what the user asked for: say so plainly, not as an error.
            self.status_label.show_message(summary, error=exit_code != protocol.ExitCode.CANCELLED)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.sig_run_finished.emit(self._run_dir)

    def _finished_text(self) -> str:
        steps, loss = self._result.get("steps"), self._result.get("final_loss")
        parts = ["Finished"]
        if steps is not None:
            parts.append(f"{steps} steps")
        if isinstance(loss, (int, float)):
            parts.append(f"final loss {loss:.4f}")
        where = f" Run folder: {self._run_dir}" if self._run_dir else ""
        return ", ".join(parts) + "." + where

    # -- helpers -----------------------------------------------------------------------------

    def _reset_run_view(self) -> None:
        self._run_dir = ""
        self._result = {}
        self.plot.clear()
        self.log_view.clear()
        self._reset_progress("waiting for the engine")

    def _reset_progress(self, text: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)  # a reset bar (value -1) would hide the text
        self.progress.setFormat(text)

    def _set_running(self, running: bool) -> None:
        self.form.setEnabled(not running)
        self.preset_combo.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def is_busy(self) -> bool:
        return self.client.is_active()

    def shutdown(self) -> None:
        self.client.kill()
