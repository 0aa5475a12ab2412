"""Which torch build to install (the rules are in ``gpu_probe.py``) and which one a venv holds.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import bootstrap_children as children
import bootstrap_paths as paths
import gpu_probe
from bootstrap_log import Log

TORCH_VERSION = "2.13.0"
TORCH_SPEC = "torch==" + TORCH_VERSION

PYTORCH_INDEX = gpu_probe.PYTORCH_INDEX
# Not used by default. The CPU build is installed with a plain ``pip install torch==X`` and no
# index flags: on Windows and macOS PyPI's torch is the CPU build, and on this project's Linux
# machines the package sources (see ``bootstrap_pip``) include a local folder holding the CPU
# wheel (pip prefers ``2.13.0+cpu`` over ``2.13.0`` because a local version label sorts
# higher). On other Linux machines PyPI gives the CUDA-bundled wheel, which also runs on a CPU
# but is a few GB larger; to get the small one, add this URL as ``extra-index-url`` in pip's
# config file (``pip config set global.extra-index-url <url>``).
PYTORCH_CPU_INDEX_URL = PYTORCH_INDEX + "/cpu"

TorchBuild = gpu_probe.TorchBuild
make_build = gpu_probe.make_build
BUILD_NAMES = gpu_probe.BUILD_NAMES
CUDA_OF_BUILD = gpu_probe.CUDA_OF_BUILD
TORCH_CHOICES = ("auto",) + BUILD_NAMES

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


def pick_torch_build(log: Log, choice: str) -> TorchBuild:
    """Resolve ``--torch``: ``auto`` asks nvidia-smi (see gpu_probe), a build name is taken as
    given."""
    return gpu_probe.pick(choice, log=log.write)


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


def probe_torch(log: Log, python: Path, env: Mapping[str, str]) -> TorchState:
    """Ask the venv's python which torch it has."""
    done = children.run_child([python, "-c", TORCH_PROBE], env=env, cwd=paths.REPO_ROOT,
                              capture=True)
    lines = done.stdout.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    state = TorchState(**{key: found.get(key) for key in ("dist", "version", "cuda", "error")})
    log.write("torch in the venv: " + state.describe())
    return state
