#!/usr/bin/env python3
"""Build Tunebench's Windows installer with NSIS (``makensis``, Debian package ``nsis``).

Usage, from the repository root (on Linux or Windows)::

    python3 installer/windows/build_installer.py --out dist [--wheel dist/tunebench-X.whl]

Produces ``tunebench-VERSION-setup.exe``, a 64-bit (amd64-unicode stub) per-user installer
carrying the bootstrap, the wheel, the Windows locks and ``uv.exe`` (pinned and hash-checked in
``installer/locks/tools.lock``; ``--uv-from DIR`` takes its wheel from a folder instead of PyPI).
Standard library only.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "linux"))
import build_packages  # noqa: E402  (the wheel and version helpers are shared)
import uv_tool  # noqa: E402

MODULES = build_packages.BOOTSTRAP_MODULES  # the .nsi packs installer\\*.py as staged
PE_MACHINE_AMD64 = 0x8664


def pe_machine(path: Path) -> int:
    """The machine field of a PE file's COFF header (0x8664 for x86-64, 0x14c for x86)."""
    data = path.read_bytes()[:4096]
    if data[:2] != b"MZ":
        raise ValueError("%s is not a PE file (no MZ header)" % path)
    offset = struct.unpack_from("<I", data, 0x3C)[0]
    if data[offset:offset + 4] != b"PE\0\0":
        raise ValueError("%s has no PE signature" % path)
    return struct.unpack_from("<H", data, offset + 4)[0]


def stage(folder: Path, wheel: Path, uv_from: Path | None = None) -> None:
    """Lay out the files the .nsi packs; ``uv_from``: a folder holding the pinned uv wheel."""
    # First, so that a failed or tampered download stops the build before anything else.
    uv_tool.fetch_uv("windows", folder / "uv", find_links=uv_from)
    (folder / "installer").mkdir(parents=True)
    for name in MODULES:
        shutil.copy2(str(REPO / "installer" / name), str(folder / "installer" / name))
    # The pinned versions the bootstrap installs (installer/make_locks.py): Windows ones only.
    (folder / "installer" / "locks").mkdir()
    for lock in sorted((REPO / "installer" / "locks").glob("*-windows.txt")):
        shutil.copy2(str(lock), str(folder / "installer" / "locks" / lock.name))
    (folder / "wheels").mkdir()
    shutil.copy2(str(wheel), str(folder / "wheels" / wheel.name))
    launcher = (HERE / "Tunebench.cmd.in").read_text("utf-8").replace("@WHEEL@", wheel.name)
    # cmd.exe wants CRLF line ends
    (folder / "Tunebench.cmd").write_bytes(launcher.replace("\r\n", "\n").replace("\n", "\r\n")
                                           .encode("ascii"))


def build(out: Path, wheel: Path, uv_from: Path | None = None) -> Path:
    makensis = shutil.which("makensis")
    if makensis is None:
        raise SystemExit("makensis not found: install NSIS (Debian: apt-get install nsis)")
    version = build_packages.project_version()
    target = out / ("tunebench-%s-setup.exe" % version)
    folder = Path(tempfile.mkdtemp(prefix="tunebench-nsis-"))
    try:
        stage(folder, wheel, uv_from)
        argv = [makensis, "-V2", "-DVERSION=" + version, "-DWHEEL=" + wheel.name,
                "-DSTAGE=" + str(folder), "-DOUTFILE=" + str(target),
                str(HERE / "tunebench.nsi")]
        subprocess.run(argv, check=True)
    finally:
        shutil.rmtree(str(folder), ignore_errors=True)
    machine = pe_machine(target)
    if machine != PE_MACHINE_AMD64:
        raise SystemExit("%s: PE machine 0x%x, expected 0x8664 (amd64)" % (target, machine))
    return target


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Windows installer with makensis.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wheel", type=Path, help="a built Tunebench wheel (default: build one)")
    parser.add_argument("--uv-from", type=Path, metavar="DIR",
                        help="a folder holding the pinned uv wheel (default: PyPI, pip's cache)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheel = args.wheel.resolve() if args.wheel else build_packages.build_wheel(out)
    print(build(out, wheel, args.uv_from.resolve() if args.uv_from else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
