"""`models search` and `models download` against a fake Hub on 127.0.0.1 (tests/hub_server.py),
with the real huggingface_hub client pointed at it through HF_ENDPOINT."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from hub_server import TOKEN, FakeHub, Repo, folder_files

from engine.core import paths, protocol
from engine.core.channel import Channel
from engine.core.control import Control
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.runtime import hub_download, hub_files

TINY = "tiny-org/tiny-llama"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_hub(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    files = {**folder_files(tiny_model_dir), "pytorch_model.bin": b"PK\x03\x04 a pickle", "extra.pt": b"pickle",
             "onnx/model.onnx": b"onnx"}
    repos = [
        Repo(TINY, files, tags=["llama", "safetensors", "license:apache-2.0"], downloads=50, params=150_000),
        Repo("tiny-org/other-model", {"config.json": b"{}"}, tags=["qwen2", "license:mit"], downloads=900,
             params=7_000_000_000),
        Repo("locked/gated-llama", files, tags=["llama"], gated=True),
        Repo("tiny-org/missing-file", {**files}, tags=["llama"], missing=("tokenizer.model",)),
    ]
    with FakeHub(repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")  # no token
        yield hub


def run(engine_argv: Callable[..., list[str]], env: dict[str, str], *args: str) -> tuple[int, list[dict]]:
    proc = subprocess.run(engine_argv(*args, "--json"), env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, messages


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["type"] == kind]


def hub_env(engine_env: dict[str, str], fake_hub: FakeHub) -> dict[str, str]:
    return {**engine_env, "HF_ENDPOINT": fake_hub.url}


def test_search_with_a_filter_shows_downloads_size_and_fit_labels(fake_hub, engine_env, engine_argv):
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "search", "tiny", "--architecture",
                         "llama", "--license", "apache-2.0", "--limit", "5")
    assert code == 0, messages
    rows = of_type(messages, "result")[0]["data"]["models"]
    assert [row["id"] for row in rows] == [TINY]
    row = rows[0]
    assert row["downloads"] == 50 and row["params"] == 150_000 and row["license"] == "apache-2.0"
    assert set(row["fit"]) == {"inference", "lora", "qlora", "full"}
    assert all(fit["label"] in ("fits", "tight", "too big") for fit in row["fit"].values())
    searched = [headers for method, path, headers in fake_hub.requests if path == "/api/models"]
    assert searched, "the search went through the fake Hub"


def test_search_in_a_terminal_prints_one_line_per_model(fake_hub, engine_env, engine_argv):
    proc = subprocess.run(engine_argv("models", "search", "tiny"), env=hub_env(engine_env, fake_hub),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-org/tiny-llama  50 downloads  150k params  inference" in proc.stderr
    assert "HTTP Request" not in proc.stderr  # httpx's own log stays quiet


def test_download_lands_where_models_list_finds_it_and_loads(fake_hub, engine_env, engine_argv):
    env = hub_env(engine_env, fake_hub)
    code, messages = run(engine_argv, env, "models", "download", TINY)
    assert code == 0, messages
    result = of_type(messages, "result")[0]["data"]
    assert result["model"] == "tiny-org--tiny-llama"
    folder = Path(result["path"])
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    # Pickles and files in subfolders stay on the Hub; nothing asked for them.
    assert not (folder / "pytorch_model.bin").exists() and not (folder / "extra.pt").exists()
    assert not fake_hub.gets("pytorch_model.bin") and not fake_hub.gets("extra.pt")
    assert sorted(result["skipped_pickles"]) == ["extra.pt", "pytorch_model.bin"]
    progress = of_type(messages, "progress")
    assert progress and progress[-1]["current"] == progress[-1]["total"] > 0
    assert {"bytes_per_s", "eta_s"} <= set(progress[-1])

    code, listed = run(engine_argv, env, "models", "list")
    names = [row["name"] for row in of_type(listed, "result")[0]["data"]["models"]]
    assert "tiny-org--tiny-llama" in names

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.runtime import models
    prepared = models.prepare("tiny-org--tiny-llama")  # what every model picker passes on
    assert models.prepare(TINY) == prepared  # the Hub id names the same model
    from engine.core import fit_estimate
    assert fit_estimate.model_shape(TINY) == fit_estimate.model_shape("tiny-org--tiny-llama") is not None
    assert AutoModelForCausalLM.from_pretrained(prepared).config.hidden_size == 64
    assert AutoTokenizer.from_pretrained(prepared).chat_template


def test_a_dropped_connection_resumes_with_a_range_request(fake_hub, engine_env, engine_argv, tiny_model_dir,
                                                           tmp_path):
    # huggingface_hub writes what it has received in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB), and
    # resumes from the last chunk written: the file must be longer than one chunk, and the drop
    # come after the first.
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    big = _big_safetensors(tmp_path, DOWNLOAD_CHUNK_SIZE + 400_000)
    files = {"config.json": (tiny_model_dir / "config.json").read_bytes(), "model.safetensors": big.read_bytes()}
    fake_hub.repos["tiny-org/big"] = Repo("tiny-org/big", files, tags=["llama"])
    fake_hub.drop_once["model.safetensors"] = DOWNLOAD_CHUNK_SIZE + 50_000
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "download", "tiny-org/big")
    assert code == 0, messages
    gets = fake_hub.gets("model.safetensors")
    assert len(gets) == 2
    assert "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={DOWNLOAD_CHUNK_SIZE}-"
    landed = Path(of_type(messages, "result")[0]["data"]["path"]) / "model.safetensors"
    assert landed.read_bytes() == big.read_bytes()


def test_card_is_the_readme_text(fake_hub, engine_env, engine_argv):
    fake_hub.repos[TINY].files["README.md"] = b"# Tiny llama\n\nA test model."
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "card", TINY)
    assert code == 0, messages
    assert of_type(messages, "result")[0]["data"]["card"].startswith("# Tiny llama")
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "card", "tiny-org/other-model")
    assert code == 0 and of_type(messages, "result")[0]["data"]["card"] == ""


def test_a_second_try_keeps_the_files_the_first_one_finished(fake_hub, engine_env, engine_argv):
    env = hub_env(engine_env, fake_hub)
    fake_hub.repos[TINY].missing = ("zz-late.json",)  # fetched last; 404 stops the first try there
    code, messages = run(engine_argv, env, "models", "download", TINY)
    assert code == protocol.ExitCode.NOT_FOUND
    assert len(fake_hub.gets("model.safetensors")) == 1
    fake_hub.repos[TINY].missing = ()
    code, messages = run(engine_argv, env, "models", "download", TINY)
    assert code == 0, messages
    assert len(fake_hub.gets("model.safetensors")) == 1  # not fetched again
    progress = of_type(messages, "progress")
    assert progress[-1]["current"] == progress[-1]["total"]


def test_cancel_on_stdin_stops_a_download_and_installs_nothing(fake_hub, engine_env, engine_argv, tiny_model_dir,
                                                               tmp_path):
    """The engine's cancel (a `cancel` line on stdin, as the window sends) stops between two
    chunks; the model is not installed and a later try starts from the staging folder."""
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    big = _big_safetensors(tmp_path, 2 * DOWNLOAD_CHUNK_SIZE + 2**20)
    fake_hub.repos["tiny-org/big"] = Repo("tiny-org/big", {"config.json": (tiny_model_dir / "config.json")
                                                           .read_bytes(), "model.safetensors": big.read_bytes()})
    fake_hub.pause_per_mib = 0.1  # about 2 s a chunk: time to ask for the cancel after the first
    proc = subprocess.Popen(engine_argv("models", "download", "tiny-org/big", "--json"),
                            env=hub_env(engine_env, fake_hub), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    messages = []
    for line in proc.stdout:
        messages.append(json.loads(line))
        if messages[-1]["type"] == "progress":
            proc.stdin.write(protocol.encode(protocol.make(protocol.CANCEL)))
            proc.stdin.flush()
            break
    messages += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == protocol.ExitCode.CANCELLED, messages
    assert "cancelled" in of_type(messages, "error")[0]["message"]
    assert not (paths.models_cache_dir() / "tiny-org--big").exists()


def _big_safetensors(folder: Path, size: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path = folder / "model.safetensors"
    save_file({"pad": np.zeros(size // 4, dtype=np.float32)}, str(path))
    return path


def test_a_gated_repo_is_one_line_saying_what_to_do(fake_hub, engine_env, engine_argv):
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "download", "locked/gated-llama")
    assert code == protocol.ExitCode.NOT_FOUND
    message = of_type(messages, "error")[0]["message"]
    assert "\n" not in message and "is gated" in message and "licence" in message and "models login" in message
    assert f"{fake_hub.url}/locked/gated-llama" in message
    assert not (paths.models_cache_dir() / "locked--gated-llama").exists()


def test_login_stores_the_token_in_the_keyring_and_a_gated_download_uses_it(fake_hub, engine_env, engine_argv,
                                                                             tmp_path):
    keyring_file = tmp_path / "keyring.json"
    env = {**hub_env(engine_env, fake_hub), "PYTHON_KEYRING_BACKEND": "file_keyring.FileKeyring",
           "TUNEBENCH_TEST_KEYRING": str(keyring_file),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), engine_env.get("PYTHONPATH", "")])}
    login = subprocess.run(engine_argv("models", "login", "--json"), env=env, input=TOKEN + "\n",
                           capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stdout + login.stderr
    assert TOKEN not in login.stdout + login.stderr  # the token is never echoed
    assert json.loads(keyring_file.read_text()) == {"tunebench/huggingface": TOKEN}
    code, messages = run(engine_argv, env, "models", "download", "locked/gated-llama")
    assert code == 0, messages
    assert (paths.models_cache_dir() / "locked--gated-llama" / "model.safetensors").is_file()


def test_a_missing_file_is_one_line(fake_hub, engine_env, engine_argv):
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "download", "tiny-org/missing-file")
    assert code == protocol.ExitCode.NOT_FOUND
    message = of_type(messages, "error")[0]["message"]
    assert "\n" not in message and "missing" in message
    assert not (paths.models_cache_dir() / "tiny-org--missing-file").exists()


def test_an_unknown_repo_is_one_line(fake_hub, engine_env, engine_argv):
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "download", "nobody/nothing")
    assert code == protocol.ExitCode.NOT_FOUND
    assert "not found" in of_type(messages, "error")[0]["message"]


def test_an_unreachable_hub_is_one_line(engine_env, engine_argv):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**engine_env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    env.pop("HF_HUB_OFFLINE", None)
    # huggingface_hub retries a refused connection with backoff (about 24 s for a search)
    # before giving up; `models card` goes the same way through hub_errors, so it is left out.
    for args in (("models", "search", "x"), ("models", "download", TINY)):
        code, messages = run(engine_argv, env, *args)
        assert code == protocol.ExitCode.FAILED, (args, messages)
        message = of_type(messages, "error")[0]["message"]
        assert "\n" not in message and "cannot reach" in message, message


def test_offline_mode_set_by_the_user_is_respected(engine_env, engine_argv):
    code, messages = run(engine_argv, {**engine_env, "HF_HUB_OFFLINE": "1"}, "models", "search", "x")
    assert code == protocol.ExitCode.USAGE and "offline mode" in of_type(messages, "error")[0]["message"]


def test_too_little_disk_space_refuses_before_fetching(fake_hub, workspace_home, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # another test's engine may have set it
    monkeypatch.setattr(hub_download, "free_bytes", lambda folder: 1000)
    with pytest.raises(EngineError) as refused:
        hub_download.download(TINY, _job())
    assert "not enough disk space" in refused.value.message
    assert not fake_hub.gets("model.safetensors")


def test_cancel_stops_between_chunks_and_keeps_finished_files(fake_hub, workspace_home, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    job = _job()
    job.control.cancelled.set()
    with pytest.raises(EngineError) as stopped:
        hub_download.download(TINY, job)
    assert stopped.value.code == protocol.ExitCode.CANCELLED
    assert not (paths.models_cache_dir() / "tiny-org--tiny-llama").exists()


def test_selection_takes_weights_and_text_never_pickles():
    files = [hub_files.RepoFile(name, 1) for name in (
        "config.json", "model.safetensors", "model.gguf", "pytorch_model.bin", "optimizer.pt", "x.pkl",
        "tokenizer.json", "chat_template.jinja", "modeling_custom.py", "sub/config.json")]
    chosen = {file.name for file in hub_files.select(files).files}
    assert chosen == {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"}


def test_several_gguf_files_need_include():
    files = [hub_files.RepoFile(name, 1) for name in ("a-Q4_K_M.gguf", "a-Q8_0.gguf", "README.md")]
    with pytest.raises(EngineError, match="--include"):
        hub_files.select(files)
    assert hub_files.select(files, "*Q8_0.gguf").gguf.name == "a-Q8_0.gguf"
    only_pickles = [hub_files.RepoFile("pytorch_model.bin", 1), hub_files.RepoFile("config.json", 1)]
    with pytest.raises(EngineError, match="pickled"):
        hub_files.select(only_pickles)


def _job() -> Job:
    channel = Channel(open(Path(paths.cache_dir()) / "protocol.ndjson", "w", encoding="utf-8"), json_mode=True)
    return Job(channel, Control(channel), "models download")


def test_a_gguf_repo_downloads_one_file_and_converts_it_for_the_pickers(fake_hub, engine_env, engine_argv,
                                                                        tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.runtime import gguf_writer as export_gguf

    gguf_file = tmp_path / "tiny-f32.gguf"
    export_gguf.write(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tiny_model_dir, gguf_file, "f32",
                      "tiny")
    files = {"tiny-f32.gguf": gguf_file.read_bytes(), "tiny-q8_0.gguf": b"GGUF other", "README.md": b"# card"}
    fake_hub.repos["tiny-org/tiny-gguf"] = Repo("tiny-org/tiny-gguf", files, tags=["gguf"])
    env = hub_env(engine_env, fake_hub)
    code, messages = run(engine_argv, env, "models", "download", "tiny-org/tiny-gguf")
    assert code == protocol.ExitCode.USAGE and "--include" in of_type(messages, "error")[0]["message"]
    code, messages = run(engine_argv, env, "models", "download", "tiny-org/tiny-gguf", "--include", "*f32.gguf")
    assert code == 0, messages
    result = of_type(messages, "result")[0]["data"]
    assert result["files"] == ["tiny-f32.gguf", "README.md"] and not fake_hub.gets("tiny-q8_0.gguf")
    code, listed = run(engine_argv, env, "models", "list")
    assert result["model"] in [row["name"] for row in of_type(listed, "result")[0]["data"]["models"]]
    assert AutoModelForCausalLM.from_pretrained(result["path"]).config.hidden_size == 64
    assert result["model"] == "tiny-org--tiny-gguf"  # the name owner/name resolves to
    code, again = run(engine_argv, env, "models", "download", "tiny-org/tiny-gguf", "--include", "*f32.gguf")
    assert code == 0 and of_type(again, "result")[0]["data"]["downloaded_bytes"] == 0  # found, not fetched


def test_a_gguf_download_needs_room_for_its_conversion_too(tmp_path, monkeypatch):
    gguf = hub_files.RepoFile("m-Q4_K_M.gguf", 2**30)
    selection = hub_files.select([gguf, hub_files.RepoFile("README.md", 10)])
    monkeypatch.setattr(hub_download, "free_bytes", lambda folder: 3 * 2**30)  # the file fits, its conversion not
    with pytest.raises(EngineError, match="not enough disk space"):
        hub_download.check_disk_space(selection, tmp_path)
    monkeypatch.setattr(hub_download, "free_bytes", lambda folder: 6 * 2**30)
    hub_download.check_disk_space(selection, tmp_path)


def test_fit_labels_follow_the_memory_and_the_device():
    from engine.core import fit_estimate

    shape = fit_estimate.guess_shape(1_000_000_000)
    assert 0.8e9 < shape.linear_params + shape.vocab * shape.hidden < 1.2e9  # about the count it was made from
    assert {v["label"] for v in fit_estimate.fit_labels(shape, 0.5).values()} == {"too big"}
    assert {v["label"] for v in fit_estimate.fit_labels(shape, 1000).values()} == {"fits"}
    gpu = fit_estimate.fit_labels(shape, 24, "cuda")
    assert gpu["inference"]["gb"] == pytest.approx(2.0, abs=0.2)  # bf16 weights, no CPU runtime
    assert gpu["qlora"]["gb"] < gpu["lora"]["gb"] < gpu["full"]["gb"]


def test_a_malformed_repository_id_is_one_usage_line(fake_hub, engine_env, engine_argv):
    code, messages = run(engine_argv, hub_env(engine_env, fake_hub), "models", "card", "not a/valid id")
    assert code == protocol.ExitCode.USAGE, messages
    error = of_type(messages, "error")[0]["message"]
    assert "not a/valid id" in error and "\n" not in error and "Traceback" not in error
