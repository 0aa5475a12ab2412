"""The Evaluate page: pick a dataset split, the base model, adapters and metrics; run
`tunebench-engine evaluate run` and see the summary (a bar per model with its 95% interval) and
the per-example table, sortable by how much each example changed between base and tuned.

The page writes nothing itself: the engine writes the evaluation folder, and the page reads it
back (so past evaluations open the same way, from disk). Export runs `evaluate report` and saves
the page's chart as PNG beside the report.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.core import protocol
from engine.eval import catalog as eval_catalog
from engine.eval import spec as eval_spec
from gui.context import AppContext
from gui.engine_client import EngineClient, format_command
from gui.state import dataset_catalog, eval_view, run_history
from gui.state.eval_view import Choices, Evaluation
from gui.state.prompt_params import BACKEND_ITEMS
from gui.widgets.eval_chart import EvalBarChart
from gui.widgets.eval_table import ExamplesModel, sorted_proxy
from gui.widgets.harness_panel import HarnessPanel
from gui.widgets.judge_panel import JudgePanel
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

SPLITS = [("auto (test, else validation)", eval_spec.SPLIT_AUTO), ("test", "test"), ("validation", "validation"),
          ("train", "train")]
DEFAULT_METRICS = ("perplexity", "token_f1", "rougeL", "chrf")
PERTURBATION_HELP = {
    "typos": "swap two neighbouring letters in about one word in five",
    "casing": "the whole input in lower case",
    "whitespace": "doubled spaces between words and stray spaces around the text",
    "shuffle_choices": "classification: list the labels in another order",
}


def format_eta(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}"


class EvaluatePage(QWidget):
    sig_evaluation_finished = Signal(str)  # the evaluation folder

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.evaluation = Evaluation()
        self._live: dict[str, dict[str, float]] = {}
        self._dataset_rows: dict[str, dataset_catalog.DatasetRow] = {}  # by "name@vN", from refresh()
        self.client = EngineClient(self)
        self.report_client = EngineClient(self)
        self._connect_clients()
        self._build()
        self.refresh()
        self._set_running(False)

    # -- layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_settings())
        splitter.addWidget(self._build_results())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 880])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _build_settings(self) -> QWidget:
        column = QWidget()
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 6, 0)
        layout.addWidget(self._build_what_box())
        layout.addWidget(self._build_metrics_box())
        layout.addWidget(self._build_options_box())
        layout.addLayout(self._build_buttons())
        self.harness_panel = HarnessPanel(lambda: (self.model_combo.currentText().strip(), self.checked_adapters()))
        self.harness_panel.sig_run.connect(self.start_harness)
        layout.addWidget(self.harness_panel)
        self.progress = QProgressBar(textVisible=True)
        self.status = StatusLine()
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self._build_past_box())
        layout.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        scroll.setWidget(column)
        # Never scroll sideways: the panel is as wide as its widest row.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(column.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        return scroll

    def _build_what_box(self) -> QGroupBox:
        self.dataset_combo = QComboBox(editable=True)
        self.dataset_combo.setToolTip(eval_spec.help_for("dataset"))
        self.dataset_combo.lineEdit().setPlaceholderText("name or name@vN")
        self.split_combo = QComboBox()
        for title, value in SPLITS:
            self.split_combo.addItem(title, value)
        self.split_combo.setToolTip(eval_spec.help_for("split"))
        self.model_combo = QComboBox(editable=True)
        self.model_combo.addItem("default")
        self.model_combo.setCurrentText("")
        self.model_combo.lineEdit().setPlaceholderText("the adapters' base, else the bundled model")
        self.model_combo.setToolTip(eval_spec.help_for("model"))
        self.adapters_list = QListWidget()
        self.adapters_list.setToolTip(eval_spec.help_for("adapters") + ". The base model is always evaluated.")
        self.adapters_list.setMaximumHeight(110)
        box = QGroupBox("What to evaluate")
        form = QFormLayout(box)
        form.addRow("Dataset", self.dataset_combo)
        form.addRow("Split", self.split_combo)
        form.addRow("Base model", self.model_combo)
        form.addRow("Adapters", self.adapters_list)
        return box

    def _build_metrics_box(self) -> QGroupBox:
        box = QGroupBox("Metrics")
        grid = QGridLayout(box)
        self.metric_checks: dict[str, QCheckBox] = {}
        for i, name in enumerate(eval_catalog.known_metrics()):
            info = eval_catalog.metric_info(name)
            check = QCheckBox(info["title"])
            check.setToolTip(f"<p><b>{info['title']}</b> ({name})</p><p>{info['definition']}</p>")
            check.setChecked(name in DEFAULT_METRICS)
            check.toggled.connect(lambda on, n=name: self._show_definition(n))
            self.metric_checks[name] = check
            grid.addWidget(check, i // 2, i % 2)
        self.definition = QLabel(wordWrap=True, objectName="hint")
        self.definition.setMinimumHeight(48)
        rows = (len(self.metric_checks) + 1) // 2
        grid.addWidget(self.definition, rows, 0, 1, 2)
        self.regex_edit = QLineEdit(placeholderText="regex for Regex match, e.g. ^\\d{4}-\\d{2}-\\d{2}$")
        self.regex_edit.setToolTip(eval_spec.help_for("regex"))
        grid.addWidget(self.regex_edit, rows + 1, 0, 1, 2)
        self._show_definition("token_f1")
        return box

    def _build_options_box(self) -> QGroupBox:
        self.max_examples = QSpinBox(minimum=0, maximum=1_000_000, value=200, specialValueText="all")
        self.max_examples.setToolTip(eval_spec.help_for("max_examples"))
        self.max_new_tokens = QSpinBox(minimum=1, maximum=4096, value=64)
        self.max_new_tokens.setToolTip(eval_spec.help_for("max_new_tokens"))
        self.slice_combo = QComboBox(editable=True)
        self.slice_combo.addItems(["", "label", "reference"])
        self.dataset_combo.currentTextChanged.connect(self._on_dataset_changed)
        self.slice_combo.lineEdit().setPlaceholderText("none")
        self.slice_combo.setToolTip(eval_spec.help_for("slice_column") + "; 'reference' slices by the expected answer")
        self.robust_checks: dict[str, QCheckBox] = {}
        robust = QWidget()
        robust_layout = QGridLayout(robust)
        robust_layout.setContentsMargins(0, 0, 0, 0)
        for i, (name, help_text) in enumerate(PERTURBATION_HELP.items()):
            check = QCheckBox(name.replace("_", " "))
            check.setToolTip(f"Re-run with {help_text}, and report the metric change")
            self.robust_checks[name] = check
            robust_layout.addWidget(check, i // 2, i % 2)
        self.system_edit = QLineEdit(placeholderText="each adapter's trained one")
        self.system_edit.setToolTip(eval_spec.help_for("system_prompt"))
        self.backend_combo = QComboBox()
        for label, value in BACKEND_ITEMS:
            self.backend_combo.addItem(label, value)
        self.backend_combo.setToolTip(eval_spec.help_for("backend").capitalize())
        box = QGroupBox("Options")
        form = QFormLayout(box)
        form.addRow("Max examples", self.max_examples)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("System prompt", self.system_edit)
        form.addRow("JSON output", self._build_schema_row())
        form.addRow("Backend", self.backend_combo)
        form.addRow("Slice by column", self.slice_combo)
        form.addRow("Robustness", robust)
        return box

    def _build_schema_row(self) -> QWidget:
        self.schema_edit = QLineEdit(placeholderText="off, 'any' or a schema file")
        self.schema_edit.setToolTip(eval_spec.help_for("json_schema"))
        browse = QPushButton("Browse…")
        browse.setToolTip("Pick a JSON Schema file that every generated answer must follow")
        browse.clicked.connect(self._pick_schema)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.schema_edit, 1)
        layout.addWidget(browse)
        return row

    def _pick_schema(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "JSON Schema for the answers", "",
                                              "JSON Schema (*.json);;All files (*)")
        if path:
            self.schema_edit.setText(path)

    def _build_buttons(self) -> QHBoxLayout:
        self.run_button = QPushButton("Run", objectName="primary")
        self.run_button.setToolTip("Evaluate the base model and each ticked adapter on the same rows, greedily")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the evaluation; nothing is saved")
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button = QPushButton("Copy as command")
        self.copy_button.setToolTip("Copy the engine command for these settings, to run in a terminal")
        self.copy_button.clicked.connect(self._on_copy_button_clicked)
        self.hardest_button = QPushButton("Hardest rows")
        self.hardest_button.setToolTip("After a run: score every training row of the ticked adapter's run with "
                                       "its adapter and list the highest-loss rows, to review or fix")
        self.hardest_button.clicked.connect(self.start_hardest)
        row = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.hardest_button, self.copy_button):
            row.addWidget(button)
        return row

    def _build_past_box(self) -> QGroupBox:
        self.past_list = QListWidget()
        self.past_list.setMaximumHeight(140)
        self.past_list.itemDoubleClicked.connect(lambda item: self.open_selected())
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show the selected evaluation")
        self.open_button.clicked.connect(self.open_selected)
        self.export_button = QPushButton("Export report")
        self.export_button.setToolTip("Write Markdown, HTML, CSV and the charts into the evaluation's report folder")
        self.export_button.clicked.connect(self.export_report)
        box = QGroupBox("Past evaluations")
        layout = QVBoxLayout(box)
        layout.addWidget(self.past_list)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.export_button)
        layout.addLayout(row)
        return box

    def _build_results(self) -> QWidget:
        self.title = QLabel("No evaluation yet: choose settings and press Run, or open a past one.",
                            objectName="heading", wordWrap=True)
        self.metric_combo = QComboBox()
        self.metric_combo.currentIndexChanged.connect(self._on_metric_combo_changed)
        self.chart = EvalBarChart()
        self.chart.setMinimumHeight(200)
        self.values_table = QTableWidget(0, 3)
        self.values_table.setHorizontalHeaderLabels(["Model", "Value", "95% interval"])
        make_read_only(self.values_table, 0)
        self.values_table.setMaximumHeight(150)
        self.metric_help = QLabel(objectName="hint")
        summary = QWidget()
        summary.setMinimumHeight(280)
        grid = QGridLayout(summary)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("Metric"), 0, 0)
        grid.addWidget(self.metric_combo, 0, 1)
        grid.addWidget(self.chart, 1, 0, 1, 2)
        grid.addWidget(self.values_table, 1, 2)
        grid.addWidget(self.metric_help, 2, 0, 1, 3)
        grid.setColumnStretch(1, 2)
        grid.setColumnStretch(2, 1)

        self.examples_model = ExamplesModel(self)
        self.examples_proxy = sorted_proxy(self.examples_model)
        self.examples_view = QTableView(sortingEnabled=True)
        self.examples_view.setModel(self.examples_proxy)
        make_read_only(self.examples_view, 1)
        self.examples_view.setWordWrap(False)
        # Texts get fixed starting widths (the user drags them wider): stretching the input
        # column would push every model's output off the right edge.
        self.examples_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.examples_view.horizontalHeader().setStretchLastSection(True)
        self.compare_combo = QComboBox()
        self.compare_combo.setToolTip("The tuned model compared with the base in the Change column")
        self.compare_combo.currentIndexChanged.connect(self._on_compare_combo_changed)
        examples = QWidget()
        examples_layout = QVBoxLayout(examples)
        compare_row = QHBoxLayout()
        compare_row.addWidget(QLabel("Compare with base:"))
        compare_row.addWidget(self.compare_combo, 1)
        examples_layout.addLayout(compare_row)
        examples_layout.addWidget(self.examples_view)
        self.breakdown = QTextBrowser()
        self.tabs = QTabWidget()
        self.tabs.addTab(examples, "Examples")
        self.tabs.addTab(self.breakdown, "Slices && robustness")
        self.judge_panel = JudgePanel(self._context)
        self.judge_panel.sig_judged.connect(self._show_verdicts)
        self.tabs.addTab(self.judge_panel, "Judge")

        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(summary, 1)
        layout.addWidget(self.tabs, 2)
        return panel

    # -- workspace lists -----------------------------------------------------------------------

    def _on_dataset_changed(self, ref: str) -> None:
        """Offers the chosen version's own columns (its extra file columns included) to slice by."""
        row = self._dataset_rows.get(ref)  # typing in the box must not re-read every manifest
        if row is None:
            return
        current = self.slice_combo.currentText()
        self.slice_combo.clear()
        self.slice_combo.addItems(["", *row.slice_columns()])
        self.slice_combo.setCurrentText(current)

    def refresh(self) -> None:
        """Datasets, adapters and past evaluations from the workspace."""
        current = self.dataset_combo.currentText()
        self._dataset_rows = {f"{row.name}@v{row.version}": row for row in dataset_catalog.list_datasets()}
        self.dataset_combo.clear()
        self.dataset_combo.addItems(list(self._dataset_rows))
        self.dataset_combo.setCurrentText(current or (self.dataset_combo.itemText(self.dataset_combo.count() - 1)
                                                      if self.dataset_combo.count() else ""))
        ticked = set(self.checked_adapters())
        self.adapters_list.clear()
        for run in run_history.list_rows():
            if not run.has_adapter():
                continue
            item = QListWidgetItem(f"{run.title} · {run.dataset}")
            item.setData(Qt.ItemDataRole.UserRole, run.id)
            item.setToolTip(f"run {run.id}: {run.method} on {run.dataset}, final loss {run.final_loss}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if run.id in ticked else Qt.CheckState.Unchecked)
            self.adapters_list.addItem(item)
        self._refresh_past()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        # Runs and datasets made on other pages since this one was last shown.
        if not self.is_busy():
            self.refresh()
        super().showEvent(event)

    def _refresh_past(self) -> None:
        self.past_list.clear()
        for entry in eval_view.past_evaluations():
            kind = "hardest rows · " if entry.get("kind") == "hardest" else ""
            item = QListWidgetItem(f"{entry['created'].replace('T', ' ')} · {kind}{entry['dataset']} · "
                                   f"{len(entry['models'])} models")
            item.setData(Qt.ItemDataRole.UserRole, entry["path"])
            item.setToolTip(", ".join(entry["models"]))
            self.past_list.addItem(item)

    def tick_adapters(self, run_ids: list[str]) -> None:
        """Ticks exactly these runs' adapters (the Sweeps page's "Evaluate best")."""
        for i in range(self.adapters_list.count()):
            item = self.adapters_list.item(i)
            ticked = item.data(Qt.ItemDataRole.UserRole) in run_ids
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)

    def checked_adapters(self) -> list[str]:
        items = (self.adapters_list.item(i) for i in range(self.adapters_list.count()))
        return [str(item.data(Qt.ItemDataRole.UserRole)) for item in items
                if item.checkState() == Qt.CheckState.Checked]

    # -- running -------------------------------------------------------------------------------

    def choices(self) -> Choices:
        return Choices(dataset=self.dataset_combo.currentText(), split=str(self.split_combo.currentData()),
                       model=self.model_combo.currentText(), adapters=self.checked_adapters(),
                       metrics=[n for n, c in self.metric_checks.items() if c.isChecked()],
                       max_examples=self.max_examples.value(), max_new_tokens=self.max_new_tokens.value(),
                       regex=self.regex_edit.text(), slice_column=self.slice_combo.currentText(),
                       robustness=[n for n, c in self.robust_checks.items() if c.isChecked()],
                       system_prompt=self.system_edit.text(), json_schema=self.schema_edit.text(),
                       backend=str(self.backend_combo.currentData()))

    def command(self) -> list[str]:
        return [*self._context.engine_command(), "evaluate", "run", "--json", *self.choices().flags()]

    def start(self) -> None:
        problem = self.choices().problem()
        if problem:
            self.status.show_message(problem, error=True)
            return
        self.status.show_message("Starting the engine…")
        self._start_job(self.command(), "Evaluating… each model's values appear here as soon as it is done.")

    def start_hardest(self) -> None:
        adapters = self.checked_adapters()
        if len(adapters) != 1:
            self.status.show_message("Tick exactly one adapter to list its hardest training rows.", error=True)
            return
        self._start_job([*self._context.engine_command(), "evaluate", "hardest", "--json", adapters[0]],
                        f"Scoring the training rows of run {adapters[0]}…")

    def start_harness(self, arguments: list[str]) -> None:
        """Runs `evaluate harness` with the lm-eval panel's flags; it reports like `evaluate run`."""
        problem = self.harness_panel.problem()
        if problem:
            self.status.show_message(problem, error=True)
            return
        self._start_job([*self._context.engine_command(), "evaluate", "harness", "--json", *arguments],
                        "Running the lm-eval task… each model's values appear here as soon as it is done.")

    def _start_job(self, argv: list[str], title: str) -> None:
        """Clears the shown evaluation and starts an engine job whose results fill the page."""
        self._live = {}
        self.show_evaluation(Evaluation())
        self.title.setText(title)
        self.progress.setRange(0, 0)
        self.client.start(argv, env=self._context.engine_env())
        self._set_running(True)

    def cancel(self) -> None:
        self.client.cancel()
        self.status.show_message("Cancelling at the next batch…")

    def is_busy(self) -> bool:
        return self.client.is_active() or self.report_client.is_active() or self.judge_panel.client.is_active()

    def shutdown(self) -> None:
        self.client.kill()
        self.report_client.kill()
        self.judge_panel.shutdown()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.hardest_button.setEnabled(not running)
        self.harness_panel.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.open_button.setEnabled(not running)
        self.export_button.setEnabled(not running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("%p%")

    def _connect_clients(self) -> None:
        self.client.sig_progress.connect(self._on_client_progress)
        self.client.sig_metrics.connect(self._on_client_metrics)
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_finished.connect(self._on_client_finished)
        self.report_client.sig_result.connect(self._on_report_result)
        self.report_client.sig_finished.connect(self._on_report_finished)

    def _on_client_progress(self, message: dict) -> None:
        total, current = int(message.get("total") or 0), int(message.get("current") or 0)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(current)
        self.progress.setFormat(f"%p%  ·  ETA {format_eta(message.get('eta_s'))}")
        self.status.show_message(f"{message.get('model', '')}: {message.get('stage', '')} "
                                 f"({current}/{total})")

    def _on_client_metrics(self, message: dict) -> None:
        """Shows each model's set values as soon as it is done (intervals come with the result)."""
        label = str(message.get("model") or f"model {message.get('step')}")
        self._live[label] = dict(message.get("values") or {})
        # Qt hands dicts over as maps sorted by key; show the metrics in the order they were picked.
        reported = {n for values in self._live.values() for n in values}
        names = [n for n in self.metric_checks if n in reported] + sorted(reported - set(self.metric_checks))
        summary = {
            "models": [{"label": label} for label in self._live],
            "metrics": {
                n: {**_info(n), "values": {label: {"estimate": v.get(n)} for label, v in self._live.items()}}
                for n in names
            },
        }
        self.show_evaluation(Evaluation(summary=summary), keep_title=True)

    def _on_client_result(self, message: dict) -> None:
        data = message.get("data") or {}
        if not data.get("id"):  # a job that stopped early has no evaluation to show
            return
        folder = eval_view.find_folder(data)
        evaluation = eval_view.load(folder) if folder else None
        if evaluation is None:
            self.status.show_message(f"The evaluation finished but its folder cannot be read: {data.get('path')}",
                                     error=True)
            return
        self.show_evaluation(evaluation)
        self.sig_evaluation_finished.emit(str(folder))

    def _on_client_finished(self, code: int, summary: str) -> None:
        self._set_running(False)
        if code == 0:
            self.progress.setValue(1)
            self.progress.setFormat("Done")
            self.status.show_message(f"Finished: {self.evaluation.path}")
        elif (
            code == protocol.ExitCode.CANCELLED
        ):  # an evaluation is written whole at the end, so a cancelled one left nothing
            self.status.show_message("Cancelled: nothing was saved.")
            if not self.evaluation.path:
                self.title.setText("No evaluation was saved.")
        else:
            self.status.show_message(summary, error=True)
            if not self.evaluation.path:
                self.title.setText("The evaluation failed.")
        self._refresh_past()

    # -- showing -------------------------------------------------------------------------------

    def open_folder(self, folder: Path) -> bool:
        evaluation = eval_view.load(folder)
        if evaluation is None:
            self.status.show_message(f"{folder} is not a finished evaluation", error=True)
            return False
        self.show_evaluation(evaluation)
        return True

    def open_selected(self) -> None:
        item = self.past_list.currentItem() or self.past_list.item(0)
        if item is not None:
            self.open_folder(Path(item.data(Qt.ItemDataRole.UserRole)))

    def show_evaluation(self, evaluation: Evaluation, keep_title: bool = False) -> None:
        self.evaluation = evaluation
        if not keep_title:
            self.title.setText(evaluation.title() if evaluation.summary else "")
        current = self.metric_combo.currentData()
        self.metric_combo.blockSignals(True)
        self.metric_combo.clear()
        for name in evaluation.metric_names:
            self.metric_combo.addItem(evaluation.metric(name).get("title", name), name)
        preferred = current if current in evaluation.metric_names else next(
            (n for n in evaluation.metric_names if n != "perplexity"), "")
        self.metric_combo.setCurrentIndex(max(self.metric_combo.findData(preferred), 0))
        self.metric_combo.blockSignals(False)
        self.compare_combo.blockSignals(True)
        self.compare_combo.clear()
        self.compare_combo.addItems(evaluation.labels[1:])
        self.compare_combo.blockSignals(False)
        self.examples_model.set_evaluation(evaluation, self.current_metric())
        self.judge_panel.set_evaluation(evaluation.path, evaluation.labels)
        self._size_columns()
        self._sort_by_change()
        self._show_metric()
        self.breakdown.setHtml(breakdown_html(evaluation))

    def _show_verdicts(self, folder: Path) -> None:
        """A judging pass finished: the Examples table gains (or refreshes) its Judge column."""
        if self.evaluation.path != folder:
            return
        judged = eval_view.load(folder)
        if judged is not None:
            self.evaluation = judged
            self.examples_model.set_evaluation(judged, self.current_metric(), self.examples_model.tuned)
            self._size_columns()

    def _size_columns(self) -> None:
        widths = {"index": 44, "input": 240, "reference": 180, "output": 200, "score": 110, "change": 130, "judge": 110}
        for column in range(self.examples_model.columnCount()):
            self.examples_view.setColumnWidth(column, widths.get(self.examples_model.column_kind(column), 120))

    def current_metric(self) -> str:
        return str(self.metric_combo.currentData() or "")

    def _show_metric(self) -> None:
        name = self.current_metric()
        info = self.evaluation.metric(name)
        labels = self.evaluation.labels
        values = self.evaluation.values(name)
        better = info.get("better", "higher")
        self.chart.show_values(f"{info.get('title', name)} ({better} is better)" if name else "", labels, values)
        self.values_table.setRowCount(len(labels))
        for row, (label, value) in enumerate(zip(labels, values)):
            low, high = value.get("low"), value.get("high")
            interval = f"{_fmt(low)} – {_fmt(high)}" if low is not None and high is not None else ""
            for column, text in enumerate((label, _fmt(value.get("estimate")), interval)):
                self.values_table.setItem(row, column, QTableWidgetItem(text))
        # The definition is long: one line here, all of it in the tooltips.
        unit = f" · scale {info['unit']}" if info.get("unit") else ""
        self.metric_help.setText(f"{better.capitalize()} is better{unit}. Hover for the definition." if name else "")
        for widget in (self.metric_combo, self.chart, self.metric_help):
            widget.setToolTip(f"<p>{html.escape(info.get('definition', ''))}</p>" if name else "")

    def _sort_by_change(self) -> None:
        column = self.examples_model.change_column()
        if column >= 0:
            self.examples_view.sortByColumn(column, Qt.SortOrder.DescendingOrder)
        else:
            self.examples_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)

    def _on_metric_combo_changed(self, index: int) -> None:
        self.examples_model.set_metric(self.current_metric())
        self._sort_by_change()
        self._show_metric()

    def _on_compare_combo_changed(self, index: int) -> None:
        self.examples_model.set_tuned(self.compare_combo.currentText())
        self._sort_by_change()

    def _show_definition(self, name: str) -> None:
        info = eval_catalog.metric_info(name)
        self.definition.setText(f"<b>{info['title']}</b>: {info['definition']}")

    # -- export --------------------------------------------------------------------------------

    def export_report(self) -> None:
        if not self.evaluation.path:
            item = self.past_list.currentItem()
            if item is None or not self.open_folder(Path(item.data(Qt.ItemDataRole.UserRole))):
                self.status.show_message("Open an evaluation first.", error=True)
                return
        self.status.show_message("Writing the report…")
        self.export_button.setEnabled(False)
        argv = [*self._context.engine_command(), "evaluate", "report", "--json", str(self.evaluation.path)]
        self.report_client.start(argv, env=self._context.engine_env())

    def _on_report_result(self, message: dict) -> None:
        folder = Path(str((message.get("data") or {}).get("path") or ""))
        if folder.is_dir():
            # The engine draws SVG charts; the PNG of each metric comes from this page's chart.
            current = self.metric_combo.currentIndex()
            for i in range(self.metric_combo.count()):
                self.metric_combo.setCurrentIndex(i)
                self.chart.save_png(folder / f"chart-{self.metric_combo.itemData(i)}.png")
            self.metric_combo.setCurrentIndex(current)
        self.status.show_message(f"Report written to {folder}")

    def _on_report_finished(self, code: int, summary: str) -> None:
        self.export_button.setEnabled(not self.client.is_active())
        if code != 0:
            self.status.show_message(summary, error=True)

    def _on_copy_button_clicked(self) -> None:
        QGuiApplication.clipboard().setText(format_command(self.command()))
        self.status.show_message("Command copied.")


