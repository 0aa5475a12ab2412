"""Child processes: the isolated environment every child gets, running a step, and reporting a
step that failed.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

import bootstrap_log
import bootstrap_pipconf
from bootstrap_log import Log

# Variables that would make a child Python or installer look outside the venv.
DROPPED_VARIABLES = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
    "VIRTUAL_ENV", "__PYVENV_LAUNCHER__",
)
# PIP_* and UV_* carry the user's installer settings; CONDA* an active conda environment.
DROPPED_PREFIXES = ("PIP_", "UV_", "CONDA", "_CONDA")


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every child process, isolated from the user's Python settings.

    Dropped: PYTHONPATH/PYTHONHOME and friends, every PIP_* and UV_* variable, an active conda
    environment (its variables and its folders on PATH) and an active virtualenv's variable.
    pip then reads no config file at all (PIP_CONFIG_FILE=os.devnull skips the machine-wide one
    too), uv none (UV_NO_CONFIG), and Python no user site-packages. The network settings of
    the pip configuration -- machine-wide file, user's file and PIP_* variables, as pip reads
    them: ``index-url``, ``extra-index-url``, ``trusted-host``, ``cert``, ``client-cert``,
    ``proxy``, ``timeout``, ``retries`` -- come back as PIP_* variables
    (``bootstrap_pipconf.network_env``), so every pip child reaches the network as the user's
    pip would. The package sources are also given to installs as explicit flags (see
    ``bootstrap_pip.read_pip_sources``).

    Args:
        base: The environment to start from; ``os.environ`` when None. It is not modified.

    Returns:
        A new environment mapping.
    """
    env = dict(os.environ if base is None else base)
    network = bootstrap_pipconf.network_env(env)
    conda_prefix = ""
    for key in list(env):
        name = key.upper()  # Windows variable names are case-insensitive
        if name == "CONDA_PREFIX":
            conda_prefix = env[key]
        if name in DROPPED_VARIABLES or name.startswith(DROPPED_PREFIXES):
            del env[key]
    if conda_prefix:
        for key in [key for key in env if key.upper() == "PATH"]:
            env[key] = without_folders_under(env[key], conda_prefix)
    env.update(PYTHONNOUSERSITE="1", PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", **network)
    return env


def without_folders_under(search_path: str, prefix: str) -> str:
    """Remove the PATH entries inside ``prefix`` (an activated conda environment's folders)."""
    root = os.path.normcase(os.path.abspath(prefix))
    kept = [entry for entry in search_path.split(os.pathsep) if entry and not (
        os.path.normcase(os.path.abspath(entry)) + os.sep).startswith(root + os.sep)]
    return os.pathsep.join(kept)


def run_child(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run a child process from an argv list (never a shell string: paths may hold spaces).

    Every child of the bootstrap is started here, so that the tests replace this one function
    to play pip, the venv's python and pytest.

    Args:
        argv: The program and its arguments.
        env: The child's environment (see ``child_env``).
        cwd: The working folder; None keeps ours.
        capture: Capture stdout/stderr as text; otherwise they go to the terminal.

    Returns:
        The finished process.
    """
    return subprocess.run(
        [str(arg) for arg in argv],
        env=dict(env),
        cwd=None if cwd is None else str(cwd),
        capture_output=capture,
        text=True,
        errors="replace",
    )


class StepFailed(Exception):
    """A setup step failed in an expected way: reported in one message, without a traceback."""

    def __init__(
        self, step: str, status: str, argv: Sequence[str] | None = None, code: int = 1,
        hint: str = "", retry: bool = True,
    ) -> None:
        super().__init__(step)
        self.step, self.status, self.argv, self.code = step, status, argv, code
        self.hint = hint  # what to do first, ending with ". "; may be empty
        self.retry = retry  # whether rerunning (or --reinstall) can help


def run_step(
    log: Log, title: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, hint: str = ""
) -> None:
    """Announce a step, run its command with output to the terminal, and check the exit code.

    Raises:
        StepFailed: The command could not start or exited with a non-zero code.
    """
    log.say(title + "...")
    log.write("$ " + bootstrap_log.format_command(argv))
    try:
        code = run_child(argv, env=env, cwd=cwd).returncode
    except OSError as error:
        raise StepFailed(title, "could not start: %s" % error, argv, hint=hint) from None
    if code != 0:
        # Killed by a signal gives a negative code; keep the process exit status in 1..255.
        raise StepFailed(title, "exit %d" % code, argv, code if 0 < code < 256 else 1, hint)


def report_failure(log: Log, failure: StepFailed) -> int:
    """Tell the user what failed, the command, and how to retry.

    Returns:
        The exit code for the bootstrap.
    """
    advice = failure.hint
    if failure.retry:
        advice += "Run the same command again to retry, or add --reinstall to start over."
    if log.path is not None:
        advice += " Log: %s" % log.path
    log.say("FAILED: %s (%s). %s" % (failure.step, failure.status, advice.strip()), error=True)
    if failure.argv:
        log.say("  command: " + bootstrap_log.format_command(failure.argv), error=True)
    return failure.code
