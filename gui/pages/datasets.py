"""The Datasets page: imported datasets in the workspace, and importing a new file.

Import runs ``engine data import PATH --json``; the engine validates the rows and writes the
versioned folder, this page only shows the outcome (or the engine's file:line message).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state import dataset_catalog
from gui.state.dataset_catalog import DatasetRow
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

HEADERS = ("Name", "Version", "Rows", "Shape", "Source", "Created")
FILE_FILTER = ("Data files (*.jsonl *.json *.csv *.tsv *.parquet *.txt);;JSON Lines (*.jsonl);;JSON (*.json);;"
               "CSV or TSV (*.csv *.tsv);;Parquet (*.parquet);;Text (*.txt);;All files (*)")


def _cells(row: DatasetRow) -> tuple[str, ...]:
    rows = "" if row.rows is None else f"{row.rows:,}"
    return (row.name, f"v{row.version}", rows, row.shape, row.source, row.created)


class DatasetsPage(QWidget):
    """Lists ``datasets/<name>/v<N>/manifest.json`` and imports JSONL/JSON files."""

    sig_datasets_changed = Signal()

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.client = EngineClient(self)
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_error.connect(self._on_client_error)
        self.client.sig_finished.connect(self._on_client_finished)
        self._imported = ""
        self._import_error = ""
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.import_button = QPushButton("Import…", objectName="primary")
        self.import_button.setToolTip("Import a JSONL, JSON, CSV, TSV, Parquet or TXT file as a new dataset version")
        self.import_button.clicked.connect(self._on_import_clicked)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        intro = QLabel("Datasets are stored in the workspace as numbered versions; importing the "
                       "same name again adds a version instead of overwriting.", wordWrap=True,
                       objectName="hint")
        top = QHBoxLayout()
        top.addWidget(intro, 1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.import_button)

        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        make_read_only(self.table, stretch_column=HEADERS.index("Source"))

        self.status_label = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status_label)

    # -- listing ---------------------------------------------------------------------------

    def refresh(self) -> None:
        rows = dataset_catalog.list_datasets(self._context.datasets_dir)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(_cells(row)):
                item = QTableWidgetItem(text)
                item.setToolTip(str(row.path))
                if HEADERS[c] == "Rows":
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        if not rows and not self.status_label.text():
            self.status_label.setText("No datasets imported yet. The bundled sample is always "
                                      "available for training as “sample”.")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.refresh()

    # -- import ----------------------------------------------------------------------------

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import dataset", "", FILE_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path: str) -> None:
        """Starts ``engine data import`` for ``path``; the outcome shows in the status line."""
        self._imported, self._import_error = "", ""
        argv = self._context.engine_command() + ["data", "import", path, "--json"]
        self.client.start(argv, self._context.engine_env())
        self.import_button.setEnabled(False)
        self.status_label.show_message(f"Importing {path}…")

    def _on_client_result(self, message: dict) -> None:
        data = message.get("data") or {}
        rows = data.get("rows")
        self._imported = (f"Imported {data.get('name')} v{data.get('version')}: {rows} rows "
                          f"({data.get('shape')}).")

    def _on_client_error(self, message: dict) -> None:
        self._import_error = str(message.get("message"))

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        self.import_button.setEnabled(True)
        if exit_code == 0:
            self.status_label.show_message(self._imported or "Import finished.")
            self.refresh()
            self.sig_datasets_changed.emit()
        else:
            self.status_label.show_message(f"Import failed: {self._import_error or summary}", error=True)

    def is_busy(self) -> bool:
        return self.client.is_active()

    def shutdown(self) -> None:
        self.client.kill()
