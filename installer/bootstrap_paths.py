"""Where the bootstrap's files are: its own folder, the checkout, the lock files, the files it
writes into a venv, and the modules it is made of.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
BOOTSTRAP_FILE = INSTALLER_DIR / "bootstrap.py"
# The checkout (an installed app has none: the commands then work in the venv).
REPO_ROOT = INSTALLER_DIR.parent

# The pinned versions a release is tested with, one file per target and platform, made by
# make_locks.py: TARGET-PLATFORM.txt, TARGET being an extra (the engine's per torch build).
LOCKS_DIR = INSTALLER_DIR / "locks"

# What the bootstrap writes into a venv; a --venv folder holding only these is still ours.
STAMP_NAME = "tunebench-bootstrap.json"
LOG_NAME = "tunebench-bootstrap.log"
CONSTRAINTS_NAME = "tunebench-constraints.txt"
OUR_FILES = (STAMP_NAME, LOG_NAME, CONSTRAINTS_NAME)

# The bootstrap itself: the entry point and its pieces. Their text counts in the venv's stamp,
# as the one file's did, so that a changed bootstrap means a new setup.
OWN_MODULES = (
    "bootstrap.py", "bootstrap_app.py", "bootstrap_children.py", "bootstrap_cli.py",
    "bootstrap_commands.py", "bootstrap_context.py", "bootstrap_engine.py",
    "bootstrap_installs.py", "bootstrap_llama.py", "bootstrap_launch.py", "bootstrap_locks.py", "bootstrap_log.py",
    "bootstrap_offline.py", "bootstrap_paths.py", "bootstrap_pip.py", "bootstrap_pipconf.py",
    "bootstrap_python.py", "bootstrap_qtlibs.py", "bootstrap_stamp.py", "bootstrap_torch.py",
    "bootstrap_venv.py",
)
# Helpers it imports whose text does not decide what a setup installs: not in the stamp.
HELPER_MODULES = ("gpu_probe.py", "system_tools.py", "wheelhouse.py")
# What the packages carry in their installer/ folder (build_packages.py, build_installer.py).
SHIPPED_MODULES = OWN_MODULES + HELPER_MODULES


def own_files() -> list[Path]:
    """The bootstrap's own modules as paths, in a fixed order (for the stamp's hash)."""
    return [INSTALLER_DIR / name for name in OWN_MODULES]
