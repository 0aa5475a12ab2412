"""Out-of-memory recovery (engine/train/oom.py) with the injected OOM of TUNEBENCH_TEST_OOM: the
micro-batch halves and the run goes on with the same steps and losses; at micro-batch 1 the run
stops with exit code 6, one line, and stays resumable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from engine.core import protocol
from engine.core.config import TrainConfig
from engine.train import oom
from engine.train.resume import find_run

from .test_train import build, run_cli

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"


def _rows(tmp_path: Path, count: int = 16) -> Path:
    file = tmp_path / "reviews.jsonl"
    file.write_text("".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:count]), encoding="utf-8")
    return file


def _config(tiny_model_dir: Path, data: Path, **changes) -> TrainConfig:
    base = TrainConfig(model=str(tiny_model_dir), dataset=str(data), max_steps=4, batch_size=4,
                       learning_rate=5e-3, lr_scheduler="constant", lora_r=8, lora_alpha=16, lora_dropout=0.0,
                       max_length=128, save_steps=1, device="cpu", method="lora", sample_count=0,
                       precision="fp32")
    return dataclasses.replace(base, **changes)


def _train(cfg: TrainConfig, tmp_path: Path) -> tuple[object, list[dict]]:
    trainer, callback, job, run = build(cfg, "lora", tmp_path)
    trainer.train()
    return trainer, job.messages()


def _losses(messages: list[dict]) -> list[float]:
    return [m["values"]["loss"] for m in messages if m["type"] == "metrics" and "loss" in m["values"]]


@pytest.mark.parametrize("padding_free", [True, False])
def test_injected_oom_halves_the_micro_batch_and_keeps_the_losses(
        padding_free, tiny_model_dir, workspace_home, tmp_path, monkeypatch) -> None:
    cfg = _config(tiny_model_dir, _rows(tmp_path), padding_free=padding_free)
    _, plain = _train(cfg, tmp_path / "plain")
    monkeypatch.setenv(oom.TEST_HOOK, "2")  # from step 2, more than 2 examples "do not fit"
    trainer, recovered = _train(cfg, tmp_path / "oom")
    assert trainer.micro_batch == 2
    assert [(m["step"], m["values"]) for m in recovered if m.get("event") == "oom"] == [(2, {"micro_batch": 2.0})]
    assert len(_losses(recovered)) == 4
    assert _losses(recovered) == pytest.approx(_losses(plain), rel=1e-4)


def test_oom_at_micro_batch_one_stops_with_code_6_and_the_run_resumes(
        tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    flags = ["--model", str(tiny_model_dir), "--dataset", str(_rows(tmp_path)), "--device", "cpu",
             "--max-steps", "4", "--save-steps", "1", "--max-length", "128", "--sample-count", "0"]
    done = run_cli(engine_argv, {**engine_env, oom.TEST_HOOK: "3,0"}, *flags)
    assert done.returncode == protocol.ExitCode.OUT_OF_MEMORY
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    error = next(m for m in messages if m["type"] == "error")
    assert "micro-batch 1" in error["message"] and "\n" not in error["message"]
    assert "Traceback" not in done.stderr
    run_id = next(m for m in messages if m["type"] == "artifact" and m["kind"] == "run_dir")["run_id"]
    assert find_run(run_id, "resume").last_checkpoint() is not None
    resumed = run_cli(engine_argv, engine_env, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_a_padding_free_row_splits_between_examples_with_its_boundaries() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    batch = {"input_ids": torch.arange(9)[None], "labels": torch.arange(9)[None], "position_ids": positions,
             "cu_seq_lens_q": torch.tensor([0, 3, 5, 9], dtype=torch.int32), "max_length_q": 4}
    first, second = oom.split(batch)
    assert first["input_ids"].tolist() == [[0, 1, 2]] and second["input_ids"].tolist() == [[3, 4, 5, 6, 7, 8]]
    assert second["cu_seq_lens_q"].tolist() == [0, 2, 6] and second["max_length_q"] == 4
    assert [oom.examples_in(piece) for piece in oom.pieces_until(batch, 1)] == [1, 1, 1]


def test_padded_rows_split_in_halves() -> None:
    batch = {"input_ids": torch.ones(4, 5), "attention_mask": torch.ones(4, 5), "labels": torch.ones(4, 5)}
    assert [piece["input_ids"].shape[0] for piece in oom.pieces_until(batch, 1)] == [1, 1, 1, 1]
    assert [piece["input_ids"].shape[0] for piece in oom.pieces_until(batch, None)] == [4]
