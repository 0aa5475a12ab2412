"""Choose the torch build (CPU or a CUDA variant) from what ``nvidia-smi`` reports.

Standard library only, Python 3.7-parseable (annotations only as strings): the bootstrap and
the installers import it before anything is installed.

Two facts decide the build, and both come from ``nvidia-smi``:

* each GPU's compute capability (``--query-gpu=name,compute_cap,driver_version``): a torch CUDA
  build only has kernels for some architectures;
* the driver's highest CUDA version (the ``CUDA Version: X.Y`` in plain ``nvidia-smi``'s
  header): a build needs a driver at least as new as its CUDA major version.

The variants published for torch 2.13 (PyTorch RELEASE.md, "PyTorch CUDA Support Matrix", and
pytorch/pytorch#187075 / #190355; cu128 is no longer published from 2.12 on):

======== ============================================= ==============================
build    architectures (Linux x86_64 and Windows)      driver
======== ============================================= ==============================
cu126    Maxwell 5.0 ... Hopper 9.0 (no Blackwell)      CUDA 12.x (525.60+, minor
                                                       version compatibility)
cu130    Turing 7.5 ... Blackwell 10.0, 12.0 (no        CUDA 13.0 (580+)
         Maxwell/Pascal/Volta)
======== ============================================= ==============================

So Pascal/Volta cards need cu126, RTX 50 (Blackwell, 12.0) needs cu130, and Turing to Hopper
get cu130 when the driver is 580+ and cu126 otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PROBE_TIMEOUT_S = 10.0
QUERY_ARGS = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
BUILD_NAMES = ("cpu", "cu126", "cu130")  # --torch choices besides auto


@dataclass(frozen=True)
class Variant:
    """One CUDA build of torch.

    Attributes:
        name: The wheel's local version label and index folder, e.g. ``cu126``.
        cuda: ``torch.version.cuda`` of this build, e.g. ``"12.6"``.
        min_driver_cuda: The lowest driver CUDA version (nvidia-smi's header) it runs on.
        min_cc: The oldest compute capability it has kernels for.
        max_major: The newest compute-capability major it has kernels for (same-major minors
            run the same binaries); None when PTX lets newer GPUs compile the kernels.
    """

    name: str
    cuda: str
    min_driver_cuda: tuple
    min_cc: tuple
    max_major: int | None

    def supports(self, gpu: Gpu) -> bool:
        """Whether this build has kernels for the GPU."""
        if gpu.compute_cap < self.min_cc:
            return False
        return self.max_major is None or gpu.compute_cap[0] <= self.max_major


# Newest first: the first variant that fits is the one chosen.
VARIANTS = (
    Variant("cu130", "13.0", (13, 0), (7, 5), None),
    Variant("cu126", "12.6", (12, 0), (5, 0), 9),
)
CUDA_OF_BUILD = {variant.name: variant.cuda for variant in VARIANTS}

# Driver branch -> highest CUDA version, for when the header cannot be read (NVIDIA's CUDA
# toolkit release notes, table 3). Newest first.
DRIVER_CUDA = (
    ((580,), (13, 0)), ((575,), (12, 9)), ((570,), (12, 8)), ((560,), (12, 6)),
    ((555,), (12, 5)), ((550,), (12, 4)), ((545,), (12, 3)), ((535,), (12, 2)),
    ((530,), (12, 1)), ((525, 60), (12, 0)), ((520,), (11, 8)),
)


@dataclass(frozen=True)
class Gpu:
    """One GPU row of nvidia-smi's query."""

    name: str
    compute_cap: tuple
    driver: tuple

    def describe(self) -> str:
        """The GPU as the user knows it, e.g. ``RTX 4090 (compute 8.9)``."""
        return "%s (compute %s)" % (self.name, dotted(self.compute_cap))


@dataclass(frozen=True)
class Probe:
    """What nvidia-smi said.

    Attributes:
        gpus: The GPUs read from the query; empty when none could be read.
        driver_cuda: The driver's highest CUDA version; None when unknown.
        problem: Why no GPU was read (missing binary, timeout, error); None when fine.
        binary: The nvidia-smi that answered, or None.
    """

    gpus: tuple = ()
    driver_cuda: tuple | None = None
    problem: str | None = None
    binary: str | None = None


@dataclass(frozen=True)
class TorchBuild:
    """Which torch wheel to install.

    Attributes:
        name: ``cpu`` or a CUDA variant's name: the wheel's local version label.
        index_url: PyTorch's wheel index for CUDA builds; None means the ordinary sources.
        reason: One line for the user saying why this build was chosen.
    """

    name: str
    index_url: str | None
    reason: str

    @property
    def cuda(self) -> str | None:
        """The CUDA version ``torch.version.cuda`` reports for this build (None for CPU)."""
        return CUDA_OF_BUILD.get(self.name)


def make_build(name: str, reason: str) -> TorchBuild:
    """A TorchBuild with the wheel index derived from the build name."""
    index_url = None if name == "cpu" else PYTORCH_INDEX + "/" + name
    return TorchBuild(name=name, index_url=index_url, reason=reason)


def dotted(numbers: Sequence[int]) -> str:
    """``(12, 0)`` -> ``"12.0"``."""
    return ".".join(str(number) for number in numbers)


# --------------------------------------------------------------------------- parsing


def parse_numbers(text: str) -> tuple | None:
    """Parse ``"8.9"`` or ``"570.86.10"`` into a tuple of ints; None for anything else."""
    parts = text.strip().split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):  # int() takes "²"
        return None
    return tuple(int(part) for part in parts)


