"""The offline bundle: a folder of wheels plus a manifest, installed with ``pip --no-index``.

Standard library only, Python 3.7-parseable. ``bootstrap.py wheelhouse --out DIR`` builds it
(see ``bootstrap_offline.build_wheelhouse``), ``bootstrap.py setup --offline DIR`` installs from it.
A wheelhouse holds wheels for one platform and one Python minor version: the ones of the
machine that built it (pip downloads what this interpreter can install).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Sequence

MANIFEST_NAME = "tunebench-wheelhouse.json"
MANIFEST_FORMAT = 1


# Never copied into a wheel build: environments, caches and, above all, setuptools' build/
# folder, whose stale copies of deleted modules would end up in the wheel.
BUILD_COPY_IGNORED = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                      ".pytest_cache", ".import_linter_cache", "*.pyc")


def clean_source_copy(repo: Path, destination: Path) -> Path:
    """Copy the checkout without build leftovers, so that a wheel holds exactly the sources."""
    shutil.copytree(str(repo), str(destination),
                    ignore=shutil.ignore_patterns(*BUILD_COPY_IGNORED))
    return destination


class WheelhouseError(Exception):
    """A wheelhouse that cannot be used here; the message is one line for the user."""


def this_python() -> str:
    """``"3.11"``: the Python minor version a wheelhouse is bound to."""
    return "%d.%d" % sys.version_info[:2]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (torch wheels are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torch_wheel_version(folder: Path) -> str | None:
    """The version of the torch wheel in a folder (``2.13.0+cpu``), or None."""
    for path in sorted(folder.glob("torch-*.whl")):
        return path.name.split("-")[1]
    return None


def write_manifest(folder: Path, version: str, build: str, extras: Sequence[str],
                   model_spec: str, locks: Sequence[Path] = ()) -> dict:
    """Record what the wheelhouse holds, with a hash per wheel (and source archive), atomically.

    ``locks`` are the lock files its downloads were pinned by (name -> SHA-256), so that a
    bundle can be traced to the locks of a release.
    """
    wheels = sorted(folder.glob("*.whl")) + sorted(folder.glob("*.tar.gz"))  # the sdists built on the machine
    manifest = {
        "format": MANIFEST_FORMAT,
        "tunebench": version,
        "torch_build": build,
        "torch": torch_wheel_version(folder),
        "extras": sorted(extras),
        "model": model_spec,
        "python": this_python(),
        "platform": sysconfig.get_platform(),
        "files": {path.name: file_digest(path) for path in wheels},
        "locks": {path.name: file_digest(path) for path in locks},
    }
    temporary = folder / (MANIFEST_NAME + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(str(temporary), str(folder / MANIFEST_NAME))
    return manifest


def read_manifest(folder: Path, check_hashes: bool = True) -> dict:
    """Read and check a wheelhouse's manifest against this machine and the files present.

    Raises:
        WheelhouseError: Missing or unreadable manifest, another Python or platform, a wheel
            missing or changed since the wheelhouse was built.
    """
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WheelhouseError("%s is not a Tunebench wheelhouse (%s: %s)"
                              % (folder, MANIFEST_NAME, error)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise WheelhouseError("%s: unknown manifest format" % path)
    for key, here in (("python", this_python()), ("platform", sysconfig.get_platform())):
        if manifest.get(key) != here:
            raise WheelhouseError("%s was built for %s %s, this is %s; build one on a machine "
                                  "like this" % (folder, key, manifest.get(key), here))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise WheelhouseError("%s: the manifest lists no wheels" % path)
    for name, digest in sorted(files.items()):
        wheel = folder / name
        if not wheel.is_file():
            raise WheelhouseError("%s: %s is missing" % (folder, name))
        if check_hashes and file_digest(wheel) != digest:
            raise WheelhouseError("%s: %s does not match its recorded SHA-256 (damaged copy?)"
                                  % (folder, name))
    return manifest


def replace_folder(partial: Path, out: Path) -> None:
    """Move a finished wheelhouse into place; an older wheelhouse there is replaced.

    Raises:
        WheelhouseError: ``out`` exists and is not a wheelhouse (never delete user files).
    """
    if out.exists():
        if not (out / MANIFEST_NAME).is_file():
            raise WheelhouseError("%s exists and is not a wheelhouse; choose another --out" % out)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(str(old), ignore_errors=True)
        os.replace(str(out), str(old))
        os.replace(str(partial), str(out))
        shutil.rmtree(str(old), ignore_errors=True)
        return
    os.replace(str(partial), str(out))
