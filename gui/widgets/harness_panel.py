"""The Evaluate page's lm-eval box: pick a task shipped with Tunebench or a task YAML file, and
run `evaluate harness` on the page's base model and ticked adapters.

The panel only builds the command's flags (from the HarnessOptions schema, so they parse back
through the engine's own parser) and asks the page to run them; the page runs the job with its
engine client and shows the result like any other evaluation. Nothing here imports lm_eval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from engine.core import paths, schema
from engine.eval.options import HarnessOptions

OWN_FILE = "__file__"  # the task combo's entry for a task YAML of the user's


def shipped_tasks() -> list[str]:
    return sorted(p.stem for p in paths.harness_tasks_dir().glob("*.yaml"))


class HarnessPanel(QGroupBox):
    """``sig_run`` carries the `evaluate harness` flags; ``models()`` gives the page's base
    model ("" for the default) and the adapters ticked there."""

    sig_run = Signal(list)

    def __init__(self, models: Callable[[], tuple[str, list[str]]], parent: QWidget | None = None) -> None:
        super().__init__("lm-eval tasks", parent)
        self._models = models
        self.task_combo = QComboBox()
        for name in shipped_tasks():
            self.task_combo.addItem(name, name)
        self.task_combo.addItem("Task YAML file…", OWN_FILE)
        self.task_combo.setCurrentIndex(max(self.task_combo.findData(HarnessOptions().tasks[0]), 0))
        self.task_combo.setToolTip(schema.knob_of(HarnessOptions, "tasks").help)
        self.file_edit = QLineEdit(placeholderText="a task .yaml file or a folder of them")
        self.file_edit.setToolTip(schema.knob_of(HarnessOptions, "include").help)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(self.browse_button)
        self.limit_spin = QSpinBox(minimum=0, maximum=1_000_000, specialValueText="all")
        self.limit_spin.setToolTip(schema.knob_of(HarnessOptions, "limit").help)
        self.run_button = QPushButton("Run lm-eval task")
        self.run_button.setToolTip("Runs the task with lm-eval on the base model and the ticked adapters, "
                                   "offline; the result opens here like any evaluation.")
        self.run_button.clicked.connect(self._on_run_clicked)
        form = QFormLayout(self)
        form.addRow("Task", self.task_combo)
        form.addRow("YAML", file_row)
        form.addRow("Documents", self.limit_spin)
        form.addRow(self.run_button)
        self.task_combo.currentIndexChanged.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        own = self.task_combo.currentData() == OWN_FILE
        self.file_edit.setEnabled(own)
        self.browse_button.setEnabled(own)

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Task YAML", self.file_edit.text(), "Task configs (*.yaml *.yml)")
        if name:
            self.file_edit.setText(name)

    def options(self) -> HarnessOptions:
        model, adapters = self._models()
        task = self.task_combo.currentData()
        own = task == OWN_FILE
        include = self.file_edit.text().strip() if own else None
        # A YAML file alone runs the task it defines (the engine reads its name from the file).
        tasks = HarnessOptions().tasks if own else [str(task)]
        return HarnessOptions(tasks=tasks, include=include or None, model=model, adapters=list(adapters),
                              limit=self.limit_spin.value())

    def problem(self) -> str:
        options = self.options()
        if self.task_combo.currentData() == OWN_FILE:
            if not options.include:
                return "Choose a task YAML file for the lm-eval task."
            if not Path(options.include).expanduser().exists():
                return f"{options.include} does not exist."
        return ""

    def arguments(self) -> list[str]:
        return schema.to_arguments(self.options())

    def _on_run_clicked(self) -> None:
        self.sig_run.emit(self.arguments())
