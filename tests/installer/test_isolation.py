"""Real child processes under the bootstrap's isolated environment, in a folder whose path has
a space and a non-ASCII letter: a venv is created there and its Python ignores the user's
PYTHONPATH, user site-packages, pip config and an active conda environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from installer_scripts import sibling

bootstrap_children = sibling("bootstrap_children")
bootstrap_pip = sibling("bootstrap_pip")
bootstrap_venv = sibling("bootstrap_venv")
Log = sibling("bootstrap_log").Log

pytestmark = pytest.mark.installers

REPORT = (
    "import json, os, site, sys; print(json.dumps({'path': sys.path, "
    "'user_site': site.ENABLE_USER_SITE, 'prefix': sys.prefix, 'cwd': os.getcwd()}))"
)


@pytest.fixture(scope="module")
def hostile_user(tmp_path_factory):
    """A user environment full of things that must not leak into our children."""
    root = tmp_path_factory.mktemp("user")
    poison = root / "poison"
    poison.mkdir()
    (poison / "sitecustomize.py").write_text("raise SystemExit('PYTHONPATH leaked')\n")
    home = root / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nuser = true\nno-binary = :all:\n")
    conda = root / "conda env"
    (conda / "bin").mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()  # as a user's shell has it
           if key not in ("PIP_CONFIG_FILE", "TUNEBENCH_PIP_SOURCES")}
    env.update(
        PYTHONPATH=str(poison), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
        PIP_USER="1", PIP_REQUIRE_VIRTUALENV="0", UV_SYSTEM_PYTHON="1",
        CONDA_PREFIX=str(conda), CONDA_DEFAULT_ENV="conda env",
        PATH=str(conda / "bin") + os.pathsep + os.environ.get("PATH", ""),
    )
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory, hostile_user):
    folder = tmp_path_factory.mktemp("install") / "Dossier \u00e9t\u00e9 x" / "venv"
    python = bootstrap_venv.ensure_venv(Log(), folder, bootstrap_children.child_env(hostile_user))
    return folder, python


def test_venv_in_a_path_with_a_space_and_accents(venv, hostile_user):
    folder, python = venv
    assert python.is_file() and " " in str(python) and "\u00e9" in str(python)
    env = bootstrap_children.child_env(hostile_user)
    done = bootstrap_children.run_child([python, "-c", REPORT], env=env, cwd=folder, capture=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert Path(report["prefix"]) == folder
    assert report["user_site"] is False
    assert not any("poison" in entry for entry in report["path"])
    assert Path(report["cwd"]) == folder


def test_without_isolation_the_poison_would_bite(venv, hostile_user):
    _, python = venv  # proves the test above tests something
    done = bootstrap_children.run_child([python, "-c", "pass"], env=hostile_user, capture=True)
    assert done.returncode != 0 and "PYTHONPATH leaked" in done.stderr


def test_pip_ignores_the_users_config_and_variables(venv, hostile_user):
    _, python = venv
    env = bootstrap_children.child_env(hostile_user)
    done = bootstrap_children.run_child([python, "-m", "pip", "config", "list"], env=env,
                                        capture=True)
    assert done.returncode == 0, done.stderr
    assert "user" not in done.stdout and "no-binary" not in done.stdout
    # The same query with the user's environment sees them: they exist and are ignored above.
    user_view = dict(hostile_user, PYTHONPATH="")
    done = bootstrap_children.run_child([python, "-m", "pip", "config", "list"], env=user_view,
                               capture=True)
    assert "global.user='true'" in done.stdout and ":env:.user='1'" in done.stdout
    sources = bootstrap_pip.read_pip_sources(Log(), python, hostile_user)
    assert "--user" not in sources.all() and "--no-binary" not in sources.all()


def test_installing_a_local_wheel_into_the_accented_venv(venv, hostile_user, tmp_path):
    """pip with --no-index --find-links in a folder with a space and accents."""
    folder, python = venv
    wheels = tmp_path / "wheel h\u00f4use"
    wheels.mkdir()
    _write_wheel(wheels, "tb_probe_pkg", "1.0")
    env = bootstrap_children.child_env(hostile_user)
    argv = [python, "-m", "pip", "install", "--no-index", "--find-links", wheels,
            "tb_probe_pkg==1.0"]
    done = bootstrap_children.run_child(argv, env=env, capture=True)
    assert done.returncode == 0, done.stdout + done.stderr
    check = bootstrap_children.run_child(
        [python, "-c", "import tb_probe_pkg; print(tb_probe_pkg.X)"], env=env, capture=True)
    assert check.stdout.strip() == "42"


def _write_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, written by hand (no build tools needed)."""
    import base64
    import hashlib
    import zipfile

    def record_line(path: str, data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return "%s,sha256=%s,%d" % (path, digest, len(data))

    info = "%s-%s.dist-info" % (name, version)
    files = {
        name + "/__init__.py": b"X = 42\n",
        info + "/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                             % (name, version)).encode(),
        info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    path = folder / ("%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(path, "w") as archive:
        lines = []
        for inner, data in files.items():
            archive.writestr(inner, data)
            lines.append(record_line(inner, data))
        lines.append(info + "/RECORD,,")
        archive.writestr(info + "/RECORD", "\n".join(lines) + "\n")
    return path
