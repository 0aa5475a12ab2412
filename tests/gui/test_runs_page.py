"""The Runs page reads run folders back from the workspace, across window restarts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from gui.main_window import MainWindow
from gui.pages.runs import RunsPage

from gui_helpers import dead_pid, make_run


def cell(page: RunsPage, row: int, title: str) -> str:
    column = [page.model.headerData(c, Qt.Orientation.Horizontal) for c in range(page.model.columnCount())].index(title)
    return page.model.data(page.model.index(row, column))


@pytest.fixture
def window(qtbot, make_context):
    windows = []

    def build() -> MainWindow:
        main = MainWindow(make_context())
        qtbot.addWidget(main)
        windows.append(main)
        return main

    yield build


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
    train.client.sig_hello.connect(lambda _: make_run("made by the engine"))  # as the engine would
    with qtbot.waitSignal(train.client.sig_finished, timeout=15_000):
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
    assert main.runs_page.model.rowCount() == 1
    assert main.prompt_page.adapter_combo.count() == 1  # no adapter folder: nothing to offer


def _checkpoint(run, step: int, complete: bool = True) -> None:
    folder = run.checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "trainer_state.json").write_text("{}", encoding="utf-8")


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
    main = window()
    page = main.runs_page
    assert page.select_run(run.id) and page.resume_button.isEnabled()
    started = []
    main.train_page.client.sig_state_changed.connect(started.append)
    with qtbot.waitSignal(main.train_page.client.sig_finished, timeout=30_000):
        qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
        assert main.current_page_title() == "Train"
        assert main.train_page.plot.buffer.length("loss") == 8  # the recorded curve up to the checkpoint
        assert f"--resume {run.id}" in main.train_page.log_view.lines()[0]
    assert started  # the engine was launched
    assert main.train_page.plot.buffer.length("loss") > 8  # new points carry on from there
