"""The Setup page against a fake bootstrap script: the GPU report, a build that is verified and
switched to, a failed build that leaves the working engine in place, an engine environment out
of date after an upgrade and its Update, and screenshots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from gui.context import ENGINE_PYTHON_KEY, AppContext
from gui.pages.setup import SetupPage, last_json

SHOTS = Path("/tmp/tunebench-shots")

FAKE_BOOTSTRAP = r'''
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
if args[0] == "probe":
    torch = args[args.index("--torch") + 1]
    report = {"gpus": [{"name": "NVIDIA GeForce RTX 3090", "compute_cap": "8.6",
                        "driver": "580.95.05"}],
              "driver_cuda": "13.0", "build": "cu130" if torch == "auto" else torch,
              "reason": "NVIDIA GeForce RTX 3090 (compute 8.6), driver CUDA 13.0 -> CUDA 13.0 build",
              "downloads": ["torch 2.13.0, cu130 build (about 3 GB) from https://download.pytorch.org/whl/cu130",
                            "transformers, peft, ... (about 300 MB) from PyPI"]}
    if "--venv" in args:  # as bootstrap_engine.engine_freshness answers
        stale = Path(args[args.index("--venv") + 1], "STALE").exists()
        report.update(engine_current=not stale, engine_stamped=True, app_version="0.2.0",
                      engine_version="0.1.0" if stale else "0.2.0",
                      engine_reason="built for other sources or locks than this app's" if stale else "",
                      llama_cpp="no prebuilt llama-cpp-python wheel for this machine and no C compiler to "
                                "build one; GGUF models run with transformers")
        Path(os.environ["FAKE_PROBES"]).open("a").write(json.dumps(args) + "\n")
    print(json.dumps(report))
    sys.exit(0)
venv = Path(args[args.index("--venv") + 1])
(venv / "bin").mkdir(parents=True)
print("[tunebench] torch build: cpu -- chosen with --torch", flush=True)
print("[tunebench] Installing torch 2.13.0 (cpu)...", flush=True)
if os.environ.get("FAKE_GO"):  # wait for the test, as a long install would
    while not Path(os.environ["FAKE_GO"]).exists():
        time.sleep(0.05)
if os.environ.get("FAKE_FAIL"):
    print("[tunebench] FAILED: Verifying torch (a CPU forward pass) (exit 1). Log: x", flush=True)
    sys.exit(1)
python = venv / "bin" / "python"  # stands for the new environment's: the suite's own python
python.write_text("#!/bin/sh\nexec '%s' \"$@\"\n" % sys.executable)
python.chmod(0o755)
print("[tunebench] The engine environment is ready and verified.", flush=True)
print(json.dumps({"engine_python": str(venv / "bin" / "python"),
                  "llama_cpp": "llama-cpp-python 0.3.36, built from source: GGUF models run with llama.cpp"}),
      flush=True)
'''


@pytest.fixture
def page(qtbot, tmp_path, workspace_home, monkeypatch):
    monkeypatch.setenv("FAKE_PROBES", str(tmp_path / "probes.jsonl"))
    script = tmp_path / "fake_bootstrap.py"
    script.write_text(FAKE_BOOTSTRAP)
    context = AppContext.from_environment()
    widget = SetupPage(context, bootstrap=script)
    widget.resize(900, 700)
    qtbot.addWidget(widget)
    widget.show()  # checks the GPU once
    _wait_idle(qtbot, widget)
    return widget


def _wait_idle(qtbot, page):
    qtbot.waitUntil(lambda: page._process is None, timeout=30000)


def _shot(page, name):
    SHOTS.mkdir(exist_ok=True)
    QApplication.processEvents()  # let the layout follow the new texts before grabbing
    page.grab().save(str(SHOTS / ("setup-" + name + ".png")))


def test_probe_report_is_shown_when_the_page_opens(qtbot, page):
    assert "RTX 3090" in page.gpu_label.text() and "8.6" in page.gpu_label.text()
    assert page.driver_label.text() == "13.0"
    assert page.build_label.text().startswith("cu130")
    assert "download.pytorch.org" in page.downloads_label.text()
    _shot(page, "probe")


def test_override_asks_again(qtbot, page):
    page.torch_combo.setCurrentText("cpu")
    _wait_idle(qtbot, page)
    assert page.build_label.text().startswith("cpu")


def test_successful_build_switches_the_engine_and_removes_the_old_one(qtbot, page):
    context = page._context
    old = context.workspace_dir / "engines" / "env-old"
    (old / "bin").mkdir(parents=True)
    with qtbot.waitSignal(page.sig_engine_changed, timeout=30000) as signal:
        page.build_engine()
    python = signal.args[0]
    assert context.load_settings()[ENGINE_PYTHON_KEY] == python
    assert Path(python).exists() and not old.exists()
    assert "Installing torch" in page.log_view.toPlainText()
    assert "verified and in use" in page.status.text()
    assert page.build_button.text() == "Repair engine"
    assert "" not in page.log_view.toPlainText().splitlines()  # no blank lines from chunking
    assert context.engine_command()[0] == python
    assert page.llama_label.text().endswith("GGUF models run with llama.cpp")  # the new environment's
    _shot(page, "built")


def test_failed_build_keeps_the_working_engine(qtbot, page, monkeypatch):
    context = page._context
    context.save_settings({ENGINE_PYTHON_KEY: "/working/engine/python"})
    page._show_current_engine()
    monkeypatch.setenv("FAKE_FAIL", "1")
    page.build_engine()
    _wait_idle(qtbot, page)
    assert context.load_settings()[ENGINE_PYTHON_KEY] == "/working/engine/python"
    assert list((context.workspace_dir / "engines").iterdir()) == []  # half-built one removed
    assert "FAILED: Verifying torch" in page.status.text()
    assert "stays in use" in page.status.text()
    _shot(page, "failed")


def test_missing_bootstrap_disables_the_page(qtbot, workspace_home, monkeypatch):
    monkeypatch.setattr("gui.pages.setup.find_bootstrap", lambda: None)
    widget = SetupPage(AppContext.from_environment())
    qtbot.addWidget(widget)
    assert not widget.build_button.isEnabled() and "not part of this" in widget.status.text()


def test_last_json():
    assert last_json('[tunebench] x\n{"engine_python": "/p"}\n') == {"engine_python": "/p"}
    assert last_json("no json\n{broken\n") is None


def test_the_real_bootstrap_probe_answers(qtbot, workspace_home):
    widget = SetupPage(AppContext.from_environment())  # finds installer/bootstrap.py
    qtbot.addWidget(widget)
    widget.check()
    qtbot.waitUntil(lambda: widget._process is None, timeout=60000)
    assert widget.build_label.text().split(":")[0] in ("cpu", "cu126", "cu130")


def _old_engine(context, stale=True):
    """An engine environment the page built before (its python runs the suite's python)."""
    old = context.workspace_dir / "engines" / "env-old"
    (old / "bin").mkdir(parents=True)
    python = old / "bin" / "python"
    python.write_text("#!/bin/sh\nexec '%s' \"$@\"\n" % sys.executable)
    python.chmod(0o755)
    if stale:
        (old / "STALE").write_text("")  # the fake probe answers engine_current: false
    context.save_settings({ENGINE_PYTHON_KEY: str(python)})
    return old


def test_current_engine_is_checked_and_shown(qtbot, page, tmp_path):
    old = _old_engine(page._context, stale=False)
    page.check()
    _wait_idle(qtbot, page)
    probes = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    assert probes[-1][probes[-1].index("--venv") + 1] == str(old)
    assert page.freshness_label.text() == "built for Tunebench 0.2.0"
    assert page.build_button.text() == "Repair engine" and not page.banner.isVisible()
    assert page.status.text() == "Ready. Repair builds a fresh engine environment with this build."


def test_stale_engine_is_updated_beside_and_switched_only_after_verification(
        qtbot, page, tmp_path, monkeypatch):
    context = page._context
    old = _old_engine(context)
    old_python = str(old / "bin" / "python")
    page.check()
    _wait_idle(qtbot, page)
    assert page.freshness_label.text() == (
        "Engine environment out of date for Tunebench 0.2.0 (built for 0.1.0) \u2014 Update")
    assert page.build_button.text() == "Update engine"
    assert "Update builds the new engine environment beside" in page.status.text()
    _shot(page, "stale")

    go = tmp_path / "go"
    monkeypatch.setenv("FAKE_GO", str(go))
    page.build_button.click()
    qtbot.waitUntil(lambda: "Installing torch" in page.log_view.toPlainText(), timeout=30000)
    # Building: the old engine stays in use and on disk until the new one is verified.
    assert context.load_settings()[ENGINE_PYTHON_KEY] == old_python and old.is_dir()
    assert context.engine_command()[0] == old_python
    _shot(page, "updating")
    with qtbot.waitSignal(page.sig_engine_changed, timeout=30000) as signal:
        go.write_text("")
    python = signal.args[0]
    assert context.load_settings()[ENGINE_PYTHON_KEY] == python != old_python
    assert not old.exists()  # removed only now, after the switch
    assert Path(python).parents[2] == context.workspace_dir / "engines"
    assert page.build_button.text() == "Repair engine"
    assert "out of date" not in page.freshness_label.text()
    _shot(page, "updated")


def test_failed_update_keeps_the_stale_engine(qtbot, page, monkeypatch):
    context = page._context
    old = _old_engine(context)
    page.check()
    _wait_idle(qtbot, page)
    monkeypatch.setenv("FAKE_FAIL", "1")
    page.build_engine()
    _wait_idle(qtbot, page)
    assert context.load_settings()[ENGINE_PYTHON_KEY] == str(old / "bin" / "python")
    assert old.is_dir() and [p.name for p in old.parent.iterdir()] == ["env-old"]
    assert page.build_button.text() == "Update engine"
