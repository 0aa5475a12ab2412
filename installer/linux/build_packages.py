#!/usr/bin/env python3
"""Build Tunebench's Linux packages: a ``.tar.gz`` with ``install.sh`` and a ``.deb``.

Usage, from the repository root::

    python3 installer/linux/build_packages.py --out dist [--wheel dist/tunebench-X.whl]

Both carry the same small payload: the stdlib bootstrap (installer/*.py), the Tunebench wheel,
the desktop entry, the icons and a launcher. Neither carries torch: the bootstrap sets up the
window's environment per user (``install.sh`` at once, the ``.deb``'s launcher on first start,
since a package's maintainer scripts run as root and should not download gigabytes), and the
app's Setup page installs the torch build for the machine's GPU.

The ``.tar.gz`` also carries ``uv`` (``payload/uv/uv``, pinned and hash-checked in
``installer/locks/tools.lock``; ``--uv-from DIR`` takes its wheel from a folder instead of
PyPI), with which install.sh and the launcher get a Python 3.11+ where the system has none
(``find-python.sh``). The ``.deb`` stays ``Architecture: all`` without it: it depends on
``python3 (>= 3.11)``, which apt provides.

Standard library only; needs ``dpkg-deb`` for the ``.deb``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:  # on it when run as a script, not when loaded from its path
    sys.path.insert(0, str(HERE))
import bootstrap_paths  # noqa: E402  (the modules the bootstrap is made of)
import uv_tool  # noqa: E402
import wheelhouse  # noqa: E402  (clean_source_copy)

# bootstrap.py, its bootstrap_*.py pieces and the helpers they import: one list, kept beside
# the modules themselves, so that a new piece cannot be left out of a package.
BOOTSTRAP_MODULES = bootstrap_paths.SHIPPED_MODULES
DEB_APPDIR = "/usr/lib/tunebench"
MAINTAINER = "Tunebench developers <tunebench@example.org>"
# The Qt libraries the PySide6 wheels load from the system (xcb platform plugin, OpenGL/EGL,
# fonts, D-Bus, GLib), plus Python with venv and pip (the bootstrap builds a venv).
DEB_DEPENDS = (
    "python3 (>= 3.11)", "python3-venv", "python3-pip", "libxkbcommon-x11-0", "libxkbcommon0",
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
    "libxcb-render-util0", "libxcb-shape0", "libxcb-xinerama0", "libxcb-xkb1", "libx11-xcb1",
    "libegl1", "libgl1", "libopengl0", "libfontconfig1", "libfreetype6", "libdbus-1-3",
    "libglib2.0-0",
)


def project_version() -> str:
    """pyproject.toml's version."""
    for line in (REPO / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "version":
            return value.strip().strip('"')
    raise SystemExit("pyproject.toml has no version line")


def build_wheel(out: Path) -> Path:
    """Build the Tunebench wheel from the checkout with this Python's pip."""
    folder = Path(tempfile.mkdtemp(prefix="tunebench-wheel-"))
    source = wheelhouse.clean_source_copy(REPO, folder / "source")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder),
               str(source)]
    subprocess.run(command, check=True)
    wheel = sorted(folder.glob("tunebench-*.whl"))[0]
    target = out / wheel.name
    shutil.move(str(wheel), str(target))
    shutil.rmtree(str(folder), ignore_errors=True)
    return target


def desktop_entry(exec_line: str) -> str:
    """resources/tunebench.desktop with the launcher's path, valid for desktop-file-utils 0.26.

    Version is set to 1.4 (the newest Debian 12's validator knows; no 1.5 key is used), and one
    main category is kept so the app appears once in menus.
    """
    lines = []
    for line in (REPO / "resources" / "tunebench.desktop").read_text("utf-8").splitlines():
        key = line.partition("=")[0]
        if key == "Exec":
            line = "Exec=" + exec_line
        elif key == "Version":
            line = "Version=1.4"
        elif key == "Categories":
            line = "Categories=Development;"
        lines.append(line)
    return "\n".join(lines) + "\n"


