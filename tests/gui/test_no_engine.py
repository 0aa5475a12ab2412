"""The window without an engine (the installed app's small GUI environment, before the Setup
page has built the engine): it opens on Setup with a banner, and engine jobs say so in one
line instead of failing with a traceback. The interpreter without torch is a real venv."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from engine.core import protocol
from gui.context import ENGINE_MISSING, ENGINE_PYTHON_KEY, AppContext, forget_engine_checks
from gui.engine_client import ClientState, EngineClient
from gui.main_window import MainWindow
from gui.pages.datasets import DatasetsPage
from gui.pages.setup import MISSING_BANNER, MISSING_DETAIL

SHOTS = Path(tempfile.gettempdir()) / "tunebench-shots"
SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"
FINISH_TIMEOUT_MS = 15_000
FAKE_PROBE = """import json
print(json.dumps({"gpus": [], "driver_cuda": None, "build": "cpu", "reason": "no NVIDIA GPU found",
                  "downloads": ["torch 2.13.0, cpu build (about 200 MB) from PyPI"]}))
"""


@pytest.fixture(scope="module")
def torchless_python(tmp_path_factory) -> str:
    """A real interpreter without torch: a fresh venv (no pip, no packages)."""
    folder = tmp_path_factory.mktemp("engine") / "gui-only venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    return str(folder / "bin" / "python")


@pytest.fixture(autouse=True)
def fresh_checks(tmp_path, monkeypatch):
    """Each test asks anew; the Setup page talks to a fake bootstrap (no nvidia-smi)."""
    script = tmp_path / "fake_bootstrap.py"
    script.write_text(FAKE_PROBE)
    monkeypatch.setenv("TUNEBENCH_BOOTSTRAP", str(script))
    forget_engine_checks()
    yield
    forget_engine_checks()


@pytest.fixture
def gui_without_torch(monkeypatch):
    """The GUI's own interpreter has no torch (find_spec answers None for it alone)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch" else real(name, *args))


def _context_with_engine(python: str) -> AppContext:
    context = AppContext.from_environment()
    context.save_settings({ENGINE_PYTHON_KEY: python})
    return context


def _shot(widget, name):
    SHOTS.mkdir(exist_ok=True)
    QApplication.processEvents()
    widget.grab().save(str(SHOTS / ("no-engine-" + name + ".png")))


# --------------------------------------------------------------------------- the check


def test_the_guis_own_python_without_torch_means_no_engine(gui_without_torch):
    assert AppContext.from_environment().engine_problem() == ENGINE_MISSING


def test_the_guis_own_python_with_torch_is_the_engine():
    assert AppContext.from_environment().engine_problem() is None


def test_an_engine_python_without_torch_is_asked_in_a_child_process(torchless_python):
    problem = _context_with_engine(torchless_python).engine_problem()
    assert problem == (f"The engine environment {torchless_python} has no torch: repair it on "
                       "the Setup page.")


def test_a_removed_engine_python_is_named(tmp_path):
    gone = str(tmp_path / "engines" / "env-1" / "bin" / "python")
    assert "is gone" in _context_with_engine(gone).engine_problem()


def test_a_test_engine_override_is_taken_as_given(gui_without_torch):
    assert AppContext.from_environment(engine_override=["fake"]).engine_problem() is None


# --------------------------------------------------------------------------- the window


def test_first_start_without_an_engine_opens_on_setup_with_the_banner(qtbot, gui_without_torch):
    window = MainWindow(AppContext.from_environment())
    qtbot.addWidget(window)
    window.show()
    assert window.current_page_title() == "Setup"
    banner = window.setup_page.banner
    assert banner.isVisible() and MISSING_BANNER in banner.text()
    assert MISSING_DETAIL in banner.text()
    assert "has no torch" in window.setup_page.engine_label.text()
    assert window.setup_page.build_button.text() == "Set up engine"
    qtbot.waitUntil(lambda: window.setup_page._process is None, timeout=30_000)  # the GPU check
    assert window.setup_page.build_label.text().startswith("cpu")
    train = window.train_page
    assert not train.start_button.isEnabled()
    assert train.start_button.toolTip() == ENGINE_MISSING
    assert train.status_label.text() == ENGINE_MISSING and "\n" not in ENGINE_MISSING
    _shot(window, "window")
    window.show_page("Train")
    _shot(window, "train")


