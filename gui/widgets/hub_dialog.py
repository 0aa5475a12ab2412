"""The "Browse the Hub…" dialog of the Train and Prompt pages' model pickers: search the Hugging
Face Hub with filters, read a model's card, see whether each method fits this machine, and
download it into the models cache with progress and Cancel.

Every step is an engine command run as a one-off job (gui/engine_client.py): `models search`,
`models card` and `models download` (engine/runtime/hub.py). The window itself never goes
online. ``sig_downloaded`` carries the model's name once it is in the cache, for the picker.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.core import protocol
from engine.core.fit_estimate import FIT_METHODS
from gui.engine_client import EngineClient
from gui.state import hub_view
from gui.state.hub_view import ResultRow, SearchQuery
from gui.widgets.status_line import StatusLine

COLUMNS = ("Model", "Downloads", "Params", "Licence", *(hub_view.METHOD_TITLES[m] for m in FIT_METHODS))
CANCEL_GRACE_S = 10.0  # a download stops between two chunks; a stuck one is killed after this


class HubDialog(QDialog):
    sig_downloaded = Signal(str)  # the model's name in the cache, as the pickers take it

    def __init__(self, engine_command: Callable[[], list[str]], engine_env: Callable[[], dict[str, str]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Browse the Hugging Face Hub")
        self.resize(980, 620)
        self._engine_command, self._engine_env = engine_command, engine_env
        self.rows: list[ResultRow] = []
        self.query_client = EngineClient(self)  # search and card
        self.download_client = EngineClient(self, grace_s=CANCEL_GRACE_S)
        self._query_kind = ""
        self._pending: tuple[str, list[str]] | None = None
        self._machine = "this machine"  # whose memory the fit labels are for
        self._build()
        self._connect()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.search_edit = QLineEdit(placeholderText="Search model names, e.g. smollm, qwen2.5 instruct")
        self.task_combo = QComboBox(editable=True)
        self.task_combo.addItems(hub_view.TASKS)
        self.task_combo.setCurrentText("text-generation")
        self.architecture_edit = QLineEdit(placeholderText="any, e.g. llama, qwen2, gguf")
        self.license_edit = QLineEdit(placeholderText="any, e.g. apache-2.0, mit")
        self.search_button = QPushButton("Search", objectName="primary", default=True)
        filters = QHBoxLayout()
        for label, field in (("Task", self.task_combo), ("Architecture tag", self.architecture_edit),
                             ("Licence", self.license_edit)):
            filters.addWidget(QLabel(label))
            filters.addWidget(field, 1)
        search_row = QHBoxLayout()
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(self.search_button)
        self.table = self._build_table()
        self.card_view = QTextBrowser(openExternalLinks=False)
        self.card_view.setPlaceholderText("Select a model to read its card.")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.card_view)
        splitter.setSizes([700, 280])
        hint = QLabel(f"Fit ({hub_view.LEGEND}): memory estimated from the parameter count for this machine, with "
                      "the default settings; Check fit on the Train page measures it. Downloads fetch safetensors "
                      "or GGUF weights and config/tokenizer files only, never pickles.", wordWrap=True,
                      objectName="hint")
        self.progress = QProgressBar(textVisible=True)
        self.progress.hide()
        self.download_button = QPushButton("Download", enabled=False)
        self.cancel_button = QPushButton("Cancel download", enabled=False)
        self.close_button = QPushButton("Close")
        self.status = StatusLine("Search the Hub; nothing is fetched until you press Download.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(search_row)
        layout.addLayout(filters)
        layout.addWidget(splitter, 1)
        layout.addWidget(hint)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(0, len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().hide()
        table.horizontalHeader().setStretchLastSection(True)
        return table

    def _connect(self) -> None:
        self.search_button.clicked.connect(self.search)
        self.search_edit.returnPressed.connect(self.search)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.download_button.clicked.connect(self.download)
        self.cancel_button.clicked.connect(self.download_client.cancel)
        self.close_button.clicked.connect(self.close)
        self.query_client.sig_result.connect(self._on_query_result)
        self.query_client.sig_finished.connect(self._on_query_finished)
        self.download_client.sig_progress.connect(self._on_download_progress)
        self.download_client.sig_result.connect(self._on_download_result)
        self.download_client.sig_finished.connect(self._on_download_finished)

    # -- search and card ---------------------------------------------------------------------

    def query(self) -> SearchQuery:
        return SearchQuery(self.search_edit.text(), self.task_combo.currentText(), self.architecture_edit.text(),
                           self.license_edit.text())

    def search(self) -> None:
        self._run_query("search", self.query().arguments())
        self.status.show_message("Searching the Hub…")

    def selected_repo(self) -> str:
        index = self.table.currentRow()
        return self.rows[index].repo_id if 0 <= index < len(self.rows) else ""

    def _on_selection_changed(self) -> None:
        repo = self.selected_repo()
        self.download_button.setEnabled(bool(repo) and not self.download_client.is_active())
        if repo:
            self.card_view.setPlainText(f"Loading the card of {repo}…")
            self._run_query("card", ["models", "card", repo])

    def _run_query(self, kind: str, arguments: list[str]) -> None:
        if self.query_client.is_active():
            self._pending = (kind, arguments)  # the newest question waits; older ones are dropped
            return
        self._query_kind = kind
        self.query_client.start([*self._engine_command(), *arguments, "--json"], self._engine_env())

    def _on_query_result(self, message: dict[str, Any]) -> None:
        data = message.get("data") or {}
        if self._query_kind == "search":
            self._machine = hub_view.machine_text(data)
            self.show_rows(hub_view.rows_from_result(data))
        elif self._query_kind == "card":
            text = str(data.get("card") or "")
            if text:
                self.card_view.setMarkdown(text)
            else:
                self.card_view.setPlainText("This model has no card.")

    def _on_query_finished(self, code: int, summary: str) -> None:
        if self._pending is not None:
            kind, arguments = self._pending
            self._pending = None
            self._run_query(kind, arguments)
            return
        if code != protocol.ExitCode.OK:
            self.status.show_message(summary, error=True)
        elif self._query_kind == "search":
            count = f"{len(self.rows)} model{'s' if len(self.rows) != 1 else ''}"
            found = f"{count} found; fit for {self._machine}." if self.rows else "No model matches."
            self.status.show_message(found)

    def show_rows(self, rows: list[ResultRow]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            name = row.repo_id + ("  (gated)" if row.gated else "")
            for column, text in enumerate((name, row.downloads, row.params, row.license, *row.fits)):
                self.table.setItem(index, column, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    # -- download ----------------------------------------------------------------------------

    def download(self) -> None:
        repo = self.selected_repo()
        if not repo or self.download_client.is_active():
            return
        self.progress.setValue(0)
        self.progress.show()
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.show_message(f"Downloading {repo}…")
        self.download_client.start([*self._engine_command(), "models", "download", repo, "--json"],
                                   self._engine_env())

    def _on_download_progress(self, message: dict[str, Any]) -> None:
        self.progress.setValue(hub_view.percent(message))
        self.progress.setFormat(hub_view.progress_text(message))

    def _on_download_result(self, message: dict[str, Any]) -> None:
        model = str((message.get("data") or {}).get("model") or "")
        if model:
            self.status.show_message(f"Downloaded as {model}; it is now in the model pickers.")
            self.sig_downloaded.emit(model)

    def _on_download_finished(self, code: int, summary: str) -> None:
        if code == protocol.ExitCode.OK:
            self.progress.setValue(100)
            self.progress.setFormat("Downloaded")
        self.cancel_button.setEnabled(False)
        self.download_button.setEnabled(bool(self.selected_repo()))
        if code == protocol.ExitCode.CANCELLED:
            self.status.show_message("Download cancelled; downloading again keeps the files already fetched.")
        elif code != protocol.ExitCode.OK:
            self.status.show_message(summary, error=True)

    def closeEvent(self, event: Any) -> None:
        # A download keeps going only while the dialog is open: Close asks it to stop, and the
        # files it finished stay for the next try.
        self._pending = None
        if self.query_client.is_active():
            self.query_client.kill(wait_ms=1000)
        if self.download_client.is_active():
            self.download_client.cancel()
        super().closeEvent(event)
