"""The virtual environment: find it, refuse a folder that is not one, create it when needed.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

import bootstrap_children as children
import bootstrap_paths as paths
from bootstrap_children import StepFailed
from bootstrap_log import Log
from bootstrap_python import MIN_PYTHON

# Checked inside the venv: it runs, is new enough, and has pip (a venv made without ensurepip,
# e.g. on Debian without python3-venv, has a python but no pip).
VENV_CHECK = "import sys, pip; sys.exit(0 if sys.version_info >= %r else 1)" % (MIN_PYTHON,)
VENV_HINT = "On Debian/Ubuntu, install the python3-venv package first. "


def venv_python(venv: Path, windows: bool = os.name == "nt") -> Path:
    """The venv's interpreter: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere."""
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def venv_is_usable(python: Path, env: Mapping[str, str]) -> bool:
    """Whether the venv's python runs, is new enough and has pip."""
    if not python.exists():
        return False
    try:
        return children.run_child([python, "-c", VENV_CHECK], env=env,
                                  capture=True).returncode == 0
    except OSError:
        return False


def check_venv_folder(venv: Path) -> None:
    """Refuse a --venv folder that holds something other than a venv, rather than fill it.

    Raises:
        StepFailed: The folder exists, is not empty and is not a venv.
    """
    if not venv.is_dir() or (venv / "pyvenv.cfg").exists():
        return
    if any(entry.name not in paths.OUR_FILES for entry in venv.iterdir()):
        hint = "%s is not a virtual environment; choose another folder with --venv. " % venv
        raise StepFailed("Checking the virtual environment folder", "not a venv", hint=hint,
                         retry=False)


def ensure_venv(log: Log, venv: Path, env: Mapping[str, str]) -> Path:
    """Find the venv, or create it (again) with the Python running this script.

    Returns:
        The venv's python.

    Raises:
        StepFailed: ``python -m venv`` failed.
    """
    python = venv_python(venv)
    if venv_is_usable(python, env):
        return python
    # A broken or too-old venv is useless; --clear starts it from nothing. The stamp goes with
    # it, so that every install step runs again.
    clear = ["--clear"] if (venv / "pyvenv.cfg").exists() else []
    argv = [sys.executable, "-m", "venv"] + clear + [str(venv)]
    children.run_step(log, "Creating the virtual environment in %s" % venv, argv, env,
                      paths.REPO_ROOT, VENV_HINT)
    try:
        (venv / paths.STAMP_NAME).unlink()
    except OSError:
        pass
    return python
