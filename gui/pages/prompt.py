"""The Prompt page: a streaming playground with up to four configurations side by side.

One long-lived engine ``session`` (gui/session_client.py) keeps models loaded; one prompt goes
to every column as one ``generate`` request each, and each column's tokens stream into it by
request id. Chat mode sends each column's own history with the system prompt (the engine applies
the model's chat template); raw mode sends the text as it is.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core import errors
from engine.infer import ratings
from engine.infer.params import schema_problem
from gui.context import AppContext
from gui.session_client import SessionClient
from gui.state import prompt_batch, remote_keys, run_history
from gui.state.prompt_conversation import Answer
from gui.state.prompt_params import ColumnConfig, Params
from gui.widgets.hub_dialog import HubDialog
from gui.widgets.prompt_batch_runner import BatchRunner
from gui.widgets.prompt_column import PromptColumn, letter_for
from gui.widgets.prompt_params_panel import ParamsPanel
from gui.widgets.prompt_rating import RatingsPanel
from gui.widgets.prompt_serve_panel import ServePanel
from gui.widgets.prompt_suites_panel import SuitesPanel
from gui.widgets.status_line import StatusLine

MAX_COLUMNS = 4
TOP_LOGPROBS = 5  # always asked for, so the token view can be switched on after an answer
CHAT, RAW = "chat", "raw"
DEFAULT_PROMPT = "What is the capital of France?"


class PromptPage(QWidget):
    """Columns of configurations, one prompt box, Send/Stop, and the parameter panel."""

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.columns: list[PromptColumn] = []
        self._selected: PromptColumn | None = None
        self._requests: dict[str, tuple[PromptColumn, Answer]] = {}
        self._batch: dict[str, int] = {}  # request id → row of the suites panel's results table
        self._model_lists: dict[str, PromptColumn] = {}  # request id → the remote column that asked
        self.session = SessionClient(context.engine_command, context.engine_env, self)
        self.session.sig_token.connect(self._on_session_token)
        self.session.sig_progress.connect(self._on_session_progress)
        self.session.sig_result.connect(self._on_session_result)
        self.session.sig_request_error.connect(self._on_session_request_error)
        self.session.sig_notice.connect(lambda text, error: self.status.show_message(text, error=error))
        self.session.sig_busy_changed.connect(self._set_busy)
        self.session.sig_ready.connect(self._on_session_ready)
        self._build()
        self.add_column()
        self.refresh_adapters()
        self._set_busy(False)

    # -- layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        toolbar = self._build_toolbar()
        self._build_side_tabs()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self._build_system_row())
        self.columns_box = QWidget()
        self.columns_layout = QHBoxLayout(self.columns_box)
        self.columns_layout.setContentsMargins(0, 0, 0, 0)
        # Batch results need the width of the columns, so they open below them.
        self.work_splitter = QSplitter(Qt.Orientation.Vertical)
        self.work_splitter.addWidget(self.columns_box)
        self.work_splitter.addWidget(self.suites_panel.results_box)
        self.work_splitter.setChildrenCollapsible(False)
        self.work_splitter.setSizes([420, 220])
        left_layout.addWidget(self.work_splitter, 1)
        left_layout.addLayout(self._build_prompt_row())
        self.status = StatusLine()
        left_layout.addWidget(self.status)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.side_tabs)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([860, 400])
        layout = QVBoxLayout(self)
        layout.addLayout(toolbar)
        layout.addWidget(splitter, 1)

    def _build_toolbar(self) -> QHBoxLayout:
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Chat", CHAT)
        self.mode_combo.addItem("Raw completion", RAW)
        self.mode_combo.setToolTip("Chat: the model's chat template with the system prompt and the "
                                   "conversation so far. Raw: the text is continued as it is.")
        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        self.add_column_button = _button("Add column", "Compare up to four configurations (model × adapter × "
                                         "parameters) on the same prompt.", lambda: self.add_column())
        self.token_view_check = QCheckBox("Token view")
        self.token_view_check.setToolTip("Colour each generated token by its probability (red = unlikely, "
                                         "green = confident); hover a token for the alternatives.")
        self.token_view_check.toggled.connect(self._on_token_view_toggled)
        self.clear_button = _button("New chat", "Forget the conversation in every column.", self.clear_conversations)
        self.unload_button = _button("Free memory", "Unload every model the engine session holds; the next "
                                     "answer loads its model again.", self._on_unload_clicked)
        self.session_label = QLabel("Engine: not started", objectName="hint")
        toolbar = QHBoxLayout()
        for widget in (QLabel("Mode"), self.mode_combo, self.add_column_button, self.token_view_check,
                       self.clear_button):
            toolbar.addWidget(widget)
        toolbar.addStretch(1)
        toolbar.addWidget(self.session_label)
        toolbar.addWidget(self.unload_button)
        return toolbar

    def _build_side_tabs(self) -> None:
        self.params_panel = ParamsPanel()
        self.params_panel.sig_changed.connect(self._on_params_changed)
        self.suites_panel = SuitesPanel(self.current_prompt)
        self.suites_panel.sig_use_prompt.connect(self.use_prompt)
        self.suites_panel.sig_run_batch.connect(self.run_batch)
        self.suites_panel.sig_run_engine_batch.connect(self.run_engine_batch)
        self.suites_panel.sig_cancel_batch.connect(self._on_batch_cancel_requested)
        self.batch_runner = BatchRunner(self._context.engine_command, self._context.engine_env, self)
        self.batch_runner.sig_row.connect(self.suites_panel.add_row)
        self.batch_runner.sig_finished.connect(self._on_batch_runner_finished)
        self.batch_runner.client.sig_progress.connect(self._on_batch_runner_progress)
        self.ratings_panel = RatingsPanel()
        self.serve_panel = ServePanel(self._context.engine_command, self._context.engine_env, self._serve_target)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(_scrolled(self.params_panel), "Parameters")
        self.side_tabs.addTab(self.suites_panel, "Suites")
        self.side_tabs.addTab(self.ratings_panel, "Ratings")
        self.side_tabs.addTab(self.serve_panel, "Endpoint")
        self.side_tabs.currentChanged.connect(lambda _: self.serve_panel.refresh_target())
        self.side_tabs.setMinimumWidth(250)

    def _build_system_row(self) -> QWidget:
        self._offered_system = ""  # the last trained system prompt put in the field for an adapter
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("System prompt (optional), e.g. You are a concise assistant.")
        self.system_edit.setFixedHeight(46)
        self.system_edit.setToolTip("Sent first in chat mode; how the model should behave.")
        self.system_row = QWidget()
        row = QHBoxLayout(self.system_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("System prompt"), 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.system_edit, 1)
        return self.system_row

    def _build_prompt_row(self) -> QHBoxLayout:
        self.prompt_edit = QPlainTextEdit(DEFAULT_PROMPT)
        self.prompt_edit.setPlaceholderText("Type a message… (Ctrl+Enter sends)")
        self.prompt_edit.setFixedHeight(84)
        # An event filter, not a QShortcut: the text box itself takes Ctrl+Return otherwise.
        self.prompt_edit.installEventFilter(self)
        self.send_button = _button("Send", "Send the prompt to every column (Ctrl+Enter).", self.send)
        self.send_button.setObjectName("primary")
        self.stop_button = _button("Stop", "Stop every answer now; the text so far is kept.", self.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.prompt_edit, 1)
        row.addLayout(buttons)
        return row

    # -- columns -------------------------------------------------------------------------------

    def add_column(self, config: ColumnConfig | None = None) -> PromptColumn | None:
        """A new column; it starts as a copy of the selected one, so one setting can be changed."""
        if len(self.columns) >= MAX_COLUMNS:
            return None
        if config is None and self._selected is not None:
            base = self._selected.config
            config = ColumnConfig(base.model, base.adapter, base.adapter_on, base.params, base.base_url,
                                  base.backend, base.adapter_scale)
        column = PromptColumn(letter_for(len(self.columns)), config or ColumnConfig())
        column.sig_selected.connect(self.select_column)
        column.sig_remove_requested.connect(self.remove_column)
        column.sig_adapter_chosen.connect(self.offer_trained_system_prompt)
        column.sig_hub_requested.connect(self.open_hub_dialog)
        column.sig_models_requested.connect(self.list_models)
        column.source_combo.currentIndexChanged.connect(lambda _, c=column: self._offer_recent_server(c))
        column.rating_bar.sig_thumbs.connect(lambda value, c=column: self.rate(c, "thumbs", value))
        column.rating_bar.sig_score.connect(lambda value, c=column: self.rate(c, "score", value))
        column.rating_bar.sig_better.connect(lambda c=column: self.pick_better(c))
        column.token_view = self.token_view_check.isChecked()
        column.raw_mode = self.mode() == RAW
        column.set_adapters(self._adapter_items())
        if column.config.adapter:
            self.offer_trained_system_prompt(column.config.adapter)
        self.columns.append(column)
        self.columns_layout.addWidget(column, 1)
        self.select_column(column)
        self._update_column_controls()
        self._update_rating_bars()
        return column

    def open_hub_dialog(self, column: PromptColumn) -> HubDialog:
        """"Browse the Hub…" from a column's model menu; a downloaded model becomes its model."""
        self.hub_dialog = HubDialog(self._context.engine_command, self._context.engine_env, self)
        self.hub_dialog.sig_downloaded.connect(lambda name, c=column: c.use_model(name) if c in self.columns else None)
        self.hub_dialog.open()
        return self.hub_dialog

    def remove_column(self, column: PromptColumn) -> None:
        if len(self.columns) <= 1 or self.session.is_busy():
            return
        self.columns.remove(column)
        column.setParent(None)
        column.deleteLater()
        for index, other in enumerate(self.columns):
            other.letter = letter_for(index)
            other.select_button.setText(f"Column {other.letter}")
        if self._selected is column:
            self.select_column(self.columns[0])
        self._update_column_controls()

    def select_column(self, column: PromptColumn) -> None:
        self._selected = column
        for other in self.columns:
            other.set_selected(other is column)
        self.params_panel.set_params(column.config.params, f"Parameters — column {column.letter}")
        self.serve_panel.refresh_target()

    def _update_column_controls(self) -> None:
        self.add_column_button.setEnabled(len(self.columns) < MAX_COLUMNS and not self.session.is_busy())
        for column in self.columns:
            column.remove_button.setVisible(len(self.columns) > 1)

    def _on_params_changed(self, params: Params) -> None:
        if self._selected is not None:
            self._selected.set_params(params)

    def _on_token_view_toggled(self, on: bool) -> None:
        for column in self.columns:
            column.token_view = on
            column.render_now()

    def _on_mode_changed(self) -> None:
        raw = self.mode() == RAW
        self.system_row.setVisible(not raw)
        self.clear_conversations()
        for column in self.columns:
            column.raw_mode = raw

    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    def clear_conversations(self) -> None:
        if self.session.is_busy():
            return
        for column in self.columns:
            column.conversation.clear()
            column.render_now()
        self._update_rating_bars()

    # -- remote columns --------------------------------------------------------------------------

    def _offer_recent_server(self, column: PromptColumn) -> None:
        """A column switched to a server starts on the last server used (its key from the key store)."""
        recent = remote_keys.recent(self._context.load_settings())
        if column.is_remote and not column.url_edit.text() and recent:
            column.set_server(recent[0]["base_url"], recent[0]["model"])

    def list_models(self, column: PromptColumn) -> None:
        """Asks the engine session (never this thread) for the models the column's server lists."""
        remote = column.config.target_fields().get("remote")
        if not remote:
            return
        if self.session.is_busy():
            self.status.show_message("Wait for the answers to finish, then list the server's models.", error=True)
            return
        self._model_lists[self.session.list_models(remote)] = column
        self.status.show_message(f"Column {column.letter}: asking {column.config.base_url} for its models…")

    def _on_models_listed(self, request_id: str, data: dict | None, error: str = "") -> bool:
        column = self._model_lists.pop(request_id, None)
        if column is None:
            return False
        models = [str(m) for m in (data or {}).get("models") or []]
        if error or not models:
            self.status.show_message(f"Column {column.letter}: {error or 'the server lists no models'}", error=True)
            return True
        column.set_server_models(models)
        self._remember_server(column)
        self.status.show_message(f"Column {column.letter}: {len(models)} model(s) at {column.config.base_url}.")
        return True

    def _remember_server(self, column: PromptColumn) -> None:
        """Settings keep the server's URL, model and whether it has a key, never the key."""
        settings = self._context.load_settings()
        try:
            self._context.save_settings(remote_keys.remember(settings, column.config.base_url, column.config.model))
        except OSError as exc:
            self.status.show_message(f"Could not save the settings: {exc}", error=True)

    def _remote_problem(self, column: PromptColumn) -> str:
        config = column.config
        if not config.base_url:
            return "" if not column.is_remote else "type the server's URL, e.g. http://127.0.0.1:11434/v1"
        if not config.model:
            return "pick the server's model (↻ lists them)"
        if config.params.json_schema:
            return "a JSON schema works with local models only; clear it for this column"
        return ""

    def _refuse_remote_problems(self) -> bool:
        """Shows the first remote column that cannot run yet; True when there is one."""
        problems = [f"Column {c.letter}: {p}" for c in self.columns if (p := self._remote_problem(c))]
        if problems:
            self.status.show_message(problems[0], error=True)
        return bool(problems)

    # -- adapters ------------------------------------------------------------------------------

    def offer_trained_system_prompt(self, adapter_dir: str) -> None:
        """An adapter answers as it was trained to only with the system prompt it trained with, so
        picking one fills the field with it: shown, editable, and never over text the user typed
        (an empty field, or one still holding an earlier adapter's prompt, is replaced)."""
        system = run_history.trained_system_prompt(adapter_dir)
        current = self.system_edit.toPlainText()
        if not system or (current.strip() and current != self._offered_system):
            return
        self.system_edit.setPlainText(system)
        self._offered_system = system
        self.system_edit.setToolTip("The system prompt this adapter's run trained with; edit it freely. "
                                    "Sent first in chat mode.")

    def _adapter_items(self) -> list[tuple[str, str]]:
        return [(f"{run.title} ({run.created})", str(run.adapter_dir))
                for run in run_history.finished_with_adapter(self._context.runs_dir)]

    def refresh_adapters(self) -> None:
        """Offers the adapters of finished runs in every column."""
        items = self._adapter_items()
        for column in self.columns:
            column.set_adapters(items)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        """Ctrl+Enter in the prompt box sends."""
        if (watched is self.prompt_edit and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.send()
            return True
        return super().eventFilter(watched, event)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not self.session.is_busy():
            self.refresh_adapters()

    # -- send / stop -----------------------------------------------------------------------------

    def build_request(self, column: PromptColumn, text: str) -> dict:
        """The generate request (without id) for one column; history as it is before ``text``
        is added."""
        config = column.config
        request = {**config.target_fields(), "mode": self.mode(), "params": config.params.to_wire(),
                   "top_logprobs": TOP_LOGPROBS}
        if self.mode() == CHAT:
            request["messages"] = column.conversation.messages(self.system_edit.toPlainText()) + [
                {"role": "user", "content": text}]
        else:
            request["prompt"] = text
        return request

    def send(self) -> None:
        text = self.prompt_edit.toPlainText()
        if self.session.is_busy() or self.batch_runner.is_running():
            return
        if not text.strip():
            self.status.show_message("Type a prompt first.", error=True)
            return
        if not self.params_panel.seed_is_valid():
            self.status.show_message("Seed: use a whole number, or leave it empty for a random answer.",
                                     error=True)
            return
        if self._refuse_remote_problems():
            return
        problems = [f"Column {c.letter}: JSON schema: {p}" for c in self.columns
                     if (p := schema_problem(c.config.params.json_schema))]
        if problems:
            self.status.show_message(problems[0], error=True)
            return
        for column in self.columns:
            request = self.build_request(column, text)
            answer = column.conversation.ask(text)
            answer.prompt = request.get("messages", request.get("prompt"))
            answer.mode, answer.config = request["mode"], column.config.describe()
            self._requests[self.session.generate(request)] = (column, answer)
            column.render_now()
            if column.config.base_url:
                self._remember_server(column)
        if self.mode() == CHAT:
            self.prompt_edit.clear()
        self.status.show_message("Starting the engine…" if not self.session.is_running() else "Generating…")

    def current_prompt(self) -> tuple[str, str, str]:
        """(system prompt, prompt box text, mode): what "Save prompt" stores."""
        return self.system_edit.toPlainText(), self.prompt_edit.toPlainText(), self.mode()

    def use_prompt(self, system: str, text: str, mode: str) -> None:
        """Puts a saved prompt into the page and sends it to every column."""
        if self.session.is_busy():
            return
        self.mode_combo.setCurrentIndex(max(self.mode_combo.findData(mode), 0))
        if mode == CHAT:
            self.system_edit.setPlainText(system)
        self.prompt_edit.setPlainText(text)
        self.send()

    def run_batch(self, items: list) -> None:
        """Every item through every column as session requests; rows fill the results table."""
        if self.session.is_busy() or not items or self._refuse_remote_problems():
            return
        rows = prompt_batch.rows_for_items(items, [(c.letter, c.config) for c in self.columns])
        self.suites_panel.show_rows(rows)
        self.suites_panel.set_batch_running(True)
        self._batch = {self.session.generate(row.request): index for index, row in enumerate(rows)}
        self.status.show_message(f"Batch: {len(rows)} answers to generate…")

    def run_engine_batch(self, source_flags: list, items: int) -> None:
        """A suite or file column over every column, as a ``tunebench-engine batch`` job."""
        if self.is_busy() or self.batch_runner.is_running():
            self.status.show_message("Wait for the answers (or the endpoint) to finish first.", error=True)
            return
        if self._refuse_remote_problems():
            return
        self.suites_panel.begin(items * len(self.columns))
        self.suites_panel.set_batch_running(True)
        self.send_button.setEnabled(False)
        self.batch_runner.start(source_flags, [(c.letter, c.config) for c in self.columns])
        self.status.show_message(f"Batch: {items * len(self.columns)} answers to generate…")

    def _on_batch_runner_progress(self, message: dict) -> None:
        if "row" not in message and message.get("stage"):
            stage = str(message["stage"])
            self.status.show_message(f"Batch: {stage[:1].upper()}{stage[1:]}…")

    def _on_batch_runner_finished(self, ok: bool, line: str) -> None:
        self.suites_panel.set_batch_running(False)
        self.send_button.setEnabled(not self.session.is_busy())
        self.status.show_message(line, error=not ok)

    def _on_batch_cancel_requested(self) -> None:
        if self.batch_runner.is_running():
            self.status.show_message("Stopping the batch…")
            self.batch_runner.cancel()
        else:
            self.stop()

    def _on_batch_answer(self, request_id: str, data: dict | None, error: str = "") -> bool:
        if request_id not in self._batch:
            return False
        index = self._batch.pop(request_id)
        row = self.suites_panel.rows[index]
        if data is not None:
            row.answer = str(data.get("text") or "")
            row.finish_reason = str(data.get("finish_reason") or "stop")
            row.ttft_s, row.tokens_per_s = data.get("ttft_s"), data.get("tokens_per_s")
            row.backend = str(data.get("backend") or "")
        row.error = error
        self.suites_panel.update_row(index)
        if not self._batch:
            self.suites_panel.set_batch_running(False)
            done = sum(1 for r in self.suites_panel.rows if r.finish_reason and r.finish_reason != "cancelled")
            self.status.show_message(f"Batch finished: {done} of {len(self.suites_panel.rows)} answers.")
        return True

    def stop(self) -> None:
        # The message first: cancelling requests not yet sent answers them at once, and the
        # summary they trigger must not be overwritten.
        self.status.show_message("Stopping…")
        self.session.cancel()

    # -- session messages ------------------------------------------------------------------------

    def _on_session_ready(self, hello: dict) -> None:
        device = hello.get("device") if isinstance(hello.get("device"), dict) else {}
        name = device.get("name") or device.get("device_name") or device.get("device") or "this machine"
        self.session_label.setText(f"Engine: ready on {name}")
        self.unload_button.setEnabled(not self.session.is_busy())

    def _on_unload_clicked(self) -> None:
        if self.session.unload():
            self.status.show_message("Asked the engine to unload its models; the next answer loads again.")

    def _on_session_progress(self, request_id: str, message: dict) -> None:
        column, answer = self._requests.get(request_id, (None, None))
        if column is not None and not answer.tokens:
            stage = str(message.get("stage") or "loading")
            answer.status = str(message.get("message") or f"{stage[:1].upper()}{stage[1:]}…")
            self.status.show_message(answer.status)
            column.schedule_render()

    def _on_session_token(self, request_id: str, message: dict) -> None:
        column, answer = self._requests.get(request_id, (None, None))
        if column is not None:
            answer.add_token(message)
            column.schedule_render()

    def _on_session_result(self, request_id: str, data: dict) -> None:
        if self._on_models_listed(request_id, data) or self._on_batch_answer(request_id, data):
            return
        column, answer = self._requests.pop(request_id, (None, None))
        if column is None:
            return
        answer.request_id = request_id
        answer.finish(data)
        column.show_backend(answer.backend)
        column.render_now()
        self._update_rating_bars()
        if not self.session.is_busy():
            self.status.show_message(f"Column {column.letter}: {answer.stats_line()}" if len(self.columns) == 1
                                     else "Done: " + "; ".join(self._column_summaries()))

    def _on_session_request_error(self, request_id: str, message: str) -> None:
        if self._on_models_listed(request_id, None, message) or self._on_batch_answer(request_id, None, message):
            return
        column, answer = self._requests.pop(request_id, (None, None))
        if column is None:
            return
        answer.fail(message)
        column.render_now()
        self.status.show_message(f"Column {column.letter}: {message}", error=True)

    def _column_summaries(self) -> list[str]:
        out = []
        for column in self.columns:
            answer = column.conversation.last_answer()
            if answer is not None:
                out.append(f"{column.letter} {answer.tokens_per_s or 0:.1f} tok/s" if not answer.error
                           else f"{column.letter} failed")
        return out

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.mode_combo.setEnabled(not busy)
        self.clear_button.setEnabled(not busy)
        self.unload_button.setEnabled(not busy and self.session.is_running())
        for column in self.columns:
            column.set_busy(busy)
        self._update_column_controls()
        self._update_rating_bars()

    # -- ratings -------------------------------------------------------------------------------

    def _update_rating_bars(self) -> None:
        answered = [c for c in self.columns if (a := c.conversation.last_answer()) is not None and a.rateable]
        busy = self.session.is_busy()
        for column in self.columns:
            answer = column.conversation.last_answer()
            rateable = not busy and answer is not None and answer.rateable
            comparable = any(
                other is not column and other.conversation.last_question() == column.conversation.last_question()
                for other in answered
            )
            column.rating_bar.reset(rateable, comparable)

    def rate(self, column: PromptColumn, kind: str, value: int) -> None:
        """Stores a thumbs or 1–5 rating of the column's last answer."""
        answer = column.conversation.last_answer()
        if answer is None or not answer.rateable:
            return
        self._store(ratings.Rating(kind, answer.prompt, answer.text, value, answer.config, answer.mode,
                                   key=answer.key), f"Rated column {column.letter}'s answer.")

    def pick_better(self, column: PromptColumn) -> None:
        """A/B: the column's last answer beats each other column's answer to the same prompt."""
        chosen = column.conversation.last_answer()
        if chosen is None or not chosen.rateable:
            return
        others = [c for c in self.columns if c is not column and c.conversation.last_question()
                  == column.conversation.last_question() and (a := c.conversation.last_answer()) and a.rateable]
        for other in others:
            rejected = other.conversation.last_answer()
            self._store(ratings.Rating("ab", chosen.prompt, chosen.text, 0, chosen.config, chosen.mode,
                                       other_answer=rejected.text, other_config=rejected.config,
                                       key=f"{chosen.key}>{rejected.key}"),
                        f"Column {column.letter} preferred over {', '.join(c.letter for c in others)}.")

    def _store(self, rating: "ratings.Rating", done: str) -> None:
        try:
            ratings.record(rating)
        except (errors.EngineError, OSError) as exc:
            self.status.show_message(f"Could not save the rating: {getattr(exc, 'message', exc)}", error=True)
            return
        self.ratings_panel.refresh()
        self.status.show_message(done)

    # -- window --------------------------------------------------------------------------------

    def _serve_target(self) -> tuple[str, str, str]:
        column = self._selected or (self.columns[0] if self.columns else None)
        if column is None:
            return "A", "default", ""
        if column.config.base_url:  # the endpoint serves a local model; a server serves itself
            return column.letter, "default", ""
        return column.letter, column.config.model or "default", column.config.active_adapter

    def is_busy(self) -> bool:
        """An answer is being generated or the endpoint is serving (closing would stop it)."""
        return self.session.is_busy() or self.serve_panel.is_running() or self.batch_runner.is_running()

    def shutdown(self) -> None:
        self.session.shutdown()
        self.serve_panel.shutdown()
        self.batch_runner.shutdown()


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


def _button(text: str, tip: str, slot: Callable[[], object]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button
