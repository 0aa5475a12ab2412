"""The Prompt page: a small playground that streams a model's answer token by token.

Each Generate runs ``engine generate --json``; tokens are appended to the output as the engine
sends them. With an adapter from a finished run, the answer shows what fine-tuning changed.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine import protocol

from gui.context import AppContext
from gui.engine_client import EngineClient
from gui.state import run_history
from gui.widgets.form_fields import FloatSpinBox, ValueCombo
from gui.widgets.status_line import StatusLine

MODEL_ITEMS = [("SmolLM2-135M-Instruct (bundled)", "default")]
NO_ADAPTER = ("None (base model)", "")
DEFAULT_PROMPT = "Write a one-sentence review of a pair of wireless headphones."
DEFAULT_MAX_NEW_TOKENS = 128


def format_result(data: dict) -> str:
    tokens, rate, seconds = data.get("tokens"), data.get("tokens_per_s"), data.get("seconds")
    parts = [f"{tokens} tokens" if tokens is not None else ""]
    if isinstance(rate, (int, float)):
        parts.append(f"{rate:.1f} tok/s")
    if isinstance(seconds, (int, float)):
        parts.append(f"{seconds:.2f} s")
    return ", ".join(p for p in parts if p)


class PromptPage(QWidget):
    """Model + optional adapter + prompt → a streamed answer."""

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self._result_text = ""
        self.client = EngineClient(self)
        self.client.sig_token.connect(self._on_client_token)
        self.client.sig_result.connect(self._on_client_result)
        self.client.sig_progress.connect(self._on_client_progress)
        self.client.sig_finished.connect(self._on_client_finished)
        self._build()
        self.refresh_adapters()
        self._set_running(False)

    def _build(self) -> None:
        self.model_combo = ValueCombo(MODEL_ITEMS)
        self.model_combo.setToolTip("'default' is the bundled SmolLM2-135M-Instruct; a local "
                                    "Hugging Face folder or .gguf file also works.")
        self.adapter_combo = QComboBox()
        self.adapter_combo.setToolTip("A LoRA adapter from a finished run, applied on top of the model.")
        self.max_tokens_spin = QSpinBox(minimum=1, maximum=8192, value=DEFAULT_MAX_NEW_TOKENS)
        self.max_tokens_spin.setToolTip("Stop after this many generated tokens.")
        self.temperature_spin = FloatSpinBox(0.0, 2.0)
        self.temperature_spin.setValue(0.0)
        self.temperature_spin.setSingleStep(0.1)
        self.temperature_spin.setToolTip("0 = greedy (always the most likely token, repeatable); "
                                         "0.7-1.0 gives more varied answers.")
        # Two columns: what runs (model, adapter) and how it samples (length, temperature).
        settings = QGridLayout()
        settings.setHorizontalSpacing(12)
        for row, (label, widget) in enumerate((("Model", self.model_combo), ("Adapter", self.adapter_combo))):
            widget.setMinimumWidth(360)
            settings.addWidget(QLabel(label), row, 0)
            settings.addWidget(widget, row, 1)
        for row, (label, widget) in enumerate((("Max new tokens", self.max_tokens_spin),
                                               ("Temperature", self.temperature_spin))):
            widget.setMinimumWidth(110)
            settings.addWidget(QLabel(label), row, 3)
            settings.addWidget(widget, row, 4)
        settings.setColumnMinimumWidth(2, 24)
        settings.setColumnStretch(1, 1)
        settings.setColumnStretch(5, 1)

        self.prompt_edit = QPlainTextEdit(DEFAULT_PROMPT)
        self.prompt_edit.setPlaceholderText("Type a prompt…")
        self.output_view = QPlainTextEdit(readOnly=True)
        self.output_view.setPlaceholderText("The model's answer streams in here.")
        self.generate_button = QPushButton("Generate", objectName="primary")
        self.stop_button = QPushButton("Stop")
        self.generate_button.clicked.connect(self._on_generate_clicked)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.stats_label = StatusLine()
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.stats_label, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(_titled("Prompt", self.prompt_edit))
        splitter.addWidget(_titled("Output", self.output_view))
        splitter.setSizes([200, 400])
        layout = QVBoxLayout(self)
        layout.addLayout(settings)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)

    # -- adapters --------------------------------------------------------------------------

    def refresh_adapters(self) -> None:
        """Offers the adapters of finished runs; keeps the current choice if it still exists."""
        current = self.adapter_combo.currentData()
        self.adapter_combo.clear()
        self.adapter_combo.addItem(*NO_ADAPTER)
        for run in run_history.finished_with_adapter(self._context.runs_dir):
            self.adapter_combo.addItem(f"{run.title} ({run.created})", str(run.adapter_dir))
        index = self.adapter_combo.findData(current)
        self.adapter_combo.setCurrentIndex(max(index, 0))

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not self.client.is_active():
            self.refresh_adapters()

    # -- generate ----------------------------------------------------------------------------

    def build_command(self) -> list[str]:
        argv = self._context.engine_command() + ["generate", "--json", "--model", self.model_combo.value() or "default"]
        adapter = self.adapter_combo.currentData()
        if adapter:
            argv += ["--adapter", str(adapter)]
        return argv + [
            "--prompt", self.prompt_edit.toPlainText(),
            "--max-new-tokens", str(self.max_tokens_spin.value()),
            "--temperature", format(self.temperature_spin.value(), "g"),
        ]

    def _on_generate_clicked(self) -> None:
        if not self.prompt_edit.toPlainText().strip():
            self.stats_label.show_message("Type a prompt first.", error=True)
            return
        self.output_view.clear()
        self._result_text = ""
        self.client.start(self.build_command(), self._context.engine_env())
        self._set_running(True)
        self.stats_label.show_message("Starting the engine…")

    def _on_stop_clicked(self) -> None:
        self.client.cancel()
        self.stop_button.setEnabled(False)

    def _on_client_progress(self, message: dict) -> None:
        if message.get("message"):
            self.stats_label.show_message(str(message["message"]))

    def _on_client_token(self, message: dict) -> None:
        if self.output_view.document().isEmpty():
            self.stats_label.show_message("Generating…")
        cursor = self.output_view.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(str(message["text"]))
        self.output_view.setTextCursor(cursor)

    def _on_client_result(self, message: dict) -> None:
        data = message.get("data") or {}
        self._result_text = format_result(data)

    def _on_client_finished(self, exit_code: int, summary: str) -> None:
        self._set_running(False)
        if exit_code == 0:
            self.stats_label.show_message(self._result_text or "Done.")
        else:
            self.stats_label.show_message(summary, error=exit_code != protocol.ExitCode.CANCELLED)

    def _set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for widget in (self.model_combo, self.adapter_combo, self.max_tokens_spin, self.temperature_spin):
            widget.setEnabled(not running)

    def is_busy(self) -> bool:
        return self.client.is_active()

    def shutdown(self) -> None:
        self.client.kill()


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(title, objectName="section"))
    layout.addWidget(widget)
    return box
