"""The Linux .tar.gz's uv: carried, pinned, and used by install.sh and the launcher to get a
Python 3.11+ when the system's python3 is missing or older (Ubuntu 22.04 ships 3.10).

The real tarball is built (with a stand-in Tunebench wheel) and unpacked; in the launcher
tests its ``installer/bootstrap.py`` is replaced by a stub that records which Python ran it and
with which arguments, so that the choice of Python and the flags are checked in seconds. PATH
holds only the tools the scripts use, a too-old ``python3`` and, where a test wants one, a
Python 3.11+ under a name uv searches for. Nothing is downloaded: uv's Python download is sent
to a dead proxy, which is the offline first start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from installer_scripts import load

build_packages = load("linux/build_packages")
uv_tool = load("linux/uv_tool")

pytestmark = pytest.mark.installers

TOOLS = ("sh", "env", "sed", "ls", "head", "dirname", "mkdir", "cp", "rm", "mv", "chmod",
         "rmdir", "cat")
STUB = """\
import json, os, sys
with open(os.environ["STUB_OUT"], "w") as out:
    json.dump({"executable": sys.executable, "argv": sys.argv[1:]}, out)
"""
DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """The built .tar.gz, unpacked: its top folder."""
    out = tmp_path_factory.mktemp("tar")
    wheel = out / "tunebench-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not installed by these tests")
    tarball = build_packages.build_tarball(out, wheel, "0.1.0")
    with tarfile.open(tarball) as archive:
        archive.extractall(out / "unpacked")
    return next((out / "unpacked").iterdir())


@pytest.fixture
def stubbed(unpacked, tmp_path):
    """A copy of the unpacked tarball whose bootstrap is the stub."""
    top = tmp_path / "tunebench"
    shutil.copytree(unpacked, top, symlinks=True)
    (top / "payload" / "installer" / "bootstrap.py").write_text(STUB)
    return top


def path_with(tmp_path: Path, python3_version: tuple | None, python311: bool) -> str:
    """PATH: the scripts' tools, a ``python3`` (None: none; older than 3.11: a shim that
    fails the version check like such an interpreter; else this Python), and ``python3.11``
    (this Python) when asked."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), tools / tool)
    pythons = tmp_path / "pythons"
    pythons.mkdir()
    real = os.path.realpath(sys.executable)
    if python3_version is not None and python3_version >= (3, 11):
        os.symlink(real, pythons / "python3")
    elif python3_version is not None:
        shim = pythons / "python3"
        shim.write_text("#!/bin/sh\n# stands for a Python %d.%d\nexit %d\n" % (
            python3_version[0], python3_version[1], int(python3_version < (3, 11))))
        shim.chmod(0o755)
    if python311:
        os.symlink(real, pythons / "python3.11")
    return "%s:%s" % (pythons, tools)


def run_script(argv, tmp_path: Path, search_path: str, timeout: int = 120):
    home = tmp_path / "home of Ren\u00e9e"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": search_path, "STUB_OUT": str(tmp_path / "stub.json"),
           "http_proxy": DEAD, "https_proxy": DEAD, "HTTPS_PROXY": DEAD, "ALL_PROXY": DEAD,
           "UV_PYTHON_INSTALL_DIR": str(tmp_path / "not used"), "LANG": "C.UTF-8"}
    done = subprocess.run([shutil.which("sh")] + [str(a) for a in argv], env=env,
                          capture_output=True, text=True, errors="replace", timeout=timeout,
                          cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    stub = tmp_path / "stub.json"
    return done, home, json.loads(stub.read_text()) if stub.exists() else None


def test_tarball_carries_the_pinned_uv(unpacked):
    uv = unpacked / "payload" / "uv" / "uv"
    assert os.access(uv, os.X_OK)
    done = subprocess.run([str(uv), "--version"], capture_output=True, text=True)
    assert done.stdout.startswith("uv %s " % uv_tool.pinned_version()), done.stderr


def test_install_sh_puts_uv_in_place_sets_up_the_window_only_and_uninstall_removes_it(
        stubbed, tmp_path):
    search_path = path_with(tmp_path, (3, 11), python311=False)
    done, home, stub = run_script([stubbed / "install.sh"], tmp_path, search_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = home / ".local/share/tunebench"
    assert os.access(data / "app" / "uv" / "uv", os.X_OK)
    assert stub["executable"] == str(tmp_path / "pythons" / "python3")  # new enough: used
    assert stub["argv"][:2] == ["setup", "--gui-only"]
    python = data / "python" / "cpython-3.11-linux-x86_64-gnu"  # as uv installs one
    python.mkdir(parents=True)
    (data / "uv-cache").mkdir()
    done = subprocess.run(["sh", str(data / "uninstall.sh")], env={"HOME": str(home),
                          "PATH": search_path}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not data.exists()


def test_install_sh_offline_sets_up_everything(stubbed, tmp_path):
    search_path = path_with(tmp_path, (3, 11), python311=False)
    house = tmp_path / "house"
    done, _, stub = run_script([stubbed / "install.sh", "--offline", house], tmp_path,
                               search_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stub["argv"][0] == "setup" and "--gui-only" not in stub["argv"]
    assert stub["argv"][-2:] == ["--offline", str(house)]


def launcher(stubbed: Path, tmp_path: Path) -> Path:
    """The launcher as install.sh writes it, over the stubbed payload."""
    path = tmp_path / "tunebench-launcher"
    text = (stubbed / "payload" / "share" / "tunebench-launcher.sh").read_text()
    path.write_text(text.replace("@APPDIR@", str(stubbed / "payload")))
    return path


def test_launcher_with_a_too_old_python3_uses_the_311_uv_finds(stubbed, tmp_path):
    search_path = path_with(tmp_path, (3, 10), python311=True)
    done, home, stub = run_script([launcher(stubbed, tmp_path), "--flag"], tmp_path,
                                  search_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stub["executable"] == str(tmp_path / "pythons" / "python3.11")
    assert stub["argv"][:2] == ["run", "--gui-only"] and stub["argv"][-2:] == ["--", "--flag"]


def test_launcher_without_python_offline_says_so_in_one_line(stubbed, tmp_path):
    search_path = path_with(tmp_path, None, python311=False)
    done, home, stub = run_script([launcher(stubbed, tmp_path)], tmp_path, search_path)
    assert done.returncode == 1 and stub is None
    said = [line for line in done.stderr.splitlines() if line.startswith("[tunebench]")]
    assert said[-1].startswith("[tunebench] Tunebench needs Python 3.11 or newer: none is "
                               "installed and none could be downloaded"), done.stderr
    # uv tried to download into the install's own folder (removed by uninstall.sh), not the
    # UV_PYTHON_INSTALL_DIR of the user's environment, which the launcher drops.
    assert (home / ".local/share/tunebench/python").is_dir()
    assert not (tmp_path / "not used").exists()
