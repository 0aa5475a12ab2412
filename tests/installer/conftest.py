"""Fixtures shared by the installer tests (tests/conftest.py belongs to the whole suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "installer" / "bootstrap.py"


@pytest.fixture(scope="session")
def built_house(tmp_path_factory):
    """A real offline wheelhouse (CPU torch) built with ``bootstrap.py wheelhouse``, once.

    The suite's own venv supplies pip; pip's cache and the machine's local wheel folder make
    the downloads quick.
    """
    out = tmp_path_factory.mktemp("bundle") / "wheel house"
    argv = [sys.executable, str(BOOTSTRAP), "wheelhouse", "--out", str(out), "--torch", "cpu",
            "--venv", sys.prefix]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, errors="replace",
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out
