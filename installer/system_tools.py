"""The Debian tools the tests need, installed with apt-get when they are missing.

The installer tests need lintian, NSIS, wine and xvfb; the sweep tests start a throwaway
PostgreSQL server from Debian's `postgresql` package (tests/postgres_server.py).

Standard library only. ``bootstrap.py test`` calls ``ensure_tools`` before pytest: on Debian or
Ubuntu as root (CI) it installs what is missing, quietly, saying what and why; elsewhere it
says which command would install them, and the tests that need a tool fail naming it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

# program -> Debian package. Measured on CI's kind of machine (Debian 12, 2 cores, Debian
# mirror reachable), with --no-install-recommends: lintian + desktop-file-utils 65 s, nsis
# 19 s, wine + wine64 + xvfb + xauth 37 s.
TOOLS = (("lintian", "lintian"), ("desktop-file-validate", "desktop-file-utils"),
         ("dpkg-deb", "dpkg"), ("makensis", "nsis"), ("wine", "wine"),
         ("/usr/lib/wine/wine64", "wine64"), ("xvfb-run", "xvfb"), ("xauth", "xauth"),
         # Debian keeps the server's programs off PATH, in a folder named by the major version.
         ("/usr/lib/postgresql/*/bin/initdb", "postgresql"))
APT_TIMEOUT_S = 900


def missing_packages(tools: Sequence[tuple] = TOOLS) -> list:
    """The Debian packages whose program is not on PATH, in order, without repeats."""
    missing = []
    for program, package in tools:
        if not _installed(program) and package not in missing:
            missing.append(package)
    return missing


def _installed(program: str) -> bool:
    """On PATH, or (for a path pattern such as PostgreSQL's versioned folder) an existing file."""
    if "*" in program:
        return any(os.access(found, os.X_OK) for found in glob.glob(program))
    return shutil.which(program) is not None


def can_use_apt() -> bool:
    """Debian/Ubuntu, running as root, with apt-get: we may install system packages."""
    return (Path("/etc/debian_version").exists() and hasattr(os, "geteuid")
            and os.geteuid() == 0 and shutil.which("apt-get") is not None)


def apt_install(packages: Sequence[str], log: Callable[[str], None]) -> bool:
    """``apt-get install`` (after ``apt-get update`` when the package lists are stale).

    Returns:
        Whether every package is installed afterwards.
    """
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + list(packages)
    for attempt in ("install", "update", "install"):
        argv = ["apt-get", "update", "-q"] if attempt == "update" else install
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  errors="replace", timeout=APT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            log("apt-get failed: %s" % error)
            return False
        log("$ %s -> exit %d\n%s" % (" ".join(argv), done.returncode, done.stdout[-2000:]
                                      + done.stderr[-2000:]))
        if attempt == "install" and done.returncode == 0:
            return True
    return False


def ensure_tools(say: Callable[[str], None], log: Callable[[str], None],
                 tools: Sequence[tuple] = TOOLS) -> list:
    """Install the missing tools if allowed; otherwise say how.

    Returns:
        The packages still missing.
    """
    missing = missing_packages(tools)
    if not missing:
        return []
    if not can_use_apt():
        say("The tests need these Debian packages, which are missing: %s. "
            "Install them with: sudo apt-get install %s" % (" ".join(missing), " ".join(missing)))
        return missing
    say("Installing Debian packages for the tests: %s (about a minute; "
        "--no-system-packages skips this)..." % " ".join(missing))
    if not apt_install(missing, log):
        say("apt-get could not install %s; the tests that need it will fail (see the log)."
            % " ".join(missing))
    return missing_packages(tools)
