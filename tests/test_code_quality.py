"""Lint and type checks, run by the same test command as everything else.

ruff (pyflakes, pycodestyle, import order; settings in pyproject.toml) covers the whole tree;
mypy covers engine/core, the stdlib core both processes import, and gui/state, the GUI's Qt-free
logic. A finding fails the test with the tool's own report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TYPED_PACKAGES = ["engine/core", "gui/state"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: it comes with the dev extra (installer/bootstrap.py test)"
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    done = _run([_tool("ruff"), "check", "--no-cache", "."])
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_the_typed_packages() -> None:
    done = _run([_tool("mypy"), "--no-incremental", "--config-file", "pyproject.toml", *TYPED_PACKAGES])
    assert done.returncode == 0, done.stdout + done.stderr
