"""engine/train/shared_prefix.py: a prompt beginning that a micro-batch's examples share is
computed once, with the loss, the gradients and the token count of the unshared batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.core.config import TrainConfig, unused_fields
from engine.train import oom
from engine.train.shared_prefix import (
    MIN_SHARED,
    SharedPrefixCollator,
    is_shared,
    logical_tokens,
    piece_prefixes,
    row_bounds,
    shareable_length,
)

from .test_train import build
from .test_train_speed import _assert_close, _loss_and_grads, _per_example, _sample_rows, _tiny

IGNORE = -100


def _examples(prefix: int = 12, answers_from: int | None = None) -> list[dict]:
    """Three examples opening with the same ``prefix`` tokens; labels ignored up to
    ``answers_from`` (default: a few tokens past the prefix), as completion-only loss does."""
    generator = torch.Generator().manual_seed(3)
    shared = torch.randint(3, 400, (prefix,), generator=generator).tolist()
    examples = []
    for own in (9, 5, 14):
        ids = shared + torch.randint(3, 400, (own,), generator=generator).tolist()
        start = prefix + 3 if answers_from is None else answers_from
        examples.append({"input_ids": ids, "labels": [IGNORE] * start + ids[start:]})
    return examples


def _collators():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    plain = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    return plain, SharedPrefixCollator(plain)


def _bounds(batch: dict) -> list[int]:
    return row_bounds(batch["position_ids"])


def test_the_shared_beginning_is_kept_once_and_later_examples_go_on_from_its_positions() -> None:
    plain, shared = _collators()
    examples = _examples(prefix=12)
    batch = shared(examples)
    assert batch["input_ids"].size(1) == plain(examples)["input_ids"].size(1) - 2 * 12
    assert batch["position_ids"][0].tolist() == [*range(21), *range(12, 17), *range(12, 26)]
    assert batch["cu_seq_lens_q"].tolist() == [0, 21, 26, 40]
    assert is_shared(batch) and not is_shared(plain(examples))
    # tokens/s counts every example's own tokens, as the unshared row does
    assert logical_tokens(batch["position_ids"], _bounds(batch)) == plain(examples)["input_ids"].size(1)
    assert (batch["labels"] != IGNORE).sum() == (plain(examples)["labels"] != IGNORE).sum()


@pytest.mark.parametrize("examples, expected", [
    (_examples(prefix=12), 12),
    (_examples(prefix=12, answers_from=6), 5),  # stops before the first token that carries a loss
    (_examples(prefix=MIN_SHARED - 1), 0),  # too short to be worth it
    (_examples(prefix=12)[:1], 0),  # one example shares nothing
])
def test_only_a_beginning_without_loss_of_at_least_the_minimum_is_shared(examples, expected) -> None:
    shared = shareable_length(examples)
    assert shared == (expected if expected >= MIN_SHARED else 0)


def test_a_beginning_with_a_loss_on_it_is_left_unshared() -> None:
    plain, shared = _collators()
    examples = _examples(prefix=12, answers_from=1)
    assert torch.equal(shared(examples)["input_ids"], plain(examples)["input_ids"])


def test_a_shared_batch_gives_the_unshared_batchs_loss_and_lora_gradients(tiny_model_dir) -> None:
    plain, shared = _collators()
    examples = _examples(prefix=12)
    model = _per_example(_tiny(tiny_model_dir))
    unshared_loss, unshared_grads = _loss_and_grads(model, plain(examples), answer_only_loss=True)
    shared_loss, shared_grads = _loss_and_grads(model, shared(examples), answer_only_loss=True)
    assert shared_loss == pytest.approx(unshared_loss, rel=1e-5)
    _assert_close(shared_grads, unshared_grads, rtol=1e-4, atol=1e-6)
    # and the trainer's own loss (validation runs it) agrees as well
    assert _loss_and_grads(model, shared(examples))[0] == pytest.approx(_loss_and_grads(model, plain(examples))[0],
                                                                        rel=1e-5)


def test_without_the_per_example_attention_a_shared_batch_would_be_wrong(tiny_model_dir) -> None:
    """Guards the test above: transformers' own SDPA does not see the shared tokens."""
    plain, shared = _collators()
    examples = _examples(prefix=12)
    model = _tiny(tiny_model_dir)
    batch = {k: v for k, v in shared(examples).items() if not k.startswith(("cu_seq", "max_length", "seq_idx"))}
    assert _loss_and_grads(model, batch, answer_only_loss=True)[0] != pytest.approx(
        _loss_and_grads(model, plain(examples), answer_only_loss=True)[0], rel=1e-3)


