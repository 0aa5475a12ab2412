"""The Evaluate page's Judge tab: an LLM judges the open evaluation's answers.

It runs `tunebench-engine evaluate judge --json` through the engine client like the page's other
jobs, and reads the verdicts back from the evaluation folder (``judge.json``, ``judge.jsonl``,
written by engine/eval/judge.py), so a judged evaluation opened later shows them too. The judge
is a local model or an OpenAI-compatible server; the window imports neither torch nor openai.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core import paths
from engine.eval import judge_spec, store
from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.widgets.status_line import StatusLine
from gui.widgets.tables import make_read_only

LOCAL, SERVER = "local", "server"


def _help(name: str) -> str:
    return str(judge_spec.FIELDS[name].metadata["help"])


def preset_text(mode: str, with_reference: bool) -> str:
    """The bundled prompt of a mode ("" when the resources lack it)."""
    name = mode + ("_reference" if with_reference else "")
    try:
        return (paths.resources_dir() / "judge" / f"{name}.txt").read_text(encoding="utf-8")
    except OSError:
        return ""


def _pct(ci: dict[str, Any]) -> str:
    return f"{100 * ci['estimate']:.1f}% [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"


def report_html(report: dict[str, Any] | None) -> str:
    """The judge report as a few lines of rich text."""
    if not report:
        return "<i>Not judged yet.</i>"
    a, b = html.escape(str(report.get("model_a", ""))), html.escape(str(report.get("model_b", "")))
    head = (f"<b>{html.escape(str(report.get('judge', '')))}</b> judged {report.get('rows', 0)} rows "
            f"({html.escape(str(report.get('mode', '')))}"
            f"{', reference-guided' if report.get('with_reference') else ''}; 95% bootstrap intervals).")
    lines = [head]
    if report.get("mode") == "pairwise":
        rates = report.get("rates") or {}
        counts = report.get("counts") or {}
        if rates:
            lines.append(f"<b>{b}</b> vs <b>{a}</b>: win {_pct(rates['win'])} ({counts.get('win', 0)}) · "
                         f"tie {_pct(rates['tie'])} ({counts.get('tie', 0)}) · "
                         f"loss {_pct(rates['loss'])} ({counts.get('loss', 0)})")
        lines.append("Each row is asked in both orders; a verdict that flips with the order counts as a tie.")
        human = report.get("human") or {}
        if human.get("rows"):
            kappa = human.get("kappa")
            lines.append(f"Agreement with your A/B ratings on {human['rows']} rows: "
                         f"{100 * human['agreement']:.0f}%, Cohen's kappa "
                         f"{'n/a' if kappa is None else format(kappa, '.2f')}")
    else:
        for label, ci in (report.get("mean_score") or {}).items():
            lines.append(f"<b>{html.escape(label)}</b>: mean score {ci['estimate']:.2f} "
                         f"[{ci['low']:.2f}, {ci['high']:.2f}] of 10 (n={ci.get('n', 0)})")
    bad = int(report.get("unparseable", 0) or 0)
    style = ' style="color:#b3261e"' if bad else ""
    lines.append(f"<span{style}>Unparseable verdicts: {bad}</span>")
    return "<br>".join(lines)


def verdict_rows(report: dict[str, Any] | None, verdicts: dict[Any, dict[str, Any]],
                 examples: list[dict[str, Any]]) -> list[list[str]]:
    """Table rows: row index, question, outcome or scores, and the judge's reasons."""
    questions = {row.get("index"): _question(row.get("input")) for row in examples}
    rows = []
    for index, entry in verdicts.items():
        if "orders" in entry:
            outcome = str(entry.get("outcome", ""))
            reasons = " | ".join(f"{o.get('order', '')}: {o.get('verdict') or 'unparseable'} — "
                                 f"{o.get('reason') or o.get('raw', '')}" for o in entry["orders"])
        else:
            scores = entry.get("scores") or {}
            outcome = ", ".join(f"{k}: {'?' if v.get('score') is None else v['score']}" for k, v in scores.items())
            reasons = " | ".join(f"{k}: {v.get('reason') or v.get('raw', '')}" for k, v in scores.items())
        rows.append([str(index), questions.get(index, ""), outcome, reasons.replace("\n", " ")])
    return rows


def _question(value: Any) -> str:
    if isinstance(value, list):
        users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        value = users[-1] if users else ""
    return str(value or "").replace("\n", " ")[:200]