def fill_payload(root: Path, wheel: Path, appdir: str) -> None:
    """The files both packages install under the app folder."""
    (root / "installer").mkdir(parents=True)
    for name in BOOTSTRAP_MODULES:
        shutil.copy2(str(REPO / "installer" / name), str(root / "installer" / name))
    (root / "installer" / "bootstrap.py").chmod(0o755)
    # Sourced by the launcher and install.sh: not a program, so no shebang and mode 0644.
    shutil.copy2(str(HERE / "find-python.sh"), str(root / "installer" / "find-python.sh"))
    (root / "installer" / "find-python.sh").chmod(0o644)
    # The pinned versions the bootstrap installs (installer/make_locks.py): Linux ones only.
    (root / "installer" / "locks").mkdir()
    for lock in sorted((REPO / "installer" / "locks").glob("*-linux.txt")):
        shutil.copy2(str(lock), str(root / "installer" / "locks" / lock.name))
    (root / "wheels").mkdir()
    shutil.copy2(str(wheel), str(root / "wheels" / wheel.name))


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def launcher(appdir: str) -> str:
    return (HERE / "tunebench-launcher.sh").read_text("utf-8").replace("@APPDIR@", appdir)


# --------------------------------------------------------------------------- .tar.gz


def build_tarball(out: Path, wheel: Path, version: str, uv_from: Path | None = None) -> Path:
    """``tunebench-VERSION-linux.tar.gz``: install.sh, uninstall.sh, uv and the payload.

    ``uv_from``: a folder holding the pinned uv wheel (default: PyPI through pip's cache).
    """
    stage = Path(tempfile.mkdtemp(prefix="tunebench-tar-"))
    try:
        return _fill_tarball(stage, out, wheel, version, uv_from)
    finally:
        shutil.rmtree(str(stage), ignore_errors=True)


def _fill_tarball(stage: Path, out: Path, wheel: Path, version: str,
                  uv_from: Path | None) -> Path:
    top = stage / ("tunebench-" + version)
    payload = top / "payload"
    # First, so that a failed or tampered download stops the build before anything else.
    uv_tool.fetch_uv("linux", payload / "uv", find_links=uv_from)
    fill_payload(payload, wheel, "")
    share = payload / "share"
    write(share / "tunebench-launcher.sh", (HERE / "tunebench-launcher.sh").read_text("utf-8"))
    write(share / "tunebench.desktop", desktop_entry("tunebench"))
    (share / "icons").mkdir()
    for name in ("tunebench.png", "tunebench.svg"):
        shutil.copy2(str(REPO / "resources" / "icons" / name), str(share / "icons" / name))
    for name in ("install.sh", "uninstall.sh"):
        shutil.copy2(str(HERE / name), str(top / name))
        (top / name).chmod(0o755)
    target = out / ("tunebench-%s-linux.tar.gz" % version)
    with tarfile.open(str(target), "w:gz") as archive:
        archive.add(str(top), arcname=top.name, filter=_normalise)
    return target


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


# --------------------------------------------------------------------------- .deb


def build_deb(out: Path, wheel: Path, version: str) -> Path:
    """``tunebench_VERSION_all.deb``, built with ``dpkg-deb --root-owner-group``."""
    stage = Path(tempfile.mkdtemp(prefix="tunebench-deb-"))
    root = stage / "root"
    fill_payload(root / DEB_APPDIR.lstrip("/"), wheel, DEB_APPDIR)
    write(root / "usr/bin/tunebench", launcher(DEB_APPDIR), 0o755)
    write(root / "usr/share/applications/tunebench.desktop", desktop_entry("tunebench"))
    icons = root / "usr/share/icons/hicolor"
    for size_dir, name in (("256x256", "tunebench.png"), ("scalable", "tunebench.svg")):
        (icons / size_dir / "apps").mkdir(parents=True)
        shutil.copy2(str(REPO / "resources" / "icons" / name), str(icons / size_dir / "apps" / name))
    doc = root / "usr/share/doc/tunebench"
    write(doc / "copyright", _copyright())
    _write_gzip(doc / "changelog.Debian.gz", _changelog(version))
    _write_gzip(root / "usr/share/man/man1/tunebench.1.gz", _manpage(version))
    _fix_modes(root)
    control = root / "DEBIAN"
    write(control / "control", _control(version, _installed_size(root)))
    target = out / ("tunebench_%s_all.deb" % version)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(target)],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(str(stage), ignore_errors=True)
    return target


