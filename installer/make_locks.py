#!/usr/bin/env python3
"""Regenerate the pinned lock files in ``installer/locks/`` from pyproject.toml's extras.

Usage, from the repository root, with ``uv`` installed (``pip install uv``) and PyPI
reachable::

    python installer/make_locks.py            # every target, both platforms
    python installer/make_locks.py --uv PATH  # a uv that is not on PATH

One lock per target and platform, named ``TARGET-PLATFORM.txt``:

- ``gui``: the GUI environment (``gui`` extra and the base dependencies);
- ``engine-cpu``, ``engine-cu126``, ``engine-cu130``: the ``engine`` extra with
  ``torch==2.13.0``;
- ``dev``: the test tools (``dev`` extra), for ``bootstrap.py test``.

Each is resolved by ``uv pip compile`` for Python 3.11 on ``x86_64-manylinux_2_34`` (glibc
2.34+: Debian 12, Ubuntu 22.04 and newer; the plain ``x86_64-unknown-linux-gnu`` target means
manylinux_2_28, for which the newest PySide6 has no wheel, so an older Qt would be locked than
the one the release is tested with) or ``x86_64-pc-windows-msvc``. The engine and dev locks
are resolved with the gui lock (and the dev lock also with the engine-cpu lock) as constraints,
so that the bootstrap can pass several locks to one pip install without contradicting pins.

torch is pinned as ``torch==2.13.0`` without a local version: the PyTorch index the bootstrap
installs a CUDA build from (``https://download.pytorch.org/whl/cu126``...) resolves it to
``2.13.0+cu126`` at install time (that index cannot be reached when the locks are made). The
CUDA libraries a torch wheel pins exactly itself (``nvidia-*``, ``cuda-*``, ``triton``) are left
out of every engine lock: they differ per torch build and the torch wheel already fixes them.
So the three engine locks hold the same pins today; they are separate files so that a build
that needs a different pin gets one without touching the others.

``--uv-pin VERSION`` instead pins the ``uv`` the installers carry: it downloads uv's Windows
and Linux wheels and writes their SHA-256 to ``locks/tools.lock`` (see ``linux/uv_tool.py``).

Standard library only (it runs ``uv`` as a child process).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCKS_DIR = Path(__file__).resolve().parent / "locks"
TORCH_PIN = "torch==2.13.0"
PYTHON_VERSION = "3.11"
PLATFORMS = {"linux": "x86_64-manylinux_2_34", "windows": "x86_64-pc-windows-msvc"}
ENGINE_BUILDS = ("cpu", "cu126", "cu130")
# Target -> (extra, locks of the same platform it is resolved against), in build order.
TARGETS = {"gui": ("gui", ())}
TARGETS.update({"engine-" + build: ("engine", ("gui",)) for build in ENGINE_BUILDS})
TARGETS["dev"] = ("dev", ("gui", "engine-cpu"))
# Packages a torch wheel pins itself, per CUDA build: never locked (see the docstring).
# nvidia-ml-py (NVML bindings) is the engine's own dependency, not torch's: it stays.
TORCH_OWNED = re.compile(r"^(nvidia-(?!ml-py==)[a-z0-9-]+|cuda-[a-z0-9-]+|triton)==",
                         re.IGNORECASE)
REGENERATE = "python installer/make_locks.py"


def lock_path(target: str, platform: str, folder: Path = LOCKS_DIR) -> Path:
    """``locks/TARGET-PLATFORM.txt``."""
    return folder / ("%s-%s.txt" % (target, platform))


def compile_command(uv: str, target: str, platform: str, output: Path, torch_pin: Path,
                    folder: Path = LOCKS_DIR) -> list[str]:
    """The ``uv pip compile`` argv for one lock (run from the repository root)."""
    extra, bases = TARGETS[target]
    argv = [uv, "pip", "compile", "pyproject.toml", "--extra", extra,
            "--python-version", PYTHON_VERSION, "--python-platform", PLATFORMS[platform],
            "--custom-compile-command", REGENERATE, "--quiet", "--output-file", str(output)]
    if target.startswith("engine-"):
        argv += ["--constraint", str(torch_pin)]
    for base in bases:
        argv += ["--constraint", str(lock_path(base, platform, folder))]
    return argv


def without_torch_owned(text: str) -> str:
    """Drop the ``nvidia-*``/``cuda-*``/``triton`` pins and their ``# via`` comment lines."""
    kept = []  # type: list[str]
    dropping = False
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            dropping = bool(TORCH_OWNED.match(line))
        elif not line.startswith(" "):
            dropping = False
        if not dropping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def header(target: str, platform: str) -> str:
    """The comment put above uv's own header: what the lock is for and how it is used."""
    lines = ["# Tunebench lock: %s on %s (%s, Python %s)." % (
        target, platform, PLATFORMS[platform], PYTHON_VERSION),
        "# Used by installer/bootstrap.py as a pip constraints file (--no-locks opts out)."]
    if target.startswith("engine-"):
        build = target.split("-", 1)[1]
        where = "PyPI" if build == "cpu" else "https://download.pytorch.org/whl/" + build
        lines.append("# torch is pinned as %s; the bootstrap installs it from %s, whose wheel "
                     "pins its own CUDA libraries (left out here)." % (TORCH_PIN, where))
    return "\n".join(lines) + "\n"


