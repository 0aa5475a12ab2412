"""The bootstrap's command line: ``bootstrap.py COMMAND [options] [-- ARGS]``.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import bootstrap_paths as paths
from bootstrap_locks import EXTRAS
from bootstrap_torch import TORCH_CHOICES


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    command: str
    venv: Path
    torch: str = "auto"
    reinstall: bool = False
    passthrough: list = field(default_factory=list)
    offline: Path | None = None  # setup/run: install from this wheelhouse only
    wheel: Path | None = None  # run/setup of an installed app: its Tunebench wheel
    installers: bool = False  # test: only the installer tests (pytest -m installers)
    system_packages: bool = True  # test: apt-get the Debian tools the installer tests need
    out: Path | None = None  # wheelhouse: where to put it
    locks: bool = True  # constrain installs with installer/locks (--no-locks: don't)
    gui_only: bool = False  # run/setup: only the gui extra; the engine comes from Setup
    venv_given: bool = False  # --venv was on the command line (probe: check that engine)


def parse_args(argv: Sequence[str]) -> Options:
    """Parse the command line; everything after ``--`` is passed on unread."""
    argv = list(argv)
    passthrough = []  # type: list[str]
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = make_parser()
    parsed = parser.parse_args(argv)
    check_combinations(parser, parsed, passthrough)
    venv = (parsed.venv or paths.REPO_ROOT / ".venv").expanduser().resolve()
    resolved = [None if p is None else p.expanduser().resolve()
                for p in (parsed.offline, parsed.out)]
    wheel = None if parsed.wheel is None else parsed.wheel.expanduser().resolve()
    if wheel is not None and (parsed.command not in ("run", "setup", "engine", "probe")
                              or not wheel.is_file()):
        parser.error("--wheel needs an existing .whl file, with run, setup, engine or probe")
    if parsed.installers:
        if parsed.command != "test":
            parser.error("--installers works with test")
        passthrough = ["-m", "installers"] + passthrough
    return Options(parsed.command, venv, parsed.torch, parsed.reinstall, passthrough,
                   offline=resolved[0], out=resolved[1], wheel=wheel,
                   installers=parsed.installers, system_packages=not parsed.no_system_packages,
                   locks=not parsed.no_locks, gui_only=parsed.gui_only,
                   venv_given=parsed.venv is not None)


def check_combinations(parser: argparse.ArgumentParser, parsed: argparse.Namespace,
                       passthrough: Sequence[str]) -> None:
    """Refuse options that do not go with the command (``parser.error`` exits with 2)."""
    if parsed.command in ("setup", "wheelhouse") and passthrough:
        parser.error("%s takes no arguments after --" % parsed.command)
    if parsed.command == "wheelhouse" and parsed.out is None:
        parser.error("wheelhouse needs --out DIR")
    if parsed.offline is not None and parsed.command not in ("run", "setup", "engine"):
        parser.error("--offline works with run, setup and engine")
    if parsed.gui_only and parsed.command not in ("run", "setup"):
        parser.error("--gui-only works with run and setup")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser; the help texts are the bootstrap's documentation of each option."""
    parser = argparse.ArgumentParser(
        prog="bootstrap.py",
        description="Set up Tunebench's virtual environment, then open the app or run the tests.",
        epilog="Arguments after -- go to the app (run) or to pytest (test).",
    )
    parser.add_argument("command", choices=sorted(EXTRAS),
                        help="run, setup, test; wheelhouse (build an offline bundle); engine "
                        "(build and verify an engine-only environment); probe (print the GPU "
                        "and torch build as JSON)")
    parser.add_argument("--venv", type=Path, metavar="PATH",
                        help="the virtual environment (default: <repo>/.venv); probe: the "
                        "engine environment to check against this app's locks")
    parser.add_argument("--torch", choices=TORCH_CHOICES, default="auto",
                        help="torch build; auto asks nvidia-smi (default: auto)")
    parser.add_argument("--reinstall", action="store_true",
                        help="ignore the record of the last setup and run every install step "
                        "again (a torch that is already the right build is kept)")
    parser.add_argument("--no-locks", action="store_true",
                        help="resolve versions from pyproject.toml's ranges instead of the "
                        "pinned lock files in installer/locks")
    parser.add_argument("--offline", type=Path, metavar="DIR",
                        help="run/setup: install from this wheelhouse only, with no network")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="wheelhouse: the folder to build the offline bundle in")
    parser.add_argument("--wheel", type=Path, metavar="FILE",
                        help="run/setup: install this Tunebench wheel (an installed app) "
                        "instead of the checkout in editable mode")
    parser.add_argument("--gui-only", action="store_true",
                        help="run/setup: install only the window (no torch, no default model); "
                        "the engine environment is then built from the app's Setup page")
    parser.add_argument("--installers", action="store_true",
                        help="test: run only the installer tests (pytest -m installers)")
    parser.add_argument("--no-system-packages", action="store_true",
                        help="test: do not apt-get the Debian tools the installer tests use")
    return parser
