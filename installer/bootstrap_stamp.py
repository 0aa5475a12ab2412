"""The stamp: a record in the venv of what was installed from which sources, so that the next
``run`` skips every install and opens the window in seconds.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_app
import bootstrap_locks
import bootstrap_paths as paths
from bootstrap_children import StepFailed
from bootstrap_context import Context
from bootstrap_torch import BUILD_NAMES, TorchBuild, make_build

STAMP_FORMAT = 1


def sources_hash(files: Sequence[Path]) -> str:
    """Hash the files whose change must trigger a new setup (pyproject.toml, the bootstrap)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def wanted_stamp(context: Context, repo: Path, extras: Sequence[str], build: TorchBuild | None,
                 locks: Sequence[Path] = ()) -> dict:
    """The stamp this setup would write: what the venv must hold to skip the installs.

    The bootstrap's own modules and the locks in use count as sources: a changed bootstrap,
    new locks (or ``--no-locks``) mean a new setup. ``build`` is None for a GUI-only setup (no
    torch): its stamp records ``"torch": null``.
    """
    files = [bootstrap_app.app_source(context, repo)] + paths.own_files() + list(locks)
    return {
        "format": STAMP_FORMAT,
        "sources": sources_hash(files),
        "extras": sorted(extras),
        "torch": None if build is None else build.name,
    }


def stamp_covers(stamp: object, wanted: Mapping) -> bool:
    """Whether a recorded stamp makes the installs unnecessary.

    The installed extras may be more than the wanted ones: after ``test`` installed
    ``gui,engine,dev``, ``run`` (``gui,engine``) needs nothing more, and a GUI-only setup
    (wanted torch None) needs no particular torch build. The other way round, a GUI-only stamp
    (torch null, extras ``gui``) never covers a setup that wants the engine.
    """
    if not isinstance(stamp, dict):
        return False
    keys = ("format", "sources") if wanted["torch"] is None else ("format", "sources", "torch")
    if any(stamp.get(key) != wanted[key] for key in keys):
        return False
    installed = stamp.get("extras")
    if not isinstance(installed, list) or not all(isinstance(x, str) for x in installed):
        return False
    return set(wanted["extras"]) <= set(installed)


def full_setup_is_current(context: Context, stamp: object, repo: Path) -> bool:
    """Whether a stamp records a full setup (with a torch build) of this app's sources: a
    GUI-only setup then has nothing to do. Its sources hash covers the engine's lock too, so it
    never equals a GUI-only setup's hash; it is recomputed with the locks and without them (an
    offline setup is pinned by its wheelhouse, not the locks: ``install.sh --offline`` followed
    by the launcher's ``run --gui-only`` must not reinstall, which would need the network)."""
    if not isinstance(stamp, dict) or stamp.get("torch") not in BUILD_NAMES:
        return False
    extras = stamp.get("extras")
    if not isinstance(extras, list) or "gui" not in extras:
        return False
    build = make_build(stamp["torch"], "the recorded build")
    # The order setup listed them in: the locks' order counts in the hash.
    ordered = [extra for extra in bootstrap_locks.EXTRAS["test"] if extra in extras]
    for use_locks in (True, False):
        try:
            locks = bootstrap_locks.chosen_locks(context.log, ordered, build, use_locks)
        except StepFailed:
            continue
        if stamp_covers(stamp, wanted_stamp(context, repo, extras, build, locks)):
            return True
    return False


def read_stamp(path: Path) -> dict | None:
    """Read the stamp; None when it is missing or unreadable (then everything is installed)."""
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def write_stamp(path: Path, stamp: Mapping) -> None:
    """Write the stamp atomically, so that an interrupted write never looks like a setup."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(dict(stamp), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(str(temporary), str(path))
