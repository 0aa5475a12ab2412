"""Each training speed-up against the plain path on the tiny model: same loss, same gradients.

- the answer-only chunked loss (engine/train/loss.py) against transformers' own loss;
- padding-free batches against padded ones (no attention across examples);
- bf16 weights and matmuls against fp32, within bf16's rounding;
- whole runs through the Trainer: the speed knobs on against all of them off.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from engine.core.config import TrainConfig
from engine.train.loss import chunked_answer_loss, install_answer_only_head, supports_answer_only_head

from .test_train import build

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"

IGNORE = -100


def _tiny(tiny_model_dir: Path, dtype: torch.dtype = torch.float32):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=dtype)
    install_answer_only_head(model, chunk=5)  # small chunks: several per batch
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, lora)


def _batch(vocab: int, lengths: list[int], prompt: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, labels) per example: the first ``prompt`` labels ignored, as completion-only loss does."""
    generator = torch.Generator().manual_seed(1)
    examples = []
    for length in lengths:
        ids = torch.randint(3, vocab, (length,), generator=generator)
        labels = ids.clone()
        labels[:prompt] = IGNORE
        examples.append((ids, labels))
    return examples


def _padded(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for row, (i, lab) in enumerate(examples):
        ids[row, :len(i)], labels[row, :len(i)], mask[row, :len(i)] = i, lab, 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _padding_free(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    labels = torch.cat([lab for _, lab in examples])[None]
    position_ids = torch.cat([torch.arange(len(ids)) for ids, _ in examples])[None]
    labels[position_ids == 0] = IGNORE  # as TRL's collator: no prediction across examples
    return {"input_ids": torch.cat([ids for ids, _ in examples])[None], "labels": labels,
            "position_ids": position_ids}


def _loss_and_grads(model, inputs: dict, **kwargs) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(**inputs, **kwargs)
    out.loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.item(), grads


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


def test_chunked_loss_equals_cross_entropy_with_gradients_for_hidden_and_head() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 9))
    labels[:, :4] = IGNORE
    out = chunked_answer_loss(hidden, labels, weight, chunk=4)
    out.loss.backward()
    ours = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    logits = hidden @ weight.t()
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1),
                                                  ignore_index=IGNORE)
    reference.backward()
    torch.testing.assert_close(out.loss, reference)
    torch.testing.assert_close(ours[0], hidden.grad)
    torch.testing.assert_close(ours[1], weight.grad)
    predicted = logits[:, :-1].argmax(-1)[labels[:, 1:] != IGNORE]
    assert out.correct.item() == (predicted == labels[:, 1:][labels[:, 1:] != IGNORE]).sum().item()


def test_answer_only_head_gives_the_models_own_loss_and_lora_gradients(tiny_model_dir) -> None:
    model = _tiny(tiny_model_dir)
    inputs = _padded(_batch(model.config.vocab_size, [12, 9, 15]))
    plain_loss, plain_grads = _loss_and_grads(model, inputs)
    fast_loss, fast_grads = _loss_and_grads(model, inputs, answer_only_loss=True)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-5)
    _assert_close(fast_grads, plain_grads, rtol=1e-4, atol=1e-6)


def test_padding_free_batch_gives_the_padded_batchs_loss_and_gradients(tiny_model_dir) -> None:
    """Attention stays inside each example: one row of three examples equals three padded rows."""
    model = _tiny(tiny_model_dir)
    examples = _batch(model.config.vocab_size, [12, 9, 15])
    padded_loss, padded_grads = _loss_and_grads(model, _padded(examples), answer_only_loss=True)
    free_loss, free_grads = _loss_and_grads(model, _padding_free(examples), answer_only_loss=True)
    assert free_loss == pytest.approx(padded_loss, rel=1e-5)
    _assert_close(free_grads, padded_grads, rtol=1e-4, atol=1e-6)


def test_padding_free_without_position_ids_would_attend_across_examples(tiny_model_dir) -> None:
    """The check above can fail: the same row without restarting positions gives another loss."""
    model = _tiny(tiny_model_dir)
    examples = _batch(model.config.vocab_size, [12, 9, 15])
    inputs = _padding_free(examples)
    with torch.no_grad():
        separate = model(**inputs, answer_only_loss=True).loss.item()
        inputs["position_ids"] = torch.arange(inputs["input_ids"].size(1))[None]
        joined = model(**inputs, answer_only_loss=True).loss.item()
    assert joined != pytest.approx(separate, rel=1e-3)


