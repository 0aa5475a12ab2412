"""`train` on a tiny random Llama: LoRA and QLoRA (bitsandbytes NF4 on the CPU), the run folder,
the adapter, cancel, and one-line errors for bad input."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from pathlib import Path

import pytest

from engine.core import protocol, workspace
from engine.core.channel import Channel
from engine.core.config import TrainConfig
from engine.core.control import Control

FAST = dict(max_steps=6, batch_size=4, learning_rate=5e-3, lr_scheduler="constant", lora_r=8,
            lora_alpha=16, lora_dropout=0.0, max_length=128, save_steps=3, device="cpu")


class FakeJob:
    """What the CLI hands a job, with the protocol stream captured in memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.channel = Channel(self.stream, json_mode=True)
        self.control = Control(self.channel)

    def messages(self) -> list[dict]:
        return [protocol.decode(line) for line in self.stream.getvalue().splitlines()]


def write_repeated_dataset(tmp_path: Path, copies: int = 16) -> Path:
    row = {"messages": [{"role": "user", "content": "Is the kettle good?"},
                        {"role": "assistant", "content": '{"sentiment": "positive"}'}]}
    file = tmp_path / "repeat.jsonl"
    file.write_text("\n".join(json.dumps(row) for _ in range(copies)) + "\n", encoding="utf-8")
    return file


def build(cfg: TrainConfig, method: str, tmp_path: Path):
    from engine.train import sft

    job = FakeJob()
    run = workspace.create_run("t", root=tmp_path / "runs")
    data, _, _ = sft.load_training_data(cfg)
    trainer, callback = sft.build_trainer(cfg, run, job, Path(cfg.model), method, "cpu", data)
    return trainer, callback, job, run


def snapshot(model, trainable: bool) -> dict:
    return {n: p.detach().clone().float() for n, p in model.named_parameters()
            if p.requires_grad == trainable and p.dtype.is_floating_point}


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_training_changes_lora_weights_only_and_loss_falls(method, tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(write_repeated_dataset(tmp_path)),
                      method=method, **{**FAST, "max_steps": 12})
    trainer, callback, job, run = build(cfg, method, tmp_path)
    if method == "qlora":
        import bitsandbytes as bnb

        assert any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules())
    lora_before, frozen_before = snapshot(trainer.model, True), snapshot(trainer.model, False)
    assert lora_before and all("lora_" in name for name in lora_before)
    trainer.train()
    lora_after, frozen_after = snapshot(trainer.model, True), snapshot(trainer.model, False)
    assert any(not lora_before[n].equal(lora_after[n]) for n in lora_before)
    assert all(frozen_before[n].equal(frozen_after[n]) for n in frozen_before)
    losses = [m["values"]["loss"] for m in job.messages() if m["type"] == "metrics"]
    assert len(losses) == 12
    # A random 2-layer model learns slowly through a rank-8 adapter; a steady fall is the signal.
    assert losses[-1] < 0.85 * losses[0]
    assert max(losses[-3:]) < min(losses[:3])


def test_a_dataset_without_conversations_is_refused_by_name(tiny_model_dir, engine_argv, engine_env,
                                                              workspace_home, tmp_path) -> None:
    pairs = tmp_path / "prefs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}) + "\n", encoding="utf-8")
    done = run_cli(engine_argv, engine_env, "--model", str(tiny_model_dir), "--dataset", str(pairs), "--device", "cpu")
    assert done.returncode == protocol.ExitCode.INVALID_INPUT
    error = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error")
    assert error["message"].startswith("dataset: prefs@v1 has shape 'preference'")


