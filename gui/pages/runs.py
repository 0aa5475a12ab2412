"""The Runs page: every run folder in the workspace, and the curves of the selected one.

Everything shown here is read back from the run folders (run.json, events.ndjson), so the
page looks the same after a restart as it did while the run was live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui.context import AppContext
from gui.state import run_history
from gui.state.run_history import RunRow
from gui.widgets.metric_plot import MetricPlot
from gui.widgets.tables import make_read_only

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
    """A table of runs; selecting one shows its curves and its folder."""

    sig_resume_requested = Signal(str)  # the run id; the Train page runs it

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.model = RunTableModel(self)
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.table = QTableView()
        self.table.setModel(self.model)
        make_read_only(self.table, stretch_column=0)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.count_label = QLabel(objectName="hint")
        top = QHBoxLayout()
        top.addWidget(self.count_label, 1)
        top.addWidget(self.refresh_button)

        self.plot = MetricPlot()
        self.path_label = QLabel("Select a run to see its curves.", objectName="hint")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self._on_open_clicked)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue this stopped run from its last checkpoint, in its own "
                                      "folder; its curves carry on where they ended.")
        self.resume_button.clicked.connect(self._on_resume_clicked)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.path_label, 1)
        folder_row.addWidget(self.resume_button)
        folder_row.addWidget(self.open_button)
        detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addLayout(folder_row)
        detail_layout.addWidget(self.plot, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(detail)
        splitter.setSizes([260, 480])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self._show_run(None)

    # -- data ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-reads the run folders, keeping the selected run selected (else the newest, so its
        curves show without a click)."""
        selected = self.selected_run()
        self.model.set_rows(run_history.list_rows(self._context.runs_dir))
        count = self.model.rowCount()
        self.count_label.setText(f"{count} run{'s' if count != 1 else ''} in {self._context.runs_dir}"
                                 if count else "No runs yet: start one on the Train page.")
        row = self.model.row_of_id(selected.id) if selected else (0 if count else -1)
        if row >= 0:
            self.table.selectRow(row)
        else:
            self._show_run(None)

    def selected_run(self) -> RunRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row_at(rows[0].row()) if rows else None

    def select_run(self, run_id: str) -> bool:
        row = self.model.row_of_id(run_id)
        if row >= 0:
            self.table.selectRow(row)
        return row >= 0

    def on_run_finished(self, run_dir: str) -> None:
        self.refresh()
        if run_dir:
            self.select_run(Path(run_dir).name)

    # -- events ----------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.refresh()

    def _on_table_selection_changed(self) -> None:
        self._show_run(self.selected_run())

    def _on_open_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def _on_resume_clicked(self) -> None:
        run = self.selected_run()
        if run is not None and run.can_resume():
            self.sig_resume_requested.emit(run.id)

    def _show_run(self, run: RunRow | None) -> None:
        self.open_button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run.can_resume())
        if run is None:
            self.path_label.setText("Select a run to see its curves and its folder.")
            self.plot.clear()
            return
        self.path_label.setText(str(run.path))
        self.plot.set_buffer(run_history.load_curves(run.path))