def test_bf16_weights_give_the_fp32_loss_and_gradients_within_rounding(tiny_model_dir) -> None:
    inputs = _padding_free(_batch(400, [12, 9, 15]))
    fp32_loss, fp32_grads = _loss_and_grads(_tiny(tiny_model_dir), inputs, answer_only_loss=True)
    bf16_loss, bf16_grads = _loss_and_grads(_tiny(tiny_model_dir, torch.bfloat16), inputs, answer_only_loss=True)
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.01)
    for name, grad in fp32_grads.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), bf16_grads[name].flatten(), dim=0)
        assert cosine > 0.98, name


def test_models_with_scaled_logits_keep_the_trainers_loss(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert supports_answer_only_head(model)
    model.config.final_logit_softcapping = 30.0
    assert not supports_answer_only_head(model)


SPEED_OFF = dict(padding_free=False, chunked_loss=False, precision="fp32", group_by_length=False,
                 fused_lora=False, shared_prefix=False)


def _sample_rows(tmp_path: Path, count: int = 24) -> Path:
    """Rows of different lengths (real reviews), so batches have padding to save."""
    file = tmp_path / "reviews.jsonl"
    file.write_text("".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:count]), encoding="utf-8")
    return file


def _losses(cfg: TrainConfig, tmp_path: Path) -> list[float]:
    trainer, callback, job, run = build(cfg, "lora", tmp_path)
    trainer.train()
    return [m["values"]["loss"] for m in job.messages() if m["type"] == "metrics" and "loss" in m["values"]]


def test_a_run_with_the_speed_knobs_on_follows_the_plain_runs_losses(tiny_model_dir, workspace_home,
                                                                      tmp_path) -> None:
    data = _sample_rows(tmp_path)
    base = TrainConfig(model=str(tiny_model_dir), dataset=str(data), max_steps=4, batch_size=4,
                       learning_rate=5e-3, lr_scheduler="constant", lora_r=8, lora_alpha=16, lora_dropout=0.0,
                       max_length=128, save_steps=4, device="cpu", method="lora", sample_count=0)
    plain = _losses(dataclasses.replace(base, **SPEED_OFF), tmp_path / "plain")
    fast = _losses(dataclasses.replace(base, precision="fp32"), tmp_path / "fast")
    assert fast == pytest.approx(plain, rel=1e-4)
    bf16 = _losses(dataclasses.replace(base, precision="bf16"), tmp_path / "bf16")
    assert bf16 == pytest.approx(plain, rel=0.02)


def test_padded_batches_are_grouped_by_length_unless_padding_free(tiny_model_dir, workspace_home, tmp_path) -> None:
    from transformers.trainer_pt_utils import LengthGroupedSampler

    data = _sample_rows(tmp_path)
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(data), max_steps=1, device="cpu", method="lora",
                      sample_count=0, padding_free=False)
    trainer = build(cfg, "lora", tmp_path / "grouped")[0]
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
    trainer = build(dataclasses.replace(cfg, padding_free=True), "lora", tmp_path / "free")[0]
    assert not isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
    assert trainer.data_collator.padding_free


def test_bf16_on_the_cpu_stores_the_frozen_linears_in_bf16_and_keeps_the_rest_fp32(
        tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=1, device="cpu",
                      method="lora", sample_count=0, precision="bf16")
    trainer = build(cfg, "lora", tmp_path)[0]
    dtypes = {name: p.dtype for name, p in trainer.model.named_parameters()}
    frozen_linears = [n for n in dtypes if n.endswith("base_layer.weight")]
    assert frozen_linears and all(dtypes[n] == torch.bfloat16 for n in frozen_linears)
    assert all(dtypes[n] == torch.float32 for n in dtypes if "lora_" in n or "norm" in n or "embed" in n)
    assert trainer.args.bf16  # the matmuls run under bf16 autocast


def test_activation_offloading_is_refused_on_the_cpu_in_one_line() -> None:
    from engine.core.config import ConfigError, from_mapping
    from engine.train.setup import check_runtime

    with pytest.raises(ConfigError, match="offload_activations: needs a CUDA GPU"):
        from_mapping({"offload_activations": True, "device": "cpu"})
    with pytest.raises(ConfigError, match="offload_activations: needs a CUDA GPU"):
        check_runtime(TrainConfig(offload_activations=True), "cpu")  # device auto, resolved to the cpu


