"""installer/bootstrap.py: ``--gui-only`` (the installed app's small GUI environment), the
engine environment complete on its own, and whether an engine environment is current for this
app's sources and locks (``probe --venv``).

Child processes are the recording fake of tests/test_bootstrap.py: no pip, venv or torch runs.
"""

from __future__ import annotations

import json

import pytest
from installer_scripts import load, sibling

# The recording fake and its fixtures (pytest finds fixtures imported into a test module).
from test_bootstrap import _record_launch, fake, venv  # noqa: F401

bootstrap = load("bootstrap")
bootstrap_children = sibling("bootstrap_children")
bootstrap_cli = sibling("bootstrap_cli")
bootstrap_installs = sibling("bootstrap_installs")
bootstrap_locks = sibling("bootstrap_locks")
bootstrap_paths = sibling("bootstrap_paths")
bootstrap_torch = sibling("bootstrap_torch")
bootstrap_venv = sibling("bootstrap_venv")
gpu_probe = sibling("gpu_probe")
wheelhouse = sibling("wheelhouse")


def _stamp(venv_path):
    return json.loads((venv_path / bootstrap_paths.STAMP_NAME).read_text())


def _engine_env(venv_path, *extra):
    """Build an engine environment with the fake, as the Setup page would."""
    assert bootstrap.main(["engine", "--torch", "cpu", "--venv", str(venv_path), *extra]) == 0


