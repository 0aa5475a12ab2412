"""Setup page: what this machine has, which torch build fits, and building the engine
environment (verified before it is used; Repair builds a fresh one).

The work is done by the stdlib bootstrap (installer/bootstrap.py) in a child process: ``probe``
prints the GPU report as JSON; ``engine --venv NEW`` builds an engine-only environment in a new
folder, verifies it (a CPU forward; on a CUDA build a GPU tensor op and a bitsandbytes 4-bit
forward) and prints ``{"engine_python": ...}``. Only then does the page switch the settings to
the new interpreter and delete the older environments, so an interrupted or failed build never
replaces a working engine.

With no engine at all (the installed app's small GUI environment has no torch) the page shows a
banner, and the window opens on it. With an engine environment of its own, the GPU check also
asks ``probe --venv ENGINE`` whether that environment was built for this app's sources and
locks; after an upgrade it is out of date, and Update builds the new one beside it the same way.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
import time
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.context import ENGINE_MISSING, ENGINE_PYTHON_KEY, AppContext, forget_engine_checks

BOOTSTRAP_ENV = "TUNEBENCH_BOOTSTRAP"  # set by the bootstrap when it starts the window
APP_WHEEL_ENV = "TUNEBENCH_APP_WHEEL"  # set when the app runs from an installed wheel
TORCH_CHOICES = ("auto", "cpu", "cu126", "cu130")
ENGINES_FOLDER = "engines"
ENV_PREFIX = "env-"
MAX_LOG_LINES = 5000
MISSING_BANNER = "Set up the engine to train, test prompts and evaluate."
MISSING_DETAIL = ("Set up engine installs torch and the training libraries in an environment of "
                  "their own, checks that they work on this machine, then switches to them.")
BANNER_STYLE = ("QLabel#banner { padding: 8px 10px; border-radius: 4px; background: #fff4e5; "
                "color: #7a3e00; border: 1px solid #f3c98b; }")
STALE_STYLE = "color: #b42318; font-weight: 600;"


def find_bootstrap() -> Path | None:
    """The bootstrap script: named by the launcher, or the checkout's installer folder."""
    named = os.environ.get(BOOTSTRAP_ENV, "")
    if named and Path(named).is_file():
        return Path(named)
    checkout = Path(__file__).resolve().parents[2] / "installer" / "bootstrap.py"
    return checkout if checkout.is_file() else None


def engine_venv(python: str) -> Path:
    """The environment of an engine interpreter: ``<venv>/bin/python`` or
    ``<venv>\\Scripts\\python.exe``."""
    return Path(python).parent.parent


