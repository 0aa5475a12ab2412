"""The Datasets page: import (file dialog, drag and drop, column mapping), the whole problem
report with the choice to import the valid rows, a lazy table of a version's rows, a row as
training sees it, token statistics against the cutoff, and split/clean controls.

Every piece of work is an engine command run through one EngineClient, one at a time, with
progress and cancel: ``data import`` (``--report`` gives the problem list), ``data export`` (the
rows table reads the JSONL it writes to the cache), ``data stats``, ``data preview``, ``data
split`` and ``data clean``. The page never reads Arrow data itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core import paths
from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state import dataset_catalog
from gui.state.dataset_catalog import DatasetRow
from gui.state.dataset_columns import file_columns
from gui.state.dataset_problems import read_report
from gui.state.dataset_rows import JsonlRows, is_current, preview_file
from gui.widgets.dataset_mapping import MappingEditor
from gui.widgets.dataset_problems import ProblemList
from gui.widgets.dataset_stats import DatasetStats
from gui.widgets.dataset_table import DatasetRowsModel
from gui.widgets.dataset_token_view import TokenView
from gui.widgets.dataset_tools import DatasetTools
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

NO_DATASETS = "No datasets imported yet. The bundled sample is always available for training as “sample”."
HEADERS = ("Name", "Version", "Rows", "Shape", "Source", "Created")
FILE_FILTER = ("Data files (*.jsonl *.json *.csv *.tsv *.parquet *.txt);;JSON Lines (*.jsonl);;JSON (*.json);;"
               "CSV or TSV (*.csv *.tsv);;Parquet (*.parquet);;Text (*.txt);;All files (*)")
INVALID_INPUT = 3  # protocol.ExitCode.INVALID_INPUT (the GUI reads codes, not the engine's table)
COUNTS = re.compile(r"\((\d+) invalid of (\d+) rows")
DEFAULT_CUTOFF = 512  # train's max_length default
SHORT_COLUMNS = ("Turns", "Label")


def _cells(row: DatasetRow) -> tuple[str, ...]:
    rows = "" if row.rows is None else f"{row.rows:,}"
    return (row.name, f"v{row.version}", rows, row.shape, row.source, row.created)


def valid_rows_from(message: str) -> int:
    """Rows that would import, from the engine's refusal ("(3 invalid of 40 rows; ...)")."""
    found = COUNTS.search(message)
    return int(found.group(2)) - int(found.group(1)) if found else 0


def report_path(source: str) -> Path:
    """Where an import of ``source`` writes its problem report (one per file name)."""
    return paths.cache_dir() / "import-reports" / f"{Path(source).name}.problems.jsonl"


