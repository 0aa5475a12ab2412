"""The Train page: a config form and the queue on the left, the live run on the right.

The page writes no run itself. Start adds a job to the workspace's queue (engine.train.job_queue) and
makes sure a queue worker runs, started detached so that closing the window stops nothing. The
page follows the live run by reading its folder (runs/<id>/events.ndjson, run.json) with a timer,
so a window opened later re-attaches the same way: it replays the history into the plots and
carries on live. Stop asks the engine to stop through a file in the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
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
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core import config, errors, fit, fit_estimate, protocol, workspace
from engine.train import job_queue
from gui.context import AppContext
from gui.engine_client import EngineClient, format_command
from gui.notifications import Notice, Notifier
from gui.state import dataset_catalog, run_history
from gui.state.run_follower import RunFollower, find_live_run
from gui.widgets.config_form import ConfigForm
from gui.widgets.hub_dialog import HubDialog
from gui.widgets.log_view import LogView
from gui.widgets.metric_plot import MetricPlot
from gui.widgets.status_line import StatusLine
from gui.widgets.sweep_dialog import SweepDialog
from gui.widgets.train_queue import QueuePanel
from gui.widgets.train_samples import SamplesView

DEFAULT_PRESET_TITLE = "CPU quick demo"
MODEL_SUGGESTIONS = [("SmolLM2-135M-Instruct (bundled)", "default")]
SAMPLE_DATASET = ("Product reviews (bundled sample)", "sample")
POLL_MS = 200  # ~5 Hz: the run folder is read this often
SLOW_EVERY = 5  # ticks between looks at the queue and for a live run to attach to
DETACHED_HINT = "Training runs on when this window closes; reopen Tunebench to follow it."
# Settings the model picker's memory estimate depends on (engine/core/fit_estimate.py).
ESTIMATE_FIELDS = ("method", "batch_size", "max_length", "precision", "device", "lora_r", "target_modules",
                   "gradient_checkpointing", "num_virtual_tokens")
FIT_CHECKING = "Checking the fit: loading the model, then two training steps on the longest rows…"
END_WORDS = {workspace.FINISHED: "finished", workspace.CANCELLED: "stopped", workspace.FAILED: "failed",
             "interrupted": "was interrupted"}


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class TrainPage(QWidget):
    """Edit a run configuration, queue it, watch the live run, stop it."""

    sig_run_finished = Signal(str)  # the run folder (empty when the job never made one)

    def __init__(self, context: AppContext, parent: QWidget | None = None,
                 notifier: Notifier | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self._presets = config.list_presets()
        self._follower: RunFollower | None = None
        self._job_id = ""  # the queue job this page waits for, before its run folder exists
        self._stop_pending = False
        self._result: dict[str, Any] = {}
        self._error = ""
        self._ticks = 0
        self._shapes: dict[str, fit_estimate.ModelShape | None] = {}  # model value -> its shape, read once
        self._fit_result: dict[str, Any] = {}
        self._fit_client = EngineClient(self)
        self._fit_client.sig_progress.connect(self._on_fit_progress)
        self._fit_client.sig_result.connect(self._on_fit_result)
        self._fit_client.sig_finished.connect(self._on_fit_finished)
        self.sweep_dialog: SweepDialog | None = None
        self._sweep_name = ""
        self._sweep_client = EngineClient(self)
        self._sweep_client.sig_finished.connect(self._on_sweep_created)
        self.notifier = notifier or Notifier(self)
        self.notifier.sig_banner.connect(self._show_banner)
        self._build()
        self._estimate_timer = QTimer(self, singleShot=True, interval=50)
        self._estimate_timer.timeout.connect(self.refresh_estimates)
        self._watch_estimate_fields()
        self._select_default_preset()
        self.refresh_estimates()
        self._set_running(False)
        self._poll_timer = QTimer(self, interval=POLL_MS)
        self._poll_timer.timeout.connect(self._on_poll_timer_timeout)
        self.attach_live_run()
        self._poll_timer.start()

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
        self.hub_button = QPushButton("Browse the Hub…")
        self.hub_button.setToolTip("Search the Hugging Face Hub and download a model; it joins the model picker")
        self.hub_button.clicked.connect(self.open_hub_dialog)
        hub_row = QHBoxLayout()
        hub_row.addStretch(1)
        hub_row.addWidget(self.hub_button)
        column_layout.addLayout(hub_row)
        column_layout.addWidget(self.form)
        scroll.setWidget(column)
        # Never scroll sideways: the panel is as wide as the widest form row.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(column.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())

        self.queue_panel = QueuePanel(self._context.workspace_dir)
        self.queue_panel.sig_error.connect(lambda text: self.status_label.show_message(text, error=True))
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addLayout(self._build_buttons())
        layout.addLayout(self._build_fit_answer())
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.queue_panel)
        return panel

    def _build_buttons(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start", objectName="primary")
        self.start_button.setToolTip("Add these settings to the queue; the queue trains one run at a time. "
                                     + DETACHED_HINT)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the live run at its next step; it keeps a checkpoint to resume from")
        self.fit_button = QPushButton("Check fit")
        self.fit_button.setToolTip("Measure whether these settings fit in memory before starting: loads the model "
                                   "and trains two steps on the dataset's longest rows (seconds to minutes); "
                                   "writes no run")
        self.sweep_button = QPushButton("Sweep…")
        self.sweep_button.setToolTip("Search these settings: pick knobs to vary (ranges, log scale or choices), the "
                                     "objective, trials, time budget, sampler and pruner; the sweep runs in the "
                                     "queue as one job and its trials are ordinary runs")
        self.sweep_button.clicked.connect(self._on_sweep_clicked)
        self.copy_button = QPushButton("Copy as command")
        self.copy_button.setToolTip("Copy the engine command for these settings; it runs the same job in a terminal")
        self.start_button.clicked.connect(self._on_start_clicked)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.fit_button.clicked.connect(self._on_fit_clicked)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.fit_button)
        row.addWidget(self.sweep_button)
        row.addStretch(1)
        row.addWidget(self.copy_button)
        return row

    def _build_fit_answer(self) -> QHBoxLayout:
        """The probe's answer under Start (with a button to take its proposal), and the model's
        memory estimate under it."""
        self.fit_label = QLabel(wordWrap=True, objectName="fitAnswer")
        self.fit_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fit_label.setVisible(False)
        self.fit_apply_button = QPushButton("Use these settings")
        self.fit_apply_button.setToolTip("Set micro-batch, grad. accumulation and max length to the probe's proposal")
        self.fit_apply_button.setVisible(False)
        self.fit_apply_button.clicked.connect(self._on_fit_apply_clicked)
        self.estimate_label = QLabel(wordWrap=True, objectName="hint")
        row = QHBoxLayout()
        row.addWidget(self.fit_label, 1)
        row.addWidget(self.fit_apply_button, 0, Qt.AlignmentFlag.AlignTop)
        return row

    def _build_run_panel(self) -> QWidget:
        self.banner = QLabel(wordWrap=True, objectName="banner")
        self.banner.setVisible(False)
        self.banner.mousePressEvent = lambda event: self.banner.setVisible(False)  # click to dismiss
        self.plot = MetricPlot()
        self.progress = QProgressBar(textVisible=True)
        self._reset_progress("no run yet")
        self.status_label = StatusLine("Ready.")
        self.run_label = QLabel(DETACHED_HINT, objectName="hint")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_view = LogView()
        self.tabs = QTabWidget()
        self.samples_view = SamplesView()
        self.tabs.addTab(self.plot, "Curves")
        self.tabs.addTab(self.samples_view, "Samples")
        self.tabs.addTab(self.log_view, "Log")
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.run_label)
        layout.addWidget(self.tabs, 1)
        return panel

    # -- presets and form ------------------------------------------------------------------

    def _dataset_suggestions(self) -> list[tuple[str, str]]:
        names = dataset_catalog.dataset_names(self._context.datasets_dir)
        return [SAMPLE_DATASET, *((name, name) for name in names)]

    def refresh_datasets(self) -> None:
        self.form.set_suggestions("dataset", self._dataset_suggestions())

    # -- memory estimate ---------------------------------------------------------------------

    def _watch_estimate_fields(self) -> None:
        for name in (*ESTIMATE_FIELDS, "model"):
            widget = self.form.widget(name)
            for signal in ("currentIndexChanged", "editTextChanged", "valueChanged", "textChanged", "toggled"):
                if hasattr(widget, signal):  # every one there: an editable combo's typing too
                    getattr(widget, signal).connect(lambda *_: self._estimate_timer.start())

    def _model_shape(self, spec: str) -> fit_estimate.ModelShape | None:
        if spec not in self._shapes:
            self._shapes[spec] = fit_estimate.model_shape(spec)
        return self._shapes[spec]

    def _estimate(self, spec: str, values: dict[str, Any]) -> fit_estimate.Estimate | None:
        shape = self._model_shape(spec)
        if shape is None:
            return None
        try:
            return fit_estimate.estimate(shape, values)
        except (ValueError, KeyError, TypeError, ZeroDivisionError):
            return None  # a half-typed value: no estimate until it makes sense

    def refresh_estimates(self) -> None:
        """Each model in the picker gets its memory estimate for the settings in the form, and
        the line under the buttons explains the one chosen."""
        values = self.form.values()
        items = [*MODEL_SUGGESTIONS, *((name, name) for name in fit_estimate.prepared_models())]
        labelled = []
        for label, spec in items:
            estimate = self._estimate(spec, values)
            labelled.append((f"{label} — up to {fit.format_gb(estimate.total_gb)} for {estimate.method}"
                             if estimate else label, spec))
        combo = self.form.widget("model")
        if [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())] != labelled:
            blocker = QSignalBlocker(combo)  # new labels are not a new choice: no re-estimate
            self.form.set_suggestions("model", labelled)
            del blocker
            if not combo.hasFocus():
                combo.lineEdit().setCursorPosition(0)  # the model's name first; the estimate may be cut off
        estimate = self._estimate(values["model"], values)
        if estimate is None:
            self.estimate_label.setText("Memory estimate: not available for this model until it is prepared; "
                                        "Check fit measures it.")
            return
        where = "GPU memory, the CUDA context aside" if estimate.device == "cuda" else "RAM"
        self.estimate_label.setText(
            f"Memory estimate ({where}): up to {fit.format_gb(estimate.total_gb)} for {estimate.method} in "
            f"{estimate.precision} — weights and training state {fit.format_gb(estimate.weights_gb)}, activations "
            f"{fit.format_gb(estimate.activations_gb)} for rows as long as max length, runtime "
            f"{fit.format_gb(estimate.runtime_gb)}. Check fit measures it on your data.")

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

    def train_arguments(self) -> list[str]:
        """The `train` flags for the form; raises config.ConfigError for a bad value."""
        return config.to_arguments(config.from_mapping(self.form.values()))

    def build_command(self) -> list[str]:
        """The full engine argv for the form; raises config.ConfigError for a bad value."""
        return self._context.engine_command() + ["train", "--json"] + self.train_arguments()

    def show_run_settings(self, run_path: Path) -> bool:
        """Fills the form with a run's saved config.toml (what a resumed run trains with)."""
        try:
            cfg = config.load_toml(run_path / workspace.CONFIG_TOML)
        except (OSError, config.ConfigError):
            return False
        self.form.set_values({f.name: getattr(cfg, f.name) for f in config.fields_of()})
        self.preset_description.setText(f"Settings of run {run_path.name} (from its config.toml).")
        return True

    # -- buttons ---------------------------------------------------------------------------

    def _on_start_clicked(self) -> None:
        try:
            args = self.train_arguments()
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        self.enqueue(args)

    def enqueue(self, args: list[str], name: str = "") -> dict:
        """Adds a `train` job to the queue, starts a worker if none runs, and (when no run is on
        screen) waits for this job to start so its run shows here."""
        entry = job_queue.add(args, name, root=self._context.workspace_dir)
        self.queue_panel.refresh()
        self._ensure_worker()
        if self.is_busy():
            ahead = sum(job["status"] in (job_queue.QUEUED, job_queue.RUNNING) and job["id"] != entry["id"]
                        for job in self.queue_panel.jobs())
            self.status_label.show_message(f"Added to the queue ({ahead} ahead of it); it starts when "
                                           "the jobs before it end.")
        else:
            self._reset_run_view()
            self._job_id = entry["id"]
            self.log_view.append_line("$ " + format_command(["tunebench-engine", "train", *args]))
            self._set_running(True)
            self.status_label.show_message("Queued; starting the engine…")
        return entry

    def resume(self, run_id: str) -> bool:
        """Continues a stopped run (`train --resume`) through the queue; the form shows the
        run's settings and, unless another run is on screen, the plot starts from its recorded
        curves (the live replay then carries them on)."""
        self.show_run_settings(self._context.runs_dir / run_id)
        entry = self.enqueue(["--resume", run_id])
        if self._job_id == entry["id"]:
            self.plot.set_buffer(run_history.curves_before_resume(self._context.runs_dir / run_id))
            self.status_label.show_message(f"Resuming {run_id}…")
        return True

    def continue_training(self, run_id: str) -> None:
        """Trains a finished run's adapter further as a new run (`train --continue-from`)."""
        self.show_run_settings(self._context.runs_dir / run_id)
        self.enqueue(["--continue-from", run_id])

    def _on_stop_clicked(self) -> None:
        self.stop_button.setEnabled(False)
        if self._follower is not None:
            job_queue.request_cancel(self._follower.run.path)
            self.status_label.show_message("Stopping: the engine saves a checkpoint at the next step…")
            return
        entry = self._job_entry()
        if entry is not None and entry["status"] == job_queue.QUEUED:
            job_queue.remove(entry["id"], self._context.workspace_dir)
            self.queue_panel.refresh()
            self._end_waiting("Removed from the queue before it started.")
            return
        self._stop_pending = True  # starting: cancel as soon as its run folder exists
        self.status_label.show_message("Stopping as soon as the run has started…")

    def _on_copy_clicked(self) -> None:
        try:
            command = format_command(self.build_command())
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        QGuiApplication.clipboard().setText(command)
        self.status_label.show_message("Copied the command to the clipboard.")

    # -- the Hub ---------------------------------------------------------------------------------

    def open_hub_dialog(self) -> HubDialog:
        self.hub_dialog = HubDialog(self._context.engine_command, self._context.engine_env, self)
        self.hub_dialog.sig_downloaded.connect(self._on_hub_model_downloaded)
        self.hub_dialog.open()
        return self.hub_dialog

    def _on_hub_model_downloaded(self, name: str) -> None:
        self.form.set_values({"model": name})
        self.refresh_estimates()  # the picker lists the cache again, the new model included

    # -- sweeps ----------------------------------------------------------------------------------

    def _on_sweep_clicked(self) -> None:
        """Opens the Sweep… dialog on the form's settings (checked first, as Start checks them)."""
        try:
            cfg = config.validate(config.from_mapping(self.form.values()), "the form")
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        base = {f.name: getattr(cfg, f.name) for f in config.fields_of()}
        self.sweep_dialog = SweepDialog(base, self._context.workspace_dir / "sweeps", self)
        self.sweep_dialog.accepted.connect(self._on_sweep_dialog_accepted)
        self.sweep_dialog.open()

    def _on_sweep_dialog_accepted(self) -> None:
        dialog = self.sweep_dialog
        if dialog is None or dialog.written is None or dialog.result_sweep is None:
            return
        self.create_sweep(dialog.written, dialog.result_sweep.name)

    def create_sweep(self, sweep_file: Path, name: str) -> None:
        """`sweep create FILE`, then the sweep queued as one job (`sweep run NAME`)."""
        self._sweep_name = name
        self.sweep_button.setEnabled(False)
        self.status_label.show_message(f"Creating sweep {name} from {sweep_file}…")
        self._sweep_client.start([*self._context.engine_command(), "sweep", "create", str(sweep_file), "--json"],
                                 env=self._context.engine_env())

    def _on_sweep_created(self, code: int, summary: str) -> None:
        self.sweep_button.setEnabled(True)
        if code != protocol.ExitCode.OK:
            self.status_label.show_message(f"Could not create sweep {self._sweep_name}: {summary}", error=True)
            return
        try:
            job_queue.add_sweep(self._sweep_name, root=self._context.workspace_dir)
        except errors.EngineError as exc:
            self.status_label.show_message(exc.message, error=True)
            return
        self.queue_panel.refresh()
        self._ensure_worker()
        self.status_label.show_message(f"Sweep {self._sweep_name} created and queued; its trials train here one "
                                       "after another, and the Sweeps page shows what it found.")

    # -- the fit probe ----------------------------------------------------------------------------

    def _on_fit_clicked(self) -> None:
        if self._fit_client.is_active():
            self._fit_client.cancel()
            self._show_fit("Stopping the check…", "busy")
            return
        try:
            args = self.train_arguments()
        except config.ConfigError as exc:
            self._show_config_error(exc)
            return
        self._fit_result = {}
        self.fit_apply_button.setVisible(False)
        self._show_fit(FIT_CHECKING, "busy")
        self.fit_button.setText("Cancel check")
        self._fit_client.start([*self._context.engine_command(), "train", "--probe", "--json", *args],
                               env=self._context.engine_env())

    def _on_fit_progress(self, message: dict) -> None:
        if message.get("stage") == "probe" and message.get("message"):
            self._show_fit(str(message["message"]), "busy")

    def _on_fit_result(self, message: dict) -> None:
        data = message.get("data")
        if isinstance(data, dict) and data.get("probe"):
            self._fit_result = data

    def _on_fit_finished(self, code: int, summary: str) -> None:
        self.fit_button.setText("Check fit")
        result = self._fit_result
        if code == protocol.ExitCode.CANCELLED:
            self._show_fit("Fit check stopped.", "busy")
        elif result and isinstance(result.get("summary"), str):
            self._show_fit(result["summary"] + ".", "fits" if result.get("fits") else "nofit",
                           self._fit_details(result))
            self.fit_apply_button.setVisible(isinstance(result.get("proposal"), dict))
        else:
            self._show_fit(f"Could not check the fit: {summary}", "error")

    def _fit_details(self, result: dict[str, Any]) -> str:
        lines = [f"Measured: {result.get('measure', '')}.",
                 (f"Micro-batch {result.get('batch_size')} of the longest rows ({result.get('batch_tokens')} tokens), "
                  f"{result.get('method')} in {result.get('precision')} on {result.get('device')}."),
                 f"Available: {result.get('available_source', '')}; fits below {fit.SAFETY:.0%} of it."]
        return "\n".join(lines)

    def _on_fit_apply_clicked(self) -> None:
        proposal = self._fit_result.get("proposal")
        if not isinstance(proposal, dict):
            return
        values = {**self.form.values(), **{key: proposal[key] for key in ("batch_size", "grad_accum", "max_length")
                                           if isinstance(proposal.get(key), int)}}
        self.form.set_values(values)
        self.fit_apply_button.setVisible(False)
        self.status_label.show_message("Applied the fit check's proposal; Check fit again to measure it.")

    def _show_fit(self, text: str, state: str, tooltip: str = "") -> None:
        self.fit_label.setText(text)
        self.fit_label.setToolTip(tooltip)
        self.fit_label.setVisible(True)
        if self.fit_label.property("state") != state:
            self.fit_label.setProperty("state", state)
            self.fit_label.style().unpolish(self.fit_label)
            self.fit_label.style().polish(self.fit_label)

    def fit_answer(self) -> str:
        return "" if self.fit_label.isHidden() else self.fit_label.text()

    def _show_config_error(self, exc: config.ConfigError) -> None:
        """One line naming the setting by its form label; the form keeps what was typed."""
        known = self.form.has_field(exc.field)
        reason = str(exc).removeprefix(f"{exc.field}: ")
        self.status_label.show_message(f"{self.form.label(exc.field) if known else exc.field}: {reason}", error=True)
        if known:
            self.form.widget(exc.field).setFocus()

    # -- the worker and the queue -----------------------------------------------------------

    def _ensure_worker(self) -> None:
        env = {**os.environ, **self._context.engine_env(), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        try:
            job_queue.launch_worker(self._context.engine_command(), env=env, root=self._context.workspace_dir)
        except OSError as exc:
            self.status_label.show_message(f"Could not start the queue worker: {exc}", error=True)

    def _job_entry(self) -> dict | None:
        return next((job for job in job_queue.load(self._context.workspace_dir) if job["id"] == self._job_id), None)

    def _on_poll_timer_timeout(self) -> None:
        self._ticks += 1
        slow = self._ticks % SLOW_EVERY == 0
        if self._follower is not None:
            self._follow_tick()
        elif self._job_id:
            self._wait_tick(slow)
        elif slow:
            self.attach_live_run()
        if slow:
            self.queue_panel.refresh()

    def _wait_tick(self, slow: bool) -> None:
        entry = self._job_entry()
        if entry is None:
            self._end_waiting("The job was removed from the queue.")
        elif entry.get("run_dir"):
            self._job_id = ""
            self.follow(Path(entry["run_dir"]))
            if self._stop_pending:
                self._on_stop_clicked()
        elif entry["status"] not in (job_queue.QUEUED, job_queue.RUNNING):
            reason = entry.get("error") or f"exit code {entry.get('exit_code')}; see {job_queue.WORKER_LOG}"
            self._end_waiting(f"The job ended before its run started: {reason}", error=True)
        elif entry["status"] == job_queue.QUEUED and slow:
            ahead = [job for job in self.queue_panel.jobs() if job["status"] in (job_queue.QUEUED, job_queue.RUNNING)]
            position = next((i for i, job in enumerate(ahead) if job["id"] == self._job_id), 0)
            self.status_label.show_message(f"Waiting in the queue ({position} ahead)…" if position
                                           else "Queued; starting the engine…")
            if job_queue.worker_pid(self._context.workspace_dir) is None:
                self._ensure_worker()  # the worker died (or was never able to start): try again

    def _end_waiting(self, text: str, error: bool = False) -> None:
        self._job_id = ""
        self._stop_pending = False
        self._set_running(False)
        self._reset_progress("no run")
        self.status_label.show_message(text, error=error)
        if error:
            self.notifier.notify("Training failed to start", text, error=True)

    # -- following a run ---------------------------------------------------------------------

    def attach_live_run(self) -> bool:
        """Shows the run the queue worker is training now, if any (e.g. after a restart): its
        history is replayed into the plots, then it continues live."""
        if self.is_busy():
            return False
        run = find_live_run(self._context.runs_dir)
        if run is None:
            return False
        self._reset_run_view()
        self.follow(run.path)
        self.status_label.show_message(f"Re-attached to the live run {run.id}.")
        return True

    def follow(self, run_path: Path) -> None:
        """Reads the run's whole event log from the start (a resumed run's too: its resume
        message cuts the curves back to the checkpoint), then what is appended."""
        self.plot.clear()
        self._clear_samples()
        self._follower = RunFollower.of(run_path)
        self.run_label.setText(f"Run folder: {run_path} (it keeps training if this window closes)")
        self._set_running(True)
        self._follow_tick()

    def is_following(self) -> bool:
        return self._follower is not None

    def _follow_tick(self) -> None:
        follower = self._follower
        assert follower is not None
        for message in follower.poll():
            self._dispatch(message)
        if follower.ended:
            self._on_run_ended(follower)

    def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if kind == protocol.LOG:
            self.log_view.append_line(f"[{message.get('level')}] {message.get('message')}")
        elif kind == protocol.PROGRESS:
            self._on_progress(message)
        elif kind == protocol.METRICS and message.get("event") == "oom":
            micro = (message.get("values") or {}).get("micro_batch")
            text = f"out of memory: micro-batch {micro:g}" if isinstance(micro, (int, float)) else "out of memory"
            self.plot.add_marker(message["step"], text)
        elif kind == protocol.METRICS and isinstance(message.get("values"), dict):
            self.plot.add_metrics(message["step"], message["values"])
        elif kind == protocol.ARTIFACT:
            self._on_artifact(message)
        elif kind == protocol.RESULT:
            self._result = message["data"] if isinstance(message.get("data"), dict) else {}
        elif kind == protocol.ERROR:
            self._error = str(message.get("message") or "")
            self.log_view.append_line(f"[error] {self._error}")
        elif kind == protocol.HELLO:
            self._result, self._error = {}, ""  # a resumed run's log holds the earlier attempt's
            self.log_view.append_line(
                f"[engine] {message.get('command')} started (engine {message.get('engine_version')})"
            )

    def _on_progress(self, message: dict) -> None:
        current, total = int(message.get("current") or 0), int(message.get("total") or 0)
        if total <= 0:
            # Loading phases have no step count: a busy bar and the phase's own words.
            self.progress.setRange(0, 0)
            what = message.get("what")
            self.status_label.show_message(
                str(message.get("message") or (f"Loading the {what}…" if what else "Loading…"))
            )
            return
        self.progress.setRange(0, total)
        self.progress.setValue(min(current, total))
        self.progress.setFormat(f"step {current} / {total} — ETA {format_eta(message.get('eta_s'))}")
        if message.get("stage") == "train" and self.stop_button.isEnabled():
            self.status_label.show_message("Training…")

    def _on_artifact(self, message: dict) -> None:
        if message.get("kind") == "samples" and isinstance(message.get("samples"), list):
            self.samples_view.add_samples(int(message.get("step") or 0), message["samples"])
            self.tabs.setTabText(self.tabs.indexOf(self.samples_view), f"Samples ({len(self.samples_view.steps())})")
            return
        if message.get("kind") == "run_dir" and isinstance(message.get("resumed_from"), (int, float)):
            # The crashed attempt may have logged steps past its checkpoint; those are redone.
            self.plot.buffer.truncate_after(message["resumed_from"])
            self.plot.redraw()
        self.log_view.append_line(f"[artifact] {message.get('kind')}: {message.get('path')}")

    def _on_run_ended(self, follower: RunFollower) -> None:
        self._follower = None
        self._stop_pending = False
        self._set_running(False)
        self.plot.redraw()  # the last points may still be waiting for the redraw timer
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        status = follower.status()
        text = self._end_text(status, follower.run)
        failed = status not in (workspace.FINISHED, workspace.CANCELLED)
        self.status_label.show_message(text, error=failed)
        title = follower.run.info().get("name") or follower.run.id
        self.notifier.notify(f"Run {title} {END_WORDS.get(status, status)}", f"{text} Run folder: "
                             f"{follower.run.path}", error=failed)
        self.sig_run_finished.emit(str(follower.run.path))

    def _end_text(self, status: str, run: workspace.RunFolder) -> str:
        info = run.info()
        steps = self._result.get("steps", info.get("steps"))
        loss = self._result.get("final_loss", info.get("final_loss"))
        if status == workspace.FINISHED:
            parts = ["Finished"]
        elif status == workspace.CANCELLED:
            parts = ["Stopped; the checkpoint saved so far can be resumed from the Runs page"]
        else:
            reason = self._error or info.get("error") or "the engine process ended unexpectedly"
            parts = [f"The run {END_WORDS.get(status, status)}: {reason}"]
        if steps is not None:
            parts.append(f"{steps} steps")
        if isinstance(loss, (int, float)):
            parts.append(f"final loss {loss:.4f}")
        return ", ".join(parts) + "."  # the run folder is on the line below

    # -- helpers -----------------------------------------------------------------------------

    def _show_banner(self, notice: Notice) -> None:
        self.banner.setText(f"<b>{notice.title}</b><br>{notice.text}")
        self.banner.setProperty("error", notice.error)
        self.banner.setStyleSheet(
            "QLabel#banner { padding: 8px 10px; border-radius: 4px; "
            + ("background: #fde8e8; color: #7f1d1d; border: 1px solid #f5b5b5; }" if notice.error
               else "background: #e6f4ea; color: #14532d; border: 1px solid #a7d7b4; }"))
        self.banner.setToolTip("Click to dismiss")
        self.banner.setVisible(True)

    def _reset_run_view(self) -> None:
        self._result = {}
        self._error = ""
        self.banner.setVisible(False)
        self.plot.clear()
        self._clear_samples()
        self.log_view.clear()
        self.run_label.setText(DETACHED_HINT)
        self._reset_progress("waiting for the engine")

    def _clear_samples(self) -> None:
        self.samples_view.clear()
        self.tabs.setTabText(self.tabs.indexOf(self.samples_view), "Samples")

    def _reset_progress(self, text: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)  # a reset bar (value -1) would hide the text
        self.progress.setFormat(text)

    def _set_running(self, running: bool) -> None:
        # The form stays editable while a run trains: Start then queues the next run.
        self.start_button.setText("Add to queue" if running else "Start")
        self.stop_button.setEnabled(running)

    def is_busy(self) -> bool:
        """A run is on screen (live) or this page's job is waiting to start."""
        return self._follower is not None or bool(self._job_id)

    def shutdown(self) -> None:
        """The window closes: stop reading; the run itself goes on (the worker owns it)."""
        self._poll_timer.stop()
        self._fit_client.kill()  # a fit check is the window's own job: it ends with the window
        if self._follower is not None:
            self.notifier.notify("Training continues", f"The run in {self._follower.run.path} keeps "
                                 "training in the background. Reopen Tunebench to follow it.")
