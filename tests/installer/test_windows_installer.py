"""The Windows installer: built with makensis, checked to be a 64-bit PE, then installed and
uninstalled silently under wine (with xvfb-run), asserting the files, the Start Menu shortcut
and the uninstall registry key exist and then are gone, and that the user's models survive a
silent uninstall unless /PURGE is given.

Needs the Debian packages nsis, wine, wine64, xvfb and xauth (``bootstrap.py test`` installs the
missing ones on Debian when run as root). What wine cannot show (real Windows, SmartScreen,
antivirus) is on the manual checklist in installer/README.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from installer_scripts import load

REPO = Path(__file__).resolve().parents[2]
UNINSTALL_KEY = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Tunebench"

pytestmark = pytest.mark.installers


builder = load("windows/build_installer")


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        if not Path("/etc/debian_version").exists():
            pytest.skip("%s (Debian package %s) is set up on Debian/Ubuntu only" % (tool, package))
        pytest.fail("%s is missing: apt-get install %s (bootstrap.py test does it as root)"
                    % (tool, package))


@pytest.fixture(scope="module")
def setup_exe(tmp_path_factory):
    _need("makensis", "nsis")
    out = tmp_path_factory.mktemp("windows")
    return builder.main(["--out", str(out)]) == 0 and next(out.glob("tunebench-*-setup.exe"))


def test_installer_is_a_64_bit_pe(setup_exe):
    assert builder.pe_machine(setup_exe) == 0x8664


def test_pe_check_reads_the_machine_field(tmp_path):
    fake = bytearray(256)
    fake[:2] = b"MZ"
    fake[0x3C:0x40] = (0x80).to_bytes(4, "little")
    fake[0x80:0x84] = b"PE\0\0"
    fake[0x84:0x86] = (0x14C).to_bytes(2, "little")  # i386
    (tmp_path / "x86.exe").write_bytes(bytes(fake))
    assert builder.pe_machine(tmp_path / "x86.exe") == 0x14C
    (tmp_path / "text.exe").write_text("not a program")
    with pytest.raises(ValueError):
        builder.pe_machine(tmp_path / "text.exe")


class Wine:
    """A throw-away 64-bit wine prefix driven through xvfb-run."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.env = dict(os.environ, WINEPREFIX=str(prefix), WINEARCH="win64", WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=")  # no Mono/Gecko install prompts
        self.env.pop("DISPLAY", None)

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        argv = ["xvfb-run", "-a", "wine"] + list(args)
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, cwd=str(self.prefix.parent))
        # wine returns before its server has written the registry to disk
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=120)
        return done

    def registry_key_exists(self, key: str) -> bool:
        return self.run("reg", "query", key).returncode == 0

    def user_folder(self, name: str) -> Path:
        users = self.prefix / "drive_c" / "users"
        user = next(p for p in users.iterdir() if p.name not in ("Public", "public"))
        return user / name


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    for tool, package in (("wine", "wine"), ("/usr/lib/wine/wine64", "wine64"),
                          ("xvfb-run", "xvfb"), ("xauth", "xauth")):
        _need(tool, package)
    prefix = tmp_path_factory.mktemp("wine") / "prefix"
    bottle = Wine(prefix)
    done = bottle.run("wineboot", "-i")
    assert done.returncode == 0, done.stderr[-2000:]
    return bottle


def _install(wine, setup_exe):
    done = wine.run(str(setup_exe), "/S")
    assert done.returncode == 0, done.stderr[-2000:]
    local = wine.user_folder("AppData/Local")
    app = local / "Programs" / "Tunebench"
    shortcut = wine.user_folder("AppData/Roaming") / (
        "Microsoft/Windows/Start Menu/Programs/Tunebench.lnk")
    return local, app, shortcut


def test_silent_install_and_uninstall_under_wine(wine, setup_exe):
    local, app, shortcut = _install(wine, setup_exe)
    files = [app / "Tunebench.cmd", app / "uninstall.exe", app / "installer" / "bootstrap.py",
             app / "installer" / "gpu_probe.py", app / "installer" / "locks" / "gui-windows.txt"]
    for path in files + [shortcut]:
        assert path.is_file(), path
    assert list((app / "wheels").glob("tunebench-*.whl"))
    assert b"\r\n" in (app / "Tunebench.cmd").read_bytes()
    assert wine.registry_key_exists(UNINSTALL_KEY)
    query = wine.run("reg", "query", UNINSTALL_KEY, "/v", "QuietUninstallString").stdout
    assert "uninstall.exe" in query and "/S" in query

    models = local / "Tunebench" / "models"  # the user's work, as engine/paths.py puts it
    models.mkdir(parents=True)
    (models / "adapter.safetensors").write_text("precious")
    done = wine.run(str(app / "uninstall.exe"), "/S")
    assert done.returncode == 0
    wine.run("cmd", "/c", "exit")  # the uninstaller reruns itself from %TEMP%: let it finish
    for path in files + [shortcut]:
        assert not path.exists(), path
    assert not app.exists()
    assert not wine.registry_key_exists(UNINSTALL_KEY)
    assert (models / "adapter.safetensors").read_text() == "precious"  # silent keeps models


def test_silent_uninstall_with_purge_deletes_the_models(wine, setup_exe):
    local, app, _ = _install(wine, setup_exe)
    (local / "Tunebench" / "models").mkdir(parents=True, exist_ok=True)
    wine.run(str(app / "uninstall.exe"), "/S", "/PURGE")
    wine.run("cmd", "/c", "exit")
    assert not app.exists()
    assert not (local / "Tunebench").exists()
