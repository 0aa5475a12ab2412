"""The ``uv`` binary the installers carry, pinned and hash-checked (``installer/locks/tools.lock``).

The installers use uv to get a Python 3.11+ on a machine without one (``uv python install``).
uv is published on PyPI as a wheel holding only the binary, so the build scripts fetch it with
the same tool and the same checks as every other pinned package: ``pip download
--require-hashes`` for the target platform (the pip cache makes a rebuild quick), then take the
binary out of the wheel's ``uv-VERSION.data/scripts/`` folder.

Standard library only (pip runs as a child process).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

TOOLS_LOCK = Path(__file__).resolve().parent.parent / "locks" / "tools.lock"
# platform -> (pip's --platform tag of the published wheel, the binary's name in the wheel)
PLATFORMS = {"windows": ("win_amd64", "uv.exe"), "linux": ("manylinux_2_17_x86_64", "uv")}
PIN = re.compile(r"^uv==([0-9][0-9A-Za-z.+-]*)", re.MULTILINE)


class FetchError(SystemExit):
    """The pinned uv could not be had: one line saying why (a SystemExit, so scripts print it)."""


def pinned_version(lock: Path = TOOLS_LOCK) -> str:
    """The uv version pinned in ``lock``."""
    found = PIN.search(lock.read_text(encoding="utf-8"))
    if found is None:
        raise FetchError("%s: no uv==VERSION line" % lock)
    return found.group(1)


def download_command(platform: str, dest: Path, lock: Path = TOOLS_LOCK,
                     find_links: Path | None = None) -> list[str]:
    """The ``pip download`` argv for the uv wheel of ``platform``, hashes required."""
    tag = PLATFORMS[platform][0]
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", tag, "--python-version", "3.11", "--require-hashes",
            "--disable-pip-version-check", "-q", "-r", str(lock), "-d", str(dest)]
    if find_links is not None:  # a folder of wheels instead of the package index (tests, offline)
        argv += ["--no-index", "--find-links", str(find_links)]
    return argv


def _pip_reason(stderr: str) -> str:
    """pip's many-line error as one line."""
    if "DO NOT MATCH THE HASHES" in stderr:
        return "its SHA-256 is not the one pinned (a tampered or re-published wheel?)"
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    lines = errors or [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[0] if lines else "pip failed without a message"


def fetch_uv(platform: str, dest: Path, lock: Path = TOOLS_LOCK,
             find_links: Path | None = None) -> Path:
    """Download the pinned uv wheel for ``platform`` and put its binary into ``dest``.

    Args:
        platform: ``"windows"`` (``uv.exe``) or ``"linux"`` (``uv``).
        dest: The folder that receives the binary (created).
        lock: The tools lock naming the version and the wheels' SHA-256 hashes.
        find_links: A folder of wheels to take it from, with no package index.

    Returns:
        The binary's path. Nothing is written into ``dest`` unless the wheel's hash matched.

    Raises:
        FetchError: one line, when the download, the hash check or the extraction fails.
    """
    version = pinned_version(lock)
    name = PLATFORMS[platform][1]
    with tempfile.TemporaryDirectory(prefix="tunebench-uv-") as scratch:
        done = subprocess.run(download_command(platform, Path(scratch), lock, find_links),
                              capture_output=True, text=True, errors="replace")
        if done.returncode != 0:
            raise FetchError("uv==%s (%s) could not be downloaded: %s"
                             % (version, PLATFORMS[platform][0], _pip_reason(done.stderr)))
        wheels = sorted(Path(scratch).glob("uv-*.whl"))
        if len(wheels) != 1:
            raise FetchError("pip download of uv==%s gave %d wheels" % (version, len(wheels)))
        return _extract(wheels[0], "uv-%s.data/scripts/%s" % (version, name), dest / name)


def _extract(wheel: Path, member: str, target: Path) -> Path:
    """Copy one file out of the wheel to ``target`` (via a temporary name), executable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(str(wheel)) as archive, archive.open(member) as source, \
                open(str(partial), "wb") as out:
            while True:
                block = source.read(1 << 20)
                if not block:
                    break
                out.write(block)
    except (KeyError, zipfile.BadZipFile) as error:
        partial.unlink(missing_ok=True)
        raise FetchError("%s: no %s in it (%s)" % (wheel.name, member, error)) from None
    partial.chmod(0o755)
    os.replace(str(partial), str(target))
    return target


def lock_text(version: str, hashes: Sequence[str]) -> str:
    """The tools lock for ``version``: a pip requirements file with one hash per platform."""
    return (
        "# Tunebench tools lock: the uv binary the installers carry (Windows uv.exe, Linux uv).\n"
        "# Read by installer/linux/uv_tool.py, which downloads the wheel of one platform with\n"
        "# pip download --require-hashes and takes the binary out of its *.data/scripts/ folder.\n"
        "# A pip requirements file; not *.txt, since those are the bootstrap's locks "
        "(test_locks.py).\n"
        "# Refresh: python installer/make_locks.py --uv-pin VERSION\n"
        "uv==%s \\\n%s\n"
        "    # the hashes: %s\n" % (
            version, " \\\n".join("    --hash=sha256:" + digest for digest in hashes),
            ", then ".join(tag for tag, _ in PLATFORMS.values())))


def write_pin(version: str, lock: Path = TOOLS_LOCK) -> Path:
    """Pin uv ``version``: download its wheel for each platform, write their SHA-256 to ``lock``.

    Trust on first use, as for every lock: the wheels come from the package index pip is set
    up with (PyPI, over HTTPS); later builds then refuse any other file.
    """
    hashes = []
    with tempfile.TemporaryDirectory(prefix="tunebench-uv-pin-") as scratch:
        for tag, _ in PLATFORMS.values():
            folder = Path(scratch) / tag
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--platform", tag, "--python-version", "3.11", "-q",
                    "--disable-pip-version-check", "uv==" + version, "-d", str(folder)]
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace")
            if done.returncode != 0:
                raise FetchError("uv==%s (%s) could not be downloaded: %s"
                                 % (version, tag, _pip_reason(done.stderr)))
            wheel = sorted(folder.glob("uv-*.whl"))[0]
            hashes.append(hashlib.sha256(wheel.read_bytes()).hexdigest())
    partial = lock.with_name(lock.name + ".partial")
    partial.write_text(lock_text(version, hashes), encoding="utf-8")
    os.replace(str(partial), str(lock))
    return lock


def main(argv: Sequence[str] | None = None) -> int:
    """``uv_tool.py PLATFORM DEST``: fetch the pinned uv into DEST (for a manual check)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in PLATFORMS:
        print("usage: uv_tool.py {%s} DEST" % ",".join(PLATFORMS), file=sys.stderr)
        return 2
    print(fetch_uv(args[0], Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
