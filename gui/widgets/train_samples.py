"""Sample generations during training: what the model answers to a few fixed prompts at each
evaluation, newest step first, so the user sees what it says now and how it changed."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

PREVIEW_CHARS = 160


def _preview(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


class SamplesView(QWidget):
    """One group per step (``add_samples(step, [{"prompt", "output"}, ...])``); the newest
    group is open, older ones folded. Full texts are in the tooltips."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Prompt", "Model output"])
        self.tree.setWordWrap(True)
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.header().setStretchLastSection(True)
        self.tree.setColumnWidth(0, 340)
        self.tree.currentItemChanged.connect(self._on_current_item_changed)
        # The rows show one line each; the selected sample's whole texts show below.
        self.detail = QPlainTextEdit(readOnly=True)
        self.detail.setPlaceholderText("Select a sample to read its whole prompt and output.")
        self.detail.setMaximumHeight(160)
        self.empty_label = QLabel("Sample generations appear here at each evaluation when the run has "
                                  "sample prompts.", objectName="hint", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.detail)
        self.clear()

    def clear(self) -> None:
        self.tree.clear()
        self.detail.clear()
        self._steps: list[int] = []
        self.empty_label.setVisible(True)

    def set_samples(self, groups: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """Shows a recorded run's samples at once: ``[(step, samples), ...]`` oldest first."""
        self.clear()
        for step, samples in groups:
            self.add_samples(step, samples)

    def set_empty_text(self, text: str) -> None:
        self.empty_label.setText(text)

    def steps(self) -> list[int]:
        """Steps shown, newest first."""
        return list(self._steps)

    def add_samples(self, step: int, samples: Sequence[Any]) -> None:
        rows = [s for s in samples if isinstance(s, dict)]
        if not rows:
            return
        for index in range(self.tree.topLevelItemCount()):
            self.tree.topLevelItem(index).setExpanded(False)
        group = QTreeWidgetItem([f"Step {step}", f"{len(rows)} sample{'s' if len(rows) != 1 else ''}"])
        font = group.font(0)
        font.setBold(True)
        group.setFont(0, font)
        group.setFirstColumnSpanned(False)
        for sample in rows:
            prompt, output = str(sample.get("prompt", "")), str(sample.get("output", ""))
            child = QTreeWidgetItem(group, [_preview(prompt), _preview(output)])
            child.setToolTip(0, prompt)
            child.setToolTip(1, output)
            child.setTextAlignment(0, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.tree.insertTopLevelItem(0, group)
        group.setExpanded(True)
        self._steps.insert(0, int(step))
        self.empty_label.setVisible(False)

    def _on_current_item_changed(self, item: QTreeWidgetItem | None, previous: object = None) -> None:
        if item is None or item.parent() is None:  # a step's group row
            self.detail.clear()
            return
        self.detail.setPlainText(f"Step {item.parent().text(0).removeprefix('Step ')}\n\nPrompt:\n{item.toolTip(0)}"
                                 f"\n\nOutput:\n{item.toolTip(1)}")

    def outputs_at(self, step: int) -> list[str]:
        """The full outputs shown for ``step`` (tooltips hold the untruncated text)."""
        index = self._steps.index(step)
        group = self.tree.topLevelItem(index)
        return [group.child(i).toolTip(1) for i in range(group.childCount())]