def last_json(text: str) -> dict | None:
    """The last line of ``text`` that is a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None


class SetupPage(QWidget):
    """Shows the GPU probe and builds, verifies and switches to an engine environment."""

    sig_engine_changed = Signal(str)
    sig_engine_stale = Signal(str)  # one line: the engine environment is out of date

    def __init__(self, context: AppContext, bootstrap: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self._bootstrap = bootstrap if bootstrap is not None else find_bootstrap()
        self._process: QProcess | None = None
        self._mode = ""  # "probe" or "engine" while a process runs
        self._output = ""
        self._pending = ""  # the unfinished last line of the output
        self._target: Path | None = None
        self._checked_once = False
        self._stale = False  # the engine environment was built for another app version
        self._build()
        self._show_current_engine()
        self.show_engine_problem(context.engine_problem())
        if self._bootstrap is None:
            self.status.setText("The setup tools (installer/bootstrap.py) are not part of this "
                                "installation; reinstall Tunebench to use this page.")
            for button in (self.check_button, self.build_button):
                button.setEnabled(False)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.banner = QLabel(wordWrap=True, objectName="banner", visible=False)
        self.banner.setStyleSheet(BANNER_STYLE)
        layout.addWidget(self.banner)
        machine = QGroupBox("This machine")
        form = QFormLayout(machine)
        self.gpu_label = QLabel("not checked yet", wordWrap=True)
        self.driver_label = QLabel("-")
        self.build_label = QLabel("-", wordWrap=True)
        self.downloads_label = QLabel("-", wordWrap=True)
        self.torch_combo = QComboBox()
        self.torch_combo.addItems(TORCH_CHOICES)
        self.torch_combo.setToolTip("auto chooses from nvidia-smi; pick another build to override")
        form.addRow("GPU", self.gpu_label)
        form.addRow("Driver CUDA", self.driver_label)
        form.addRow("Torch build", self.build_label)
        form.addRow("Override", self.torch_combo)
        form.addRow("Will download", self.downloads_label)
        layout.addWidget(machine)
        engine = QGroupBox("Engine environment")
        engine_form = QFormLayout(engine)
        self.engine_label = QLabel("-", wordWrap=True)
        self.freshness_label = QLabel("-", wordWrap=True)
        engine_form.addRow("In use", self.engine_label)
        engine_form.addRow("Version", self.freshness_label)
        self.llama_label = QLabel("-", wordWrap=True)
        self.llama_label.setToolTip("llama.cpp runs GGUF models with their weights quantised (less memory, "
                                    "faster on a CPU); without it they run with transformers.")
        engine_form.addRow("llama.cpp", self.llama_label)
        layout.addWidget(engine)
        buttons = QHBoxLayout()
        self.check_button = QPushButton("Check again")
        self.build_button = QPushButton("Set up engine")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        for button in (self.check_button, self.build_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.status = QLabel("", wordWrap=True)
        layout.addWidget(self.status)
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        layout.addWidget(self.log_view, 1)
        self.check_button.clicked.connect(self.check)
        self.build_button.clicked.connect(self.build_engine)
        self.cancel_button.clicked.connect(self.cancel)
        self.torch_combo.currentTextChanged.connect(lambda _text: self.check())

    def _show_current_engine(self) -> None:
        chosen = self._context.load_settings().get(ENGINE_PYTHON_KEY)
        if chosen:
            self.engine_label.setText(str(chosen))
            self.build_button.setText("Update engine" if self._stale else "Repair engine")
            self.build_button.setToolTip("Build a fresh engine environment; the current one "
                                         "stays in use until the new one is verified")
        else:
            own = "has no torch" if self._context.engine_problem() else "no separate engine yet"
            self.engine_label.setText("the app's own Python (%s); %s" % (sys.executable, own))
            self.build_button.setText("Set up engine")
            self.freshness_label.setText("-")

    def show_engine_problem(self, problem: str | None) -> None:
        """Show (or, with None, hide) the banner saying the engine must be set up first."""
        if problem:
            detail = MISSING_DETAIL if problem == ENGINE_MISSING else problem
            self.banner.setText("<b>%s</b><br>%s" % (MISSING_BANNER, html.escape(detail)))
        self.banner.setVisible(bool(problem))
        self.build_button.setObjectName("primary" if problem or self._stale else "")
        self.build_button.style().unpolish(self.build_button)  # the object name picks the style
        self.build_button.style().polish(self.build_button)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        """Check the GPU the first time the page is shown (nvidia-smi, a second or two)."""
        super().showEvent(event)
        if not self._checked_once:
            self.check()

    # ------------------------------------------------------------------ actions

    def check(self) -> None:
        """Ask the bootstrap for the GPU report (nvidia-smi, with its own timeouts)."""
        if self._bootstrap is None or self._process is not None:
            return
        self._checked_once = True
        self.status.setText("Checking the GPU...")
        args = ["probe", "--torch", self.torch_combo.currentText()]
        chosen = self._context.load_settings().get(ENGINE_PYTHON_KEY)
        if chosen:  # also: was this engine environment built for this app's locks?
            args += ["--venv", str(engine_venv(str(chosen)))] + self._wheel_args()
        self._start("probe", args)

    def build_engine(self) -> None:
        """Build a new engine environment beside the current one; switch only if verified."""
        if self._bootstrap is None or self._process is not None:
            return
        engines = self._context.workspace_dir / ENGINES_FOLDER
        engines.mkdir(parents=True, exist_ok=True)
        self._target = engines / (ENV_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
        args = ["engine", "--venv", str(self._target), "--torch", self.torch_combo.currentText()]
        args += self._wheel_args()
        self.log_view.clear()
        self.status.setText("Building the engine environment in %s..." % self._target)
        self._start("engine", args)

    @staticmethod
    def _wheel_args() -> list[str]:
        """``--wheel APP`` for an installed app: the engine is built from (and compared with)
        the app's own wheel."""
        wheel = os.environ.get(APP_WHEEL_ENV, "")
        return ["--wheel", wheel] if wheel and Path(wheel).is_file() else []

    def cancel(self) -> None:
        if self._process is not None:
            self._process.kill()  # the half-built folder is removed in _finished

    def is_busy(self) -> bool:
        """Whether an engine build runs (a GPU check is quick and never blocks closing)."""
        return self._process is not None and self._mode == "engine"

    def shutdown(self) -> None:
        """Stop a running build when the window closes (the old engine stays in use)."""
        if self._process is not None:
            self._process.kill()
            self._process.waitForFinished(5000)

    # ------------------------------------------------------------------ process

    def _start(self, mode: str, args: list[str]) -> None:
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        for name in ("PYTHONPATH", "PYTHONHOME"):
            env.remove(name)
        env.insert("PYTHONNOUSERSITE", "1")
        env.insert("PYTHONUNBUFFERED", "1")  # progress lines arrive as they are printed
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._failed_to_start)
        self._process, self._mode, self._output = process, mode, ""
        self._set_busy(True)
        process.start(sys.executable, [str(self._bootstrap)] + args)

    def _read(self) -> None:
        if self._process is None:
            return
        text = bytes(self._process.readAllStandardOutput()).decode("utf-8", "replace")
        self._output += text
        if self._mode == "engine":  # whole lines only: chunks may end mid-line
            lines = (self._pending + text.replace("\r\n", "\n")).split("\n")
            self._pending = lines.pop()
            for line in lines:
                self.log_view.appendPlainText(line)

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            self._output += "\n[tunebench] FAILED: could not start %s" % sys.executable
            self._finished(1, QProcess.ExitStatus.CrashExit)

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._process is None:
            return
        self._read()
        if self._pending:
            self.log_view.appendPlainText(self._pending)
            self._pending = ""
        mode, output = self._mode, self._output
        self._process.deleteLater()
        self._process, self._mode = None, ""
        self._set_busy(False)
        ok = code == 0 and status == QProcess.ExitStatus.NormalExit
        if mode == "probe":
            self._show_probe(last_json(output) if ok else None, output)
        else:
            self._engine_done(last_json(output) if ok else None, output)

    def _set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy and self._mode == "engine")
        for widget in (self.check_button, self.build_button, self.torch_combo):
            widget.setEnabled(not busy)

    # ------------------------------------------------------------------ results

    def _show_probe(self, report: dict | None, output: str) -> None:
        if report is None:
            self.status.setText("Could not check the GPU: " + _failure_line(output))
            return
        gpus = report.get("gpus") or []
        self.gpu_label.setText("; ".join("%s (compute %s, driver %s)" % (
            g.get("name"), g.get("compute_cap"), g.get("driver")) for g in gpus) or "no NVIDIA GPU")
        self.driver_label.setText(str(report.get("driver_cuda") or "-"))
        self.build_label.setText("%s: %s" % (report.get("build"), report.get("reason")))
        self.downloads_label.setText("\n".join("- " + line for line in report.get("downloads", [])))
        self._show_freshness(report)
        if self._stale:
            self.status.setText("Ready. Update builds the new engine environment beside the old "
                                "one and switches after verifying it.")
        elif self._context.load_settings().get(ENGINE_PYTHON_KEY):
            self.status.setText("Ready. Repair builds a fresh engine environment with this build.")
        else:
            self.status.setText("Ready. Set up the engine to install this build.")

    def _show_freshness(self, report: dict) -> None:
        """Whether the engine environment in use was built for this app (``probe --venv``)."""
        self._stale = False
        self.llama_label.setText(str(report.get("llama_cpp") or "-"))
        if "engine_current" not in report:  # no engine environment of its own was checked
            self.freshness_label.setText("-")
        elif report.get("engine_current"):
            self.freshness_label.setText("built for Tunebench %s" % report.get("app_version"))
            self.freshness_label.setStyleSheet("")
        elif report.get("engine_stamped"):
            self._stale = True
            built = report.get("engine_version")
            self.freshness_label.setText(
                "Engine environment out of date for Tunebench %s%s \u2014 Update" % (
                    report.get("app_version") or "?", " (built for %s)" % built if built else ""))
            self.freshness_label.setToolTip(str(report.get("engine_reason") or ""))
            self.freshness_label.setStyleSheet(STALE_STYLE)
            self.sig_engine_stale.emit(self.freshness_label.text().replace("\u2014 Update",
                                                                          "\u2014 see Setup"))
        else:
            self.freshness_label.setText("not built by Tunebench's setup; cannot tell")
            self.freshness_label.setStyleSheet("")
        self._show_current_engine()
        self.show_engine_problem(self._context.engine_problem())

    def _engine_done(self, report: dict | None, output: str) -> None:
        target, self._target = self._target, None
        python = (report or {}).get("engine_python")
        if not python or not Path(python).exists():
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)  # never leave a half-built engine
            self.status.setText("The engine environment was not set up; the current one stays "
                                "in use. " + _failure_line(output))
            return
        settings = self._context.load_settings()
        settings[ENGINE_PYTHON_KEY] = python
        self._context.save_settings(settings)
        self._remove_old_engines(keep=target)
        self._stale = False  # just built by this app's bootstrap
        self.freshness_label.setText("built by this version of Tunebench")
        self.freshness_label.setStyleSheet("")
        self.llama_label.setText(str((report or {}).get("llama_cpp") or "-"))
        self._show_current_engine()
        forget_engine_checks()
        self.show_engine_problem(self._context.engine_problem())
        self.status.setText("Engine environment verified and in use: %s" % python)
        self.sig_engine_changed.emit(python)

    def _remove_old_engines(self, keep: Path | None) -> None:
        """Delete the environments this page built before, now that the new one works."""
        engines = self._context.workspace_dir / ENGINES_FOLDER
        for folder in engines.glob(ENV_PREFIX + "*"):
            if keep is None or folder.resolve() != keep.resolve():
                shutil.rmtree(folder, ignore_errors=True)


def _failure_line(output: str) -> str:
    """The bootstrap's FAILED line (it says what failed and where the log is), or the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    failed = [line for line in lines if "FAILED" in line]
    return (failed or lines or ["no output"])[-1]
