"""The row above every loss plot: a TensorBoard-style smoothing slider and a log-scale toggle."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QWidget

DEFAULT_SMOOTHING = 0.6  # TensorBoard's default


class LossControls(QHBoxLayout):
    """Builds the widgets and lays them out; the owning plot connects ``slider.valueChanged``
    and ``log_check.toggled`` to its own redraws."""

    def __init__(self, smoothing_help: str, log_help: str, trailing: QWidget | None = None) -> None:
        super().__init__()
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=99,
                              value=int(DEFAULT_SMOOTHING * 100), maximumWidth=180, toolTip=smoothing_help)
        self.value_label = QLabel(f"{DEFAULT_SMOOTHING:.2f}")
        self.slider.valueChanged.connect(lambda value: self.value_label.setText(f"{value / 100:.2f}"))
        self.log_check = QCheckBox("Log scale", toolTip=log_help)
        self.setContentsMargins(4, 2, 4, 2)
        self.addWidget(QLabel("Smoothing"))
        self.addWidget(self.slider)
        self.addWidget(self.value_label)
        self.addSpacing(16)
        self.addWidget(self.log_check)
        if trailing is not None:
            self.addSpacing(16)
            self.addWidget(trailing, 1)
        else:
            self.addStretch(1)

    @property
    def smoothing(self) -> float:
        return self.slider.value() / 100
