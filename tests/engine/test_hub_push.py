"""`push`: a run's adapter (or merged model) to the Hub with a model card written from the run,
against the fake Hub on 127.0.0.1 (tests/hub_server.py) with the real huggingface_hub client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hub_server import TOKEN, FakeHub

from engine.core import protocol, workspace
from engine.export import card_sections, loss_chart, model_card

REPO = Path(__file__).resolve().parents[2]
TRAIN_FLAGS = ["--device", "cpu", "--max-steps", "4", "--batch-size", "4", "--learning-rate", "0.01",
               "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--max-length", "128",
               "--save-steps", "100", "--val-fraction", "0.1", "--eval-steps", "2"]
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"}


def engine(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run([sys.executable, "-m", "engine", *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    return done.returncode, [protocol.decode(line) for line in done.stdout.splitlines()], done.stderr


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == kind]


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with a 4-step LoRA run (validation loss every 2 steps) and one evaluation of it."""
    home = tmp_path_factory.mktemp("push-home")
    env = dict(os.environ, TUNEBENCH_HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    code, _, stderr = engine(env, "data", "split", "sample", "--val", "0.1")
    assert code == 0, stderr[-2000:]
    code, messages, stderr = engine(env, "train", "--model", str(tiny_model_dir), "--dataset",
                                    "sample-product-reviews@v2", *TRAIN_FLAGS)
    assert code == 0, stderr[-2000:]
    run_dir = Path(of_type(messages, "result")[0]["data"]["run_dir"])
    code, messages, stderr = engine(env, "evaluate", "run", "--dataset", "sample-product-reviews@v2", "--split",
                                    "validation", "--model", str(tiny_model_dir), "--adapters", run_dir.name,
                                    "--max-examples", "4", "--max-new-tokens", "4", "--metrics", "perplexity",
                                    "--bootstrap", "20", "--device", "cpu")
    assert code == 0, stderr[-2000:]
    return {"home": home, "run_dir": run_dir, "model": tiny_model_dir,
            "eval_id": of_type(messages, "result")[0]["data"]["id"]}


@pytest.fixture
def home(trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("TUNEBENCH_HOME", str(trained["home"]))
    return trained


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeHub([]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def hub_env(trained: dict[str, Any], fake_hub: FakeHub, tmp_path: Path, token: str = TOKEN) -> dict[str, str]:
    """An engine's environment with this workspace, the fake Hub and a keyring holding ``token``."""
    keyring_file = tmp_path / "keyring.json"
    keyring_file.write_text(json.dumps({"tunebench/huggingface": token} if token else {}), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    return {**env, "TUNEBENCH_HOME": str(trained["home"]), "HF_ENDPOINT": fake_hub.url, "PYTHONUNBUFFERED": "1",
            "PYTHON_KEYRING_BACKEND": "file_keyring.FileKeyring", "TUNEBENCH_TEST_KEYRING": str(keyring_file),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def recorded_losses(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    train, validation = {}, {}
    for message in workspace.RunFolder(run_dir).read_events():
        if message["type"] == "metrics" and message.get("split") == "validation":
            validation[message["step"]] = message["values"]["eval_loss"]
        elif message["type"] == "metrics":
            train[message["step"]] = message["values"]["loss"]
    return train, validation


# -- the model card -----------------------------------------------------------------------------

def test_the_card_names_the_data_settings_losses_and_evaluation_of_the_run(home) -> None:
    from huggingface_hub import ModelCard

    run_dir = home["run_dir"]
    card = model_card.build(run_dir, repo_id="me/tiny-adapter")
    data = ModelCard(card.text).data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert {"tunebench", "lora", "sft"} <= set(data.tags)
    assert data.base_model is None  # a local base folder has no Hub id, and none is made up
    manifest = json.loads((home["home"] / "datasets" / "sample-product-reviews" / "v2" / "manifest.json").read_text())
    assert "`sample-product-reviews@v2`" in card.text and manifest["content_hash"] in card.text
    assert "| learning_rate | 0.01 |" in card.text and "| lora_r | 8 |" in card.text
    assert "| beta |" not in card.text  # a DPO setting an SFT run never used
    train, validation = recorded_losses(run_dir)
    assert len(train) == 4 and set(validation) == {2, 4}
    last = max(train)
    assert f"| {last} | {card_sections.cell(train[last])} | {card_sections.cell(validation[last])} |" in card.text
    assert home["eval_id"] in card.text and "Answer perplexity" in card.text
    summary = json.loads((home["home"] / "evals" / home["eval_id"] / "summary.json").read_text())
    tuned = summary["metrics"]["perplexity"]["values"][run_dir.name]["estimate"]
    assert card_sections.cell(tuned) in card.text
    assert "from_pretrained(\"me/tiny-adapter\")" in card.text
    assert str(home["model"]) not in card.text and str(home["home"]) not in card.text  # no local paths
    assert card.chart.startswith("<svg") and card.chart.count("<polyline") == 2


def test_what_a_run_did_not_record_is_left_out_of_its_card(home, tmp_path) -> None:
    """A copy of the run (no evaluation scored it) with its validation losses taken out."""
    copy = home["home"] / "runs" / "copy-without-validation"
    shutil.copytree(home["run_dir"], copy)
    events = copy / workspace.EVENTS
    events.write_text("".join(line + "\n" for line in events.read_text().splitlines() if "validation" not in line))
    (copy / workspace.CONFIG_TOML).write_text("not toml [")
    try:
        card = model_card.build(copy, merged=True)
    finally:
        shutil.rmtree(copy)
    assert "Validation loss" not in card.text and "## Evaluation" not in card.text
    assert "## Training settings" not in card.text and "## Loss" in card.text
    assert "library_name: transformers" in card.text and "merged into its weights" in card.text
    assert card.chart.count("<polyline") == 1


def test_the_base_model_is_named_by_its_hub_id_when_the_run_records_one(tmp_path) -> None:
    (tmp_path / "tunebench-model.json").write_text(json.dumps({"source": "hub:tiny-org/tiny-llama@0123"}))
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A model\n")
    info = {"model": "tiny-org--tiny-llama", "model_dir": str(tmp_path), "method": "qlora"}
    data = model_card.front_matter(info, merged=False)
    assert data.base_model == "tiny-org/tiny-llama" and data.license == "apache-2.0"
    assert model_card.base_hub_id({"model": "default"}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_card.base_hub_id({"model": "x", "model_dir": str(tmp_path / "nowhere")}) == ""


def test_the_loss_table_samples_long_runs_and_keeps_the_last_step() -> None:
    points = [loss_chart.LossPoint(step, 10 - step / 100, 9.0 if step % 50 == 0 else None) for step in range(1, 301)]
    rows = loss_chart.sampled(points, rows=10)
    assert rows[-1].step == 300 and rows[0].step == 1
    assert 10 <= len(rows) <= 20 and sum(row.eval is not None for row in rows) == 6  # all six validation steps


# -- the push -------------------------------------------------------------------------------------

def test_a_push_uploads_the_adapter_and_its_card_and_never_a_pickle(home, fake_hub, tmp_path) -> None:
    run_dir = home["run_dir"]
    env = hub_env(home, fake_hub, tmp_path)
    code, messages, stderr = engine(env, "push", run_dir.name, "--repo", "me/tiny-adapter", "--private")
    assert code == 0, stderr[-2000:]
    repo = fake_hub.repos["me/tiny-adapter"]
    assert set(repo.files) == ADAPTER_FILES | {"README.md", "loss.svg"}
    assert repo.files["adapter_model.safetensors"] == (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert repo.private and repo.commits[0]["summary"] == f"Push run {run_dir.name} from Tunebench"
    readme = repo.files["README.md"].decode()
    assert "library_name: peft" in readme and "sample-product-reviews@v2" in readme
    assert fake_hub.validated == [readme]  # the client had the card's front matter checked first
    result = of_type(messages, "result")[0]["data"]
    assert result["url"] == f"{fake_hub.url}/me/tiny-adapter" and set(result["files"]) == set(repo.files)
    stages = [m.get("stage") for m in of_type(messages, "progress")]
    assert stages == ["prepare", "model card", "create repository", "upload", "done"]

    # A second push to the same repository (409 on create: it exists) is a second commit.
    code, messages, stderr = engine(env, "push", str(run_dir), "--repo", "me/tiny-adapter", "--message", "again")
    assert code == 0, stderr[-2000:]
    assert [commit["summary"] for commit in repo.commits][-1] == "again"


def test_pickles_in_the_adapter_folder_stay_home(home, fake_hub, tmp_path) -> None:
    copy = home["home"] / "runs" / "copy-with-pickles"
    shutil.copytree(home["run_dir"], copy)
    (copy / "adapter" / "training_args.bin").write_bytes(b"\x80\x04 a pickle")
    (copy / "adapter" / "extra.pt").write_bytes(b"\x80\x04 a pickle")
    try:
        code, _, stderr = engine(hub_env(home, fake_hub, tmp_path), "push", copy.name, "--repo", "me/clean")
    finally:
        shutil.rmtree(copy)
    assert code == 0, stderr[-2000:]
    assert set(fake_hub.repos["me/clean"].files) == ADAPTER_FILES | {"README.md", "loss.svg"}


def test_a_merged_push_uploads_the_whole_model(home, fake_hub, tmp_path) -> None:
    from safetensors import safe_open

    code, messages, stderr = engine(hub_env(home, fake_hub, tmp_path), "push", home["run_dir"].name, "--repo",
                                    "me/tiny-merged", "--merged", "--outtype", "f32")
    assert code == 0, stderr[-2000:]
    files = fake_hub.repos["me/tiny-merged"].files
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "loss.svg"} <= set(files)
    assert not any(name.endswith((".bin", ".pt", ".pth")) or name.startswith("adapter") for name in files)
    assert "tunebench-export.json" not in files  # Tunebench's note has local paths
    assert "library_name: transformers" in files["README.md"].decode()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(files["model.safetensors"])
    with safe_open(str(weights), "pt") as handle:
        assert not any("lora" in name for name in handle.keys())


def test_a_push_without_a_token_is_one_line_from_the_hubs_401(home, fake_hub, tmp_path) -> None:
    code, messages, stderr = engine(hub_env(home, fake_hub, tmp_path, token=""), "push", home["run_dir"].name,
                                    "--repo", "me/no-token")
    assert code == protocol.ExitCode.NOT_FOUND, stderr[-2000:]
    error = of_type(messages, "error")[0]["message"]
    assert error.startswith("repo: the Hub refused to write me/no-token (HTTP 401)") and "models login" in error
    assert "\n" not in error and "Traceback" not in stderr
    assert "me/no-token" not in fake_hub.repos
    assert any(method == "POST" and path == "/api/repos/create" for method, path, _ in fake_hub.requests)


@pytest.mark.parametrize("repo_id", ["no-owner", "me/has space", "me/a..b", "me/x/y", "-me/x"])
def test_an_invalid_repository_id_is_refused_before_any_network_call(home, fake_hub, tmp_path, repo_id) -> None:
    code, messages, stderr = engine(hub_env(home, fake_hub, tmp_path), "push", home["run_dir"].name,
                                    f"--repo={repo_id}")
    assert code == protocol.ExitCode.USAGE, stderr[-2000:]
    error = of_type(messages, "error")[0]["message"]
    assert error.startswith("repo: ") and "\n" not in error
    assert fake_hub.requests == []


def test_an_unknown_run_is_one_line(home, fake_hub, tmp_path) -> None:
    code, messages, _ = engine(hub_env(home, fake_hub, tmp_path), "push", "no-such-run", "--repo", "me/x")
    assert code == protocol.ExitCode.NOT_FOUND
    assert of_type(messages, "error")[0]["message"].startswith("run: 'no-such-run'")
    assert fake_hub.requests == []
