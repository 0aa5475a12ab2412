"""engine/train/swiglu.py: the gated MLP keeps only its gate and up projection for backward."""

from __future__ import annotations

import torch

from engine.train import compact_activations as compact
from engine.train import swiglu

from .test_train_speed import _assert_close, _loss_and_grads, _tiny


def test_the_function_gives_autograds_gradients_exactly() -> None:
    gate = torch.randn(7, 24, requires_grad=True)
    up = torch.randn(7, 24, requires_grad=True)
    grad = torch.randn(7, 24)
    expected = torch.autograd.grad(torch.nn.functional.silu(gate) * up, (gate, up), grad)
    got = torch.autograd.grad(swiglu.SwiGLU.apply(gate, up), (gate, up), grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _inputs(model) -> dict:
    ids = torch.randint(3, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(2))
    return {"input_ids": ids, "labels": ids}


def test_a_model_with_it_installed_gives_the_same_loss_and_lora_gradients(tiny_model_dir) -> None:
    plain = _tiny(tiny_model_dir)
    expected_loss, expected_grads = _loss_and_grads(plain, _inputs(plain))
    model = _tiny(tiny_model_dir)
    assert swiglu.install(model) == model.config.num_hidden_layers
    loss, grads = _loss_and_grads(model, _inputs(model))
    assert loss == expected_loss
    _assert_close(grads, expected_grads, rtol=1e-5, atol=1e-7)


def _saved_in_layers(model, monkeypatch) -> list[object]:
    """Everything the compacting layers keep for backward, with tiny tensors counted too."""
    monkeypatch.setattr(compact, "MIN_ELEMENTS", 64)
    kept: list[object] = []
    pack = compact.Compactor.pack

    def recording(self, tensor):
        saved = pack(self, tensor)
        kept.append(saved)
        return saved

    monkeypatch.setattr(compact.Compactor, "pack", recording)
    loss = model(**_inputs(model)).loss
    loss.backward()
    return kept


def test_compacting_layers_recompute_the_product_instead_of_storing_it(tiny_model_dir, monkeypatch) -> None:
    model = _tiny(tiny_model_dir)
    compact.install(model)
    swiglu.install(model)
    width = model.config.intermediate_size
    kept = _saved_in_layers(model, monkeypatch)
    derived = [s for s in kept if isinstance(s, compact._Derived)]
    stored = {id(s): s for s in kept if isinstance(s, compact._Packed) and s.half.shape[-1] == width}
    layers = model.config.num_hidden_layers
    assert len(derived) >= layers  # down's input, once per layer
    assert len(stored) == 2 * layers  # the gate and the up projection; no silu, no product


def test_compacted_gradients_with_the_recomputed_product_stay_within_bf16_rounding(tiny_model_dir,
                                                                                   monkeypatch) -> None:
    monkeypatch.setattr(compact, "MIN_ELEMENTS", 64)
    plain = _tiny(tiny_model_dir)
    expected_loss, expected_grads = _loss_and_grads(plain, _inputs(plain))
    model = _tiny(tiny_model_dir)
    compact.install(model)
    swiglu.install(model)
    loss, grads = _loss_and_grads(model, _inputs(model))
    assert loss == expected_loss
    gap = sum((grads[n] - expected_grads[n]).norm() ** 2 for n in grads) ** 0.5
    relative = float(gap / sum(g.norm() ** 2 for g in expected_grads.values()) ** 0.5)
    assert 0 < relative < 0.01, relative
