"""The Linux packages: the .deb is linted with lintian and desktop-file-validate; the .tar.gz's
install.sh installs per user (offline, from a wheelhouse) into a home whose path has a space
and accents, and uninstall.sh removes everything it made (the carried uv and a Python it
downloaded included) while keeping the user's data. How install.sh and the launcher choose a
Python is in test_uv_launchers.py.

Needs dpkg-deb, lintian and desktop-file-utils (Debian packages; ``bootstrap.py test``
installs the missing ones on Debian when run as root).
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
from installer_scripts import sibling

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "installer" / "linux" / "build_packages.py"
SHOW_WINDOW = Path(__file__).with_name("show_window.py")
# Fine for a package that is not uploaded to Debian (no bug to close).
LINTIAN_ALLOWED = {"initial-upload-closes-no-bugs"}

pytestmark = pytest.mark.installers

bootstrap_paths = sibling("bootstrap_paths")
bootstrap_llama = sibling("bootstrap_llama")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if not Path("/etc/debian_version").exists():
            pytest.skip("%s (Debian package %s) exists on Debian/Ubuntu only" % (tool, package))
        pytest.fail("%s is missing: apt-get install %s (bootstrap.py test does it as root)"
                    % (tool, package))
    return path


def _run(argv, **kwargs):
    kwargs.setdefault("timeout", 900)
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          errors="replace", **kwargs)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    _need("dpkg-deb", "dpkg")
    out = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, BUILD, "--out", out], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    debs, tars = sorted(out.glob("*.deb")), sorted(out.glob("*.tar.gz"))
    assert len(debs) == 1 and len(tars) == 1
    return debs[0], tars[0]


def test_deb_passes_lintian(packages):
    lintian = _need("lintian", "lintian")
    deb, _ = packages
    done = _run([lintian, "--tag-display-limit", "0", deb])
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")]
    problems = [line for line in tags if line.split()[2] not in LINTIAN_ALLOWED]
    assert problems == [], done.stdout


def test_deb_contents_and_dependencies(packages, tmp_path):
    deb, _ = packages
    info = _run(["dpkg-deb", "--field", deb, "Depends", "Architecture", "Package"]).stdout
    for library in ("libxkbcommon-x11-0", "libxcb-cursor0", "libegl1", "libgl1",
                    "libfontconfig1", "libdbus-1-3", "python3-venv"):
        assert library in info
    assert "Architecture: all" in info
    _run(["dpkg-deb", "-x", deb, tmp_path])
    for path in ("usr/bin/tunebench", "usr/share/applications/tunebench.desktop",
                 "usr/share/icons/hicolor/256x256/apps/tunebench.png",
                 "usr/share/icons/hicolor/scalable/apps/tunebench.svg",
                 "usr/lib/tunebench/installer/bootstrap.py",
                 "usr/lib/tunebench/installer/gpu_probe.py",
                 "usr/lib/tunebench/installer/find-python.sh",
                 "usr/lib/tunebench/installer/locks/engine-cu130-linux.txt"):
        assert (tmp_path / path).is_file(), path
    for name in bootstrap_paths.SHIPPED_MODULES:  # bootstrap.py and every module it imports
        assert (tmp_path / "usr/lib/tunebench/installer" / name).is_file(), name
    # Architecture: all carries no binary; apt brings the python3 >= 3.11 it depends on.
    assert not (tmp_path / "usr/lib/tunebench/uv").exists()
    assert list((tmp_path / "usr/lib/tunebench/wheels").glob("tunebench-*.whl"))
    launcher = (tmp_path / "usr/bin/tunebench").read_text()
    assert 'APPDIR="/usr/lib/tunebench"' in launcher and os.access(tmp_path / "usr/bin/tunebench",
                                                                    os.X_OK)
    validate = _need("desktop-file-validate", "desktop-file-utils")
    done = _run([validate, tmp_path / "usr/share/applications/tunebench.desktop"])
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    _run(["sh", "-n", tmp_path / "usr/bin/tunebench"]).check_returncode()


def test_tarball_installs_and_uninstalls_per_user(packages, built_house, tmp_path):
    _, tarball = packages
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "unpacked")
    top = next((tmp_path / "unpacked").iterdir())
    home = tmp_path / "home of Ren\u00e9e"
    home.mkdir()
    dead = "http://127.0.0.1:9"  # offline install: any download attempt fails
    env = dict(os.environ, HOME=str(home), http_proxy=dead, https_proxy=dead,
               QT_QPA_PLATFORM="offscreen")
    for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "TUNEBENCH_HOME"):
        env.pop(key, None)
    # The llama.cpp wheel this machine built (the suite's own setup used it), put in this new user's
    # cache: the install reuses it instead of compiling llama.cpp for minutes from the wheelhouse's sdist.
    built = bootstrap_llama.wheel_cache()
    if built.is_dir():
        shutil.copytree(built, home / ".cache" / "tunebench" / "wheels" / built.name)
    done = _run(["sh", top / "install.sh", "--offline", built_house], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    data = home / ".local/share/tunebench"
    desktop = home / ".local/share/applications/tunebench.desktop"
    made = [home / ".local/bin/tunebench", desktop, data / "uninstall.sh",
            home / ".local/share/icons/hicolor/256x256/apps/tunebench.png",
            home / ".local/share/icons/hicolor/scalable/apps/tunebench.svg",
            data / "venv" / "tunebench-bootstrap.json"]
    for path in made:
        assert path.is_file(), path
    assert os.access(data / "app" / "uv" / "uv", os.X_OK)
    assert 'Exec="%s"' % (home / ".local/bin/tunebench") in desktop.read_text()
    validate = _need("desktop-file-validate", "desktop-file-utils")
    assert _run([validate, desktop]).returncode == 0

    python = data / "venv" / "bin" / "python"
    shown = _run([python, SHOW_WINDOW], env=env, cwd=tmp_path, timeout=300)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout.strip().splitlines()[-1])["visible"]

    # A Python uv downloaded for the launcher (find-python.sh) is part of the install.
    (data / "python" / "cpython-3.11-linux-x86_64-gnu").mkdir(parents=True)
    work = home / ".local/share/Tunebench"  # the app's data: prepared model, runs
    assert (work / "cache" / "models").exists() or (home / ".cache/Tunebench").exists()
    done = _run(["sh", data / "uninstall.sh"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for path in made:
        assert not path.exists(), path
    assert not data.exists()
    assert (home / ".cache/Tunebench").exists()  # models are kept without --purge
    done = _run(["sh", top / "uninstall.sh", "--purge"], env=env, cwd=tmp_path)
    assert done.returncode == 0 and not (home / ".cache/Tunebench").exists()