def _freshness(venv_path, capsys, *extra):
    assert bootstrap.main(["probe", "--torch", "cpu", "--venv", str(venv_path), *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- --gui-only


def test_gui_only_setup_installs_the_window_and_nothing_of_the_engine(fake, venv, capsys,
                                                                      monkeypatch):
    probed = []
    monkeypatch.setattr(gpu_probe, "probe", lambda *a, **k: probed.append(1))
    assert bootstrap.main(["setup", "--gui-only", "--venv", str(venv)]) == 0
    installs = fake.pip_installs()
    assert len(installs) == 1 and installs[0][4] == "-e" and installs[0][5].endswith("[gui]")
    assert not fake.commands_with(bootstrap_torch.TORCH_SPEC)  # no torch
    assert not fake.commands_with(bootstrap_installs.DEFAULT_MODEL_SPEC)  # no model wheel
    assert not fake.commands_with("prepare")  # no model conversion
    assert probed == []  # nvidia-smi is not even asked
    stamp = _stamp(venv)
    assert stamp["extras"] == ["gui"] and stamp["torch"] is None
    assert "Setup page" in capsys.readouterr().out


def test_gui_only_uses_only_the_gui_lock(fake, venv, monkeypatch):
    monkeypatch.setattr(bootstrap_locks, "lock_platform", lambda *args: "linux")
    assert bootstrap.main(["setup", "--gui-only", "--venv", str(venv)]) == 0
    project = fake.pip_installs()[0]
    locks = [project[i + 1] for i, arg in enumerate(project) if arg == "--constraint"]
    assert [lock.rsplit("/", 1)[-1] for lock in locks[1:]] == ["gui-linux.txt"]


def test_gui_only_run_opens_the_window_and_skips_installs_next_time(fake, venv):
    assert bootstrap.main(["run", "--gui-only", "--venv", str(venv)]) == 0
    python = str(bootstrap_venv.venv_python(venv))
    assert _record_launch.calls == [[python, "-m", "gui"]]
    fake.calls.clear()
    assert bootstrap.main(["run", "--gui-only", "--venv", str(venv)]) == 0
    assert fake.calls == []  # second start: straight to the window


def test_a_full_setup_after_gui_only_installs_everything(fake, venv):
    assert bootstrap.main(["setup", "--gui-only", "--venv", str(venv)]) == 0
    fake.calls.clear()
    assert bootstrap.main(["setup", "--torch", "cpu", "--venv", str(venv)]) == 0
    installs = fake.pip_installs()
    assert installs[0][4] == bootstrap_torch.TORCH_SPEC
    assert installs[1][5].endswith("[gui,engine]")
    assert bootstrap_installs.DEFAULT_MODEL_SPEC in installs[2]
    assert len(fake.commands_with("prepare")) == 1
    assert _stamp(venv)["extras"] == ["engine", "gui"] and _stamp(venv)["torch"] == "cpu"


def test_gui_only_after_a_full_setup_installs_nothing(fake, venv):
    assert bootstrap.main(["setup", "--torch", "cpu", "--venv", str(venv)]) == 0
    fake.calls.clear()
    assert bootstrap.main(["setup", "--gui-only", "--venv", str(venv)]) == 0
    assert fake.calls == []
    assert _stamp(venv)["torch"] == "cpu"  # the full record is kept


def test_gui_only_is_refused_with_other_commands():
    for command in ("engine", "test", "probe"):
        with pytest.raises(SystemExit):
            bootstrap_cli.parse_args([command, "--gui-only"])


def test_readme_commands_still_install_everything(fake, venv):
    assert bootstrap.main(["run", "--venv", str(venv)]) == 0
    assert fake.pip_installs()[1][5].endswith("[gui,engine]")
    assert fake.commands_with("prepare")


# --------------------------------------------------------------------------- engine env


def test_engine_environment_holds_and_prepares_the_default_model(fake, venv):
    _engine_env(venv)
    python = str(bootstrap_venv.venv_python(venv))
    assert any(bootstrap_installs.DEFAULT_MODEL_SPEC in argv for argv in fake.pip_installs())
    prepare = [python, "-m", "engine", "models", "prepare", "default"]
    assert fake.commands_with("prepare") == [prepare]
    stamp = _stamp(venv)
    assert stamp["model_prepared"] is True and stamp["app_version"] == "0.1.0"


def test_failed_model_preparation_leaves_no_engine_to_switch_to(fake, venv, capsys):
    fake.fail_on = "prepare"
    assert bootstrap.main(["engine", "--torch", "cpu", "--venv", str(venv)]) == 1
    out, err = capsys.readouterr()
    assert "engine_python" not in out and "FAILED: Preparing the default model" in err


# --------------------------------------------------------------------------- current or stale


def test_a_fresh_engine_environment_is_current(fake, venv, capsys):
    _engine_env(venv)
    capsys.readouterr()
    fake.calls.clear()
    report = _freshness(venv, capsys)
    assert report["engine_current"] is True and report["engine_reason"] == ""
    assert report["engine_version"] == report["app_version"] == "0.1.0"
    assert fake.calls == []  # nothing installed, nothing run


def test_new_locks_make_the_engine_environment_stale(fake, venv, capsys, tmp_path, monkeypatch):
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "engine-cpu-linux.txt").write_text("torch==2.13.0\ntransformers==5.23.0\n")
    real = bootstrap_locks.chosen_locks
    monkeypatch.setattr(bootstrap_locks, "chosen_locks", lambda log, extras, build, use=True: real(
        log, extras, build, use, folder=locks, system="linux", machine="x86_64"))
    _engine_env(venv)
    capsys.readouterr()
    assert _freshness(venv, capsys)["engine_current"] is True
    (locks / "engine-cpu-linux.txt").write_text("torch==2.13.0\ntransformers==5.24.0\n")  # upgrade
    report = _freshness(venv, capsys)
    assert report["engine_current"] is False and "locks" in report["engine_reason"]


def test_a_new_app_wheel_makes_the_engine_environment_stale(fake, venv, capsys, tmp_path):
    old = tmp_path / "tunebench-0.1.0-py3-none-any.whl"
    old.write_bytes(b"old")
    _engine_env(venv, "--wheel", str(old))
    capsys.readouterr()
    assert _freshness(venv, capsys, "--wheel", str(old))["engine_current"] is True
    new = tmp_path / "tunebench-0.2.0-py3-none-any.whl"
    new.write_bytes(b"new")
    report = _freshness(venv, capsys, "--wheel", str(new))
    assert report["engine_current"] is False
    assert (report["engine_version"], report["app_version"]) == ("0.1.0", "0.2.0")


@pytest.mark.parametrize("stamp", [None, {"format": 1, "torch": None, "extras": ["gui"]},
                                   "unprepared"])
def test_missing_gui_only_or_unprepared_stamps_are_not_current(fake, venv, capsys, stamp):
    _engine_env(venv)
    path = venv / bootstrap_paths.STAMP_NAME
    if stamp is None:
        path.unlink()
    elif stamp == "unprepared":
        path.write_text(json.dumps(dict(_stamp(venv), model_prepared=False)))
    else:
        path.write_text(json.dumps(stamp))
    capsys.readouterr()
    report = _freshness(venv, capsys)
    assert report["engine_current"] is False and report["engine_reason"]


def test_probe_without_venv_says_nothing_about_an_engine(monkeypatch, capsys):
    monkeypatch.setattr(bootstrap_children, "run_child", _must_not_run)
    assert bootstrap.main(["probe", "--torch", "cpu"]) == 0
    assert "engine_current" not in json.loads(capsys.readouterr().out)


def _must_not_run(*args, **kwargs):
    raise AssertionError("must not be called")


def test_gui_only_start_after_an_offline_setup_installs_nothing(fake, venv, tmp_path, monkeypatch):
    """install.sh --offline sets up everything from a wheelhouse; the launcher then runs
    ``run --gui-only`` (with the locks in force online): no install, no network."""
    monkeypatch.setattr(bootstrap_locks, "lock_platform", lambda *args: "linux")
    wheel = tmp_path / "tunebench-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"zip")
    house = tmp_path / "wheel house"
    house.mkdir()
    (house / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"torch")
    wheelhouse.write_manifest(house, "0.1.0", "cpu", ["gui", "engine"], "llm-x==1")
    assert bootstrap.main(["setup", "--offline", str(house), "--venv", str(venv),
                           "--wheel", str(wheel)]) == 0
    fake.calls.clear()
    assert bootstrap.main(["run", "--gui-only", "--venv", str(venv), "--wheel", str(wheel)]) == 0
    assert fake.calls == [] and _record_launch.calls[-1][1:] == ["-m", "gui"]
