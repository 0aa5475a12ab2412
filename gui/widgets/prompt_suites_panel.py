"""The Suites tab of the Prompt page: saved prompts (engine/infer/suites.py), one prompt run
with its variables, and batch runs with progress, cancel, a results table and exports."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core import errors
from engine.infer import suites as prompt_suites
from engine.infer.suites import Item, Prompt, Suite
from gui.state import prompt_batch
from gui.state.prompt_batch import BatchRow
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

CurrentPrompt = Callable[[], tuple[str, str, str]]  # (system, text, mode)


def parse_values(text: str) -> dict[str, str]:
    """``name=value; other=value`` → a dict (``;`` separates, the first ``=`` splits)."""
    pairs = [part.split("=", 1) for part in text.split(";") if "=" in part]
    return {name.strip(): value.strip() for name, value in pairs if name.strip()}


class SuitesPanel(QWidget):
    """Lists suites and their prompts; asks the page to send one prompt or run a batch."""

    sig_use_prompt = Signal(str, str, str)  # system, text, mode
    sig_run_batch = Signal(list)  # list[prompt_suites.Item]: a few-shot prompt, through the session
    sig_run_engine_batch = Signal(list, int)  # batch source flags (--suite/--file ...), items to run
    sig_cancel_batch = Signal()

    def __init__(self, current_prompt: CurrentPrompt, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current_prompt = current_prompt
        self.rows: list[BatchRow] = []
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.suite_combo = QComboBox()
        self.suite_combo.currentIndexChanged.connect(self._on_suite_changed)
        self.save_button = QPushButton("Save prompt…")
        self.save_button.setToolTip("Save the prompt box (with {{variables}}) and the system prompt as a "
                                    "prompt of a suite.")
        self.import_button = QPushButton("Import…")
        self.export_button = QPushButton("Export…")
        self.delete_button = QPushButton("Delete")
        self.prompt_list = QListWidget()
        self.prompt_list.setMaximumHeight(110)
        self.values_edit = QLineEdit()
        self.values_edit.setPlaceholderText("variables: name=value; other=value")
        self.values_edit.setToolTip("Values for the {{variables}} of the prompt to run (default: the "
                                    "suite's first case).")
        self.run_button = QPushButton("Run prompt")
        self.run_button.setToolTip("Send the selected prompt, rendered, to every column.")
        self.batch_source = QComboBox()
        self.batch_source.addItem("Every prompt × case of the suite", "suite")
        self.batch_source.addItem("A column of a CSV/JSONL file…", "file")
        self.batch_button = QPushButton("Run batch", objectName="primary")
        self.batch_button.setToolTip("Run every prompt over every column; results fill the table.")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.table = QTableWidget(0, len(prompt_batch.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(prompt_batch.TABLE_COLUMNS)
        make_read_only(self.table, stretch_column=4)
        self.table.setWordWrap(False)
        # The input is long and already known; the answer gets the width.
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(3, 260)
        self.export_results_button = QPushButton("Export results…")
        self.export_results_button.setToolTip("Save the table as CSV, JSONL or Markdown (by file name).")
        self.status = StatusLine()
        for button, slot in (
            (self.save_button, self._on_save_clicked),
            (self.import_button, self._on_import_clicked),
            (self.export_button, self._on_export_clicked),
            (self.delete_button, self._on_delete_clicked),
            (self.run_button, self.run_selected),
            (self.batch_button, self._on_batch_clicked),
            (self.cancel_button, self.sig_cancel_batch.emit),
            (self.export_results_button, self._on_export_results_clicked),
        ):
            button.clicked.connect(slot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(QLabel("Suite", objectName="section"))
        layout.addWidget(self.suite_combo)
        layout.addLayout(_row(self.save_button, self.delete_button))
        layout.addLayout(_row(self.import_button, self.export_button))
        layout.addWidget(self.prompt_list)
        layout.addWidget(self.values_edit)
        layout.addLayout(_row(self.run_button))
        layout.addWidget(QLabel("Batch", objectName="section"))
        layout.addWidget(self.batch_source)
        layout.addLayout(_row(self.batch_button, self.cancel_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        # The results table needs width: the page places this box under its columns.
        self.results_box = QWidget()
        results = QVBoxLayout(self.results_box)
        results.setContentsMargins(0, 0, 0, 0)
        results.addLayout(_row(QLabel("Batch results", objectName="section"), self.export_results_button))
        results.addWidget(self.table, 1)
        self.results_box.hide()
        self.set_batch_running(False)

    # -- suites --------------------------------------------------------------------------------

    def refresh(self, select: str = "") -> None:
        current = select or self.suite_combo.currentText()
        self.suite_combo.blockSignals(True)
        self.suite_combo.clear()
        for suite in prompt_suites.list_suites():
            self.suite_combo.addItem(suite.name)
        self.suite_combo.setCurrentIndex(max(self.suite_combo.findText(current), 0))
        self.suite_combo.blockSignals(False)
        self._on_suite_changed()

    def suite(self) -> Suite | None:
        name = self.suite_combo.currentText()
        try:
            return prompt_suites.load_suite(name) if name else None
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return None

    def _on_suite_changed(self) -> None:
        self.prompt_list.clear()
        suite = self.suite()
        for prompt in suite.prompts if suite else []:
            shots = "zero-shot" if prompt.zero_shot else f"{len(prompt.examples)}-shot"
            self.prompt_list.addItem(f"{prompt.name} ({prompt.mode}, {shots})")
        if suite and suite.prompts:
            self.prompt_list.setCurrentRow(0)
        has = suite is not None
        for button in (self.export_button, self.delete_button, self.run_button):
            button.setEnabled(has)

    def save_current(self, suite_name: str, prompt_name: str) -> Suite:
        """Adds (or replaces) the page's current prompt as ``prompt_name`` in the suite."""
        system, text, mode = self._current_prompt()
        try:
            suite = prompt_suites.load_suite(suite_name)
        except errors.EngineError:
            suite = Suite(suite_name)
        prompt = Prompt(prompt_name, text, system=system if mode == "chat" else "", mode=mode)
        suite.prompts = [p for p in suite.prompts if p.name != prompt_name] + [prompt]
        prompt_suites.save_suite(suite)
        self.refresh(select=suite.name)
        self.status.show_message(f"Saved {prompt_name!r} in suite {suite.name!r}.")
        return suite

    def import_file(self, path: Path) -> None:
        try:
            suite = prompt_suites.import_json(path)
            prompt_suites.save_suite(suite)
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return
        self.refresh(select=suite.name)
        self.status.show_message(f"Imported suite {suite.name!r} ({len(suite.prompts)} prompts).")

    def export_file(self, path: Path) -> None:
        suite = self.suite()
        if suite is not None:
            prompt_suites.export_json(suite, path)
            self.status.show_message(f"Exported {suite.name!r} to {path}.")

    def _on_save_clicked(self) -> None:
        if not self._current_prompt()[1].strip():
            self.status.show_message("Type a prompt in the prompt box first.", error=True)
            return
        suite_name, ok = QInputDialog.getText(self, "Save prompt", "Suite name:",
                                              text=self.suite_combo.currentText() or "My prompts")
        if not ok or not suite_name.strip():
            return
        prompt_name, ok = QInputDialog.getText(self, "Save prompt", "Prompt name:", text="prompt")
        if ok and prompt_name.strip():
            try:
                self.save_current(suite_name.strip(), prompt_name.strip())
            except errors.EngineError as exc:
                self.status.show_message(exc.message, error=True)

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import suite", "", "Suite JSON (*.json)")
        if path:
            self.import_file(Path(path))

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export suite", f"{self.suite_combo.currentText()}.json",
                                              "Suite JSON (*.json)")
        if path:
            self.export_file(Path(path))

    def _on_delete_clicked(self) -> None:
        if self.suite_combo.currentText():
            prompt_suites.delete_suite(self.suite_combo.currentText())
            self.refresh()

    # -- run ---------------------------------------------------------------------------------------

    def run_selected(self) -> None:
        """Renders the selected prompt with the values given (or the first case) and sends it."""
        suite, row = self.suite(), self.prompt_list.currentRow()
        if suite is None or not 0 <= row < len(suite.prompts):
            return
        prompt = suite.prompts[row]
        values = {**(suite.cases[0] if suite.cases else {}), **parse_values(self.values_edit.text())}
        try:
            text = prompt.raw_text(values) if prompt.mode == "raw" else prompt.messages(values)[-1]["content"]
            messages = prompt.messages(values)
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return
        if prompt.mode == "chat" and prompt.examples:
            # Few-shot turns do not fit one prompt box: run it as a one-item batch instead.
            self.sig_run_batch.emit([Item(prompt.name, 0, values, "chat", messages, text)])
            return
        system = messages[0]["content"] if prompt.mode == "chat" and messages[0]["role"] == "system" else ""
        self.sig_use_prompt.emit(system, text, prompt.mode)

    def _on_batch_clicked(self) -> None:
        if self.batch_source.currentData() == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Prompts file", "", "Data (*.csv *.tsv *.jsonl)")
            if not path:
                return
            column, ok = QInputDialog.getText(self, "Prompts file", "Column holding the prompts:", text="prompt")
            if ok and column.strip():
                self.run_file(Path(path), column.strip())
            return
        self.run_suite()

    def run_suite(self) -> None:
        suite = self.suite()
        if suite is None:
            self.status.show_message("Save or import a suite first.", error=True)
            return
        try:
            items = prompt_suites.expand(suite)
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return
        self.sig_run_engine_batch.emit(["--suite", suite.name], len(items))

    def run_file(self, path: Path, column: str) -> None:
        system, _text, mode = self._current_prompt()
        try:
            values = prompt_suites.read_column(path, column)
        except errors.EngineError as exc:
            self.status.show_message(exc.message, error=True)
            return
        flags = ["--file", str(path), "--column", column, "--mode", mode]
        self.sig_run_engine_batch.emit(flags + (["--system", system] if system.strip() else []), len(values))

    # -- batch results (driven by the page) ----------------------------------------------------------

    def begin(self, total: int) -> None:
        """An engine batch starts: an empty table; rows arrive with :meth:`add_row`."""
        self.show_rows([])
        self.progress.setRange(0, max(total, 1))

    def add_row(self, row: BatchRow, done: int, total: int) -> None:
        self.rows.append(row)
        self.table.setRowCount(len(self.rows))
        self.update_row(len(self.rows) - 1)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def show_rows(self, rows: list[BatchRow]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for index in range(len(rows)):
            self.update_row(index)
        self.results_box.show()
        self.progress.setRange(0, max(len(rows), 1))
        self.progress.setValue(0)

    def update_row(self, index: int) -> None:
        for column, text in enumerate(self.rows[index].cells()):
            item = QTableWidgetItem(text.replace("\n", " ")[:300])
            item.setToolTip(text[:2000])
            self.table.setItem(index, column, item)
        self.progress.setValue(sum(row.done for row in self.rows))

    def set_batch_running(self, running: bool) -> None:
        self.batch_button.setEnabled(not running)
        self.run_button.setEnabled(not running and self.suite_combo.count() > 0)
        self.cancel_button.setEnabled(running)
        self.export_results_button.setEnabled(not running and bool(self.rows))

    def export_results(self, path: Path) -> None:
        try:
            prompt_batch.export(self.rows, path)
        except (ValueError, OSError) as exc:
            self.status.show_message(str(exc), error=True)
            return
        self.status.show_message(f"Saved {len(self.rows)} results to {path}.")

    def _on_export_results_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "batch-results.csv",
                                              "CSV (*.csv);;JSONL (*.jsonl);;Markdown (*.md)")
        if path:
            self.export_results(Path(path))


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    row.addStretch(1)
    return row