def _per_example(model):
    from engine.train.varlen import use_per_example_attention

    assert use_per_example_attention(model.get_base_model())
    return model


@pytest.mark.parametrize("bounds_from", ["position_ids", "cu_seq_lens"])
def test_per_example_attention_gives_the_padded_batchs_loss_and_gradients(tiny_model_dir, bounds_from) -> None:
    """engine/train/varlen.py: SDPA on each example's slice of a padding-free row, with the
    example bounds from the position ids or from TRL's cu_seq_lens_q, equals padded rows."""
    examples = _batch(400, [12, 9, 15])
    padded_loss, padded_grads = _loss_and_grads(_tiny(tiny_model_dir), _padded(examples), answer_only_loss=True)
    inputs = _padding_free(examples)
    if bounds_from == "cu_seq_lens":
        inputs["cu_seq_lens_q"] = inputs["cu_seq_lens_k"] = torch.tensor([0, 12, 21, 36], dtype=torch.int32)
    model = _per_example(_tiny(tiny_model_dir))
    free_loss, free_grads = _loss_and_grads(model, inputs, answer_only_loss=True)
    assert free_loss == pytest.approx(padded_loss, rel=1e-5)
    _assert_close(free_grads, padded_grads, rtol=1e-4, atol=1e-6)


def test_per_example_attention_leaves_padded_batches_and_cached_decoding_to_sdpa(tiny_model_dir) -> None:
    """Sample generations during a run decode padded prompts with a cache: same tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    prompts = tokenizer(["hello there, how are", "a much longer prompt than the first one is"],
                        return_tensors="pt", padding=True)
    outputs = []
    for switch in (False, True):
        model = _tiny(tiny_model_dir)
        if switch:
            _per_example(model)
        with torch.no_grad():
            outputs.append(model.generate(**prompts, max_new_tokens=6, do_sample=False))
    assert torch.equal(outputs[0], outputs[1])


def test_runs_with_padding_free_batches_attend_per_example(tiny_model_dir, workspace_home, tmp_path) -> None:
    from engine.train.varlen import NAME

    for padding_free, expected in ((True, NAME), (False, "sdpa")):
        cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), method="lora",
                          device="cpu", padding_free=padding_free, max_steps=1, sample_count=0)
        trainer, *_ = build(cfg, "lora", tmp_path / str(padding_free))
        assert trainer.model.config._attn_implementation == expected


def test_precise_forward_computes_in_fp32_and_only_the_input_gradient_in_bf16() -> None:
    from engine.train.precise_forward import Fp32ForwardLinear

    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(24, 16, generator=generator).bfloat16()
    x = torch.randn(5, 16, generator=generator, requires_grad=True)
    out = Fp32ForwardLinear.apply(x, weight)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.detach() @ weight.float().T, rtol=0, atol=0)
    grad = torch.randn(5, 24, generator=generator)
    out.backward(grad)
    torch.testing.assert_close(x.grad, (grad.bfloat16() @ weight).float(), rtol=0, atol=0)
    torch.testing.assert_close(x.grad, grad @ weight.float(), rtol=0.02, atol=0.05)


def _first_step_loss(cfg: TrainConfig, tmp_path: Path, prepare=None) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and LoRA gradients of the first batch, as the Trainer computes them (autocast
    included); ``prepare`` may change the model first."""
    from engine.train import precise_forward
    from engine.train.samples import training_autocast

    trainer = build(cfg, "lora", tmp_path)[0]
    patched = [m for n, m in trainer.model.named_modules() if n.endswith("base_layer")
               and getattr(m.forward, "__func__", None) is precise_forward._forward]
    assert bool(patched) == ((cfg.precision == "bf16" and cfg.precise_forward)
                             or (cfg.precision == "fp32" and cfg.compact_weights))
    if prepare:
        prepare(trainer.model)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with training_autocast(trainer.args):
        loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def test_precise_forward_brings_a_bf16_runs_loss_and_gradients_closer_to_fp32(
        tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=1, batch_size=4,
                      device="cpu", method="lora", sample_count=0, lora_dropout=0.0, max_length=128, seed=5)
    fp32_loss, fp32_grads = _first_step_loss(dataclasses.replace(cfg, precision="fp32", compact_weights=False),
                                             tmp_path / "fp32")
    errors = {}
    for precise in (True, False):
        loss, grads = _first_step_loss(dataclasses.replace(cfg, precision="bf16", precise_forward=precise),
                                       tmp_path / str(precise))
        assert grads.keys() == fp32_grads.keys()
        gap = sum((grads[n] - fp32_grads[n]).norm() ** 2 for n in grads) ** 0.5
        errors[precise] = (abs(loss - fp32_loss), float(gap / sum(g.norm() ** 2 for g in fp32_grads.values()) ** 0.5))
    # LoRA's own matmuls and the norms' outputs still round, so the gap shrinks rather than vanishes.
    assert errors[True][0] < errors[False][0] and errors[True][1] < errors[False][1], errors
    assert errors[True][1] < 0.01, errors


