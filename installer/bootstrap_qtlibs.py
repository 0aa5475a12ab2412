"""Before the window opens on a Linux X11 desktop: are the X libraries Qt's xcb plugin needs there?

PySide6's wheels carry Qt but not the system's X client libraries. On a bare desktop (Debian 12
without ``libxcb-icccm4`` and ``libxcb-keysyms1``, say) Qt aborts with "Could not load the Qt
platform plugin xcb" and no hint. So ``run`` asks ``ldd`` which shared libraries of
``libqxcb.so`` are missing and, when some are, names the packages and the command that installs
them on Debian/Ubuntu, Fedora and Arch, and stops with the missing-dependency exit code.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import bootstrap_children as children

# The engine's ExitCode.MISSING_DEPENDENCY (engine/core/protocol.py; the bootstrap cannot import
# the engine): a package the job needs is not installed.
MISSING_DEPENDENCY = 5

# soname -> (Debian/Ubuntu, Fedora, Arch) package. The X client libraries libqxcb.so and the Qt
# libraries it loads link against (PySide6 6.x), and what else they pull in.
PACKAGES = {
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
}
INSTALLERS = (("Debian/Ubuntu", "sudo apt install"), ("Fedora", "sudo dnf install"),
              ("Arch", "sudo pacman -S --needed"))
PLUGIN = ("PySide6", "Qt", "plugins", "platforms", "libqxcb.so")


def uses_xcb(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will load its xcb plugin first: Linux (not Windows or macOS); QT_QPA_PLATFORM
    unset or naming xcb first ("wayland;xcb" tries Wayland first); unset, not in a Wayland
    session, where Qt 6 picks its wayland plugin."""
    if not platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip().lower() == "xcb"
    return not (env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland")


def find_plugin(venv: Path) -> Optional[Path]:
    """PySide6's libqxcb.so in the venv, if PySide6 is there."""
    for site in sorted(venv.glob("lib/python3*/site-packages")):
        plugin = site.joinpath(*PLUGIN)
        if plugin.is_file():
            return plugin
    return None


def missing_libraries(ldd_output: str) -> List[str]:
    """The sonames ``ldd`` reports as ``not found``, in order, without repeats."""
    missing = []  # type: List[str]
    for line in ldd_output.splitlines():
        name, _, where = line.strip().partition("=>")
        if where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def advice(missing: Sequence[str]) -> List[str]:
    """The lines telling the user what is missing and how to install it on each distribution."""
    known = [name for name in missing if name in PACKAGES]
    unknown = [name for name in missing if name not in PACKAGES]
    lines = ["The window cannot open: Qt's X11 (xcb) platform plugin needs system libraries that are "
             "not installed: %s." % ", ".join(missing)]
    for column, (distro, command) in enumerate(INSTALLERS):
        packages = _unique(PACKAGES[name][column] for name in known)
        if packages:
            lines.append("  %s: %s %s" % (distro, command, " ".join(packages)))
    if unknown:
        lines.append("  Also install the package that provides %s (on Debian: apt-file search %s)."
                     % (", ".join(unknown), unknown[0]))
    lines.append("Then run the same command again. (On Wayland, QT_QPA_PLATFORM=wayland uses Qt's "
                 "wayland plugin instead.)")
    return lines


def _unique(items) -> List[str]:
    seen = []  # type: List[str]
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def check(venv: Path, env: Mapping[str, str], platform: str = sys.platform) -> Tuple[List[str], str]:
    """(missing sonames, why nothing was checked): an empty list when the window can open or
    the check does not apply; the reason says which ("" when ldd found everything)."""
    if not uses_xcb(env, platform):
        return [], "Qt will not use its xcb plugin here"
    plugin = find_plugin(venv)
    if plugin is None:
        return [], "no PySide6 xcb plugin in %s" % venv
    try:
        done = children.run_child(["ldd", str(plugin)], env=dict(env), capture=True)
    except OSError as error:
        return [], "ldd could not run (%s)" % error
    if done.returncode != 0:
        return [], "ldd failed: %s" % (done.stderr or "").strip()[:200]
    return missing_libraries(done.stdout), ""


def report(log, venv: Path, env: Mapping[str, str]) -> Optional[int]:
    """Says what is missing and returns the exit code; None when the window can open."""
    missing, skipped = check(venv, env)
    if skipped:
        log.write("Qt X11 libraries not checked: " + skipped)
    if not missing:
        return None
    for line in advice(missing):
        log.say(line, error=True)
    return MISSING_DEPENDENCY
