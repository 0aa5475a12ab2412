"""One side-by-side column of the Prompt page: a configuration and the conversation it had."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QTimer, QUrl, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from engine.core import fit_estimate
from gui.state import remote_keys
from gui.state.prompt_conversation import TOKEN_LINK, Conversation, render_html, token_tooltip
from gui.state.prompt_params import BACKEND_ITEMS, ColumnConfig, Params
from gui.widgets.form_fields import ValueCombo
from gui.widgets.prompt_rating import RatingBar

MODEL_ITEMS = [("SmolLM2-135M-Instruct (default)", "default")]


def model_items() -> list[tuple[str, str]]:
    """The default and every model in the cache (converted or downloaded from the Hub)."""
    return [*MODEL_ITEMS, *((name, name) for name in fit_estimate.prepared_models())]

NO_ADAPTER = ("None (base model)", "")
LOCAL, SERVER = "local", "server"
SERVER_HELP = ("An OpenAI-compatible server that already serves a model: Ollama (http://127.0.0.1:11434/v1), "
               "LM Studio (http://127.0.0.1:1234/v1), llama-server, vLLM or Tunebench's own endpoint.")
BACKEND_HELP = ("What runs the model. Auto: llama.cpp for a .gguf file (quantised weights stay quantised: "
                "less memory, faster on a CPU), transformers otherwise and for the bundled default model "
                "(the arithmetic its adapters were trained with). The answer's line says which ran.")
RENDER_INTERVAL_MS = 40  # redraw at most ~25 times a second while tokens stream in


def file_label(path: str) -> str:
    """How the adapter list shows a GGUF LoRA file picked from disk."""
    return f"{Path(path).name} (file)"


class PromptColumn(QFrame):
    """Header (model, adapter, adapter on/off), parameter summary, conversation view."""

    sig_selected = Signal(object)  # this column: its parameters go to the panel
    sig_remove_requested = Signal(object)
    sig_adapter_chosen = Signal(str)  # an adapter folder picked in this column
    sig_hub_requested = Signal(object)  # this column: open "Browse the Hub…" for its model
    sig_models_requested = Signal(object)  # this column: list the models of its server

    def __init__(self, letter: str, config: ColumnConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.letter = letter
        self.config = config
        self.conversation = Conversation()
        self.token_view = False
        self.raw_mode = False
        self.setObjectName("promptColumn")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self.render_now)
        self._build()

    def _build(self) -> None:
        self.select_button = QPushButton(f"Column {self.letter}", checkable=True)
        self.select_button.setToolTip("Select this column: the parameter panel edits its settings.")
        self.select_button.clicked.connect(lambda: self.sig_selected.emit(self))
        self.remove_button = QToolButton(text="✕")
        self.remove_button.setToolTip("Remove this column")
        self.remove_button.clicked.connect(lambda: self.sig_remove_requested.emit(self))
        self.model_combo = ValueCombo(model_items())
        self.model_combo.setToolTip("'default' is the bundled SmolLM2-135M-Instruct; type a local "
                                    "Hugging Face folder or a .gguf file to use another model.")
        self.model_combo.setMinimumContentsLength(4)  # four columns must fit beside the side panel
        self.model_combo.set_value("default" if self.config.base_url else self.config.model)
        self.model_combo.lineEdit().setCursorPosition(0)  # show the start of a long name
        self.browse_button = QToolButton(text="…", toolTip="Use a local Hugging Face model folder or a .gguf file, "
                                         "or download one from the Hugging Face Hub")
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.browse_button)
        menu.addAction("Model folder…", self._on_browse_folder)
        menu.addAction("GGUF file…", self._on_browse_gguf)
        menu.addAction("GGUF LoRA adapter file…", self._on_browse_lora)
        menu.addAction("Browse the Hub…", lambda: self.sig_hub_requested.emit(self))
        self.browse_button.setMenu(menu)
        self.adapter_combo = QComboBox()
        self.adapter_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.adapter_combo.setMinimumContentsLength(4)
        self.adapter_combo.setToolTip("A LoRA adapter from a finished run, or a GGUF LoRA file (the … menu; "
                                      "llama.cpp runs it), applied on top of the model.")
        self._adapter_files: list[str] = []  # GGUF LoRA files picked here, offered after the runs
        self.adapter_combo.addItem(*NO_ADAPTER)
        self.adapter_switch = QCheckBox("on", checked=self.config.adapter_on)
        self.adapter_switch.setToolTip("Turn the adapter off to compare with the base model on the same "
                                       "weights (no reload).")
        self.backend_combo = QComboBox()
        for label, value in BACKEND_ITEMS:
            self.backend_combo.addItem(label, value)
        self.backend_combo.setToolTip(BACKEND_HELP)
        # Four columns must still fit beside the side panel: the combo may shrink below its longest item.
        self.backend_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.backend_combo.setMinimumContentsLength(1)
        self.backend_combo.setCurrentIndex(max(self.backend_combo.findData(self.config.backend), 0))
        self.scale_spin = QDoubleSpinBox(minimum=0.0, maximum=2.0, singleStep=0.1, decimals=2,
                                         value=self.config.adapter_scale, prefix="×")
        self.scale_spin.setToolTip("The adapter's weight: 1 as trained, 0 the base model, between the two a blend "
                                   "(no reload). Type it, or scroll over it.")
        self.scale_spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)  # narrow: four columns fit
        self.ran_label = QLabel(objectName="hint")
        self.ran_label.setToolTip("What ran the last answer in this column, and how its weights are held.")
        self.params_label = QLabel(objectName="hint")
        self.params_label.setWordWrap(True)
        self.view = QTextBrowser()
        self.view.setOpenLinks(False)
        self.view.setPlaceholderText("Answers stream in here.")
        self.view.highlighted.connect(self._on_view_highlighted)
        self._build_server_widgets()
        self.model_combo.currentTextChanged.connect(self._on_config_edited)
        self.adapter_combo.currentIndexChanged.connect(self._on_config_edited)
        self.adapter_switch.toggled.connect(self._on_config_edited)
        self.backend_combo.currentIndexChanged.connect(self._on_config_edited)
        self.scale_spin.valueChanged.connect(self._on_config_edited)

        header = QHBoxLayout()
        header.addWidget(self.select_button)
        header.addWidget(self.source_combo, 1)
        header.addWidget(self.ran_label)
        header.addWidget(self.remove_button)
        self.rating_bar = RatingBar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addWidget(self._local_pickers())
        layout.addWidget(self._server_pickers())
        layout.addWidget(self.params_label)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.rating_bar)
        self.set_params(self.config.params)
        self._show_source()

    def _build_server_widgets(self) -> None:
        self.source_combo = QComboBox()
        self.source_combo.addItem("Local model", LOCAL)
        self.source_combo.addItem("OpenAI-compatible server", SERVER)
        self.source_combo.setToolTip("What answers in this column: a model on this computer, or " + SERVER_HELP)
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_combo.setMinimumContentsLength(0)  # four columns must still fit beside the side panel
        self.source_combo.setCurrentIndex(1 if self.config.base_url else 0)
        self.url_edit = QLineEdit(self.config.base_url, placeholderText="http://127.0.0.1:11434/v1")
        self.url_edit.setToolTip(SERVER_HELP)
        self.key_edit = QLineEdit(remote_keys.get(self.config.base_url) if self.config.base_url else "",
                                  placeholderText="API key (optional)", echoMode=QLineEdit.EchoMode.Password)
        self.key_edit.setToolTip("Kept in the system keyring when there is one, never in Tunebench's settings.")
        self.list_button = QToolButton(text="↻", toolTip="List the models this server serves (/v1/models)")
        self.server_model_combo = QComboBox(editable=True)
        self.server_model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.server_model_combo.setMinimumContentsLength(4)
        self.server_model_combo.lineEdit().setPlaceholderText("press ↻ to list")
        if self.config.base_url and self.config.model:
            self.server_model_combo.addItem(self.config.model)
        self.key_note = QLabel(remote_keys.SESSION_ONLY_NOTE, objectName="hint", wordWrap=True)
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        self.url_edit.editingFinished.connect(self._on_url_edited)
        self.key_edit.editingFinished.connect(self._on_key_edited)
        self.list_button.clicked.connect(self._on_list_clicked)
        self.server_model_combo.currentTextChanged.connect(self._on_config_edited)

    def _local_pickers(self) -> QWidget:
        self.local_box = QWidget()
        pickers = QGridLayout(self.local_box)
        pickers.setContentsMargins(0, 0, 0, 0)
        pickers.addWidget(QLabel("Model"), 0, 0)
        pickers.addWidget(self.model_combo, 0, 1)
        pickers.addWidget(self.browse_button, 0, 2)
        pickers.addWidget(QLabel("Adapter"), 1, 0)
        pickers.addWidget(self.adapter_combo, 1, 1)
        pickers.addWidget(self.adapter_switch, 1, 2)
        pickers.addWidget(QLabel("Backend"), 2, 0)
        row = QHBoxLayout()
        row.addWidget(self.backend_combo, 1)
        row.addWidget(self.scale_spin)
        pickers.addLayout(row, 2, 1, 1, 2)
        pickers.setColumnStretch(1, 1)
        return self.local_box

    def _server_pickers(self) -> QWidget:
        self.server_box = QWidget()
        pickers = QGridLayout(self.server_box)
        pickers.setContentsMargins(0, 0, 0, 0)
        pickers.addWidget(QLabel("URL"), 0, 0)
        pickers.addWidget(self.url_edit, 0, 1, 1, 2)
        pickers.addWidget(QLabel("Key"), 1, 0)
        pickers.addWidget(self.key_edit, 1, 1, 1, 2)
        pickers.addWidget(QLabel("Model"), 2, 0)
        pickers.addWidget(self.server_model_combo, 2, 1)
        pickers.addWidget(self.list_button, 2, 2)
        pickers.addWidget(self.key_note, 3, 0, 1, 3)
        pickers.setColumnStretch(1, 1)
        return self.server_box

    # -- configuration -----------------------------------------------------------------------

    def set_adapters(self, items: list[tuple[str, str]]) -> None:
        """Offers ``(label, adapter path)`` items; keeps the current choice when it is still there."""
        current = self.config.adapter
        self.adapter_combo.blockSignals(True)
        self.adapter_combo.clear()
        self.adapter_combo.addItem(*NO_ADAPTER)
        for label, value in items:
            self.adapter_combo.addItem(label, value)
        for path in self._adapter_files:
            self.adapter_combo.addItem(file_label(path), path)
        self.adapter_combo.setCurrentIndex(max(self.adapter_combo.findData(current), 0))
        self.adapter_combo.blockSignals(False)
        self._on_config_edited()

    def set_params(self, params: Params) -> None:
        self.config.params = params
        self._show_params()

    def _show_params(self) -> None:
        # A server takes OpenAI's parameters only; the line says so instead of hiding the others.
        local_only = " (top-k, min-p, repetition penalty: local only)" if self.is_remote else ""
        self.params_label.setText(self.config.params.summary() + local_only)

    def set_selected(self, selected: bool) -> None:
        self.select_button.setChecked(selected)

    @property
    def is_remote(self) -> bool:
        return self.source_combo.currentData() == SERVER

    def set_server(self, base_url: str, model: str = "") -> None:
        """Makes this a remote column on ``base_url`` (its key comes from the key store)."""
        self.source_combo.setCurrentIndex(1)
        self.url_edit.setText(base_url)
        self._on_url_edited()
        if model:
            self.set_server_models([model], model)

    def set_server_models(self, models: list[str], current: str = "") -> None:
        """Offers the server's models; keeps the current choice when it is still listed."""
        keep = current or self.server_model_combo.currentText()
        self.server_model_combo.blockSignals(True)
        self.server_model_combo.clear()
        self.server_model_combo.addItems(models)
        self.server_model_combo.setCurrentIndex(models.index(keep) if keep in models else 0 if models else -1)
        self.server_model_combo.blockSignals(False)
        self._on_config_edited()

    def set_busy(self, busy: bool) -> None:
        for widget in (self.model_combo, self.browse_button, self.adapter_combo, self.adapter_switch,
                       self.backend_combo, self.scale_spin, self.remove_button, self.source_combo, self.url_edit,
                       self.key_edit, self.list_button, self.server_model_combo):
            widget.setEnabled(not busy)
        if not busy:
            self.adapter_switch.setEnabled(bool(self.config.adapter))
            self.scale_spin.setEnabled(bool(self.config.active_adapter))

    def use_model(self, name: str) -> None:
        """Picks ``name`` (a model just downloaded into the cache), refreshing the list first."""
        self.model_combo.set_items(model_items())
        self.model_combo.set_value(name)

    def _on_browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (Hugging Face format)")
        if folder:
            self.model_combo.set_value(folder)

    def _on_browse_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "GGUF model file", "", "GGUF (*.gguf)")
        if path:
            self.model_combo.set_value(path)

    def _on_browse_lora(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "GGUF LoRA adapter file", "", "GGUF (*.gguf)")
        if path:
            self.use_adapter_file(path)

    def use_adapter_file(self, path: str) -> None:
        """Offers a GGUF LoRA file as this column's adapter (kept when the runs' list refreshes)."""
        if path not in self._adapter_files:
            self._adapter_files.append(path)
            self.adapter_combo.addItem(file_label(path), path)
        self.adapter_combo.setCurrentIndex(self.adapter_combo.findData(path))

    def _show_source(self) -> None:
        remote = self.is_remote
        self.local_box.setVisible(not remote)
        self.server_box.setVisible(remote)
        self.key_note.setVisible(remote and not remote_keys.persistent())
        self._show_params()

    def _on_source_changed(self) -> None:
        self._show_source()
        self._on_config_edited()

    def _typed_url(self) -> str:
        return self.url_edit.text().strip().rstrip("/")

    def _on_url_edited(self) -> None:
        """Another server: its key (if one is kept) replaces the one shown."""
        url = self._typed_url()
        if url != self.url_edit.text():
            self.url_edit.setText(url)
        if url != self.config.base_url:
            self.key_edit.setText(remote_keys.get(url) if url else "")
        self._on_config_edited()

    def _on_key_edited(self) -> None:
        url = self._typed_url()
        if url and self.key_edit.text() != remote_keys.get(url):
            remote_keys.store(url, self.key_edit.text())

    def _on_list_clicked(self) -> None:
        self._on_key_edited()  # first: the key typed belongs to the URL typed
        self._on_url_edited()
        if self.config.base_url:
            self.sig_models_requested.emit(self)

    def _on_config_edited(self) -> None:
        if self.is_remote:
            self.config.base_url = self._typed_url()
            self.config.model = self.server_model_combo.currentText().strip()
            return
        self.config.base_url = ""
        self.config.model = self.model_combo.value() or "default"
        adapter = str(self.adapter_combo.currentData() or "")
        chosen = adapter and adapter != self.config.adapter
        self.config.adapter = adapter
        self.config.adapter_on = self.adapter_switch.isChecked()
        self.config.backend = str(self.backend_combo.currentData() or "auto")
        self.config.adapter_scale = round(self.scale_spin.value(), 2)
        self.adapter_switch.setEnabled(bool(self.config.adapter))
        self.scale_spin.setEnabled(bool(self.config.active_adapter))
        if chosen:
            self.sig_adapter_chosen.emit(adapter)

    # -- conversation --------------------------------------------------------------------------

    def schedule_render(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

    def show_backend(self, text: str) -> None:
        """What ran the last answer ("llama.cpp · Q4_1"), shown in the header."""
        self.ran_label.setText(text)

    def render_now(self) -> None:
        self._render_timer.stop()
        bar = self.view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.view.setHtml(render_html(self.conversation, self.token_view, self.raw_mode))
        if at_end:  # follow the stream unless the user scrolled up to read
            bar.setValue(bar.maximum())

    def _on_view_highlighted(self, url: QUrl) -> None:
        token = self._token_at(url.toString())
        if token is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos() + QPoint(12, 12), token_tooltip(token), self.view)

    def _token_at(self, link: str):  # -> Token | None
        scheme, _, rest = link.partition(":")
        turn, _, position = rest.partition("/")
        if scheme != TOKEN_LINK or not turn.isdigit() or not position.isdigit():
            return None
        turns = self.conversation.turns
        if int(turn) >= len(turns) or turns[int(turn)][0] != "assistant":
            return None
        tokens = turns[int(turn)][1].tokens
        return tokens[int(position)] if int(position) < len(tokens) else None


def letter_for(index: int) -> str:
    return "ABCD"[index] if index < 4 else str(index + 1)