def make_lock(uv: str, target: str, platform: str, torch_pin: Path, env: dict) -> None:
    """Resolve one lock into a temporary file, then move it into place."""
    final = lock_path(target, platform)
    partial = final.with_name(final.name + ".partial")
    argv = compile_command(uv, target, platform, partial, torch_pin)
    print("[make_locks] %s" % final.relative_to(REPO_ROOT), flush=True)
    done = subprocess.run(argv, cwd=str(REPO_ROOT), env=env)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit("[make_locks] uv pip compile failed (exit %d) for %s on %s"
                         % (done.returncode, target, platform))
    # The torch pin lives in a temporary file: name what it holds, so the lock is reproducible.
    text = partial.read_text(encoding="utf-8").replace(str(torch_pin), TORCH_PIN)
    if target.startswith("engine-"):
        text = without_torch_owned(text)
    partial.write_text(header(target, platform) + text, encoding="utf-8")
    os.replace(str(partial), str(final))


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate every lock (or the named targets) for both platforms."""
    parser = argparse.ArgumentParser(prog="make_locks.py", description=__doc__.split("\n")[0])
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv to run")
    parser.add_argument("--uv-pin", metavar="VERSION",
                        help="only pin this uv version for the installers (locks/tools.lock)")
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="only these of %s (default: all; the locks they are resolved "
                        "against must exist)" % ", ".join(TARGETS))
    args = parser.parse_args(argv)
    if args.uv_pin:
        sys.path.insert(0, str(REPO_ROOT / "installer" / "linux"))
        import uv_tool
        print("[make_locks] %s" % uv_tool.write_pin(args.uv_pin).relative_to(REPO_ROOT))
        return 0
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error("unknown target %s" % ", ".join(unknown))
    wanted = [t for t in TARGETS if not args.targets or t in args.targets]
    LOCKS_DIR.mkdir(exist_ok=True)
    # uv must read no user configuration (the same isolation as the bootstrap's children).
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("UV_")}
    env["UV_NO_CONFIG"] = "1"
    with tempfile.TemporaryDirectory() as scratch:
        torch_pin = Path(scratch) / "torch.txt"
        torch_pin.write_text(TORCH_PIN + "\n", encoding="utf-8")
        for target in wanted:
            for platform in PLATFORMS:
                make_lock(args.uv, target, platform, torch_pin, env)
    print("[make_locks] done: %d locks in %s" % (len(wanted) * len(PLATFORMS), LOCKS_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
