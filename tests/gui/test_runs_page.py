"""The Runs page reads run folders back from the workspace, across window restarts."""

from __future__ import annotations

import pytest
from gui_helpers import dead_pid, make_run
from PySide6.QtCore import Qt
from queue_helpers import queue_context, stop_engines

from engine.core import config, workspace
from engine.train import job_queue
from gui.main_window import MainWindow
from gui.pages.runs import RunsPage


def cell(page: RunsPage, row: int, title: str) -> str:
    column = [page.model.headerData(c, Qt.Orientation.Horizontal) for c in range(page.model.columnCount())].index(title)
    return page.model.data(page.model.index(row, column))


@pytest.fixture
def window(qtbot, tunebench_home):
    windows = []  # keeps each window alive while the test uses a page of it

    def build() -> MainWindow:
        main = MainWindow(queue_context("train_tiny.ndjson", "--delay", "0.01"))
        qtbot.addWidget(main)
        windows.append(main)
        return main

    yield build
    stop_engines(tunebench_home)


def test_lists_a_run_and_shows_its_curve(qtbot, window):
    run = make_run("cpu demo", steps=12)
    page = window().runs_page

    assert page.model.rowCount() == 1
    assert cell(page, 0, "Name") == "cpu demo"
    assert cell(page, 0, "Status") == "finished"
    assert cell(page, 0, "Steps") == "12"
    assert cell(page, 0, "Final loss") == "1.4213"
    # The newest run is shown without a click.
    assert page.selected_run() is not None and page.selected_run().id == run.id
    assert page.plot.drawn_points("loss") == 12
    assert page.path_label.text() == str(run.path)
    assert page.open_button.isEnabled()


def test_a_run_survives_a_restart(qtbot, window):
    make_run("before restart")
    first = window()
    assert first.runs_page.model.rowCount() == 1
    first.close()

    second = window()
    second.show_page("Runs")
    assert second.runs_page.model.rowCount() == 1
    assert cell(second.runs_page, 0, "Name") == "before restart"


def test_a_running_run_whose_engine_died_is_interrupted(window):
    make_run("cut off", status="running", pid=dead_pid())
    page = window().runs_page
    assert cell(page, 0, "Status") == "interrupted"


def test_showing_the_page_picks_up_new_runs(qtbot, window):
    main = window()
    main.show()
    assert main.runs_page.model.rowCount() == 0
    assert "No runs yet" in main.runs_page.count_label.text()
    make_run("new")
    main.show_page("Runs")
    assert main.runs_page.model.rowCount() == 1


def test_a_finished_training_run_refreshes_the_runs_page(qtbot, window):
    main = window()
    train = main.train_page
    with qtbot.waitSignal(train.sig_run_finished, timeout=20_000):
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
    assert main.runs_page.model.rowCount() == 1
    assert main.runs_page.selected_run().status == "finished"


def _checkpoint(run, step: int, complete: bool = True) -> None:
    folder = run.checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "trainer_state.json").write_text(f'{{"global_step": {step}}}', encoding="utf-8")


def test_resume_is_offered_only_for_a_stopped_run_with_a_complete_checkpoint(window):
    finished = make_run("done", steps=4)
    _checkpoint(finished, 4)
    torn = make_run("torn", status="cancelled", steps=4)
    _checkpoint(torn, 4, complete=False)  # cut off mid-save: not resumable
    page = window().runs_page
    for run, offered in ((finished, False), (torn, False)):
        assert page.select_run(run.id)
        assert page.resume_button.isEnabled() is offered, run.info()["name"]


def test_resume_continues_the_curve_on_the_train_page(qtbot, window):
    run = make_run("stopped", status="cancelled", steps=12)
    _checkpoint(run, 8)  # the crash logged steps 9-12 after the last checkpoint
    workspace.atomic_write_text(run.config_toml, config.to_toml(config.TrainConfig(lora_r=4, max_steps=12)))
    main = window()
    page = main.runs_page
    assert page.select_run(run.id) and page.resume_button.isEnabled()
    assert not page.continue_button.isEnabled()
    with qtbot.waitSignal(main.train_page.sig_run_finished, timeout=30_000):
        qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
        assert main.current_page_title() == "Train"
        assert main.train_page.plot.buffer.length("loss") == 8  # the recorded curve up to the checkpoint
        assert main.train_page.form.values()["lora_r"] == 4  # the form shows the run's own settings
        assert job_queue.load()[0]["args"] == ["--resume", run.id]
    x, _ = main.train_page.plot.buffer.arrays("loss")
    assert list(x) == list(range(1, 13))  # new points carry on from the checkpoint, no repeats
    assert workspace.RunFolder(run.path).info()["status"] == "finished"


def test_continue_training_queues_a_new_run_from_a_finished_adapter(qtbot, window):
    run = make_run("done", steps=12, adapter=True)
    workspace.atomic_write_text(run.config_toml, config.to_toml(config.TrainConfig(lora_r=4, max_steps=30)))
    main = window()
    page = main.runs_page
    assert page.select_run(run.id)
    assert page.continue_button.isEnabled() and not page.resume_button.isEnabled()
    qtbot.mouseClick(page.continue_button, Qt.MouseButton.LeftButton)
    assert main.current_page_title() == "Train"
    assert job_queue.load()[0]["args"] == ["--continue-from", run.id]
    assert main.train_page.form.values()["lora_r"] == 4 and main.train_page.form.values()["max_steps"] == 30
    assert main.train_page.is_busy()


def test_closing_while_a_run_trains_without_a_tray_leaves_a_notice_that_outlives_the_window(
        qtbot, window, monkeypatch):
    import os

    from PySide6.QtWidgets import QApplication, QMessageBox

    from gui import notifications

    run = make_run("overnight", status="running", pid=os.getpid())  # a live run to re-attach to
    main = window()
    main.show()
    assert main.train_page.is_following() and not main.train_page.notifier.uses_tray  # offscreen: no tray
    closes = []
    monkeypatch.setattr(notifications.show_parting_notice, "__defaults__", (50,))
    assert main.close()
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert len(boxes) == 1 and boxes[0].windowTitle() == "Training continues"
    assert str(run.path) in boxes[0].text() and "keeps training in the background" in boxes[0].text()
    assert not boxes[0].isModal()  # nothing waits on it
    shots = os.environ.get("TUNEBENCH_SCREENSHOTS")
    if shots:
        boxes[0].grab().save(f"{shots}/parting_notice.png")
    boxes[0].destroyed.connect(lambda: closes.append(1))
    qtbot.waitUntil(lambda: closes == [1], timeout=3000)  # it closes itself


def test_deleting_a_run_takes_its_adapter_off_the_prompt_page(window):
    run = make_run("tuned", adapter=True)
    main = window()
    combo = main.prompt_page.columns[0].adapter_combo

    def adapters() -> list[str]:
        return [combo.itemData(i) for i in range(combo.count())]

    main.prompt_page.refresh_adapters()
    assert str(run.adapter) in adapters()
    assert main.runs_page.delete(main.runs_page.selected_run())
    assert str(run.adapter) not in adapters() and not run.path.exists()
