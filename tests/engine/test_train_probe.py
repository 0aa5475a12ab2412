"""`train --probe` on the tiny random Llama: the answer's fields, a real peak, no run folder, and
-- with the available memory set below the peak through TUNEBENCH_PROBE_AVAILABLE_GB -- "does not
fit" with a smaller micro-batch whose grad. accumulation keeps the effective batch."""

from __future__ import annotations

import json
import subprocess

import pytest

from engine.core import fit, protocol
from engine.core.config import TrainConfig
from engine.train import probe as fit_probe

FIELDS = {"probe", "fits", "peak_gb", "available_gb", "margin_gb", "safety", "budget_gb", "batch_size", "grad_accum",
          "max_length", "batch_tokens", "longest_row_tokens", "phases", "model", "proposal", "method", "precision",
          "device", "summary"}


def probe_cli(engine_argv, engine_env, model, *flags: str, available_gb: float | None = None) -> dict:
    env = dict(engine_env)
    if available_gb is not None:
        env[fit_probe.AVAILABLE_ENV] = str(available_gb)
    done = subprocess.run(engine_argv("train", "--probe", "--json", "--model", str(model), "--device", "cpu",
                                      "--method", "lora", "--max-length", "256", *flags),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    results = [m["data"] for m in messages if m["type"] == "result"]
    assert len(results) == 1
    logs = [m["message"] for m in messages if m["type"] == "log"]
    assert results[0]["summary"] in logs  # the one-line answer is in the log too
    return results[0]


def test_probe_measures_a_peak_and_a_proposal_when_memory_is_short(tiny_model_dir, engine_argv, engine_env,
                                                                    workspace_home) -> None:
    result = probe_cli(engine_argv, engine_env, tiny_model_dir, "--batch-size", "16")
    assert FIELDS <= set(result)
    assert result["probe"] and result["fits"] and result["proposal"] is None
    assert result["device"] == "cpu" and result["method"] == "lora"
    assert 0.1 < result["peak_gb"] < result["available_gb"]
    assert result["margin_gb"] == pytest.approx(result["available_gb"] - result["peak_gb"], abs=0.002)
    small, full = result["phases"]["small"], result["phases"]["full"]
    assert small["rows"] == 8 and full["rows"] == 16 and full["tokens"] == result["batch_tokens"]
    assert small["tokens"] < full["tokens"] and small["peak"] <= full["peak"] <= result["peak_gb"]
    assert result["model"]["per_token_mb"] >= 0
    assert result["summary"].startswith("Fits: peak ")
    # The probe builds its trainer in a scratch folder it removes: no run is recorded.
    assert_no_runs(workspace_home)
    assert not list((workspace_home / "cache" / "probes").iterdir())

    # Memory for the half batch but not the whole one (the budget between the two phases' peaks).
    available = (small["peak"] + full["peak"]) / 2 / fit.SAFETY
    short = probe_cli(engine_argv, engine_env, tiny_model_dir, "--batch-size", "16", "--grad-accum", "2",
                      available_gb=round(available, 3))
    assert not short["fits"]
    assert short["available_gb"] == pytest.approx(available, abs=0.001)
    assert short["available_source"] == fit_probe.AVAILABLE_ENV
    proposal = short["proposal"]
    assert proposal["batch_size"] < 16 and proposal["batch_size"] * proposal["grad_accum"] == 16 * 2
    assert proposal["max_length"] == 256 and proposal["predicted_peak_gb"] <= short["budget_gb"]
    assert short["summary"].startswith("Does not fit: peak ")
    assert (
        f"try micro-batch {proposal['batch_size']} with grad. accumulation {proposal['grad_accum']}" in short["summary"]
    )
    assert_no_runs(workspace_home)


def assert_no_runs(home) -> None:
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_probe_refuses_resume_and_a_bad_override(engine_argv, engine_env, workspace_home, tiny_model_dir) -> None:
    done = subprocess.run(engine_argv("train", "--probe", "--json", "--resume", "some-run"), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE
    assert "--probe checks a new run's settings" in done.stdout
    env = dict(engine_env, **{fit_probe.AVAILABLE_ENV: "lots"})
    done = subprocess.run(engine_argv("train", "--probe", "--json", "--model", str(tiny_model_dir), "--device", "cpu"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == protocol.ExitCode.USAGE
    errors = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert errors and f"{fit_probe.AVAILABLE_ENV}: must be a number of GB" in errors[0]["message"]


def test_probe_settings_are_the_runs_with_two_steps() -> None:
    cfg = TrainConfig(max_steps=500, save_steps=100, warmup_steps=10, val_fraction=0.1, eval_steps=50,
                      batch_size=8, grad_accum=4, max_length=1024, lora_r=32)
    probed = fit_probe.probe_config(cfg, "lora")
    assert (probed.max_steps, probed.save_steps, probed.eval_steps, probed.warmup_steps) == (2, 2, 2, 0)
    assert probed.sample_count == 0  # measured once, in a phase of its own
    for name in ("batch_size", "grad_accum", "max_length", "lora_r", "val_fraction", "precision"):
        assert getattr(probed, name) == getattr(cfg, name)


def test_longest_rows_pick_by_tokenized_length() -> None:
    rows = [{"input_ids": [0] * n} for n in (5, 40, 12, 40, 7)]
    assert [fit_probe.row_length(row) for row in rows] == [5, 40, 12, 40, 7]
    pair = {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5, 6], "x": "y"}
    assert fit_probe.row_length(pair) == 2 * (2 + 3)  # a pair runs as two rows padded to the longer answer


def test_the_probe_transcripts_are_real_answers() -> None:
    """The GUI tests replay these; they were recorded from `train --probe --json` (tiny model)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "transcripts"
    for name, fits in (("train_probe_fits.ndjson", True), ("train_probe_nofit.ndjson", False)):
        messages = [json.loads(line) for line in (folder / name).read_text(encoding="utf-8").splitlines()]
        assert messages[0]["type"] == "hello" and messages[0]["command"] == "train"
        result = messages[-1]["data"]
        assert FIELDS <= set(result) and result["fits"] is fits
        assert result["summary"] == fit.summary(result)


# -- the memory model and its proposals (engine/core/fit.py) --------------------------------------

MB = 2**20


def test_the_line_through_two_phases() -> None:
    model = fit.MemoryModel.through((200, 1000 * MB), (400, 1400 * MB), floor=900 * MB)
    assert model.per_token == pytest.approx(2 * MB) and model.fixed == pytest.approx(600 * MB)
    assert model.peak(0) == 900 * MB and model.peak(300) == pytest.approx(1200 * MB)
    assert fit.MemoryModel.through((300, 1 * MB), (300, 2 * MB)) is None


def test_batch_tokens_with_and_without_padding() -> None:
    longest = [200, 150, 100, 50]
    assert fit.batch_tokens(longest, 4, 512, padded=False) == 500
    assert fit.batch_tokens(longest, 4, 512, padded=True) == 800
    assert fit.batch_tokens(longest, 2, 120, padded=False) == 240


def test_the_largest_micro_batch_that_fits_keeps_the_effective_batch() -> None:
    model = fit.MemoryModel(fixed=1000 * MB, per_token=1 * MB)
    longest = [100] * 6
    # 6 x 3 = 18 examples per step; micro-batch 6 needs 1600 MB, 3 needs 1300, 2 needs 1200.
    proposal = fit.propose(model, longest, 6, 3, 256, budget=1350 * MB, padded=False)
    assert (proposal["batch_size"], proposal["grad_accum"], proposal["max_length"]) == (3, 6, 256)
    assert proposal["predicted_peak_gb"] == pytest.approx(1300 / 1024, abs=1e-3)


def test_when_no_micro_batch_fits_a_shorter_max_length_is_proposed() -> None:
    model = fit.MemoryModel(fixed=1000 * MB, per_token=1 * MB)
    proposal = fit.propose(model, [300, 300], 2, 1, 300, budget=1200 * MB, padded=False)
    assert (proposal["batch_size"], proposal["grad_accum"], proposal["max_length"]) == (1, 2, 200)
    assert fit.propose(model, [300], 1, 1, 300, budget=900 * MB, padded=False) is None  # the fixed part alone
    floor_only = fit.MemoryModel(fixed=0, per_token=1 * MB, floor=2000 * MB)
    assert fit.propose(floor_only, [300, 300], 2, 1, 300, budget=1500 * MB, padded=False) is None


def test_the_summary_line() -> None:
    base = {"peak_gb": 1.94, "available_gb": 24.0, "margin_gb": 22.06, "max_length": 256}
    assert fit.summary({**base, "fits": True}) == "Fits: peak 1.9 GB of 24 GB (margin 22 GB)"
    proposal = {"batch_size": 2, "grad_accum": 2, "max_length": 256, "predicted_peak_gb": 1.2}
    assert fit.summary({**base, "fits": False, "proposal": proposal}) == (
        "Does not fit: peak 1.9 GB of 24 GB; try micro-batch 2 with grad. accumulation 2 (about 1.2 GB)")
    shorter = {**proposal, "batch_size": 1, "grad_accum": 4, "max_length": 128}
    assert fit.summary({**base, "fits": False, "proposal": shorter}).endswith(
        "try micro-batch 1 with grad. accumulation 4 and max length 128 (about 1.2 GB)")
    assert "try qlora" in fit.summary({**base, "fits": False, "proposal": None})
