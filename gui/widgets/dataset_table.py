"""A virtual table model over a dataset's exported JSONL: Qt asks for the cells on screen and
only those rows are parsed (see gui.state.dataset_rows), so a million rows scroll freely."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from gui.state.dataset_rows import JsonlRows, cell_text, columns_for, row_as_text

Index = QModelIndex | QPersistentModelIndex


class DatasetRowsModel(QAbstractTableModel):
    """Row number plus the shape's columns (System/User/Answer/Turns for chats, ...)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: JsonlRows | None = None
        self._columns = columns_for("")

    def set_source(self, rows: JsonlRows | None, shape: str) -> None:
        self.beginResetModel()
        if self._rows is not None:
            self._rows.close()
        self._rows, self._columns = rows, columns_for(shape)
        self.endResetModel()

    def row_data(self, row: int) -> dict:
        return self._rows.row(row) if self._rows is not None else {}

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() or self._rows is None else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._columns) + 1

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 (Qt API)
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Vertical:
            return str(section + 1)
        return "#" if section == 0 else self._columns[section - 1][0]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self._rows is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 0:
                return f"{index.row() + 1:,}"
            return cell_text(self._columns[index.column() - 1][1](self._rows.row(index.row())))
        if role == Qt.ItemDataRole.ToolTipRole and index.column() > 0:
            text = row_as_text(self._rows.row(index.row()))
            return text if len(text) < 4000 else text[:4000] + "…"
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() == 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