class DatasetsPage(QWidget):
    """Lists ``datasets/<name>/v<N>/manifest.json``; imports, inspects, splits and cleans."""

    sig_datasets_changed = Signal()

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.client = EngineClient(self)
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_error.connect(self._on_client_error)
        self.client.sig_progress.connect(self._on_client_progress)
        self.client.sig_finished.connect(self._on_client_finished)
        self._job = ""
        self._result: dict = {}
        self._error = ""
        self._import_args: list[str] = []
        self._import_path = ""
        self._rows: list[DatasetRow] = []
        self.selected: DatasetRow | None = None
        self._build()
        self.setAcceptDrops(True)
        self.refresh()

    # -- layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.import_button = QPushButton("Import…", objectName="primary")
        self.import_button.setToolTip("Import a JSONL, JSON, CSV, TSV, Parquet or TXT file as a new dataset "
                                      "version (or drop a file on this page)")
        self.import_button.clicked.connect(self._on_import_clicked)
        self.mapping_button = QPushButton("Import with mapping…")
        self.mapping_button.setToolTip("Choose the shape and which column holds each field before importing")
        self.mapping_button.clicked.connect(self._on_mapping_clicked)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        intro = QLabel("Drop a data file here or use Import. Datasets are stored as numbered versions; "
                       "importing a changed file adds a version.", wordWrap=True, objectName="hint")
        top = QHBoxLayout()
        top.addWidget(intro, 1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.mapping_button)
        top.addWidget(self.import_button)

        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        make_read_only(self.table, stretch_column=HEADERS.index("Source"))
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.itemSelectionChanged.connect(self._on_version_selected)

        self.tabs = QTabWidget()
        self.problems = ProblemList()
        self.problems.sig_import_valid.connect(self._on_import_valid)
        self.problems.sig_cancel.connect(self._on_fix_file)
        self.tabs.addTab(self.problems, "Problems")
        self.tabs.addTab(self._build_rows_tab(), "Rows")
        self.token_view = TokenView()
        self.tabs.addTab(self.token_view, "As training sees it")
        self.stats = DatasetStats()
        self.stats_button = QPushButton("Compute statistics")
        self.stats_button.clicked.connect(self.compute_stats)
        stats_tab = QWidget()
        stats_layout = QVBoxLayout(stats_tab)
        stats_layout.addWidget(self.stats_button, 0, Qt.AlignmentFlag.AlignLeft)
        stats_layout.addWidget(self.stats, 1)
        self.tabs.addTab(stats_tab, "Statistics")
        self.tools = DatasetTools()
        self.tools.sig_split.connect(lambda args: self._run_on_selected("split", args))
        self.tools.sig_clean.connect(self._on_clean)
        self.tabs.addTab(self.tools, "Split and clean")
        self.tabs.setTabVisible(0, False)

        self.model_edit = QLineEdit("default")
        self.model_edit.setToolTip("The model whose tokenizer and chat template training uses: 'default', a "
                                   "Hugging Face folder or a .gguf file")
        self.cutoff = QSpinBox(minimum=16, maximum=131_072, value=DEFAULT_CUTOFF)
        self.cutoff.setToolTip("Training's max_length: rows longer than this are truncated")
        inspect_bar = QHBoxLayout()
        inspect_bar.addWidget(QLabel("Model"))
        inspect_bar.addWidget(self.model_edit, 1)
        inspect_bar.addWidget(QLabel("Cutoff (tokens)"))
        inspect_bar.addWidget(self.cutoff)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(inspect_bar)
        lower_layout.addWidget(self.tabs, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(lower)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.client.cancel)
        self.cancel_button.hide()
        self.status_label = StatusLine()
        bottom = QHBoxLayout()
        bottom.addWidget(self.status_label, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(bottom)

    def _build_rows_tab(self) -> QWidget:
        self.rows_model = DatasetRowsModel(self)
        self.rows_view = QTableView()
        self.rows_view.setModel(self.rows_model)
        make_read_only(self.rows_view, stretch_column=0)
        # Fixed row heights: sizing rows to their contents would read every row.
        self.rows_view.verticalHeader().setSectionResizeMode(self.rows_view.verticalHeader().ResizeMode.Fixed)
        self.rows_view.verticalHeader().setDefaultSectionSize(24)
        self.rows_view.horizontalHeader().setStretchLastSection(False)
        self._size_row_columns()
        self.rows_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.rows_view.doubleClicked.connect(lambda index: self.preview_row(index.row() + 1))
        self.rows_hint = QLabel("Select a dataset version above to see its rows.", objectName="hint")
        self.preview_button = QPushButton("Show as training sees it")
        self.preview_button.clicked.connect(self._on_preview_clicked)
        bar = QHBoxLayout()
        bar.addWidget(self.rows_hint, 1)
        bar.addWidget(self.preview_button)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addLayout(bar)
        layout.addWidget(self.rows_view, 1)
        return tab

    # -- listing -------------------------------------------------------------------------------

    def refresh(self) -> None:
        selected = (self.selected.name, self.selected.version) if self.selected else None
        self._rows = dataset_catalog.list_datasets(self._context.datasets_dir)
        self.table.blockSignals(True)
        self.table.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            for c, text in enumerate(_cells(row)):
                item = QTableWidgetItem(text)
                item.setToolTip(str(row.path))
                if HEADERS[c] == "Rows":
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
            if selected == (row.name, row.version):
                self.table.selectRow(r)
        self.table.blockSignals(False)
        if not self._rows and not self.status_label.text():
            self.status_label.setText(NO_DATASETS)
        elif self._rows and self.status_label.text() == NO_DATASETS:  # imported since, e.g. from the CLI
            self.status_label.setText("")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.refresh()

    def _on_version_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        self.selected = self._rows[rows[0].row()]
        self.load_rows()

    def select_version(self, name: str, version: int) -> None:
        for r, row in enumerate(self._rows):
            if (row.name, row.version) == (name, version):
                self.table.selectRow(r)
                return

    @property
    def ref(self) -> str:
        return f"{self.selected.name}@v{self.selected.version}" if self.selected else ""

    # -- rows table ----------------------------------------------------------------------------

    def load_rows(self) -> None:
        """Shows the selected version's rows, asking the engine to export them first when the
        cached JSONL is missing or older than the version."""
        if self.selected is None:
            return
        target = preview_file(self.selected.name, self.selected.version)
        if is_current(target, self.selected.path):
            self._show_rows(target)
            return
        self.rows_model.set_source(None, "")
        self.rows_hint.setText(f"Reading {self.ref}…")
        self._start("rows", ["data", "export", self.ref, "--out", str(target)])

    def _show_rows(self, target: Path) -> None:
        try:
            rows = JsonlRows(target)
        except OSError as exc:
            self.status_label.show_message(f"Cannot read the rows of {self.ref}: {exc}", error=True)
            return
        self.rows_model.set_source(rows, self.selected.shape if self.selected else "")
        self.rows_hint.setText(f"{self.ref}: {len(rows):,} rows (double-click a row to see it as training does)")
        self._size_row_columns()
        self.tabs.setCurrentIndex(1)

    def _size_row_columns(self) -> None:
        header = self.rows_view.horizontalHeader()
        # Fixed and stretched widths only: sizing a column to its contents would read rows.
        for column in range(self.rows_model.columnCount()):
            short = column == 0 or self.rows_model.headerData(column, Qt.Orientation.Horizontal) in SHORT_COLUMNS
            header.setSectionResizeMode(column, header.ResizeMode.Fixed if short else header.ResizeMode.Stretch)
            if short:
                self.rows_view.setColumnWidth(column, 70)

    # -- import --------------------------------------------------------------------------------

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import dataset", "", FILE_FILTER)
        if path:
            self.import_file(path)

    def _on_mapping_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import dataset with a column mapping", "", FILE_FILTER)
        if path:
            self.open_mapping_editor(path)

    def open_mapping_editor(self, path: str) -> MappingEditor:
        """Shows the mapping editor for ``path``; Import in it starts the import with its flags."""
        editor = MappingEditor(path, file_columns(Path(path)), self)
        editor.accepted.connect(lambda: self.import_file(path, editor.import_arguments()))
        editor.open()
        return editor

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt API)
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt API)
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.import_file(files[0])

    def import_file(self, path: str, extra: list[str] | None = None, skip_invalid: bool = False) -> None:
        """Starts ``engine data import`` for ``path``; a refusal with invalid rows opens the
        problem list."""
        if self.client.is_active():
            self.status_label.show_message("Wait for the running job to finish (or cancel it).", error=True)
            return
        self._import_path, self._import_args = path, list(extra or [])
        report = report_path(path)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.unlink(missing_ok=True)
        argv = ["data", "import", path, *self._import_args, "--report", str(report)]
        self._start("import", argv + (["--skip-invalid"] if skip_invalid else []),
                    f"Importing {path}…")

    def _on_import_valid(self) -> None:
        self.tabs.setTabVisible(0, False)
        self.import_file(self._import_path, self._import_args, skip_invalid=True)

    def _on_fix_file(self) -> None:
        self.tabs.setTabVisible(0, False)
        self.status_label.show_message(f"Import cancelled: fix {Path(self._import_path).name} and import it again.")

    def _import_finished(self, exit_code: int, summary: str) -> None:
        if exit_code == 0:
            data = self._result
            skipped = f", {data['skipped']:,} invalid rows left out" if data.get("skipped") else ""
            self.refresh()
            self.select_version(str(data.get("name")), data.get("version"))  # shows its rows
            self.status_label.show_message(f"Imported {data.get('name')} v{data.get('version')}: "
                                           f"{data.get('rows')} rows ({data.get('shape')}){skipped}.")
            self.sig_datasets_changed.emit()
            return
        self.status_label.show_message(f"Import failed: {self._error or summary}", error=True)
        problems = read_report(report_path(self._import_path), Path(self._import_path))
        if exit_code == INVALID_INPUT and problems:
            self.problems.show_problems(problems, valid_rows_from(self._error))
            self.tabs.setTabVisible(0, True)
            self.tabs.setCurrentIndex(0)

    # -- inspect -------------------------------------------------------------------------------

    def _tokenizer_args(self) -> list[str]:
        return ["--model", self.model_edit.text().strip() or "default", "--max-length", str(self.cutoff.value())]

    def compute_stats(self) -> None:
        self._run_on_selected("stats", self._tokenizer_args())

    def _on_preview_clicked(self) -> None:
        rows = self.rows_view.selectionModel().selectedRows()
        self.preview_row(rows[0].row() + 1 if rows else 1)

    def preview_row(self, row: int) -> None:
        self._run_on_selected("preview", ["--row", str(row), *self._tokenizer_args()])

    def _on_clean(self, args: list[str]) -> None:
        if "--min-tokens" in args or "--max-tokens" in args:
            args = [*args, "--model", self.model_edit.text().strip() or "default"]
        self._run_on_selected("clean", args)

    def _run_on_selected(self, job: str, args: list[str]) -> None:
        if self.selected is None:
            self.status_label.show_message("Select a dataset version first.", error=True)
            return
        self._start(job, ["data", job, self.ref, *args])

    # -- engine jobs ---------------------------------------------------------------------------

    def _start(self, job: str, argv: list[str], message: str = "") -> None:
        if self.client.is_active():
            self.status_label.show_message("Wait for the running job to finish (or cancel it).", error=True)
            return
        self._job, self._result, self._error = job, {}, ""
        self.client.start(self._context.engine_command() + argv + ["--json"], self._context.engine_env())
        self._set_busy(True)
        self.status_label.show_message(message or f"Running data {job} on {self.ref}…")

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.import_button, self.mapping_button, self.stats_button, self.preview_button):
            widget.setEnabled(not busy)
        self.tools.set_busy(busy)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)

    def _on_client_progress(self, message: dict) -> None:
        total, current = int(message.get("total") or 0), int(message.get("current") or 0)
        self.progress.setRange(0, total)
        if total:
            self.progress.setValue(min(current, total))
        self.progress.setFormat(f"{message.get('stage', '')} %v/%m" if total else str(message.get("stage", "")))

    def _on_client_result(self, message: dict) -> None:
        self._result = message.get("data") or {}

    def _on_client_error(self, message: dict) -> None:
        self._error = str(message.get("message"))

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        job = self._job
        self._set_busy(False)
        if job == "import":
            self._import_finished(exit_code, summary)
        elif exit_code != 0:
            self.status_label.show_message(f"data {job} failed: {self._error or summary}", error=True)
            if job == "rows":
                self.rows_hint.setText(f"Could not read the rows of {self.ref}.")
        elif job == "rows" and self.selected is not None:
            self._show_rows(preview_file(self.selected.name, self.selected.version))
            self.status_label.show_message(f"{self.ref}: {self._result.get('rows', 0):,} rows.")
        elif job == "stats":
            self.stats.show_stats(self._result)
            self.tabs.setCurrentIndex(3)
            self.status_label.show_message(self.stats.histogram.summary.text())
        elif job == "preview":
            self.token_view.show_preview(self._result)
            self.tabs.setCurrentIndex(2)
            self.status_label.show_message(self.token_view.summary.text())
        elif job in ("split", "clean"):
            self._version_made(job)

    def _version_made(self, job: str) -> None:
        data = self._result
        if job == "split":
            detail = ", ".join(f"{name} {count:,}" for name, count in (data.get("splits") or {}).items())
        else:
            detail = "; ".join(f"{step['step']} {step['changed']:,}" for step in data.get("steps") or [])
        self.refresh()
        self.select_version(str(data.get("name")), data.get("version"))
        self.status_label.show_message(f"{job.capitalize()}: {data.get('name')} v{data.get('version')} ({detail}).")
        self.sig_datasets_changed.emit()

    def is_busy(self) -> bool:
        return self.client.is_active()

    def shutdown(self) -> None:
        self.client.kill()
        self.rows_model.set_source(None, "")
