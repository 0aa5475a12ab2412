"""Split and clean controls; each builds the arguments of its engine command."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


class DatasetTools(QWidget):
    sig_split = Signal(list)
    sig_clean = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.val = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.9, singleStep=0.05, value=0.1)
        self.test = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.9, singleStep=0.05, value=0.0)
        self.split_seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=42)
        self.split_button = QPushButton("Split")
        self.split_button.setToolTip("A new version with train/validation(/test) splits; stratified by label "
                                     "for classification")
        self.split_button.clicked.connect(lambda: self.sig_split.emit(self.split_arguments()))
        split_form = QFormLayout()
        split_form.addRow("Validation fraction", self.val)
        split_form.addRow("Test fraction", self.test)
        split_form.addRow("Seed", self.split_seed)
        split_form.addRow("", self.split_button)
        split_box = QGroupBox("Split")
        split_box.setLayout(split_form)

        self.normalize = QCheckBox("Normalise text (Unicode NFC, spaces, line ends)")
        self.drop_empty = QCheckBox("Drop rows with an empty answer or turn")
        self.dedupe = QCheckBox("Drop exact duplicates (also test rows repeating train rows)")
        self.min_tokens = QSpinBox(minimum=0, maximum=1_000_000, specialValueText="off")
        self.max_tokens = QSpinBox(minimum=0, maximum=1_000_000, specialValueText="off")
        self.oversample = QCheckBox("Oversample minority labels (classification, train split)")
        self.augment = QComboBox()
        self.augment.addItem("No augmentation", "")
        self.augment.addItem("Random word deletion", "delete")
        self.augment.addItem("Random word swap", "swap")
        self.copies = QSpinBox(minimum=1, maximum=20, value=1)
        self.clean_seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=42)
        self.clean_button = QPushButton("Clean into a new version")
        self.clean_button.clicked.connect(lambda: self.sig_clean.emit(self.clean_arguments()))
        lengths = QHBoxLayout()
        lengths.addWidget(self.min_tokens)
        lengths.addWidget(self.max_tokens)
        clean_form = QFormLayout()
        for box in (self.normalize, self.drop_empty, self.dedupe, self.oversample):
            clean_form.addRow(box)
        clean_form.addRow("Tokens min / max", lengths)
        clean_form.addRow("Augment prompts", self.augment)
        clean_form.addRow("Copies per row", self.copies)
        clean_form.addRow("Seed", self.clean_seed)
        clean_form.addRow("", self.clean_button)
        clean_box = QGroupBox("Clean")
        clean_box.setLayout(clean_form)
        boxes = QHBoxLayout()
        boxes.addWidget(split_box, 1, Qt.AlignmentFlag.AlignTop)
        boxes.addWidget(clean_box, 2, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addLayout(boxes)
        layout.addStretch(1)

    def split_arguments(self) -> list[str]:
        return ["--val", f"{self.val.value():g}", "--test", f"{self.test.value():g}",
                "--seed", str(self.split_seed.value())]

    def clean_arguments(self) -> list[str]:
        args = [flag for flag, box in (("--normalize", self.normalize), ("--drop-empty", self.drop_empty),
                                       ("--dedupe", self.dedupe), ("--oversample", self.oversample)) if box.isChecked()]
        if self.min_tokens.value():
            args += ["--min-tokens", str(self.min_tokens.value())]
        if self.max_tokens.value():
            args += ["--max-tokens", str(self.max_tokens.value())]
        if self.augment.currentData():
            args += ["--augment", str(self.augment.currentData()), "--augment-copies", str(self.copies.value())]
        if self.oversample.isChecked() or self.augment.currentData():
            args += ["--seed", str(self.clean_seed.value())]
        return args

    def set_busy(self, busy: bool) -> None:
        self.split_button.setEnabled(not busy)
        self.clean_button.setEnabled(not busy)
