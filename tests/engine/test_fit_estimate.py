"""The model picker's memory estimate (engine/core/fit_estimate.py): shapes read without loading a
model, bytes per method, and the calibration agreeing with the probe measurement it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import fit_estimate
from engine.runtime import models

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "probe_accuracy.json"


def test_the_bundled_models_names_match_the_loaders() -> None:
    assert fit_estimate.BUNDLED_NAME == models.DEFAULT_NAME
    assert fit_estimate.BUNDLED_DISTRIBUTION == models.BUNDLED_DISTRIBUTION
    assert fit_estimate.MARKER == models.MARKER


def test_a_config_json_gives_the_models_parameter_count(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    shape = fit_estimate.model_shape(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert (shape.hidden, shape.layers, shape.intermediate, shape.kv_heads) == (64, 2, 128, 2)


@pytest.mark.skipif(fit_estimate.bundled_gguf() is None, reason="the bundled model is not installed")
def test_the_bundled_gguf_header_gives_smollm2s_shape(workspace_home) -> None:
    shape = fit_estimate.read_gguf_shape(fit_estimate.bundled_gguf())
    assert shape == fit_estimate.ModelShape(params=134_515_008, vocab=49152, hidden=576, layers=30,
                                            intermediate=1536, heads=9, kv_heads=3, head_dim=64)
    assert fit_estimate.model_shape("default") == shape  # not prepared in this workspace: read from the GGUF


def test_bytes_per_method(tiny_model_dir) -> None:
    shape = fit_estimate.ModelShape(params=134_515_008, vocab=49152, hidden=576, layers=30, intermediate=1536,
                                    heads=9, kv_heads=3, head_dim=64)
    settings = {"batch_size": 4, "max_length": 256, "device": "cpu", "precision": "bf16"}
    lora = fit_estimate.estimate(shape, {**settings, "method": "lora"})
    assert fit_estimate.trainable_params(shape, "lora", {"lora_r": 16, "target_modules": "all-linear"}) == 4_884_480
    assert lora.weights_gb == pytest.approx((134_515_008 * 2 + 4_884_480 * 16) / 2**30)
    full = fit_estimate.estimate(shape, {**settings, "method": "full"})
    assert full.weights_gb == pytest.approx(134_515_008 * 16 / 2**30)
    qlora = fit_estimate.estimate(shape, {**settings, "method": "qlora"})
    assert qlora.weights_gb < lora.weights_gb < full.weights_gb
    attention = fit_estimate.estimate(shape, {**settings, "method": "lora", "target_modules": "attention"})
    assert attention.weights_gb < lora.weights_gb
    longer = fit_estimate.estimate(shape, {**settings, "method": "lora", "max_length": 512})
    assert longer.activations_gb == pytest.approx(2 * lora.activations_gb)
    checkpointed = fit_estimate.estimate(shape, {**settings, "method": "lora", "gradient_checkpointing": True})
    assert checkpointed.activations_gb < lora.activations_gb / 5
    fp32 = fit_estimate.estimate(shape, {**settings, "method": "lora", "precision": "fp32", "compact_weights": True})
    linear = shape.linear_params
    assert fp32.weights_gb == pytest.approx((linear * 2 + (134_515_008 - linear) * 4 + 4_884_480 * 16) / 2**30)
    wide = fit_estimate.estimate(shape, {**settings, "method": "lora", "precision": "fp32", "compact_weights": False})
    assert wide.weights_gb == pytest.approx((134_515_008 * 4 + 4_884_480 * 16) / 2**30)
    gpu = fit_estimate.estimate(shape, {**settings, "method": "auto", "device": "cuda", "precision": "auto"})
    assert (gpu.method, gpu.precision, gpu.runtime_gb) == ("qlora", "bf16", 0.0)


def test_the_calibration_reproduces_the_probe_it_came_from() -> None:
    """At the probe's own token count and precision, the estimate lands on the peak the probe
    measured (the precision is the machine's: fp32 on a CPU without native bf16)."""
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    trials = report["cases"]["default"]["trials"]
    shape = fit_estimate.ModelShape(params=134_515_008, vocab=49152, hidden=576, layers=30, intermediate=1536,
                                    heads=9, kv_heads=3, head_dim=64)
    for trial in trials:
        tokens = trial["probe"]["batch_tokens"]
        at_max = fit_estimate.estimate(shape, {"method": "lora", "batch_size": 4, "max_length": 256,
                                               "device": "cpu", "precision": trial["probe"]["precision"]})
        estimate = at_max.weights_gb + at_max.runtime_gb + at_max.activations_gb * tokens / at_max.tokens
        assert estimate == pytest.approx(trial["predicted_peak_gb"], rel=0.1)


def test_unknown_models_have_no_estimate(workspace_home, tmp_path) -> None:
    assert fit_estimate.model_shape("") is None
    assert fit_estimate.model_shape("/no/such/model") is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")
    assert fit_estimate.model_shape(str(broken)) is None
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"nope")
    assert fit_estimate.model_shape(str(fake)) is None
