"""The mapping editor: the row shape and, for each of its fields, the file column it is read
from. It produces the ``--shape`` and ``--map FIELD=COLUMN`` arguments of `data import`."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from gui.state.dataset_columns import SHAPE_FIELDS, SHAPE_LABELS

DETECT = ""
SAME = "(same name)"


class MappingEditor(QDialog):
    def __init__(self, path: str, columns: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import with a column mapping")
        self._columns = columns
        self.shape_combo = QComboBox()
        self.shape_combo.addItem("Detect from the first row", DETECT)
        for shape, label in SHAPE_LABELS.items():
            self.shape_combo.addItem(label, shape)
        self.shape_combo.currentIndexChanged.connect(self._rebuild_fields)
        self.fields = QFormLayout()
        self.field_combos: dict[str, QComboBox] = {}
        found = ", ".join(columns) if columns else "none found (Parquet or an unusual file: type the names)"
        hint = QLabel(f"{path}\nColumns: {found}", wordWrap=True, objectName="hint")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.fields.addRow("Shape", self.shape_combo)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(self.fields)
        layout.addWidget(buttons)
        self.resize(460, 0)

    def set_shape(self, shape: str) -> None:
        self.shape_combo.setCurrentIndex(max(0, self.shape_combo.findData(shape)))

    def _rebuild_fields(self) -> None:
        while self.fields.rowCount() > 1:  # row 0 is the shape
            self.fields.removeRow(1)
        self.field_combos = {}
        for name in SHAPE_FIELDS.get(self.shape(), ()):
            combo = QComboBox(editable=True)
            combo.addItem(SAME)
            combo.addItems(self._columns)
            combo.setToolTip(f"The file column that holds '{name}' ({SAME}: a column called {name})")
            self.field_combos[name] = combo
            self.fields.addRow(f"{name} ←", combo)

    def shape(self) -> str:
        return str(self.shape_combo.currentData() or "")

    def set_column(self, field_name: str, column: str) -> None:
        self.field_combos[field_name].setCurrentText(column)

    def mapping(self) -> dict[str, str]:
        chosen = {name: combo.currentText().strip() for name, combo in self.field_combos.items()}
        return {name: column for name, column in chosen.items() if column and column not in (SAME, name)}

    def import_arguments(self) -> list[str]:
        args = ["--shape", self.shape()] if self.shape() else []
        for name, column in self.mapping().items():
            args += ["--map", f"{name}={column}"]
        return args
