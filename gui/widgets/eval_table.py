"""The per-example table of an evaluation: input, reference, each model's output side by side,
one metric per model, and the change between the base and a tuned model.

Sorting uses SORT_ROLE: numbers sort as numbers, and the change column sorts by its size
(|tuned - base|), so a descending sort puts the examples that moved most on top, whichever way.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from gui.state.eval_view import Evaluation, row_change, verdict_text

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
BETTER, WORSE = QColor("#dcfce7"), QColor("#fee2e2")
Index = QModelIndex | QPersistentModelIndex


class ExamplesModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.evaluation = Evaluation()
        self.metric = ""
        self.tuned = ""  # the model compared with the base in the change column
        self._columns: list[tuple[str, str, str]] = []  # (kind, model label, header)

    def set_evaluation(self, evaluation: Evaluation, metric: str = "", tuned: str = "") -> None:
        self.beginResetModel()
        self.evaluation = evaluation
        labels = evaluation.labels
        self.metric = metric or next((n for n in evaluation.metric_names if n != "perplexity"),
                                     (evaluation.metric_names or [""])[0])
        self.tuned = tuned or (labels[1] if len(labels) > 1 else "")
        self._rebuild_columns()
        self.endResetModel()

    def set_metric(self, metric: str) -> None:
        self.set_evaluation(self.evaluation, metric, self.tuned)

    def set_tuned(self, label: str) -> None:
        self.set_evaluation(self.evaluation, self.metric, label)

    def _rebuild_columns(self) -> None:
        labels = self.evaluation.labels
        self._columns = [("index", "", "#"), ("input", "", "Input"), ("reference", "", "Reference")]
        self._columns += [("output", label, f"Output: {label}") for label in labels]
        if self.metric:
            self._columns += [("score", label, f"{self.metric}: {label}") for label in labels]
        if self.tuned and labels and self.metric:
            self._columns.append(("change", self.tuned, f"Change ({self.tuned} − {labels[0]})"))
        if self.evaluation.verdicts:
            self._columns.append(("judge", "", "Judge"))

    def column_kind(self, column: int) -> str:
        return self._columns[column][0]

    def change_column(self) -> int:
        return next((i for i, c in enumerate(self._columns) if c[0] == "change"), -1)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.evaluation.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._columns[section][2]
        return None

    def value(self, row: int, column: int) -> Any:
        """The raw value of a cell (text, number or None)."""
        kind, label, _ = self._columns[column]
        data = self.evaluation.rows[row]
        if kind == "index":
            return data.get("index")
        if kind in ("input", "reference"):
            return data.get(kind, "")
        if kind == "output":
            return data.get("outputs", {}).get(label, "")
        if kind == "score":
            return data.get("metrics", {}).get(label, {}).get(self.metric)
        if kind == "judge":
            return verdict_text(self.evaluation.judge_report, self.evaluation.verdicts.get(data.get("index")))[0]
        labels = self.evaluation.labels
        return row_change(data, self.metric, labels[0], label)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        value = self.value(index.row(), index.column())
        kind = self._columns[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(value, kind)
        if role == Qt.ItemDataRole.ToolTipRole and kind == "judge":  # the judge's reasons
            row = self.evaluation.rows[index.row()]
            return verdict_text(self.evaluation.judge_report, self.evaluation.verdicts.get(row.get("index")))[1][:2000]
        if role == Qt.ItemDataRole.ToolTipRole and isinstance(value, str):
            return value[:2000]
        if role == SORT_ROLE:
            if kind == "change":
                return abs(value) if isinstance(value, (int, float)) else -1.0
            return value if isinstance(value, (int, float)) else (str(value) if value is not None else "")
        if role == Qt.ItemDataRole.BackgroundRole and kind == "change" and isinstance(value, (int, float)) and value:
            better = self.evaluation.metric(self.metric).get("better", "higher")
            return BETTER if (value > 0) == (better == "higher") else WORSE
        if role == Qt.ItemDataRole.TextAlignmentRole and kind in ("index", "score", "change"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _display(value: Any, kind: str) -> str:
    if value is None:
        return "" if kind not in ("score", "change") else "–"
    if isinstance(value, float):
        return f"{value:+.4g}" if kind == "change" else f"{value:.4g}"
    text = " ⏎ ".join(str(value).splitlines())  # one line per row; the tooltip has the full text
    return text if len(text) <= 160 else text[:157] + "…"


def sorted_proxy(model: ExamplesModel) -> QSortFilterProxyModel:
    proxy = QSortFilterProxyModel(model)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    return proxy
