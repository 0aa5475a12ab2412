"""The application context handed to every page: paths, settings and how to start the engine.

Pages get this object in their constructor instead of looking state up on the QApplication,
so tests build one with a fake engine command and a temporary workspace.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import paths, workspace

SETTINGS_FILE = "settings.json"
ENGINE_PYTHON_KEY = "engine_python"
ENGINE_MISSING = ("The engine is not set up yet: set it up on the Setup page to train, test "
                  "prompts and evaluate.")
# Run by another interpreter: finds torch without importing it (a fraction of a second).
ENGINE_CHECK = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"
ENGINE_CHECK_TIMEOUT_S = 30.0
_engine_checks: dict[str, str | None] = {}  # interpreter path -> its problem (None: usable)


@dataclass
class AppContext:
    """Where things are and how to launch the engine, for one window.

    Attributes:
        workspace_dir: The user's work (runs, datasets).
        runs_dir: Run folders, one per training job.
        datasets_dir: Imported datasets, ``<name>/v<N>/manifest.json``.
        config_dir: Holds ``settings.json``.
        engine_override: When set (tests, portable installs), the exact argv prefix used to
            start the engine, instead of the one derived from settings.
    """

    workspace_dir: Path
    runs_dir: Path
    datasets_dir: Path
    config_dir: Path
    engine_override: list[str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, engine_override: list[str] | None = None) -> AppContext:
        """Reads the paths from engine.core.paths (which honours TUNEBENCH_HOME)."""
        return cls(
            workspace_dir=paths.workspace_dir(),
            runs_dir=paths.runs_dir(),
            datasets_dir=paths.datasets_dir(),
            config_dir=paths.config_dir(),
            engine_override=list(engine_override) if engine_override else None,
        )

    @property
    def settings_path(self) -> Path:
        return self.config_dir / SETTINGS_FILE

    def load_settings(self) -> dict[str, Any]:
        """The saved settings, or an empty dict when there are none or the file is unreadable."""
        return workspace.read_json(self.settings_path) or {}

    def save_settings(self, settings: dict[str, Any]) -> None:
        workspace.atomic_write_json(self.settings_path, settings)

    def engine_command(self) -> list[str]:
        """The argv prefix that starts the engine; a job appends its subcommand and flags.

        An installer may give the engine its own interpreter (torch + CUDA) apart from the
        small GUI environment, named by ``engine_python`` in settings.json.
        """
        if self.engine_override:
            return list(self.engine_override)
        python = str(self.load_settings().get(ENGINE_PYTHON_KEY) or sys.executable)
        return [python, "-m", "engine"]

    def engine_problem(self) -> str | None:
        """Why engine jobs cannot start, in one line for the user, or None when they can.

        An ``engine_override`` is taken as given (tests, portable installs)."""
        if self.engine_override:
            return None
        return engine_problem_for(self.engine_command()[0])

    def engine_env(self) -> dict[str, str]:
        """Environment variables the engine gets on top of the system environment."""
        env = dict(self.extra_env)
        home = os.environ.get(paths.HOME_ENV, "").strip()
        if home:
            env[paths.HOME_ENV] = home
        checkout = _source_checkout()
        if checkout is not None:
            # Run from a source checkout (not installed): `-m engine` only resolves when the
            # checkout is on the path. Never added for an installed package, where it would put
            # the GUI's site-packages in front of a separate engine environment.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(checkout), os.environ.get("PYTHONPATH", "")) if p)
        return env


def engine_problem_for(python: str) -> str | None:
    """Why ``python -m engine`` cannot run jobs (no torch, or the interpreter is gone), or None.

    The GUI's own interpreter is asked in-process: ``find_spec`` locates torch without
    importing it (the window never loads torch). Another one (``engine_python`` in settings)
    is asked in a child process. Answers are kept per path: a rebuilt engine environment is a
    new folder, hence a new path.
    """
    if python not in _engine_checks:
        _engine_checks[python] = _check_engine(python)
    return _engine_checks[python]


def _check_engine(python: str) -> str | None:
    if os.path.normcase(os.path.abspath(python)) == os.path.normcase(os.path.abspath(sys.executable)):
        return None if importlib.util.find_spec("torch") is not None else ENGINE_MISSING
    if not Path(python).is_file():
        return f"The engine environment {python} is gone: set it up again on the Setup page."
    # No console window flashing up on Windows for this check.
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
    try:
        done = subprocess.run([python, "-c", ENGINE_CHECK], capture_output=True,
                              timeout=ENGINE_CHECK_TIMEOUT_S, creationflags=flags)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"The engine environment {python} does not start ({exc}): repair it on the Setup page."
    if done.returncode != 0:
        return f"The engine environment {python} has no torch: repair it on the Setup page."
    return None


def forget_engine_checks() -> None:
    """Ask again next time (after the Setup page switched or rebuilt an engine)."""
    _engine_checks.clear()


def _source_checkout() -> Path | None:
    root = Path(paths.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "engine").is_dir() else None
