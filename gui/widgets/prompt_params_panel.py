"""The sampling parameter form of the Prompt page: presets, and one field per sampling knob.

The fields, their order, labels, tooltips, ranges and steps come from the sampling schema
(``gui.state.prompt_params.Params``, built from ``engine.infer.params.SamplingParams``), so the
form cannot drift from what the engine accepts.
"""

from __future__ import annotations

from typing import Any, Callable

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

from engine.core.schema import Knob, knobs
from engine.infer.params import ANY_JSON, schema_problem
from gui.state.prompt_params import (
    CUSTOM,
    PRESETS,
    Params,
    apply_preset,
    format_stop,
    parse_stop,
    preset_of,
)
from gui.widgets.form_fields import FloatSpinBox
from gui.widgets.status_line import StatusLine


class ParamsPanel(QWidget):
    """Edits one Params value; ``sig_changed`` carries the new one after every edit.

    Each knob's widget is also an attribute of the same name (``panel.temperature``).
    """

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
        self.fields: dict[str, QWidget] = {}
        self._getters: dict[str, Callable[[], Any]] = {}
        self._setters: dict[str, Callable[[Any], None]] = {}
        for k in knobs(Params):
            widget, getter, setter = _field(k)
            widget.setToolTip(k.help)
            self.fields[k.name], self._getters[k.name], self._setters[k.name] = widget, getter, setter
            setattr(self, k.name, widget)
        self._build()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)  # the form keeps its height at the top of a tall panel
        form.addRow(self.title)
        form.addRow("Preset", self.preset_combo)
        for k in knobs(Params):
            widget = self.fields[k.name]
            if isinstance(widget, QCheckBox):
                form.addRow("", widget)  # a check box carries its own label
                continue
            widget.setMinimumWidth(64)  # spin boxes ask for room for 12 decimals otherwise
            form.addRow(k.label, widget)
            form.labelForField(widget).setToolTip(k.help)
        self.preset_combo.currentTextChanged.connect(self._on_preset_changed)
        for widget in self.fields.values():
            _changed_signal(widget).connect(self._on_edited)

    def set_params(self, params: Params, title: str = "Parameters") -> None:
        """Shows ``params`` without emitting sig_changed."""
        self._loading = True
        try:
            self.title.setText(title)
            for name, setter in self._setters.items():
                setter(getattr(params, name))
            self.fields["temperature"].setEnabled(not params.greedy)
            self.preset_combo.setCurrentText(preset_of(params))
        finally:
            self._loading = False

    def params(self) -> Params:
        return Params(**{name: getter() for name, getter in self._getters.items()})

    def seed_is_valid(self) -> bool:
        return _whole_number_or_empty(self.fields["seed"].text())

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
        self.fields["temperature"].setEnabled(not params.greedy)
        self._loading = False
        self.sig_changed.emit(params)


def _field(k: Knob) -> tuple[QWidget, Callable[[], Any], Callable[[Any], None]]:
    """(widget, getter, setter) for one knob, chosen by its kind."""
    low, high = k.ui_range
    if k.kind is bool:
        box = QCheckBox(k.label)
        return box, box.isChecked, lambda value: box.setChecked(bool(value))
    if k.kind is tuple:
        return _stop_strings()
    if k.kind is str:
        schema = JsonSchemaField()
        return schema, schema.value, schema.set_value
    if k.kind is int and k.optional:
        return _optional_int()
    if k.kind is int:
        spin = QSpinBox(minimum=int(low), maximum=int(high), singleStep=int(k.step or 1))
        return spin, spin.value, lambda value: spin.setValue(int(value))
    double = FloatSpinBox(float(low), float(high))
    double.setSingleStep(k.step or 0.1)
    double.setStepType(FloatSpinBox.StepType.DefaultStepType)
    return double, double.value, lambda value: double.setValue(float(value))


class JsonSchemaField(QWidget):
    """Structured output: none, any JSON object, or a JSON Schema typed in, with its error in one line."""

    textChanged = Signal()
    CHOICES = (("None", ""), ("Any JSON", ANY_JSON), ("JSON Schema", "schema"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = QComboBox()
        for label, data in self.CHOICES:
            self.mode.addItem(label, data)
        self.edit = QPlainTextEdit()
        self.edit.setFixedHeight(80)
        self.edit.setPlaceholderText('{"type": "object", "properties": {"age": {"type": "integer"}}, '
                                     '"required": ["age"]}')
        self.error = StatusLine()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.mode, self.edit, self.error):
            layout.addWidget(widget)
        self.mode.currentIndexChanged.connect(self._changed)
        self.edit.textChanged.connect(self._changed)
        self._show()

    def value(self) -> str:
        data = self.mode.currentData()
        return self.edit.toPlainText().strip() if data == "schema" else data

    def set_value(self, value: str) -> None:
        if value == self.value():
            return  # keeps the cursor while the user types
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(0 if not value else 1 if value == ANY_JSON else 2)
        self.mode.blockSignals(False)
        if value not in ("", ANY_JSON):
            self.edit.setPlainText(value)
        self._show()

    def problem(self) -> str | None:
        """Why the typed schema is not one (one line), or None; an empty one means None."""
        return schema_problem(self.value())

    def _changed(self) -> None:
        self._show()
        self.textChanged.emit()

    def _show(self) -> None:
        self.edit.setVisible(self.mode.currentData() == "schema")
        problem = self.problem()
        self.error.show_message(problem or "", error=True)
        self.error.setVisible(bool(problem))


def _stop_strings() -> tuple[QWidget, Callable[[], Any], Callable[[Any], None]]:
    edit = QPlainTextEdit()
    edit.setFixedHeight(52)
    edit.setPlaceholderText("one per line, e.g. \\n\\n")

    def show(stop: tuple[str, ...]) -> None:
        if parse_stop(edit.toPlainText()) != stop:  # keeps the cursor while the user types
            edit.setPlainText(format_stop(stop))

    return edit, lambda: parse_stop(edit.toPlainText()), show


def _optional_int() -> tuple[QWidget, Callable[[], Any], Callable[[Any], None]]:
    """A line edit: empty means None (a seed left random)."""
    edit = QLineEdit()
    edit.setPlaceholderText("random")

    def value() -> int | None:
        text = edit.text().strip()
        return int(text) if text and _whole_number_or_empty(text) else None

    return edit, value, lambda number: edit.setText("" if number is None else str(number))


def _whole_number_or_empty(text: str) -> bool:
    text = text.strip()
    return not text or text.lstrip("-").isdigit()


def _changed_signal(widget: QWidget) -> Any:
    for name in ("valueChanged", "toggled", "textChanged"):
        if hasattr(widget, name):
            return getattr(widget, name)
    raise TypeError(f"no change signal on {type(widget).__name__}")