def parse_query(output: str) -> list:
    """Read the GPU rows of the CSV query, skipping lines that are not GPU rows (warnings)."""
    gpus = []
    for line in output.splitlines():
        fields = [part.strip() for part in line.rsplit(",", 2)]  # a name could hold a comma
        if len(fields) != 3 or not fields[0]:
            continue
        compute_cap, driver = parse_numbers(fields[1]), parse_numbers(fields[2])
        if compute_cap is None or len(compute_cap) != 2 or driver is None:
            continue
        gpus.append(Gpu(name=fields[0], compute_cap=compute_cap, driver=driver))
    return gpus


_HEADER_CUDA = re.compile(r"CUDA (?:Driver )?Version\s*:\s*(\d+)\.(\d+)")


def parse_header_cuda(output: str) -> tuple | None:
    """The ``CUDA Version: 12.8`` of plain nvidia-smi's header, or None."""
    found = _HEADER_CUDA.search(output)
    return (int(found.group(1)), int(found.group(2))) if found else None


def cuda_of_driver(driver: tuple) -> tuple | None:
    """The highest CUDA version a driver version supports, from NVIDIA's table; None if older."""
    for branch, cuda in DRIVER_CUDA:
        if driver >= branch:
            return cuda
    return None


# --------------------------------------------------------------------------- running nvidia-smi


def candidate_binaries(environ: dict | None = None, windows: bool | None = None) -> list:
    """Where nvidia-smi may be, in search order.

    On Windows the driver installs it in System32 (older drivers: ``NVSMI`` under Program
    Files), which a GUI-started process may not have on PATH; under WSL it is in
    /usr/lib/wsl/lib, which is often missing from PATH too.
    """
    environ = dict(os.environ if environ is None else environ)
    windows = os.name == "nt" if windows is None else windows
    name = "nvidia-smi.exe" if windows else "nvidia-smi"
    found = shutil.which(name, path=environ.get("PATH", ""))
    paths = [found] if found else []
    if windows:
        system_root = environ.get("SystemRoot", r"C:\Windows")
        program_files = environ.get("ProgramFiles", r"C:\Program Files")
        paths += [system_root + r"\System32\nvidia-smi.exe",
                  program_files + r"\NVIDIA Corporation\NVSMI\nvidia-smi.exe"]
    else:
        paths += ["/usr/bin/nvidia-smi", "/usr/lib/wsl/lib/nvidia-smi"]
    unique = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def find_binary(candidates: Sequence[str]) -> str | None:
    """The first candidate that is an existing file."""
    for path in candidates:
        if Path(path).is_file():
            return path
    return None


