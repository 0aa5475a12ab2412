"""The Train page's fit check (Check fit runs `train --probe` through the engine client) and the
model picker's memory estimate. The engine is tests/fake_engine.py replaying transcripts recorded
from the real probe on the tiny model (tests/transcripts/train_probe_*.ndjson)."""

from __future__ import annotations

import json

import pytest
from gui_helpers import TRANSCRIPTS
from PySide6.QtCore import Qt

from engine.core import fit_estimate
from gui.notifications import Notifier
from gui.pages.train import TrainPage

DONE_MS = 20_000


@pytest.fixture
def page(qtbot, make_context):
    pages: list[TrainPage] = []

    def build(transcript: str) -> TrainPage:
        train = TrainPage(make_context(transcript, "--delay", "0.01"), notifier=Notifier(use_tray=False))
        qtbot.addWidget(train)
        train.resize(1280, 820)
        pages.append(train)
        return train

    yield build
    for train in pages:
        train.shutdown()


def recorded_result(transcript: str) -> dict:
    lines = (TRANSCRIPTS / transcript).read_text(encoding="utf-8").splitlines()
    return next(m["data"] for m in map(json.loads, lines) if m["type"] == "result")


def check_fit(qtbot, train: TrainPage) -> None:
    with qtbot.waitSignal(train._fit_client.sig_finished, timeout=DONE_MS):
        qtbot.mouseClick(train.fit_button, Qt.MouseButton.LeftButton)
        assert train.fit_button.text() == "Cancel check"
        assert train.fit_answer().startswith(("Checking the fit", "Probing"))


def test_check_fit_shows_the_probes_answer_near_start(qtbot, page):
    train = page("train_probe_fits.ndjson")
    assert train.fit_answer() == ""
    check_fit(qtbot, train)
    result = recorded_result("train_probe_fits.ndjson")
    assert train.fit_answer() == result["summary"] + "."
    assert train.fit_answer().startswith("Fits: peak 0.59 GB of 23 GB (margin 22 GB)")
    assert train.fit_label.property("state") == "fits"
    assert "peak resident memory" in train.fit_label.toolTip()
    assert train.fit_apply_button.isHidden()
    assert train.fit_button.text() == "Check fit"
    assert " train --probe --json " in train._fit_client.command_line()
    assert "--max-steps 60" in train._fit_client.command_line()  # the form's settings, as Start would queue
    assert not train.is_busy()  # nothing was queued


def test_a_run_that_does_not_fit_gets_the_proposal_and_can_take_it(qtbot, page):
    train = page("train_probe_nofit.ndjson")
    train.form.widget("batch_size").setValue(16)  # as recorded
    check_fit(qtbot, train)
    assert train.fit_answer() == ("Does not fit: peak 0.67 GB of 0.69 GB; try micro-batch 8 with grad. "
                                  "accumulation 2 (about 0.58 GB).")
    assert train.fit_label.property("state") == "nofit"
    assert not train.fit_apply_button.isHidden()
    qtbot.mouseClick(train.fit_apply_button, Qt.MouseButton.LeftButton)
    values = train.form.values()
    assert (values["batch_size"], values["grad_accum"], values["max_length"]) == (8, 2, 256)
    assert values["method"] == "lora" and values["max_steps"] == 60  # the rest is kept
    assert train.fit_apply_button.isHidden()


def test_a_failed_check_is_one_line_not_a_traceback(qtbot, page):
    train = page("train_failed.ndjson")
    check_fit(qtbot, train)
    assert train.fit_answer().startswith("Could not check the fit: The engine ran out of memory.")
    assert train.fit_label.property("state") == "error"
    assert "Traceback" not in train.fit_answer()
    assert train.fit_button.text() == "Check fit"


def test_cancel_check_stops_the_probe(qtbot, make_context):
    train = TrainPage(make_context("train_probe_fits.ndjson", "--delay", "0.3"), notifier=Notifier(use_tray=False))
    qtbot.addWidget(train)
    qtbot.mouseClick(train.fit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.fit_answer().startswith("Probing"), timeout=DONE_MS)
    with qtbot.waitSignal(train._fit_client.sig_finished, timeout=DONE_MS):
        qtbot.mouseClick(train.fit_button, Qt.MouseButton.LeftButton)  # now "Cancel check"
    assert train.fit_answer() == "Fit check stopped."
    assert train.fit_button.text() == "Check fit" and train.fit_apply_button.isHidden()
    train.shutdown()


def test_an_invalid_setting_is_named_and_nothing_starts(qtbot, page):
    train = page("train_probe_fits.ndjson")
    train.form.widget("target_modules").setText("  ")
    qtbot.mouseClick(train.fit_button, Qt.MouseButton.LeftButton)
    assert train.status_label.text() == "Target modules: must not be empty"
    assert not train._fit_client.is_active() and train.fit_answer() == ""


@pytest.mark.skipif(fit_estimate.model_shape("default") is None, reason="the bundled model is not installed")
def test_the_model_picker_shows_a_memory_estimate_for_each_model(qtbot, page):
    train = page("train_probe_fits.ndjson")
    combo = train.form.widget("model")
    assert combo.itemText(0).startswith("SmolLM2-135M-Instruct (bundled) — up to ")
    assert combo.itemText(0).endswith(" GB for lora")
    assert train.form.values()["model"] == "default"
    assert "for lora in" in train.estimate_label.text() and "Check fit measures it" in train.estimate_label.text()
    before = combo.itemText(0)
    train.form.widget("method").setCurrentText("full")
    qtbot.waitUntil(lambda: combo.itemText(0).endswith(" GB for full"), timeout=2000)
    assert combo.itemText(0) != before and train.form.values()["model"] == "default"
    train.form.widget("model").setEditText("/no/such/model")
    qtbot.waitUntil(lambda: "not available for this model" in train.estimate_label.text(), timeout=2000)


@pytest.mark.parametrize("transcript, name", [("train_probe_fits.ndjson", "train-fit"),
                                              ("train_probe_nofit.ndjson", "train-nofit")])
def test_the_answer_on_the_train_page_screenshot(qtbot, make_context, transcript, name):
    """The whole window with the answer under Start; TUNEBENCH_SCREENSHOTS=<folder> keeps it."""
    from test_screenshots import distinct_colours, save

    from gui.main_window import MainWindow

    main = MainWindow(make_context(transcript, "--delay", "0.01"))
    qtbot.addWidget(main)
    main.resize(1400, 900)
    main.show()
    qtbot.waitExposed(main)
    main.show_page("Train")
    train = main.train_page
    if "nofit" in transcript:
        train.form.widget("batch_size").setValue(16)
    check_fit(qtbot, train)
    qtbot.wait(100)
    image = main.grab().toImage()
    save(image, name)
    assert distinct_colours(image) > 20
    assert train.fit_label.isVisible() and train.fit_label.text().startswith(("Fits", "Does not fit"))
    assert train.fit_label.geometry().bottom() <= train.fit_label.parentWidget().height()