def test_the_rows_layout_is_read_once_per_forward_pass_and_again_for_a_new_batch(tiny_model_dir,
                                                                                 monkeypatch) -> None:
    """Every decoder layer gets the same position tensors; reading them to the host once per
    layer would be a device sync per layer on a GPU."""
    from engine.train import varlen

    reads = []
    monkeypatch.setattr(varlen, "piece_prefixes", lambda *args: reads.append(args) or piece_prefixes(*args))
    plain, shared = _collators()
    model = _per_example(_tiny(tiny_model_dir))
    assert model.config.num_hidden_layers > 1
    batches = [shared(_examples(prefix=12)), plain(_examples(prefix=12))]
    for batch in batches:
        model(**batch, answer_only_loss=True)
    assert len(reads) == len(batches)
    assert all(positions is batch["position_ids"] for (positions, _), batch in zip(reads, batches))


def test_splitting_a_shared_batch_after_an_out_of_memory_gives_the_unshared_halves() -> None:
    plain, shared = _collators()
    examples = _examples(prefix=12)
    batch = shared(examples)
    assert oom.examples_in(batch) == 3
    for got, want in zip(oom.split(batch), oom.split(plain(examples)), strict=True):
        assert got.keys() == want.keys()
        for key in got:
            assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(want[key])), key


def test_runs_share_prefixes_with_the_same_losses_and_token_count(tiny_model_dir, workspace_home, tmp_path) -> None:
    """The sample's rows all open with one system prompt: a run shares it, and its losses and
    tokens seen are the unshared run's."""
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(_sample_rows(tmp_path)), max_steps=3, batch_size=4,
                      learning_rate=5e-3, lr_scheduler="constant", lora_r=8, lora_alpha=16, lora_dropout=0.0,
                      max_length=128, save_steps=3, device="cpu", method="lora", sample_count=0, precision="fp32")
    results = {}
    for share in (True, False):
        trainer, _, job, _ = build(dataclasses.replace(cfg, shared_prefix=share), "lora", tmp_path / str(share))
        assert isinstance(trainer.data_collator, SharedPrefixCollator) == share
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert is_shared(batch) == share
        trainer.train()
        steps = [m["values"] for m in job.messages() if m["type"] == "metrics" and "loss" in m["values"]]
        results[share] = ([s["loss"] for s in steps], [m["tokens"] for m in job.messages()
                                                      if m["type"] == "metrics" and "tokens" in m])
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-4)
    assert results[True][1] == results[False][1] and results[True][1]


@pytest.mark.parametrize("changes, reason", [
    ({"packing": True}, "padding-free batches without packing only"),
    ({"padding_free": False}, "padding-free batches without packing only"),
    ({"completion_only_loss": False}, "needs completion-only loss"),
    ({"objective": "dpo"}, "sft with"),
    ({"method": "prompt_tuning"}, "sft with"),
])
def test_the_knob_is_greyed_out_where_nothing_can_be_shared(changes, reason) -> None:
    assert reason in unused_fields({**dataclasses.asdict(TrainConfig()), **changes})["shared_prefix"]
    assert "shared_prefix" not in unused_fields(dataclasses.asdict(TrainConfig()))