def run_smi(binary: str, args: Sequence[str], timeout: float) -> tuple:
    """Run nvidia-smi; returns ``(stdout, problem)`` with exactly one of them None."""
    try:
        done = subprocess.run(
            [binary] + list(args), capture_output=True, text=True, errors="replace",
            timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, "nvidia-smi did not answer within %g s (a hung driver?)" % timeout
    except OSError as error:
        return None, "nvidia-smi could not start: %s" % error
    if done.returncode != 0:
        text = " ".join((done.stdout + done.stderr).split())[:200]
        return None, "nvidia-smi failed (exit %d): %s" % (done.returncode, text)
    return done.stdout, None


def probe(
    candidates: Sequence[str] | None = None, timeout: float = PROBE_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Probe:
    """Ask nvidia-smi for the GPUs and the driver's CUDA version; never hangs or raises.

    Args:
        candidates: Paths to try; ``candidate_binaries()`` when None.
        timeout: Seconds allowed for each nvidia-smi call.
        log: Receives one line per call for the setup log.
    """
    log = log or (lambda line: None)
    binary = find_binary(candidate_binaries() if candidates is None else candidates)
    if binary is None:
        return Probe(problem="no nvidia-smi found (no NVIDIA driver installed)")
    output, problem = run_smi(binary, QUERY_ARGS, timeout)
    log("nvidia-smi query: %s" % (problem or output.strip().replace("\n", " | ")))
    if problem:
        if "compute_cap" in problem:
            problem = "the NVIDIA driver is too old to report compute capability; update it"
        return Probe(problem=problem, binary=binary)
    gpus = tuple(parse_query(output))
    if not gpus:
        return Probe(problem="nvidia-smi listed no GPU it could read", binary=binary)
    header, header_problem = run_smi(binary, (), timeout)
    driver_cuda = parse_header_cuda(header) if header else None
    log("nvidia-smi header CUDA: %s" % (header_problem or str(driver_cuda)))
    if driver_cuda is None:  # read it from the driver version instead
        driver_cuda = cuda_of_driver(min(gpu.driver for gpu in gpus))
    return Probe(gpus=gpus, driver_cuda=driver_cuda, binary=binary)


# --------------------------------------------------------------------------- the choice


def choose(found: Probe) -> TorchBuild:
    """Choose the torch build for what nvidia-smi reported.

    A variant is usable when the driver is new enough for it; among usable variants, the one
    with kernels for every GPU wins (newest first). With no such variant (e.g. a GTX 1080 next
    to an RTX 5090), the one serving the most GPUs wins, ties going to the one serving the most
    capable GPU, and the reason names the GPUs left out.
    """
    if not found.gpus:
        return make_build("cpu", (found.problem or "no NVIDIA GPU") + "; using the CPU build")
    gpus = sorted(found.gpus, key=lambda gpu: gpu.compute_cap)
    names = ", ".join(gpu.describe() for gpu in gpus)
    driver = "driver CUDA %s" % (dotted(found.driver_cuda) if found.driver_cuda else "unknown")
    have_kernels = [v for v in VARIANTS if any(v.supports(gpu) for gpu in gpus)]
    if not have_kernels:
        return make_build("cpu", "%s: too old for torch's CUDA builds; using the CPU" % names)
    usable = [v for v in have_kernels if found.driver_cuda and found.driver_cuda >= v.min_driver_cuda]
    if not usable:
        need = min(have_kernels, key=lambda v: v.min_driver_cuda)
        return make_build("cpu", "%s, %s: update the NVIDIA driver to one supporting CUDA %s "
                          "(then run setup again) to use the GPU; using the CPU for now"
                          % (names, driver, dotted(need.min_driver_cuda)))
    best = max(usable, key=lambda v: (sum(v.supports(g) for g in gpus),
                                       max((g.compute_cap for g in gpus if v.supports(g))),
                                       v.min_driver_cuda))
    left_out = [gpu.describe() for gpu in gpus if not best.supports(gpu)]
    reason = "%s, %s -> CUDA %s build" % (names, driver, best.cuda)
    if left_out:
        reason += "; not usable with it: %s (--torch overrides)" % ", ".join(left_out)
    elif best is not VARIANTS[0] and VARIANTS[0].min_driver_cuda > found.driver_cuda \
            and all(VARIANTS[0].supports(gpu) for gpu in gpus):
        reason += " (a driver supporting CUDA %s would allow the %s build)" % (
            dotted(VARIANTS[0].min_driver_cuda), VARIANTS[0].name)
    return make_build(best.name, reason)


def pick(choice: str, log: Callable[[str], None] | None = None,
         candidates: Sequence[str] | None = None, timeout: float = PROBE_TIMEOUT_S) -> TorchBuild:
    """Resolve a ``--torch`` choice: ``auto`` probes nvidia-smi, a build name is taken as given."""
    if choice == "auto":
        return choose(probe(candidates, timeout, log))
    if choice not in BUILD_NAMES:
        raise ValueError("unknown torch build %r (choose from auto, %s)"
                         % (choice, ", ".join(BUILD_NAMES)))
    return make_build(choice, "chosen with --torch")