def test_with_an_engine_the_window_opens_on_train_without_a_banner(qtbot):
    window = MainWindow(AppContext.from_environment())  # this suite's python has torch
    qtbot.addWidget(window)
    assert window.current_page_title() == "Train"
    assert not window.setup_page.banner.isVisibleTo(window)
    assert window.train_page.start_button.isEnabled()


def test_setting_up_the_engine_clears_the_banner_and_enables_train(qtbot, torchless_python):
    context = _context_with_engine(torchless_python)
    window = MainWindow(context)
    qtbot.addWidget(window)
    assert window.current_page_title() == "Setup" and not window.train_page.start_button.isEnabled()
    assert "has no torch: repair it" in window.setup_page.banner.text()
    _shot(window.setup_page, "broken-engine")
    context.save_settings({ENGINE_PYTHON_KEY: sys.executable})  # as the Setup page does
    window.setup_page.sig_engine_changed.emit(sys.executable)
    assert not window.setup_page.banner.isVisibleTo(window)
    assert window.train_page.start_button.isEnabled()
    assert window.train_page.status_label.text() == "Ready."


def test_resuming_a_run_without_an_engine_shows_setup(qtbot, gui_without_torch, monkeypatch):
    window = MainWindow(AppContext.from_environment())
    qtbot.addWidget(window)
    window.show_page("Runs")
    monkeypatch.setattr(window.train_page, "resume", lambda run_id: pytest.fail("queued a run"))
    window.runs_page.sig_resume_requested.emit("run-1")
    assert window.current_page_title() == "Setup"
    assert window.statusBar().currentMessage() == ENGINE_MISSING


# --------------------------------------------------------------------------- engine jobs


def test_engine_client_refuses_in_one_line_without_starting_anything(qtbot, torchless_python):
    client = EngineClient()
    finished = []
    client.sig_finished.connect(lambda code, summary: finished.append((code, summary)))
    with qtbot.waitSignal(client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        client.start([torchless_python, "-m", "engine", "train", "--json"])
        assert client.is_active()  # like a process: the answer comes from the event loop
    code, summary = finished[0]
    assert code == protocol.ExitCode.MISSING_DEPENDENCY and "has no torch" in summary
    assert "\n" not in summary and client.state == ClientState.CRASHED
    assert client._process.state().name == "NotRunning"


def test_a_page_starting_an_engine_job_says_so_in_one_line(qtbot, gui_without_torch):
    page = DatasetsPage(AppContext.from_environment())
    qtbot.addWidget(page)
    page.resize(1000, 640)
    page.show()
    with qtbot.waitSignal(page.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        page.import_file(str(SAMPLE))
    assert page.status_label.text() == "Import failed: " + ENGINE_MISSING
    assert page.import_button.isEnabled()  # not stuck busy
    _shot(page, "datasets")


# --------------------------------------------------------------------------- out of date


def test_an_out_of_date_engine_is_reported_at_start(qtbot, tmp_path, monkeypatch):
    """The window asks ``probe --venv`` in the background; the status bar says it is stale."""
    stale = tmp_path / "fake_stale_bootstrap.py"
    stale.write_text(FAKE_PROBE.replace('"downloads"', '"engine_current": False, "engine_stamped": True, '
                                        '"app_version": "0.2.0", "engine_version": "0.1.0", "downloads"'))
    monkeypatch.setenv("TUNEBENCH_BOOTSTRAP", str(stale))
    window = MainWindow(_context_with_engine(sys.executable))
    qtbot.addWidget(window)
    assert window.current_page_title() == "Train"  # the old engine still works meanwhile
    qtbot.waitUntil(lambda: "out of date" in window.statusBar().currentMessage(), timeout=30_000)
    assert window.statusBar().currentMessage() == (
        "Engine environment out of date for Tunebench 0.2.0 (built for 0.1.0) \u2014 see Setup")
    assert window.setup_page.build_button.text() == "Update engine"
    window.show()
    _shot(window, "stale-at-start")
