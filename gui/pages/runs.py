"""The Runs page: every run folder in the workspace; the curves and sample generations of the
selected run; several selected runs compared (any recorded curve overlaid, settings that
differ); export and delete.

Everything shown here is read back from the run folders (run.json, events.ndjson,
samples.jsonl, config.toml), so the page looks the same after a restart as it did while the
run was live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.export import history as export_history
from gui.context import AppContext
from gui.state import run_compare, run_export, run_history
from gui.state.run_history import RunRow
from gui.widgets.hub_push_dialog import HubPushDialog
from gui.widgets.metric_plot import MetricPlot
from gui.widgets.model_export import ModelExport
from gui.widgets.run_compare_plot import RunComparePlot
from gui.widgets.run_config_diff import ConfigDiffView
from gui.widgets.run_exports import RunExportsView
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only
from gui.widgets.train_samples import SamplesView

ModelIndex = QModelIndex | QPersistentModelIndex


def _optional(value: Any, fmt: str = "{}") -> str:
    return "" if value is None else fmt.format(value)


COLUMNS: list[tuple[str, Callable[[RunRow], str]]] = [
    ("Name", lambda r: r.title),
    ("Status", lambda r: r.status),
    ("Method", lambda r: r.method),
    ("Model", lambda r: r.model),
    ("Dataset", lambda r: r.dataset),
    ("Steps", lambda r: _optional(r.steps)),
    ("Final loss", lambda r: _optional(r.final_loss, "{:.4f}")),
    ("Created", lambda r: r.created),
]
NUMERIC_COLUMNS = {"Steps", "Final loss"}


class RunTableModel(QAbstractTableModel):
    """RunRows as a read-only table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[RunRow] = []

    def set_rows(self, rows: list[RunRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def row_at(self, row: int) -> RunRow:
        return self._rows[row]

    def row_of_id(self, run_id: str) -> int:
        return next((i for i, r in enumerate(self._rows) if r.id == run_id), -1)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        title, render = COLUMNS[index.column()]
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return render(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return str(row.path)
        if role == Qt.ItemDataRole.TextAlignmentRole and title in NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][0]
        return None


class RunsPage(QWidget):
    """A table of runs. One selected: its curves, samples and folder, with Resume, Continue,
    Export and Delete. Several selected: their loss overlaid and the settings that differ."""

    sig_resume_requested = Signal(str)  # the run id; the Train page runs it
    sig_continue_requested = Signal(str)  # the run id; the Train page queues a new run from it
    sig_run_deleted = Signal(str)  # the run id

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.model = RunTableModel(self)
        self.push_dialog: HubPushDialog | None = None
        self._build()
        self.refresh()

    # -- layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        self.table = QTableView()
        self.table.setModel(self.model)
        make_read_only(self.table, stretch_column=0)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.count_label = QLabel(objectName="hint")
        top = QHBoxLayout()
        top.addWidget(self.count_label, 1)
        top.addWidget(self.refresh_button)

        self.path_label = QLabel("Select a run to see its curves.", objectName="hint")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_line = StatusLine("")
        self.status_line.setVisible(False)  # only once an export or delete has something to say
        detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addLayout(self._build_buttons())
        detail_layout.addWidget(self.status_line)
        detail_layout.addWidget(self._build_tabs(), 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(detail)
        splitter.setSizes([170, 600])  # the curves need the room; the table scrolls
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self._show_selection()

    def _build_buttons(self) -> QHBoxLayout:
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self._on_open_clicked)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue this stopped run from its last checkpoint, in its own "
                                      "folder; its curves carry on where they ended.")
        self.resume_button.clicked.connect(self._on_resume_clicked)
        self.continue_button = QPushButton("Continue training")
        self.continue_button.setToolTip("Train this finished run's adapter further, as a new run with the "
                                        "same settings (queued on the Train page)")
        self.continue_button.clicked.connect(self._on_continue_clicked)
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Save the selected runs' metrics (CSV: a row per step, a column per "
                                      "metric; several runs in one table with a run column) or their summary "
                                      "(JSON: record, settings, last and best values; for several runs also "
                                      "the settings that differ)")
        export_menu = QMenu(self.export_button)
        self.export_csv_action = export_menu.addAction("Metrics as CSV…", self._on_export_csv_triggered)
        self.export_json_action = export_menu.addAction("Summary as JSON…", self._on_export_json_triggered)
        export_menu.addSeparator()
        self.model_export = ModelExport(self._context, self)
        self.model_export_menus = self.model_export.add_menus(export_menu, self._exportable_run)
        export_menu.addSeparator()
        self.push_action = export_menu.addAction("Push to the Hugging Face Hub…", self._on_push_triggered)
        self.model_export.sig_status.connect(lambda text, error: self._say(text, error=error))
        self.model_export.sig_busy.connect(self._on_export_busy)
        self.export_button.setMenu(export_menu)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete this run's folder (checkpoints, adapter, logs); asks first. "
                                      "A run that is still training cannot be deleted.")
        self.delete_button.clicked.connect(self._on_delete_clicked)
        row = QHBoxLayout()
        row.addWidget(self.path_label, 1)
        for button in (self.resume_button, self.continue_button, self.export_button, self.delete_button,
                       self.open_button):
            row.addWidget(button)
        return row

    def _build_tabs(self) -> QTabWidget:
        self.plot = MetricPlot()
        self.samples_view = SamplesView()
        self.compare_plot = RunComparePlot()
        self.config_diff = ConfigDiffView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plot, "Curves")
        self.tabs.addTab(self.samples_view, "Samples")
        self.exports_view = RunExportsView()
        self.tabs.addTab(self.exports_view, "Exports")
        self.tabs.addTab(self.compare_plot, "Compare")
        self.tabs.addTab(self.config_diff, "Settings diff")
        return self.tabs

    # -- data ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-reads the run folders, keeping the selected runs selected (else the newest, so its
        curves show without a click)."""
        selected = [run.id for run in self.selected_runs()]
        self.model.set_rows(run_history.list_rows(self._context.runs_dir))
        count = self.model.rowCount()
        self.count_label.setText(f"{count} run{'s' if count != 1 else ''} in {self._context.runs_dir} "
                                 "(Ctrl- or Shift-click several to compare them)"
                                 if count else "No runs yet: start one on the Train page.")
        rows = [row for row in (self.model.row_of_id(run_id) for run_id in selected) if row >= 0]
        self.select_rows(rows or ([0] if count else []))

    def select_rows(self, rows: list[int]) -> None:
        selection = self.table.selectionModel()
        self.table.blockSignals(True)  # one update for the whole selection, not one per row
        selection.blockSignals(True)
        self.table.clearSelection()
        for row in rows:
            selection.select(self.model.index(row, 0), selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
        selection.blockSignals(False)
        self.table.blockSignals(False)
        self.table.viewport().update()  # the view missed the blocked signals that repaint it
        if rows:
            selection.setCurrentIndex(self.model.index(rows[0], 0), selection.SelectionFlag.NoUpdate)
        self._show_selection()

    def selected_runs(self) -> list[RunRow]:
        """The selected runs in table order (newest first)."""
        return [self.model.row_at(index.row()) for index in
                sorted(self.table.selectionModel().selectedRows(), key=lambda index: index.row())]

    def selected_run(self) -> RunRow | None:
        """The run the single-run actions act on: only when exactly one run is selected."""
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    def select_run(self, run_id: str) -> bool:
        row = self.model.row_of_id(run_id)
        if row >= 0:
            self.select_rows([row])
        return row >= 0

    def select_runs(self, run_ids: list[str]) -> bool:
        rows = [self.model.row_of_id(run_id) for run_id in run_ids]
        if any(row < 0 for row in rows):
            return False
        self.select_rows(rows)
        return True

    def on_run_finished(self, run_dir: str) -> None:
        self.refresh()
        if run_dir:
            self.select_run(Path(run_dir).name)

    def is_busy(self) -> bool:
        """A model export is running (the window asks before closing over it)."""
        return self.model_export.is_busy()

    def shutdown(self) -> None:
        self.model_export.kill()

    # -- export and delete (also called by tests with a path) --------------------------------

    def export_metrics(self, runs: Sequence[RunRow], target: Path) -> bool:
        try:
            rows = run_export.write_runs_metrics_csv(runs, target)
        except OSError as exc:
            self._say(f"Could not write {target}: {exc.strerror or exc}", error=True)
            return False
        if len(runs) == 1:
            self._say(f"Saved {rows} step{'s' if rows != 1 else ''} of metrics to {target}.")
        else:
            self._say(f"Saved {rows} rows of metrics from {len(runs)} runs to {target}.")
        return True

    def export_summary(self, runs: Sequence[RunRow], target: Path) -> bool:
        try:
            run_export.write_runs_summary_json(runs, target)
        except OSError as exc:
            self._say(f"Could not write {target}: {exc.strerror or exc}", error=True)
            return False
        self._say(f"Saved the run summary to {target}." if len(runs) == 1
                  else f"Saved the summaries of {len(runs)} runs to {target}.")
        return True

    def delete(self, run: RunRow) -> bool:
        try:
            run_history.delete_run(run.path, self._context.workspace_dir)
        except run_history.RunDeleteError as exc:
            self._say(str(exc), error=True)
            return False
        self.refresh()
        self._say(f"Deleted {run.title}.")
        self.sig_run_deleted.emit(run.id)
        return True

    def _say(self, text: str, error: bool = False) -> None:
        self.status_line.show_message(text, error=error)
        self.status_line.setVisible(True)

    # -- events --------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.refresh()

    def _on_table_selection_changed(self) -> None:
        self.status_line.setVisible(False)  # an export or delete message is about the earlier selection
        self._show_selection()

    def _on_open_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def _on_resume_clicked(self) -> None:
        run = self.selected_run()
        if run is not None and run.can_resume():
            self.sig_resume_requested.emit(run.id)

    def _on_continue_clicked(self) -> None:
        run = self.selected_run()
        if run is not None and run.can_continue():
            self.sig_continue_requested.emit(run.id)

    def _on_export_csv_triggered(self) -> None:
        runs = self.selected_runs()
        target = self._ask_save_path(runs, "Export metrics as CSV", "-metrics.csv", "CSV files (*.csv)")
        if target is not None:
            self.export_metrics(runs, target)

    def _on_export_json_triggered(self) -> None:
        runs = self.selected_runs()
        target = self._ask_save_path(runs, "Export run summary as JSON", "-summary.json", "JSON files (*.json)")
        if target is not None:
            self.export_summary(runs, target)

    def _ask_save_path(self, runs: Sequence[RunRow], title: str, suffix: str, filter_text: str) -> Path | None:
        if not runs:
            return None
        stem = runs[0].id if len(runs) == 1 else f"{len(runs)}-runs"
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path.home() / f"{stem}{suffix}"), filter_text)
        return Path(path) if path else None

    def _on_delete_clicked(self) -> None:
        run = self.selected_run()
        if run is None or not self._deletable(run):
            return
        answer = QMessageBox.question(
            self, "Delete run?", f"Delete the run {run.title} and everything in its folder "
            f"(checkpoints, adapter, logs, exports made there)?\n\n{run.path}\n\nThis cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(run)

    @staticmethod
    def _deletable(run: RunRow) -> bool:
        return run.status != "running"

    # -- showing -------------------------------------------------------------------------------

    def _show_selection(self) -> None:
        runs = self.selected_runs()
        run = runs[0] if len(runs) == 1 else None
        self.open_button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run.can_resume())
        self.continue_button.setEnabled(run is not None and run.can_continue())
        self.export_button.setEnabled(bool(runs))
        self._show_export_state()
        self.delete_button.setEnabled(run is not None and self._deletable(run))
        self._show_run(run)
        self._show_comparison(runs if len(runs) > 1 else [])
        if len(runs) > 1 and self.tabs.currentIndex() < self.tabs.indexOf(self.compare_plot):
            self.tabs.setCurrentWidget(self.compare_plot)
        elif len(runs) == 1 and self.tabs.currentIndex() >= self.tabs.indexOf(self.compare_plot):
            self.tabs.setCurrentWidget(self.plot)
        if len(runs) > 1:
            self.path_label.setText(f"{len(runs)} runs selected: compare their curves and settings.")

    def _exportable_run(self) -> RunRow | None:
        run = self.selected_run()
        return run if run is not None and run.can_export_model() else None

    def _on_push_triggered(self) -> None:
        run = self._exportable_run()
        if run is None:
            return
        self.push_dialog = HubPushDialog(run, self._context.engine_command, self._context.engine_env, self)
        self.push_dialog.sig_pushed.connect(lambda url: self._say(f"Pushed {run.title} to {url}"))
        self.push_dialog.open()

    def _on_export_busy(self, busy: bool) -> None:
        self._show_export_state()
        if not busy:
            self._show_exports(self.selected_run())

    def _show_export_state(self) -> None:
        """Model export needs one finished run with weights to merge, and one export at a time;
        the adapter-only file needs an adapter."""
        run = self._exportable_run()
        enabled = run is not None and not self.model_export.is_busy()
        has_adapter = run is not None and run.has_adapter()
        for menu in self.model_export_menus:
            menu.setEnabled(enabled and (menu is not self.model_export.adapter_menu or has_adapter))
        self.push_action.setEnabled(run is not None)

    def _show_run(self, run: RunRow | None) -> None:
        if run is None:
            self.path_label.setText("Select a run to see its curves and its folder.")
            self.plot.clear()
            self.samples_view.clear()
            self.tabs.setTabText(self.tabs.indexOf(self.samples_view), "Samples")
            self._show_exports(None)
            return
        self.path_label.setText(str(run.path))
        self.plot.set_buffer(run_history.load_curves(run.path))
        samples = run_history.load_samples(run.path)
        self.samples_view.set_empty_text("This run recorded no sample generations (set sample prompts or "
                                         "validation data on the Train page to get them).")
        self.samples_view.set_samples(samples)
        self.tabs.setTabText(self.tabs.indexOf(self.samples_view), f"Samples ({len(samples)})" if samples
                             else "Samples")
        self._show_exports(run)

    def _show_exports(self, run: RunRow | None) -> None:
        """The run's exports and their round-trip checks (read again after each export ends)."""
        entries = export_history.read(run.path) if run is not None else []
        self.exports_view.set_exports(entries)
        self.tabs.setTabText(self.tabs.indexOf(self.exports_view), f"Exports ({len(entries)})" if entries
                             else "Exports")

    def _show_comparison(self, runs: list[RunRow]) -> None:
        self.compare_plot.set_runs(run_compare.load_curves(runs))
        self.config_diff.set_runs(run_compare.unique_titles(runs), [run_compare.load_config(run.path) for run in runs])
