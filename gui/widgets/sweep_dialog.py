"""The Train page's Sweep… dialog: pick knobs of the current form to search (ranges, log scale,
steps or choices) and the sweep's settings, all built from the schemas (engine/sweep/spec.py's
SweepConfig, TrainConfig's knobs), then write the sweep file and hand it to the page, which
creates the sweep and queues it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core import schema
from engine.core.schema import ConfigError, Knob
from engine.sweep import spec
from gui.state import sweep_draft
from gui.state.sweep_draft import SpaceRow
from gui.widgets.status_line import StatusLine

COLUMNS = ("Knob", "Now", "Low", "High", "Log", "Step", "Choices")
# The sweep settings shown first; the rest sit in "More settings".
MAIN_SETTINGS = ("name", "objective", "metric", "eval_spec", "direction", "n_trials", "timeout_s", "sampler", "pruner")
STARTER_KNOBS = ("learning_rate", "lora_r")  # ticked when the dialog opens


class SweepDialog(QDialog):
    """Returns (through :meth:`sweep`) the checked sweep and (:attr:`written`) its file."""

    def __init__(self, base: dict[str, Any], folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New sweep from these settings")
        self._base = dict(base)
        self._folder = folder
        self.written: Path | None = None
        self.result_sweep: spec.Sweep | None = None
        self._getters: dict[str, Callable[[], Any]] = {}
        self._widgets: dict[str, QWidget] = {}
        self._knobs = sweep_draft.searchable_knobs()
        intro = QLabel("Every trial is a run with the Train form's settings, except the knobs ticked below, "
                       "which the sampler picks within their range or choices.", wordWrap=True, objectName="hint")
        self.table = self._build_table()
        settings_box = self._settings_box("Sweep", MAIN_SETTINGS)
        more_box = self._settings_box("More settings", tuple(k.name for k in schema.knobs(spec.SweepConfig)
                                                             if k.name not in MAIN_SETTINGS))
        self.status = StatusLine("")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.queue_button = self.buttons.addButton("Create and queue", QDialogButtonBox.ButtonRole.AcceptRole)
        self.queue_button.setToolTip("Write the sweep file (sweeps/NAME.toml), create the sweep and add it to the "
                                     "training queue as one job; it runs on when this window closes")
        self.buttons.accepted.connect(self._on_accept)
        self.buttons.rejected.connect(self.reject)
        side = QVBoxLayout()
        side.addWidget(settings_box)
        side.addWidget(more_box)
        side.addStretch(1)
        middle = QHBoxLayout()
        space_box = QGroupBox("Knobs to search")
        space_layout = QVBoxLayout(space_box)
        space_layout.addWidget(self.table)
        middle.addWidget(space_box, 3)
        middle.addLayout(side, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(middle, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self._objective_changed()
        self.resize(1180, 720)

    # -- building --------------------------------------------------------------------------------

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(len(self._knobs), len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        table.verticalHeader().setVisible(False)
        for row, k in enumerate(self._knobs):
            value = self._base.get(k.name, k.default)
            draft = sweep_draft.suggested_row(k, value)
            name = QTableWidgetItem(k.label)
            name.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            name.setCheckState(Qt.CheckState.Checked if k.name in STARTER_KNOBS else Qt.CheckState.Unchecked)
            name.setToolTip(k.help)
            name.setData(Qt.ItemDataRole.UserRole, k.name)
            table.setItem(row, 0, name)
            now = QTableWidgetItem(sweep_draft._shown(value))
            now.setFlags(Qt.ItemFlag.ItemIsEnabled)
            table.setItem(row, 1, now)
            number = sweep_draft.is_number(k)
            for column, text in ((2, draft.low), (3, draft.high), (5, draft.step)):
                cell = QTableWidgetItem(text)
                if not number:
                    cell.setFlags(Qt.ItemFlag.NoItemFlags)
                table.setItem(row, column, cell)
            log = QTableWidgetItem("")
            log.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable if number else
                         Qt.ItemFlag.NoItemFlags)
            log.setCheckState(Qt.CheckState.Checked if draft.log else Qt.CheckState.Unchecked)
            table.setItem(row, 4, log)
            choices = QTableWidgetItem(draft.choices)
            choices.setToolTip("Values to choose from, comma-separated; for a number knob, filling this in "
                               "replaces the range")
            table.setItem(row, 6, choices)
        table.resizeColumnsToContents()
        table.setColumnWidth(6, 160)  # long choice lists are cut here; the cell holds them all
        table.horizontalHeader().setStretchLastSection(True)
        return table

    def _settings_box(self, title: str, names: tuple[str, ...]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        for name in names:
            k = schema.knob_of(spec.SweepConfig, name)
            widget = self._widget(k)
            widget.setToolTip(k.help)
            widget.setObjectName(f"sweep_{name}")
            label = QLabel(k.label or name, toolTip=k.help)
            label.setBuddy(widget)
            form.addRow(label, widget)
            self._widgets[name] = widget
        return box

    def _widget(self, k: Knob) -> QWidget:
        if k.choices:
            combo = QComboBox()
            if k.optional:
                combo.addItem("")  # not set
            combo.addItems(list(k.choices))
            combo.setCurrentText(str(k.default or ""))
            self._getters[k.name] = lambda: combo.currentText() or None
            if k.name == "objective":
                combo.currentTextChanged.connect(lambda *_: self._objective_changed())
            return combo
        if k.kind is int:
            spin = QSpinBox()
            spin.setRange(int(k.minimum or 0), int(min(k.maximum or 2**31 - 1, 2**31 - 1)))
            spin.setValue(int(k.default))
            self._getters[k.name] = spin.value
            return spin
        edit = QLineEdit(str(k.default or ""))
        if k.name == "name":
            edit.setText(f"{self._base['name']}-sweep" if self._base.get("name") else "my-sweep")
        if k.name == "eval_spec":
            edit.setPlaceholderText("path of an evaluation spec file ([evaluate] table)")
        self._getters[k.name] = edit.text
        return edit

    def _objective_changed(self) -> None:
        metric = self._getters["objective"]() == "metric"
        for name in ("metric", "eval_spec"):
            self._widgets[name].setEnabled(metric)
        if not metric:
            self.set_setting("direction", "minimize")  # validation loss is minimised

    # -- values ----------------------------------------------------------------------------------

    def set_setting(self, name: str, value: Any) -> None:
        widget = self._widgets[name]
        if isinstance(widget, QComboBox):
            widget.setCurrentText(str(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(value))
        elif isinstance(widget, QLineEdit):
            widget.setText(str(value))

    def settings(self) -> dict[str, Any]:
        values = {name: getter() for name, getter in self._getters.items()}
        if values.get("objective") != "metric":
            values.pop("metric", None)
            values.pop("eval_spec", None)
        elif values.get("eval_spec"):
            values["eval_spec"] = str(Path(values["eval_spec"]).expanduser().resolve())
        return values

    def tick(self, name: str, checked: bool = True, **cells: str) -> None:
        """Ticks (or unticks) a knob and sets its cells by column: low, high, step, choices, log."""
        row = next(i for i, k in enumerate(self._knobs) if k.name == name)
        self.table.item(row, 0).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        for key, text in cells.items():
            column = COLUMNS.index(key.capitalize())
            if key == "log":
                self.table.item(row, column).setCheckState(Qt.CheckState.Checked if text else Qt.CheckState.Unchecked)
            else:
                self.table.item(row, column).setText(text)

    def rows(self) -> list[SpaceRow]:
        rows = []
        for row, k in enumerate(self._knobs):
            if self.table.item(row, 0).checkState() != Qt.CheckState.Checked:
                continue
            rows.append(SpaceRow(k.name, low=self.table.item(row, 2).text(), high=self.table.item(row, 3).text(),
                                 log=self.table.item(row, 4).checkState() == Qt.CheckState.Checked,
                                 step=self.table.item(row, 5).text(), choices=self._choices(row, k)))
        return rows

    def _choices(self, row: int, k: Knob) -> str:
        text = self.table.item(row, 6).text()
        # A number knob searches its range unless choices were typed over the suggestion.
        return text if not sweep_draft.is_number(k) or text.strip() else ""

    def _on_accept(self) -> None:
        try:
            sweep = sweep_draft.build(self.settings(), self._base, self.rows())
        except ConfigError as exc:
            self.status.show_message(str(exc).removeprefix("sweep: "), error=True)
            return
        target = self._folder / f"{sweep.name}.toml"
        if target.exists() or (self._folder / f"{sweep.name}.db").exists():
            self.status.show_message(f"name: a sweep called {sweep.name} exists; pick another name", error=True)
            return
        self.written = sweep_draft.write(sweep, self._folder)
        self.result_sweep = sweep
        self.accept()
