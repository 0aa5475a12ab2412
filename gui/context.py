"""The application context handed to every page: paths, settings and how to start the engine.

Pages get this object in their constructor instead of looking state up on the QApplication,
so tests build one with a fake engine command and a temporary workspace.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import paths, workspace

SETTINGS_FILE = "settings.json"
ENGINE_PYTHON_KEY = "engine_python"


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
        """Reads the paths from engine.paths (which honours TUNEBENCH_HOME)."""
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


def _source_checkout() -> Path | None:
    root = Path(paths.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "engine").is_dir() else None