def _control(version: str, installed_kb: int) -> str:
    return (
        "Package: tunebench\n"
        "Version: %s-1\n"
        "Section: science\n"
        "Priority: optional\n"
        "Architecture: all\n"
        "Maintainer: %s\n"
        "Installed-Size: %d\n"
        "Depends: %s\n"
        "Homepage: https://example.org/tunebench\n"
        "Description: desktop workbench for fine-tuning small language models\n"
        " Tunebench imports a dataset, fine-tunes a small LLM with LoRA or QLoRA on\n"
        " one local GPU or a CPU with live plots, and lets you try the result, all\n"
        " offline. On first start it sets up a per-user Python environment with the\n"
        " torch build that suits the machine's GPU. Removing the package leaves the\n"
        " per-user environments (~/.local/share/tunebench) and data in place.\n"
        % (version, MAINTAINER, installed_kb, ", ".join(DEB_DEPENDS))
    )


def _copyright() -> str:
    return (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: tunebench\n\n"
        "Files: *\nCopyright: 2026 Tunebench developers\nLicense: Apache-2.0\n"
        " On Debian systems, the full text of the Apache License, Version 2.0 can be\n"
        " found in the file '/usr/share/common-licenses/Apache-2.0'.\n"
    )


def _changelog(version: str) -> str:
    return (
        "tunebench (%s-1) unstable; urgency=medium\n\n"
        "  * Package built from the Tunebench sources.\n\n"
        " -- %s  Mon, 23 Nov 2026 12:00:00 +0000\n" % (version, MAINTAINER)
    )


def _manpage(version: str) -> str:
    return (
        '.TH TUNEBENCH 1 "2026" "tunebench %s" "User Commands"\n'
        ".SH NAME\ntunebench \\- desktop workbench for fine-tuning small language models\n"
        ".SH SYNOPSIS\n.B tunebench\n.SH DESCRIPTION\n"
        "Opens the Tunebench window. The first start sets up a per-user environment in\n"
        ".I ~/.local/share/tunebench/venv\n"
        "with the torch build that suits the GPU; its log is\n"
        ".IR ~/.local/share/tunebench/venv/tunebench-bootstrap.log .\n" % version
    )


def _write_gzip(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # mtime=0 and no file name inside: the same input gives the same bytes (lintian checks it)
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as zipped:
        zipped.write(text.encode("utf-8"))
    path.write_bytes(buffer.getvalue())
    path.chmod(0o644)


def _fix_modes(root: Path) -> None:
    """Debian wants 0755 folders and 0644 files, except programs."""
    for folder, dirs, files in os.walk(str(root)):
        os.chmod(folder, 0o755)
        for name in files:
            path = Path(folder) / name
            executable = path.stat().st_mode & 0o111 and path.read_bytes()[:2] == b"#!"
            path.chmod(0o755 if executable else 0o644)


def _installed_size(root: Path) -> int:
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return max(1, (total + 1023) // 1024)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Tunebench's .tar.gz and .deb.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--wheel", type=Path, help="a built Tunebench wheel (default: build one)")
    parser.add_argument("--no-deb", action="store_true", help="only the .tar.gz")
    parser.add_argument("--uv-from", type=Path, metavar="DIR",
                        help="a folder holding the pinned uv wheel (default: PyPI, pip's cache)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheel = args.wheel.resolve() if args.wheel else build_wheel(out)
    version = project_version()
    print(build_tarball(out, wheel, version, args.uv_from.resolve() if args.uv_from else None))
    if not args.no_deb:
        if shutil.which("dpkg-deb") is None:
            print("dpkg-deb not found: the .deb is built on Debian/Ubuntu only", file=sys.stderr)
            return 1
        print(build_deb(out, wheel, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
