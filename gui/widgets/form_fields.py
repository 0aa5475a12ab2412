"""Input widgets for config values that Qt's stock widgets show badly."""

from __future__ import annotations

import math
from typing import Sequence

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QDoubleSpinBox, QWidget

FLOAT_DECIMALS = 12  # enough for 1e-8 learning rates; display is formatted separately


class FloatSpinBox(QDoubleSpinBox):
    """A double spin box that shows 0.0002 as "0.0002" and accepts "2e-4", instead of padding
    every value to a fixed number of decimals ("0.00020000")."""

    def __init__(self, minimum: float, maximum: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(FLOAT_DECIMALS)
        self.setRange(minimum, maximum)
        # Steps by one unit of the second significant digit: 2e-4 -> 2.1e-4, 1.0 -> 1.1.
        self.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)

    def textFromValue(self, value: float) -> str:
        return format(value, ".6g")

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            partial = stripped in ("", "-", ".", "+") or stripped.lower().endswith(("e", "e-", "e+"))
            state = QValidator.State.Intermediate if partial else QValidator.State.Invalid
            return state, text, pos
        in_range = math.isfinite(value) and self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if in_range else QValidator.State.Intermediate), text, pos


class ValueCombo(QComboBox):
    """An editable combo whose items show friendly labels but stand for config values.

    Typing a value that is not in the list is allowed (a local folder, a .gguf file).
    """

    def __init__(self, items: Sequence[tuple[str, str]] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        # Long labels must not force the whole form wider; the popup still shows them in full.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(18)
        self.set_items(items)

    def set_items(self, items: Sequence[tuple[str, str]]) -> None:
        current = self.value() if self.count() else None
        self.clear()
        for label, value in items:
            self.addItem(label, value)
        if current is not None:
            self.set_value(current)

    def value(self) -> str:
        index = self.currentIndex()
        if index >= 0 and self.currentText() == self.itemText(index):
            return str(self.itemData(index))
        return self.currentText().strip()

    def set_value(self, value: str) -> None:
        index = self.findData(value)
        if index >= 0:
            self.setCurrentIndex(index)
        else:
            self.setEditText(value)
