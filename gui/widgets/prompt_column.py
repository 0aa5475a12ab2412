"""One side-by-side column of the Prompt page: a configuration and the conversation it had."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QTimer, QUrl, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from engine.core import fit_estimate
from gui.state.prompt_conversation import TOKEN_LINK, Conversation, render_html, token_tooltip
from gui.state.prompt_params import ColumnConfig, Params
from gui.widgets.form_fields import ValueCombo
from gui.widgets.prompt_rating import RatingBar

MODEL_ITEMS = [("SmolLM2-135M-Instruct (default)", "default")]


def model_items() -> list[tuple[str, str]]:
    """The default and every model in the cache (converted or downloaded from the Hub)."""
    return [*MODEL_ITEMS, *((name, name) for name in fit_estimate.prepared_models())]

NO_ADAPTER = ("None (base model)", "")
RENDER_INTERVAL_MS = 40  # redraw at most ~25 times a second while tokens stream in


class PromptColumn(QFrame):
    """Header (model, adapter, adapter on/off), parameter summary, conversation view."""

    sig_selected = Signal(object)  # this column: its parameters go to the panel
    sig_remove_requested = Signal(object)
    sig_adapter_chosen = Signal(str)  # an adapter folder picked in this column
    sig_hub_requested = Signal(object)  # this column: open "Browse the Hub…" for its model

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
        self.model_combo.set_value(self.config.model)
        self.model_combo.lineEdit().setCursorPosition(0)  # show the start of a long name
        self.browse_button = QToolButton(text="…", toolTip="Use a local Hugging Face model folder or a .gguf file, "
                                         "or download one from the Hugging Face Hub")
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.browse_button)
        menu.addAction("Model folder…", self._on_browse_folder)
        menu.addAction("GGUF file…", self._on_browse_gguf)
        menu.addAction("Browse the Hub…", lambda: self.sig_hub_requested.emit(self))
        self.browse_button.setMenu(menu)
        self.adapter_combo = QComboBox()
        self.adapter_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.adapter_combo.setMinimumContentsLength(4)
        self.adapter_combo.setToolTip("A LoRA adapter from a finished run, applied on top of the model.")
        self.adapter_combo.addItem(*NO_ADAPTER)
        self.adapter_switch = QCheckBox("on", checked=self.config.adapter_on)
        self.adapter_switch.setToolTip("Turn the adapter off to compare with the base model on the same "
                                       "weights (no reload).")
        self.params_label = QLabel(objectName="hint")
        self.params_label.setWordWrap(True)
        self.view = QTextBrowser()
        self.view.setOpenLinks(False)
        self.view.setPlaceholderText("Answers stream in here.")
        self.view.highlighted.connect(self._on_view_highlighted)
        self.model_combo.currentTextChanged.connect(self._on_config_edited)
        self.adapter_combo.currentIndexChanged.connect(self._on_config_edited)
        self.adapter_switch.toggled.connect(self._on_config_edited)

        header = QHBoxLayout()
        header.addWidget(self.select_button)
        header.addStretch(1)
        header.addWidget(self.remove_button)
        pickers = QGridLayout()
        pickers.addWidget(QLabel("Model"), 0, 0)
        pickers.addWidget(self.model_combo, 0, 1)
        pickers.addWidget(self.browse_button, 0, 2)
        pickers.addWidget(QLabel("Adapter"), 1, 0)
        pickers.addWidget(self.adapter_combo, 1, 1)
        pickers.addWidget(self.adapter_switch, 1, 2)
        pickers.setColumnStretch(1, 1)
        self.rating_bar = RatingBar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addLayout(pickers)
        layout.addWidget(self.params_label)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.rating_bar)
        self.set_params(self.config.params)

    # -- configuration -----------------------------------------------------------------------

    def set_adapters(self, items: list[tuple[str, str]]) -> None:
        """Offers ``(label, adapter path)`` items; keeps the current choice when it is still there."""
        current = self.config.adapter
        self.adapter_combo.blockSignals(True)
        self.adapter_combo.clear()
        self.adapter_combo.addItem(*NO_ADAPTER)
        for label, value in items:
            self.adapter_combo.addItem(label, value)
        self.adapter_combo.setCurrentIndex(max(self.adapter_combo.findData(current), 0))
        self.adapter_combo.blockSignals(False)
        self._on_config_edited()

    def set_params(self, params: Params) -> None:
        self.config.params = params
        self.params_label.setText(params.summary())

    def set_selected(self, selected: bool) -> None:
        self.select_button.setChecked(selected)

    def set_busy(self, busy: bool) -> None:
        for widget in (self.model_combo, self.browse_button, self.adapter_combo, self.adapter_switch,
                       self.remove_button):
            widget.setEnabled(not busy)
        if not busy:
            self.adapter_switch.setEnabled(bool(self.config.adapter))

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

    def _on_config_edited(self) -> None:
        self.config.model = self.model_combo.value() or "default"
        adapter = str(self.adapter_combo.currentData() or "")
        chosen = adapter and adapter != self.config.adapter
        self.config.adapter = adapter
        self.config.adapter_on = self.adapter_switch.isChecked()
        self.adapter_switch.setEnabled(bool(self.config.adapter))
        if chosen:
            self.sig_adapter_chosen.emit(adapter)

    # -- conversation --------------------------------------------------------------------------

    def schedule_render(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

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
