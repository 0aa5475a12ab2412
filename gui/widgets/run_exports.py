"""The Runs page's Exports tab: every file exported from the selected run, newest first, with
its round-trip check (passed under which rule, or failed and why), and under a failed one the
prompts whose answers differed: what the adapter said and what the export said."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

FAILED_COLOUR = QColor("#b3261e")
PASSED_COLOUR = QColor("#1e7b34")


def check_text(entry: dict[str, Any]) -> tuple[str, bool | None]:
    """(what the round-trip check found, passed: True/False, None when not checked)."""
    report = entry.get("roundtrip")
    if not isinstance(report, dict):
        return "not checked (--no-check)", None
    if report.get("passed"):
        where = f" in {report['loader']}" if report.get("loader") else ""
        return f"passed{where}: {report.get('prompts', 0)} sample prompts gave {report.get('rule', '')}", True
    return f"failed: {report.get('cause', '')}", False


class RunExportsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Exported", "Format", "Round-trip check", "File"])
        self.tree.setWordWrap(True)
        self.tree.setAlternatingRowColors(True)
        for column, width in enumerate((140, 110, 520)):
            self.tree.setColumnWidth(column, width)
        self.tree.currentItemChanged.connect(self._show_detail)
        # One line per export in the list; the selected one's whole report shows below.
        self.detail = QPlainTextEdit(readOnly=True)
        self.detail.setPlaceholderText("Select an export to read its whole check: the rule, the cause, and "
                                       "for each differing prompt what the adapter and the export answered.")
        self.detail.setMaximumHeight(180)
        self.empty_label = QLabel("Nothing exported from this run yet: Export ▸ Model as GGUF, merged or the "
                                  "adapter alone. Each export is loaded back and checked against the adapter's "
                                  "answers; the result shows here.", objectName="hint", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.detail)
        self.set_exports([])

    def set_exports(self, entries: Sequence[dict[str, Any]]) -> None:
        self.tree.clear()
        for entry in reversed(entries):
            item = self._item(entry)
            self.tree.addTopLevelItem(item)
            item.setExpanded(check_text(entry)[1] is False)  # a failed check opens on its prompts
        self.empty_label.setVisible(not entries)
        self.tree.setVisible(bool(entries))
        self.detail.setVisible(bool(entries))
        self.detail.clear()

    def _item(self, entry: dict[str, Any]) -> QTreeWidgetItem:
        text, passed = check_text(entry)
        path = str(entry.get("path", ""))
        item = QTreeWidgetItem([str(entry.get("exported", "")).replace("T", " ")[:16],
                                f"{entry.get('format', '')} {entry.get('outtype', '')}".strip(), text,
                                Path(path).name])
        item.setToolTip(2, text)
        item.setToolTip(3, path if Path(path).exists() else f"{path} (no longer there)")
        item.setData(0, Qt.ItemDataRole.UserRole, detail_text(entry))
        if passed is not None:
            item.setForeground(2, QBrush(PASSED_COLOUR if passed else FAILED_COLOUR))
        report = entry.get("roundtrip")
        for differing in (report.get("differing") or []) if isinstance(report, dict) else []:
            if isinstance(differing, dict):
                item.addChild(self._differing_item(differing))
        return item

    @staticmethod
    def _differing_item(differing: dict[str, Any]) -> QTreeWidgetItem:
        prompt, why = str(differing.get("prompt", "")), str(differing.get("why", ""))
        child = QTreeWidgetItem(["", "prompt", f"{prompt[:80]}: {why}", ""])
        detail = (f"Prompt: {prompt}\nAdapter: {differing.get('expected', '')}\n"
                  f"Export: {differing.get('got', '')}")
        for column in range(4):
            child.setToolTip(column, detail)
        child.setData(0, Qt.ItemDataRole.UserRole, detail)
        return child

    def _show_detail(self, item: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None = None) -> None:
        self.detail.setPlainText(str(item.data(0, Qt.ItemDataRole.UserRole) or "") if item else "")


def detail_text(entry: dict[str, Any]) -> str:
    """The whole record of one export, for the pane under the list."""
    text, _ = check_text(entry)
    report = entry.get("roundtrip") if isinstance(entry.get("roundtrip"), dict) else None
    lines = [f"{entry.get('path', '')} ({entry.get('format', '')} {entry.get('outtype', '')}, exported "
             f"{str(entry.get('exported', '')).replace('T', ' ')})", f"Round-trip check {text}"]
    if report and not report.get("passed"):
        lines.append(f"Rule: {report.get('rule', '')}")
    if entry.get("llama_cpp_command"):
        lines.append(f"Use it with llama.cpp: {entry['llama_cpp_command']}")
    return "\n".join(lines)
