"""The sampling parameter form of the Prompt page: presets, every parameter with its tooltip."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.state.prompt_params import (
    CUSTOM,
    HELP,
    PRESETS,
    Params,
    apply_preset,
    format_stop,
    parse_stop,
    preset_of,
)
from gui.widgets.form_fields import FloatSpinBox


class ParamsPanel(QWidget):
    """Edits one Params value; ``sig_changed`` carries the new one after every edit."""

    sig_changed = Signal(object)  # Params

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loading = False
        self.title = QLabel("Parameters", objectName="section")
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([*PRESETS, CUSTOM])
        self.preset_combo.setToolTip("Precise: focused and near-repeatable. Balanced: the usual "
                                     "choice. Creative: varied wording. Greedy: always the most "
                                     "likely token.")
        self.temperature = _float(0.0, 2.0, 0.05)
        self.top_p = _float(0.0, 1.0, 0.05)
        self.top_k = QSpinBox(minimum=0, maximum=1000)
        self.min_p = _float(0.0, 1.0, 0.01)
        self.repetition_penalty = _float(0.5, 2.0, 0.05)
        self.max_new_tokens = QSpinBox(minimum=1, maximum=8192, singleStep=32)
        self.stop = QPlainTextEdit()
        self.stop.setFixedHeight(52)
        self.stop.setPlaceholderText("one per line, e.g. \\n\\n")
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.greedy = QCheckBox("Greedy")
        self._build()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)  # the form keeps its height at the top of a tall panel
        form.addRow(self.title)
        form.addRow("Preset", self.preset_combo)
        rows = (("Temperature", "temperature", self.temperature), ("Top-p", "top_p", self.top_p),
                ("Top-k", "top_k", self.top_k), ("Min-p", "min_p", self.min_p),
                ("Repetition penalty", "repetition_penalty", self.repetition_penalty),
                ("Max new tokens", "max_new_tokens", self.max_new_tokens),
                ("Stop strings", "stop", self.stop), ("Seed", "seed", self.seed))
        for label, key, widget in rows:
            widget.setMinimumWidth(64)  # spin boxes ask for room for 12 decimals otherwise
            widget.setToolTip(HELP[key])
            form.addRow(label, widget)
            form.labelForField(widget).setToolTip(HELP[key])
        self.greedy.setToolTip(HELP["greedy"])
        form.addRow("", self.greedy)
        self.preset_combo.currentTextChanged.connect(self._on_preset_changed)
        for spin in (self.temperature, self.top_p, self.min_p, self.repetition_penalty):
            spin.valueChanged.connect(self._on_edited)
        for spin in (self.top_k, self.max_new_tokens):
            spin.valueChanged.connect(self._on_edited)
        self.stop.textChanged.connect(self._on_edited)
        self.seed.textChanged.connect(self._on_edited)
        self.greedy.toggled.connect(self._on_edited)

    def set_params(self, params: Params, title: str = "Parameters") -> None:
        """Shows ``params`` without emitting sig_changed."""
        self._loading = True
        try:
            self.title.setText(title)
            self.temperature.setValue(params.temperature)
            self.top_p.setValue(params.top_p)
            self.top_k.setValue(params.top_k)
            self.min_p.setValue(params.min_p)
            self.repetition_penalty.setValue(params.repetition_penalty)
            self.max_new_tokens.setValue(params.max_new_tokens)
            if parse_stop(self.stop.toPlainText()) != params.stop:
                self.stop.setPlainText(format_stop(params.stop))
            self.seed.setText("" if params.seed is None else str(params.seed))
            self.greedy.setChecked(params.greedy)
            self.temperature.setEnabled(not params.greedy)
            self.preset_combo.setCurrentText(preset_of(params))
        finally:
            self._loading = False

    def params(self) -> Params:
        seed_text = self.seed.text().strip()
        return Params(temperature=self.temperature.value(), top_p=self.top_p.value(), top_k=self.top_k.value(),
                      min_p=self.min_p.value(), repetition_penalty=self.repetition_penalty.value(),
                      max_new_tokens=self.max_new_tokens.value(), stop=parse_stop(self.stop.toPlainText()),
                      seed=int(seed_text) if seed_text.lstrip("-").isdigit() else None,
                      greedy=self.greedy.isChecked())

    def seed_is_valid(self) -> bool:
        text = self.seed.text().strip()
        return not text or text.lstrip("-").isdigit()

    def _on_preset_changed(self, name: str) -> None:
        if self._loading or name not in PRESETS:
            return
        params = apply_preset(self.params(), name)
        self.set_params(params, self.title.text())
        self.sig_changed.emit(params)

    def _on_edited(self) -> None:
        if self._loading:
            return
        params = self.params()
        self._loading = True
        self.preset_combo.setCurrentText(preset_of(params))
        self.temperature.setEnabled(not params.greedy)
        self._loading = False
        self.sig_changed.emit(params)


def _float(minimum: float, maximum: float, step: float) -> FloatSpinBox:
    spin = FloatSpinBox(minimum, maximum)
    spin.setSingleStep(step)
    spin.setStepType(FloatSpinBox.StepType.DefaultStepType)
    return spin