def run_cli(engine_argv, engine_env, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(engine_argv("train", "--json", *args), env=engine_env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_run_writes_a_complete_run_folder_and_a_loadable_adapter(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    done = run_cli(engine_argv, engine_env, "--model", str(tiny_model_dir), "--dataset", "sample", *flags)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    assert messages[0]["type"] == "hello" and messages[0]["device"]["device"] == "cpu"
    assert [m["step"] for m in messages if m["type"] == "metrics"] == [1, 2, 3, 4, 5, 6]
    assert all(
        {"loss", "learning_rate", "tokens_per_s"} <= set(m["values"]) for m in messages if m["type"] == "metrics"
    )
    result = messages[-1]["data"] if messages[-1]["type"] == "result" else next(
        m["data"] for m in messages if m["type"] == "result")
    run = workspace.RunFolder(Path(result["run_dir"]))
    info = run.info()
    assert info["status"] == "finished" and info["steps"] == 6 and info["method"] == "lora"
    assert info["dataset"] == "sample-product-reviews@v1" and info["system_prompt"]
    assert "learning_rate = 0.005" in run.config_toml.read_text()
    assert (run.checkpoints / "checkpoint-6").is_dir() and (run.checkpoints / "checkpoint-3").is_dir()
    assert run.engine_log.read_text().count("Trainable parameters") == 1
    events = list(run.read_events())
    assert events[0]["type"] == "hello" and events[-1]["type"] in ("result", "log")
    assert_adapter_changes_the_model(tiny_model_dir, run.adapter)


def assert_adapter_changes_the_model(base_dir: Path, adapter_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (adapter_dir / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter_dir))
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_cancel_on_stdin_stops_at_a_step_and_keeps_what_was_trained(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "max_steps": 500, "save_steps": 1000}.items()]
    process = subprocess.Popen(engine_argv("train", "--json", "--model", str(tiny_model_dir), *flags),
                               env=engine_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(240, process.kill)  # a hung engine must fail the test, not CI
    timer.start()
    messages = []
    for line in process.stdout:
        messages.append(protocol.decode(line))
        if messages[-1]["type"] == "metrics" and messages[-1]["step"] == 2:
            process.stdin.write(protocol.encode(protocol.make(protocol.CANCEL)))
            process.stdin.flush()
    code = process.wait()
    timer.cancel()
    assert code == protocol.ExitCode.CANCELLED
    result = next(m["data"] for m in messages if m["type"] == "result")
    assert result["status"] == "cancelled" and 2 <= result["steps"] <= 4
    run = workspace.RunFolder(Path(result["run_dir"]))
    assert run.info()["status"] == "cancelled"
    assert (run.adapter / "adapter_model.safetensors").is_file()
    assert (run.checkpoints / f"checkpoint-{result['steps']}").is_dir()


@pytest.mark.parametrize("args, code, words", [
    (["--learning-rate", "-1"], protocol.ExitCode.USAGE, "learning_rate: must be at least"),
    (["--model", "/no/such/model"], protocol.ExitCode.NOT_FOUND, "model: '/no/such/model' is not"),
    (["--dataset", "nothing-like-this"], protocol.ExitCode.NOT_FOUND, "dataset: 'nothing-like-this'"),
    (["--preset", "moon-base"], protocol.ExitCode.USAGE, "unknown preset 'moon-base'"),
    (["--max-length", "16"], protocol.ExitCode.INVALID_INPUT, "max_length: 16 tokens leaves no example"),
])
def test_bad_input_gives_one_error_line_and_its_exit_code(args, code, words, engine_argv, engine_env,
                                                          workspace_home, tiny_model_dir) -> None:
    model = [] if "--model" in args else ["--model", str(tiny_model_dir)]
    done = run_cli(engine_argv, engine_env, "--device", "cpu", *model, *args)
    assert done.returncode == code
    errors = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert len(errors) == 1 and words in errors[0]["message"]
    assert "Traceback" not in done.stderr


def test_a_split_dataset_trains_on_its_train_split(tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    split = subprocess.run(engine_argv("data", "split", "sample", "--val", "0.25", "--json"), env=engine_env,
                           capture_output=True, text=True, timeout=120)
    assert split.returncode == 0, split.stderr[-2000:]
    done = run_cli(engine_argv, engine_env, "--model", str(tiny_model_dir), "--dataset", "sample-product-reviews",
                   "--device", "cpu", "--max-steps", "1", "--max-length", "128")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "result")["data"][
        "run_dir"
    ]
    info = workspace.RunFolder(Path(run_dir)).info()
    assert info["dataset"] == "sample-product-reviews@v2" and info["dataset_rows"] == 180
    # Training maps the rows (ours and TRL's); none of it may land in the stored version.
    version_files = [p.name for p in (workspace_home / "datasets").rglob("*")]
    assert not [name for name in version_files if name.startswith("cache-")], version_files
