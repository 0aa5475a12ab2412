"""Prompt tuning and prefix tuning (peft) as methods: only the virtual-token parameters train,
the saved adapter loads with PeftModel.from_pretrained and changes the model's output, and
`generate --adapter` answers with it."""

from __future__ import annotations

import subprocess

import pytest

from engine.core import config, protocol, workspace
from engine.core.config import ConfigError

from .test_train import FAST, build, snapshot, write_repeated_dataset
from .test_train_knobs import tiny_config


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_only_virtual_tokens_train_and_the_saved_adapter_loads(method, tiny_model_dir, workspace_home,
                                                                tmp_path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.train import run as train

    cfg = tiny_config(tiny_model_dir, tmp_path, method=method, num_virtual_tokens=6, learning_rate=3e-2,
                      max_steps=6)
    trainer, callback, job, run = build(cfg, method, tmp_path)
    trainable, frozen = snapshot(trainer.model, True), snapshot(trainer.model, False)
    # peft keeps the virtual tokens in one embedding table: prompt tuning holds
    # num_virtual_tokens x hidden, prefix tuning a key and a value per layer for each token.
    assert list(trainable) == ["prompt_encoder.default.embedding.weight"]
    model_config = trainer.model.config
    kv_width = model_config.num_key_value_heads * (model_config.hidden_size // model_config.num_attention_heads)
    width = model_config.hidden_size if method == "prompt_tuning" else 2 * model_config.num_hidden_layers * kv_width
    assert tuple(trainable["prompt_encoder.default.embedding.weight"].shape) == (6, width)
    trainer.train()
    after_trainable, after_frozen = snapshot(trainer.model, True), snapshot(trainer.model, False)
    assert not trainable["prompt_encoder.default.embedding.weight"].equal(
        after_trainable["prompt_encoder.default.embedding.weight"])
    assert all(frozen[n].equal(after_frozen[n]) for n in frozen)
    losses = [m["values"]["loss"] for m in job.messages() if m["type"] == "metrics"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert train.finish(run, job, trainer, callback, workspace.FINISHED) == protocol.ExitCode.OK

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(run.adapter))
        assert tuned.peft_config["default"].peft_type.value == method.upper()
        assert not torch.allclose(plain, tuned(ids).logits[:, -5:])


def test_generate_answers_with_a_prefix_tuned_run(tiny_model_dir, engine_argv, engine_env, workspace_home,
                                                  tmp_path) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "max_steps": 2}.items()]
    trained = subprocess.run(engine_argv("train", "--json", "--model", str(tiny_model_dir), "--dataset",
                                         str(write_repeated_dataset(tmp_path)), "--method", "prefix_tuning",
                                         "--num-virtual-tokens", "4", *flags),
                             env=engine_env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_dir = next(m for m in map(protocol.decode, trained.stdout.splitlines()) if m["type"] == "result")["data"][
        "run_dir"
    ]
    answer = subprocess.run(engine_argv("generate", "--json", "--adapter", run_dir, "--prompt", "Is it good?",
                                        "--max-new-tokens", "5", "--device", "cpu"),
                            env=engine_env, capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr[-2000:]
    messages = [protocol.decode(line) for line in answer.stdout.splitlines()]
    assert any(m["type"] == "token" for m in messages)


@pytest.mark.parametrize("values, field", [
    ({"method": "prefix_tuning", "use_dora": True}, "use_dora"),
    ({"method": "prompt_tuning", "packing": True}, "packing"),
    ({"method": "prompt_tuning", "num_virtual_tokens": 0}, "num_virtual_tokens"),
    ({"max_steps": 10, "warmup_steps": 10}, "warmup_steps"),
])
def test_settings_a_method_cannot_honour_are_refused(values, field) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(values)
    assert caught.value.field == field
