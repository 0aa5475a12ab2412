"""The extras each command installs and the lock files that pin them (``installer/locks/``,
made by ``make_locks.py``), passed to pip as constraints.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Sequence

import bootstrap_paths as paths
from bootstrap_children import StepFailed
from bootstrap_log import Log
from bootstrap_torch import TorchBuild

# The extras of each command, in the order an install lists them (their locks follow it, and
# the locks' order counts in the stamp).
EXTRAS = {"run": ("gui", "engine"), "setup": ("gui", "engine"), "test": ("gui", "engine", "dev"),
          "wheelhouse": ("gui", "engine"), "engine": ("engine",), "probe": ()}
# Locks are resolved for x86_64 only: elsewhere their pins may have no wheel.
LOCK_MACHINES = ("x86_64", "amd64")


def lock_platform(system: str = sys.platform, machine: str = platform.machine()) -> str | None:
    """``"linux"`` or ``"windows"``: the platform whose locks fit this machine, or None."""
    if machine.lower() not in LOCK_MACHINES:
        return None
    if system.startswith("linux"):
        return "linux"
    return "windows" if system == "win32" else None


def lock_names(extras: Sequence[str], build: TorchBuild) -> list[str]:
    """The lock targets of these extras: the engine's lock is per torch build."""
    return ["engine-" + build.name if extra == "engine" else extra for extra in extras]


def chosen_locks(log: Log, extras: Sequence[str], build: TorchBuild, use_locks: bool = True,
                 folder: Path = paths.LOCKS_DIR, system: str = sys.platform,
                 machine: str = platform.machine()) -> list[Path]:
    """The lock files that constrain this install (pip ``--constraint``), so that every user
    gets the versions the release was tested with.

    Returns:
        One lock per extra; none with ``--no-locks`` or on a platform without locks (macOS,
        ARM), where pyproject.toml's version ranges are resolved as before.

    Raises:
        StepFailed: A lock this platform should have is missing (a damaged installation).
    """
    if not use_locks or not extras:
        return []
    where = lock_platform(system, machine)
    if where is None:
        log.say("No lock files for %s on %s: versions are resolved from pyproject.toml's ranges"
                % (system, machine))
        return []
    found = [folder / ("%s-%s.txt" % (name, where)) for name in lock_names(extras, build)]
    missing = [path.name for path in found if not path.is_file()]
    if missing:
        hint = "Reinstall Tunebench, or add --no-locks to resolve without them. "
        raise StepFailed("Finding the lock files", "missing %s in %s" % (
            ", ".join(missing), folder), hint=hint, retry=False)
    return found


def constraint_flags(locks: Sequence[Path]) -> list[str]:
    """``--constraint LOCK`` for each lock."""
    flags = []  # type: list[str]
    for lock in locks:
        flags += ["--constraint", str(lock)]
    return flags
