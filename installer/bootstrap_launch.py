"""What runs once the venv is ready: the app's window (``run``) or the test suite (``test``).

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_children as children
import bootstrap_log
import bootstrap_paths as paths
import bootstrap_qtlibs
from bootstrap_children import StepFailed
from bootstrap_context import Context
from bootstrap_log import Log

PYTEST_NO_TESTS_COLLECTED = 5


def replace_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
    """Become the given program (POSIX exec), or run it and return its code (Windows).

    Windows has no real exec: os.exec* starts a new process and returns the console to the
    shell at once, so there the app runs as a child and its exit code is passed on.
    """
    if os.name == "nt":
        return children.run_child(argv, env=env, cwd=cwd).returncode
    os.chdir(str(cwd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(argv[0]), [str(arg) for arg in argv], dict(env))
    raise AssertionError("unreachable")  # os.execve does not return


def launch_app(context: Context, python: Path, repo: Path, args: Sequence[str],
               env: Mapping[str, str]) -> int:
    """Open the window: ``<venv python> -m gui ARGS`` from the repository root.

    The repository root, not the user's folder, is the working folder, so that ``-m gui``
    cannot pick up an unrelated ``gui`` folder from wherever the command was typed. On a Linux
    X11 desktop the X libraries of Qt's xcb plugin are checked first (``bootstrap_qtlibs``):
    when some are missing, the packages to install are named and the window is not started.
    """
    missing = bootstrap_qtlibs.report(context.log, python.parent.parent, env)
    if missing is not None:
        return missing
    argv = [str(python), "-m", "gui"] + list(args)
    # The setup page finds the bootstrap (and the installed app's wheel) through these.
    env = dict(env, TUNEBENCH_BOOTSTRAP=str(paths.BOOTSTRAP_FILE))
    if context.app_wheel is not None:
        env["TUNEBENCH_APP_WHEEL"] = str(context.app_wheel)
    context.log.say("Starting Tunebench...")
    context.log.write("$ " + bootstrap_log.format_command(argv))
    try:
        return replace_process(argv, env, repo)
    except OSError as error:
        raise StepFailed("Starting Tunebench", "could not start: %s" % error, argv) from None


def run_tests(log: Log, python: Path, repo: Path, args: Sequence[str],
              env: Mapping[str, str]) -> int:
    """Run the whole pytest suite from the repository root.

    Returns:
        pytest's exit code; 5 ("no tests collected") counts as a failure, since a suite that
        finds nothing must not pass.
    """
    argv = [str(python), "-m", "pytest"] + list(args)
    log.say("Running the test suite: " + bootstrap_log.format_command(argv))
    code = children.run_child(argv, env=env, cwd=repo).returncode
    if code == PYTEST_NO_TESTS_COLLECTED:
        log.say("FAILED: pytest collected no tests (exit 5).", error=True)
    elif code != 0:
        log.say("Tests failed (pytest exit %d). Log: %s" % (code, log.path), error=True)
    else:
        log.say("All tests passed.")
    return code
