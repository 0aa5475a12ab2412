"""`data stats` shown: the token histogram with its cutoff line, and the row checks
(duplicates, empty answers, role counts, turns, label balance) as short tables."""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from gui.widgets.dataset_histogram import TokenHistogram


def counts_text(counts: dict[str, int], total: int = 0) -> str:
    if not counts:
        return "—"
    share = (lambda n: f" ({100 * n / total:.0f}%)") if total else (lambda n: "")
    return ", ".join(f"{name}: {count:,}{share(count)}" for name, count in
                     sorted(counts.items(), key=lambda item: -item[1]))


def facts(stats: dict) -> list[tuple[str, str]]:
    tokens = stats.get("tokens") or {}
    rows = [("Rows", f"{stats.get('rows', 0):,}"),
            ("Tokens per row", f"min {tokens.get('min', 0):,} · median {tokens.get('median', 0):g} · "
                               f"95th percentile {tokens.get('p95', 0):g} · max {tokens.get('max', 0):,}"),
            ("Exact duplicates", f"{stats.get('duplicates', 0):,}"),
            ("Empty answers", f"{stats.get('empty_answers', 0):,}")]
    if stats.get("roles"):
        order = ("system", "user", "assistant")  # conversation order reads better than counts
        roles = dict(sorted(stats["roles"].items(), key=lambda item: order.index(item[0]) if item[0] in order else 9))
        rows.append(("Messages by role", ", ".join(f"{name}: {count:,}" for name, count in roles.items())))
        rows.append(("Answers per row", counts_text({f"{k} turn{'s' if k != '1' else ''}": v
                                                      for k, v in (stats.get("turns") or {}).items()})))
    if stats.get("labels"):
        rows.append(("Label balance", counts_text(stats["labels"], stats.get("rows", 0))))
    return rows


class DatasetStats(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = QLabel("Press “Compute statistics” to tokenize every row with the chosen model, as training "
                           "will.", wordWrap=True, objectName="hint")
        self.histogram = TokenHistogram()
        self.histogram.hide()
        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addWidget(self.histogram, 1)
        layout.addLayout(self.grid)
        self.values: dict[str, QLabel] = {}

    def show_stats(self, stats: dict) -> None:
        self.hint.setText(f"{stats.get('dataset')} with the tokenizer and chat template of {stats.get('model')}.")
        self.histogram.show()
        self.histogram.show_stats(stats)
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.values = {}
        for row, (name, value) in enumerate(facts(stats)):
            label = QLabel(value, wordWrap=True)
            self.grid.addWidget(QLabel(name + ":"), row, 0)
            self.grid.addWidget(label, row, 1)
            self.values[name] = label