class JudgePanel(QWidget):
    """Settings, Judge/Cancel, the report and the per-row verdicts of the open evaluation."""

    sig_judged = Signal(object)  # the evaluation folder, after a judging pass wrote its verdicts

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.folder: Path | None = None
        self.client = EngineClient(self)
        self.client.sig_progress.connect(self._on_progress)
        self.client.sig_finished.connect(self._on_finished)
        self._build()
        self._on_source_changed()
        self._on_mode_changed()
        self._set_running(False)

    def _build(self) -> None:
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Pairwise (both orders)", "pairwise")
        self.mode_combo.addItem("Single answer, score 1-10", "single")
        self.mode_combo.setToolTip(_help("mode"))
        self.reference_check = QCheckBox("Show the reference answer")
        self.reference_check.setToolTip(_help("with_reference"))
        self.a_combo, self.b_combo = QComboBox(), QComboBox()
        self.a_combo.setToolTip(_help("model_a"))
        self.b_combo.setToolTip(_help("model_b"))
        self.source_combo = QComboBox()
        self.source_combo.addItem("Local model", LOCAL)
        self.source_combo.addItem("OpenAI-compatible server", SERVER)
        self.local_edit = QLineEdit(placeholderText="default, a model folder or a .gguf file")
        self.local_edit.setToolTip(_help("judge_model"))
        self.url_edit = QLineEdit(placeholderText="http://127.0.0.1:8000/v1")
        self.url_edit.setToolTip(_help("base_url"))
        self.key_edit = QLineEdit(placeholderText="API key (optional)", echoMode=QLineEdit.EchoMode.Password)
        self.key_edit.setToolTip(_help("api_key"))
        self.server_model_edit = QLineEdit(placeholderText="server's first model")
        self.server_model_edit.setToolTip(_help("server_model"))
        self.max_spin = QSpinBox(minimum=0, maximum=100000, specialValueText="all rows")
        self.max_spin.setToolTip(_help("max_examples"))
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setToolTip(_help("prompt") + ". Edit it here; Reset brings the preset back.")
        self.prompt_edit.setMaximumHeight(100)
        self.reset_button = QPushButton("Reset prompt")
        self.reset_button.clicked.connect(self._load_preset)

        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.local_label, self.url_label = QLabel("Judge model"), QLabel("Server URL")
        self.key_label, self.server_model_label = QLabel("API key"), QLabel("Server model")
        cells = [
            (QLabel("Mode"), 0, 0, 1), (self.mode_combo, 0, 1, 1), (self.reference_check, 0, 2, 2),
            (QLabel("Model A"), 1, 0, 1), (self.a_combo, 1, 1, 1), (QLabel("Model B"), 1, 2, 1),
            (self.b_combo, 1, 3, 1),
            (QLabel("Judge"), 2, 0, 1), (self.source_combo, 2, 1, 1), (QLabel("Rows"), 2, 2, 1),
            (self.max_spin, 2, 3, 1),
            (self.local_label, 3, 0, 1), (self.local_edit, 3, 1, 3),
            (self.url_label, 4, 0, 1), (self.url_edit, 4, 1, 1), (self.server_model_label, 4, 2, 1),
            (self.server_model_edit, 4, 3, 1), (self.key_label, 5, 0, 1), (self.key_edit, 5, 1, 1),
        ]
        for widget, row, column, span in cells:
            grid.addWidget(widget, row, column, 1, span)

        self.judge_button = QPushButton("Judge")
        self.judge_button.setDefault(True)
        self.judge_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.client.cancel)
        self.progress = QProgressBar(textVisible=True)
        self.status = StatusLine()
        buttons = QHBoxLayout()
        buttons.addWidget(self.judge_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.reset_button)

        self.summary = QLabel(report_html(None), textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Row", "Question", "Outcome", "Judge's reasons"])
        make_read_only(self.table, 3)
        self.table.setWordWrap(False)

        settings = QWidget()
        top = QVBoxLayout(settings)
        top.setContentsMargins(0, 0, 0, 0)
        top.addLayout(grid)
        top.addWidget(QLabel("Prompt ({question}, {answer_a}, {answer_b}, {answer}, {reference})"))
        top.addWidget(self.prompt_edit)
        top.addLayout(buttons)
        top.addWidget(self.status)
        top.addWidget(self.summary)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(settings)
        splitter.addWidget(self.table)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        self.reference_check.toggled.connect(self._on_mode_changed)
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)

    # -- state -----------------------------------------------------------------------------------

    def _on_mode_changed(self) -> None:
        pairwise = self.mode_combo.currentData() == "pairwise"
        self.a_combo.setToolTip(_help("model_a") if pairwise else "the first model to score")
        self._load_preset()

    def _load_preset(self) -> None:
        self.preset = preset_text(self.mode_combo.currentData(), self.reference_check.isChecked())
        self.prompt_edit.setPlainText(self.preset)

    def _on_source_changed(self) -> None:
        server = self.source_combo.currentData() == SERVER
        self.local_edit.setVisible(not server)
        self.local_label.setVisible(not server)
        for widget in (self.url_edit, self.server_model_edit, self.key_edit, self.key_label, self.url_label,
                       self.server_model_label):
            widget.setVisible(server)

    def set_evaluation(self, folder: Path | None, labels: list[str]) -> None:
        """Shows the evaluation at ``folder`` (its models to pick from and its last judging)."""
        self.folder = folder
        for combo, pick in ((self.a_combo, 0), (self.b_combo, 1)):
            combo.clear()
            combo.addItems(labels)
            combo.setCurrentIndex(min(pick, len(labels) - 1))
        self.show_results()
        self._set_running(self.client.is_active())

    def show_results(self) -> None:
        report, verdicts = store.read_judge(self.folder) if self.folder else (None, {})
        self.summary.setText(report_html(report))
        rows = verdict_rows(report, verdicts, store.read_examples(self.folder) if self.folder else [])
        self.table.setRowCount(len(rows))
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        self.table.resizeColumnToContents(0)
        self.table.resizeColumnToContents(2)
        self.table.setColumnWidth(1, min(self.table.columnWidth(1), 260) or 260)

    def flags(self) -> list[str]:
        """The command's flags from the panel (the API key travels in the environment)."""
        flags = ["--evaluation", str(self.folder or ""), "--mode", str(self.mode_combo.currentData()),
                 "--model-a", self.a_combo.currentText(), "--model-b", self.b_combo.currentText()]
        if self.reference_check.isChecked():
            flags.append("--with-reference")
        if self.source_combo.currentData() == SERVER:
            flags += ["--base-url", self.url_edit.text().strip()]
            if self.server_model_edit.text().strip():
                flags += ["--server-model", self.server_model_edit.text().strip()]
        elif self.local_edit.text().strip():
            flags += ["--judge-model", self.local_edit.text().strip()]
        if self.max_spin.value():
            flags += ["--max-examples", str(self.max_spin.value())]
        prompt = self.prompt_edit.toPlainText()
        if prompt.strip() and prompt != self.preset:
            flags += ["--prompt", prompt]
        return flags

    def problem(self) -> str:
        if self.folder is None:
            return "Open or run an evaluation first: the judge reads its answers."
        if self.a_combo.count() < 2:
            return "The judge compares two models; this evaluation has one."
        if self.a_combo.currentText() == self.b_combo.currentText():
            return "Pick two different models."
        if self.source_combo.currentData() == SERVER and not self.url_edit.text().strip():
            return "Enter the judge server's base URL."
        return ""

    def start(self) -> None:
        problem = self.problem()
        if problem:
            self.status.show_message(problem, error=True)
            return
        env = self._context.engine_env()
        if self.source_combo.currentData() == SERVER and self.key_edit.text():
            env["OPENAI_API_KEY"] = self.key_edit.text()
        self.progress.setRange(0, 0)
        self.status.show_message("Starting the judge…")
        self.client.start([*self._context.engine_command(), "evaluate", "judge", "--json", *self.flags()], env=env)
        self._set_running(True)

    def _set_running(self, running: bool) -> None:
        self.judge_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("%p%")

    def _on_progress(self, message: dict) -> None:
        total = int(message.get("total") or 0)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(int(message.get("current") or 0))
        self.progress.setFormat("%v / %m verdicts")

    def _on_finished(self, code: int, summary: str) -> None:
        self._set_running(False)
        self.show_results()
        self.status.show_message("Judged." if code == 0 else summary, error=code != 0)
        if code == 0 and self.folder is not None:
            self.sig_judged.emit(self.folder)

    def shutdown(self) -> None:
        self.client.kill()