def _info(name: str) -> dict[str, str]:
    return eval_catalog.metric_info(name) if name in eval_catalog.known_metrics() else {"title": name}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def breakdown_html(evaluation: Evaluation) -> str:
    """Slices and robustness of an evaluation as HTML tables."""
    summary, labels = evaluation.summary, evaluation.labels
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    parts = []
    slices = summary.get("slices")
    if slices:
        parts.append(f"<h3>Slices by {slices.get('column', '')}</h3><table border='1' cellpadding='4'>"
                     f"<tr><th>value</th><th>n</th><th>metric</th>{head}</tr>")
        for value, group in slices.get("groups", {}).items():
            for name, per_model in group.get("metrics", {}).items():
                cells = "".join(f"<td>{_fmt(per_model.get(label))}</td>" for label in labels)
                parts.append(f"<tr><td>{html.escape(value[:80])}</td><td>{group.get('n')}</td><td>{name}</td>{cells}</tr>")
        parts.append("</table>")
    robustness = summary.get("robustness")
    if robustness:
        parts.append("<h3>Robustness: clean → perturbed (change)</h3><table border='1' cellpadding='4'>"
                     f"<tr><th>perturbation</th><th>metric</th>{head}</tr>")
        for perturbation, per_metric in robustness.items():
            for name, per_model in per_metric.items():
                cells = "".join(
                    f"<td>{_fmt(per_model[label]['clean'])} → {_fmt(per_model[label]['perturbed'])} "
                    f"({per_model[label]['delta']:+.3g})</td>"
                    if label in per_model
                    else "<td></td>"
                    for label in labels
                )
                parts.append(f"<tr><td>{perturbation}</td><td>{name}</td>{cells}</tr>")
        parts.append("</table>")
    if not parts:
        return "<p>No slices or robustness checks in this evaluation (see Options).</p>"
    return "".join(parts)
