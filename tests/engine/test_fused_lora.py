"""Fused LoRA groups (engine/train/fused_lora.py) against peft's layer-by-layer LoRA on the tiny
model: the same loss and gradients, dropout and biases included; peft's own forward wherever the
fused one would not be exactly peft's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from engine.core import config
from engine.core.config import TrainConfig
from engine.train import fused_lora

from .test_train import build
from .test_train_speed import _sample_rows


def _model(folder: Path, dropout: float = 0.0, dora: bool = False, bias: bool = False, prepare=None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    if bias:  # Qwen-style projections with biases
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module is not model.get_output_embeddings():
                module.bias = torch.nn.Parameter(torch.randn(module.out_features) * 0.1)
    if prepare:
        prepare(model)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                      init_lora_weights=False, use_dora=dora)
    return get_peft_model(model, lora)


def _loss_and_grads(model, ids: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad()
    torch.manual_seed(7)  # the same dropout masks on both sides
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(plain: tuple, fused: tuple) -> None:
    assert fused[0] == pytest.approx(plain[0], rel=1e-6)
    assert plain[1].keys() == fused[1].keys() and plain[1]
    for name, grad in plain[1].items():
        torch.testing.assert_close(fused[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _ids(model) -> torch.Tensor:
    return torch.randint(3, model.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_groups_give_peft_loss_and_gradients(tiny_model_dir, dropout) -> None:
    plain, fused = _model(tiny_model_dir, dropout), _model(tiny_model_dir, dropout)
    # per layer: q/k/v, gate/up, and o and down alone
    assert fused_lora.install(fused) == 4 * fused.config.num_hidden_layers
    ids = _ids(plain)
    _assert_same(_loss_and_grads(plain, ids), _loss_and_grads(fused, ids))


@pytest.mark.parametrize("reentrant", [False, True])
def test_fused_groups_recompute_under_gradient_checkpointing(tiny_model_dir, reentrant) -> None:
    plain, fused = _model(tiny_model_dir, dropout=0.2), _model(tiny_model_dir, dropout=0.2)
    for model in (plain, fused):
        model.base_model.model.gradient_checkpointing_enable({"use_reentrant": reentrant})
        model.enable_input_require_grads()
    fused_lora.install(fused)
    ids = _ids(plain)
    _assert_same(_loss_and_grads(plain, ids), _loss_and_grads(fused, ids))


def test_fused_groups_add_the_frozen_biases(tiny_model_dir) -> None:
    plain, fused = _model(tiny_model_dir, bias=True), _model(tiny_model_dir, bias=True)
    fused_lora.install(fused)
    ids = _ids(plain)
    _assert_same(_loss_and_grads(plain, ids), _loss_and_grads(fused, ids))


def test_a_groups_frozen_weights_are_one_tensor_and_nothing_is_copied(tiny_model_dir) -> None:
    model = _model(tiny_model_dir)
    before = sum(p.numel() for p in model.parameters())
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    fused_lora.install(model)
    attention = model.base_model.model.model.layers[0].self_attn
    storages = {m.base_layer.weight.untyped_storage().data_ptr() for m in
                (attention.q_proj, attention.k_proj, attention.v_proj)}
    assert len(storages) == 1
    assert sum(p.numel() for p in model.parameters()) == before
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, weights[name], rtol=0, atol=0, msg=name)


def test_bf16_stored_weights_are_widened_as_the_compact_weights_path_does(tiny_model_dir) -> None:
    from engine.train.setup import store_frozen_linears_compact

    # the plain side's base layers run precise_forward's float32 multiply of the bf16 weights
    plain = _model(tiny_model_dir, prepare=store_frozen_linears_compact)
    fused = _model(tiny_model_dir, prepare=store_frozen_linears_compact)
    assert fused.base_model.model.model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
    assert fused_lora.install(fused) > 0
    ids = _ids(plain)
    _assert_same(_loss_and_grads(plain, ids), _loss_and_grads(fused, ids))


def test_peft_runs_its_own_forward_where_fusing_would_differ(tiny_model_dir) -> None:
    plain, fused = _model(tiny_model_dir), _model(tiny_model_dir)
    fused_lora.install(fused)
    ids = _ids(plain)
    with torch.no_grad():
        with plain.disable_adapter(), fused.disable_adapter():  # sample generation of the base
            torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 runs
            torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=0)
    calls = []
    group = fused.base_model.model.model.layers[0].self_attn.q_proj
    original = fused_lora.GroupLinear.apply
    fused_lora.GroupLinear.apply = lambda *a: calls.append(1) or original(*a)
    try:
        with torch.no_grad():
            fused(input_ids=ids)
            assert calls  # ...and the fused one otherwise
            calls.clear()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fused(input_ids=ids)
            assert not calls
    finally:
        fused_lora.GroupLinear.apply = original
    assert group.base_layer.weight.requires_grad is False


def test_dora_layers_are_left_to_peft(tiny_model_dir) -> None:
    assert fused_lora.install(_model(tiny_model_dir, dora=True)) == 0


def test_the_knob_fuses_a_training_runs_lora_layers(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=1, device="cpu",
                      method="lora", sample_count=0, precision="fp32")

    def shares_storage(trainer) -> bool:
        attention = trainer.model.base_model.model.model.layers[0].self_attn
        return attention.q_proj.base_layer.weight.untyped_storage().data_ptr() == \
            attention.k_proj.base_layer.weight.untyped_storage().data_ptr()

    assert shares_storage(build(cfg, "lora", tmp_path / "on")[0])
    assert not shares_storage(build(dataclasses.replace(cfg, fused_lora=False), "lora", tmp_path / "off")[0])


def test_the_knob_is_greyed_out_where_it_does_nothing() -> None:
    defaults = {"method": "lora", "precision": "auto"}
    assert "fused_lora" not in config.unused_fields(defaults)
    for changed in ({"method": "qlora"}, {"method": "full"}, {"method": "prompt_tuning"}, {"use_dora": True},
                    {"precision": "bf16"}):
        assert "fused_lora" in config.unused_fields({**defaults, **changed}), changed
