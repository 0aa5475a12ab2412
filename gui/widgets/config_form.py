"""A form generated from the engine's train config schema (engine/core/config.py, built with
engine/core/schema.py), one widget per field.

Labels, tooltips, limits, choices and groups all come from the field metadata, so the form
cannot drift from the CLI flags and TOML files built from the same schema.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.core import config
from engine.core.schema import Knob, knobs
from gui.widgets.form_fields import FloatSpinBox, ValueCombo

INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int


class ConfigForm(QWidget):
    """Widgets for every TrainConfig field, grouped in boxes by the field's "group"."""

    def __init__(self, suggestions: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._suggestions = dict(suggestions or {})
        self._fields = {k.name: k for k in knobs(config.TrainConfig) if k.gui}
        self._widgets: dict[str, QWidget] = {}
        self._getters: dict[str, Callable[[], Any]] = {}
        self._setters: dict[str, Callable[[Any], None]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._labels: list[QLabel] = []
        for group, fields in _grouped(self._fields.values()).items():
            layout.addWidget(self._build_group(group, fields))
        layout.addStretch(1)
        self._align_label_columns()
        self._grey_out_unused_fields()
        self.set_values({})

    # -- values ----------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        return {name: getter() for name, getter in self._getters.items()}

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Shows the defaults overlaid with ``values`` (fields a preset leaves out reset)."""
        merged = {**dataclasses.asdict(config.TrainConfig()), **values}
        for name, value in merged.items():
            if name in self._setters:
                self._setters[name](value)
        self.update_unused()

    def has_field(self, name: str) -> bool:
        return name in self._widgets

    def widget(self, name: str) -> QWidget:
        return self._widgets[name]

    def label(self, name: str) -> str:
        return self._fields[name].label

    def set_suggestions(self, name: str, items: Sequence[tuple[str, str]]) -> None:
        combo = self._widgets[name]
        if isinstance(combo, ValueCombo):
            combo.set_items(items)

    # -- building ------------------------------------------------------------------------------

    def _build_group(self, title: str, fields: list[Knob]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        for f in fields:
            widget = self._build_widget(f)
            widget.setToolTip(f.help)
            widget.setObjectName(f"field_{f.name}")
            self._widgets[f.name] = widget
            label = QLabel(f.label, toolTip=f.help)
            label.setBuddy(widget)
            self._labels.append(label)
            form.addRow(label, widget)
        return box

    def _align_label_columns(self) -> None:
        """Each group box has its own form layout; one label width lines the fields up."""
        width = max(label.sizeHint().width() for label in self._labels)
        for label in self._labels:
            label.setMinimumWidth(width)

    def _build_widget(self, f: Knob) -> QWidget:
        if f.name in self._suggestions:
            return self._combo(f.name, ValueCombo(self._suggestions[f.name]))
        if f.choices:
            return self._choice(f.name, f.choices)
        if f.kind is bool:
            return self._check(f.name)
        if f.kind is int:
            return self._int(f.name, f)
        if f.kind is float:
            return self._float(f.name, f)
        return self._text(f.name)

    def _combo(self, name: str, combo: ValueCombo) -> ValueCombo:
        self._getters[name] = combo.value
        self._setters[name] = lambda value: combo.set_value(str(value))
        return combo

    def _choice(self, name: str, choices: Sequence[str]) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(choices))
        self._getters[name] = combo.currentText
        self._setters[name] = lambda value: combo.setCurrentText(str(value))
        return combo

    def _check(self, name: str) -> QCheckBox:
        box = QCheckBox()
        self._getters[name] = box.isChecked
        self._setters[name] = lambda value: box.setChecked(bool(value))
        return box

    def _int(self, name: str, f: Knob) -> QSpinBox:
        low, high = f.ui_range
        spin = QSpinBox()
        spin.setRange(int(-INT_LIMIT if low is None else low), int(INT_LIMIT if high is None else min(high, INT_LIMIT)))
        spin.setGroupSeparatorShown(True)
        self._getters[name] = spin.value
        self._setters[name] = lambda value: spin.setValue(int(value))
        return spin

    def _float(self, name: str, f: Knob) -> FloatSpinBox:
        low, high = f.ui_range
        spin = FloatSpinBox(float(-1e12 if low is None else low), float(1e12 if high is None else high))
        self._getters[name] = spin.value
        self._setters[name] = lambda value: spin.setValue(float(value))
        return spin

    def _text(self, name: str) -> QLineEdit:
        edit = QLineEdit()
        self._getters[name] = edit.text
        self._setters[name] = lambda value: edit.setText(str(value))
        return edit

    def _grey_out_unused_fields(self) -> None:
        """Knobs the chosen method, objective or validation settings ignore are greyed out, with
        the reason in their tooltip (the schema's config.unused_fields decides, not the form)."""
        for name in ("method", "objective", "max_steps", "val_fraction", "precision"):
            widget = self._widgets.get(name)
            for signal in ("currentIndexChanged", "valueChanged"):
                if hasattr(widget, signal):
                    getattr(widget, signal).connect(lambda *_: self.update_unused())

    def update_unused(self) -> None:
        unused = config.unused_fields(self.values())
        for name, widget in self._widgets.items():
            help_text = self._fields[name].help
            widget.setEnabled(name not in unused)
            widget.setToolTip(help_text if name not in unused else f"Not used now: {unused[name]}.\n\n{help_text}")


def _grouped(fields: Iterable[Knob]) -> dict[str, list[Knob]]:
    """Fields by group, groups in the order they first appear in the schema."""
    groups: dict[str, list[Knob]] = {}
    for f in fields:
        groups.setdefault(f.group, []).append(f)
    return groups
