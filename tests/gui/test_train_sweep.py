"""The Train page's Sweep… dialog: knobs of the current form to search and the sweep's settings,
built from the schemas; it writes the sweep file, `sweep create` (the real command) makes the study
and the sweep is queued as one job. The engine is tests/gui/fake_queue_engine.py (the real queue
worker; its `sweep create` is the real one, its `sweep run` ends at once)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from queue_helpers import queue_context, stop_engines

from engine.core import schema
from engine.sweep import spec
from engine.train import job_queue
from gui.notifications import Notifier
from gui.pages.train import TrainPage
from gui.widgets.sweep_dialog import COLUMNS, SweepDialog

pytest.importorskip("optuna")


@pytest.fixture
def train(qtbot, tunebench_home):
    page = TrainPage(queue_context(), notifier=Notifier(use_tray=False))
    qtbot.addWidget(page)
    page.resize(1200, 760)
    yield page
    stop_engines(tunebench_home)


def open_dialog(qtbot, train: TrainPage) -> SweepDialog:
    qtbot.mouseClick(train.sweep_button, Qt.MouseButton.LeftButton)
    dialog = train.sweep_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def row_of(dialog: SweepDialog, name: str) -> int:
    return next(r for r in range(dialog.table.rowCount())
                if dialog.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name)


def test_the_dialog_is_built_from_the_schemas_and_starts_from_the_form(qtbot, train) -> None:
    train.form.set_values({**train.form.values(), "learning_rate": 2e-4})
    dialog = open_dialog(qtbot, train)
    for k in schema.knobs(spec.SweepConfig):  # every sweep setting, with its help as tooltip
        widget = dialog.findChild(object, f"sweep_{k.name}")
        assert widget is not None and widget.toolTip() == k.help, k.name
    rate = row_of(dialog, "learning_rate")
    assert dialog.table.item(rate, 0).toolTip() == schema.knob_of(spec.TrainConfig, "learning_rate").help
    assert dialog.table.item(rate, 0).checkState() == Qt.CheckState.Checked
    cells = [dialog.table.item(rate, c).text() for c in (COLUMNS.index("Low"), COLUMNS.index("High"))]
    assert cells == ["2e-05", "0.002"] and dialog.table.item(rate, COLUMNS.index("Log")).checkState() == \
        Qt.CheckState.Checked
    assert "name" not in [dialog.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
                          for r in range(dialog.table.rowCount())]
    assert not dialog._widgets["metric"].isEnabled()  # objective val_loss: no metric to pick
    dialog.set_setting("objective", "metric")
    assert dialog._widgets["metric"].isEnabled() and dialog._widgets["eval_spec"].isEnabled()


def test_create_and_queue_writes_the_sweep_file_creates_the_study_and_queues_one_job(
        qtbot, train, tunebench_home) -> None:
    train.form.set_values({**train.form.values(), "val_fraction": 0.1, "eval_steps": 10, "save_steps": 20})
    form = train.form.values()
    dialog = open_dialog(qtbot, train)
    dialog.set_setting("name", "from-train")
    dialog.set_setting("n_trials", 5)
    dialog.set_setting("timeout_s", 600)
    dialog.set_setting("sampler", "random")
    dialog.set_setting("pruner", "successive_halving")
    dialog.tick("epochs", choices="1, 2")
    qtbot.mouseClick(dialog.queue_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible() and dialog.written == tunebench_home / "sweeps" / "from-train.toml"

    written = spec.load_toml(dialog.written)
    assert (written.settings.n_trials, written.settings.timeout_s, written.settings.sampler,
            written.settings.pruner) == (5, 600, "random", "successive_halving")
    assert sorted(written.space) == ["epochs", "learning_rate", "lora_r"]  # in the schema's order
    assert written.space["epochs"].choices == [1.0, 2.0] and written.space["learning_rate"].log
    assert {k: getattr(written.base, k) for k in ("model", "dataset", "lora_r", "max_steps", "val_fraction")} == \
        {k: form[k] for k in ("model", "dataset", "lora_r", "max_steps", "val_fraction")}

    qtbot.waitUntil(lambda: any(j.get("kind") == "sweep" for j in job_queue.load(tunebench_home)), timeout=60_000)
    job = next(j for j in job_queue.load(tunebench_home) if j.get("kind") == "sweep")
    assert job["args"] == ["from-train"] and (tunebench_home / "sweeps" / "from-train.db").is_file()
    assert "from-train" in train.status_label.text() and "queued" in train.status_label.text()
    qtbot.waitUntil(lambda: any("sweep from-train" in train.queue_panel.list.item(i).text()
                                for i in range(train.queue_panel.list.count())), timeout=10_000)


@pytest.mark.parametrize("change, words", [
    (lambda d: d.tick("learning_rate", low="0.01", high="0.001"), "space.learning_rate: low (0.01) must be below"),
    (lambda d: d.tick("learning_rate", low="fast"), "space.learning_rate.low: must be a number"),
    (lambda d: d.set_setting("objective", "metric"), "metric: is required"),
    (lambda d: (d.set_setting("objective", "metric"), d.set_setting("metric", "token_f1"),
                d.set_setting("direction", "maximize")), "eval_spec: is required"),
])
def test_a_bad_sweep_stays_in_the_dialog_with_one_line_naming_the_field(qtbot, train, tunebench_home, change,
                                                                         words) -> None:
    train.form.set_values({**train.form.values(), "val_fraction": 0.1, "eval_steps": 10, "save_steps": 20})
    dialog = open_dialog(qtbot, train)
    change(dialog)
    qtbot.mouseClick(dialog.queue_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.written is None
    assert words in dialog.status.text(), dialog.status.text()
    assert not (tunebench_home / "sweeps").exists() or not list((tunebench_home / "sweeps").glob("*.toml"))