def test_precise_forward_can_take_its_backward_pass_in_fp32_too() -> None:
    from engine.train.precise_forward import Fp32ForwardLinear

    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(24, 16, generator=generator).bfloat16()
    x = torch.randn(5, 16, generator=generator, requires_grad=True)
    out = Fp32ForwardLinear.apply(x, weight, torch.float32)
    torch.testing.assert_close(out, x.detach() @ weight.float().T, rtol=0, atol=0)
    grad = torch.randn(5, 24, generator=generator)
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad @ weight.float(), rtol=0, atol=0)


def _round_to_bf16(model) -> None:
    """An fp32 model with the values a compact-weights run trains on: its Linear weights rounded
    to bf16, and the LoRA weights too (peft initialises them in their base layer's dtype)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".base_layer." in name or ".lora_" in name:
                param.copy_(param.bfloat16().float())


def test_compact_weights_store_frozen_linears_in_bf16_and_compute_as_fp32(
        tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=1, batch_size=4,
                      device="cpu", method="lora", sample_count=0, lora_dropout=0.0, max_length=128, seed=5,
                      precision="fp32", compact_weights=True)
    model = build(cfg, "lora", tmp_path / "model")[0].model
    dtypes = {name: param.dtype for name, param in model.named_parameters()}
    assert {d for n, d in dtypes.items() if ".base_layer." in n} == {torch.bfloat16}
    assert {d for n, d in dtypes.items() if ".base_layer." not in n} == {torch.float32}
    loss, grads = _first_step_loss(cfg, tmp_path / "compact")
    wide_loss, wide_grads = _first_step_loss(dataclasses.replace(cfg, compact_weights=False), tmp_path / "wide")
    rounded_loss, rounded_grads = _first_step_loss(dataclasses.replace(cfg, compact_weights=False),
                                                   tmp_path / "rounded", prepare=_round_to_bf16)
    assert loss != wide_loss  # the weights were rounded...
    assert loss == pytest.approx(rounded_loss, rel=1e-6)  # ...and that is all: the arithmetic is fp32
    gap = sum((grads[n] - rounded_grads[n]).norm() ** 2 for n in grads) ** 0.5
    assert float(gap / sum(g.norm() ** 2 for g in rounded_grads.values()) ** 0.5) < 1e-5
    assert grads.keys() == wide_grads.keys()


def test_compact_weights_only_for_cpu_fp32_adapter_runs() -> None:
    from engine.train.setup import compacts_weights

    cfg = TrainConfig(model="m", dataset="d", precision="fp32", compact_weights=True)
    assert compacts_weights(cfg, "lora", "cpu")
    assert not compacts_weights(TrainConfig(model="m", dataset="d", precision="fp32"), "lora", "cpu")  # opt-in
    assert not compacts_weights(cfg, "lora", "cuda")
    assert not compacts_weights(cfg, "qlora", "cpu") and not compacts_weights(cfg, "full", "cpu")
    assert not compacts_weights(dataclasses.replace(cfg, precision="bf16"), "lora", "cpu")
    assert not compacts_weights(dataclasses.replace(cfg, compact_weights=False), "lora", "cpu")


def test_compact_activations_pack_large_float32_activations_only() -> None:
    from engine.train import compact_activations as compact

    large = torch.randn(compact.MIN_ELEMENTS) * 3
    weight = torch.nn.Parameter(torch.randn(256, compact.MIN_ELEMENTS // 256))
    compactor = compact.Compactor(frozenset({weight.untyped_storage().data_ptr()}))
    packed = compactor.pack(large)
    assert packed.half.dtype == torch.bfloat16
    restored = compactor.unpack(packed)
    assert restored.dtype == torch.float32 and not torch.equal(restored, large)
    torch.testing.assert_close(restored, large.bfloat16().float(), rtol=0, atol=0)
    small, ids = torch.randn(16), torch.arange(compact.MIN_ELEMENTS)
    # weight.t() is what a linear layer saves for its input gradient: a plain tensor on the weight's storage
    for kept in (weight, weight.detach().t(), small, ids, large.bfloat16()):
        assert compactor.pack(kept) is kept and compactor.unpack(kept) is kept


def test_compact_activations_copy_a_tensor_once_however_often_it_is_saved() -> None:
    from engine.train import compact_activations as compact

    compactor = compact.Compactor(frozenset())
    tensor = torch.randn(compact.MIN_ELEMENTS)
    first = compactor.pack(tensor)
    assert compactor.pack(tensor) is first and compactor.pack(tensor.view(-1)) is first
    assert compactor.pack(tensor.view(256, -1)) is not first  # another shape: another saved value
    tensor.add_(1)  # changed in place after it was saved: the new values need their own copy
    changed = compactor.pack(tensor)
    assert changed is not first
    torch.testing.assert_close(compactor.unpack(changed), tensor.bfloat16().float(), rtol=0, atol=0)
    compactor.release()  # the end of the layer's forward pass: the held tensors go
    assert not compactor.packed and compactor.pack(tensor) is not changed


def test_compact_activations_copy_no_weight_of_a_lora_model(tiny_model_dir, monkeypatch) -> None:
    from engine.train import compact_activations as compact

    monkeypatch.setattr(compact, "MIN_ELEMENTS", 256)
    model = _tiny(tiny_model_dir)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    packed_from: list[int] = []
    copies: list[object] = []
    pack = compact.Compactor.pack

    def recording(self, tensor):
        saved = pack(self, tensor)
        if isinstance(saved, compact._Packed):
            packed_from.append(tensor.untyped_storage().data_ptr())
            copies.append(saved)
        return saved

    monkeypatch.setattr(compact.Compactor, "pack", recording)
    compact.install(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    assert packed_from and not weights.intersection(packed_from)
    # the LoRA paths of q, k and v (and of gate and up) save the same norm output: one copy each
    assert len({id(c) for c in copies}) < len(copies)


def test_compact_activations_leave_the_loss_exact_and_round_only_the_gradients(
        tiny_model_dir, workspace_home, tmp_path, monkeypatch) -> None:
    from engine.train import compact_activations as compact

    monkeypatch.setattr(compact, "MIN_ELEMENTS", 1024)  # the tiny model's activations are small
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=1, batch_size=4,
                      device="cpu", method="lora", sample_count=0, lora_dropout=0.0, max_length=128, seed=5,
                      precision="fp32")
    exact_loss, exact_grads = _first_step_loss(dataclasses.replace(cfg, compact_activations=False), tmp_path / "a")
    loss, grads = _first_step_loss(dataclasses.replace(cfg, compact_activations=True), tmp_path / "b")
    assert loss == exact_loss  # the forward pass computes with the float32 values
    assert grads.keys() == exact_grads.keys()
    gap = sum((grads[n] - exact_grads[n]).norm() ** 2 for n in grads) ** 0.5
    relative = float(gap / sum(g.norm() ** 2 for g in exact_grads.values()) ** 0.5)
    assert 0 < relative < 0.01, relative  # packed (the gradients moved), and only by bf16 rounding


def test_compact_activations_wrap_each_decoder_layer_on_the_cpu_without_checkpointing(tiny_model_dir) -> None:
    from engine.train import compact_activations as compact
    from engine.train.setup import compacts_activations

    model = _tiny(tiny_model_dir)
    layers = compact.decoder_layers(model)
    assert layers == list(model.base_model.model.model.layers) and compact.install(model) == len(layers)
    cfg = TrainConfig(model="m", dataset="d")
    assert compacts_activations(cfg, "cpu")
    assert not compacts_activations(cfg, "cuda")
    assert not compacts_activations(dataclasses.replace(cfg, gradient_checkpointing=True), "cpu")
    assert not compacts_activations(dataclasses.replace(cfg, compact_activations=False), "cpu")
