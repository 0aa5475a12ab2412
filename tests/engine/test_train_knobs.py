"""The method and training knobs reach TRL, peft and bitsandbytes, and the ones that change
what trains (full fine-tune, FP4 QLoRA, DoRA, rsLoRA, packing) train on the tiny model on CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.core import config, protocol, workspace
from engine.core.config import ConfigError, TrainConfig

from .test_train import FAST, build, snapshot, write_repeated_dataset

SHORT = {**FAST, "max_steps": 3, "save_steps": 100}


def tiny_config(tiny_model_dir: Path, tmp_path: Path, **overrides) -> TrainConfig:
    return TrainConfig(model=str(tiny_model_dir), dataset=str(write_repeated_dataset(tmp_path)),
                       **{**SHORT, **overrides})


def test_training_knobs_reach_the_trainer_arguments(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, weight_decay=0.05, max_grad_norm=0.0,
                      lr_scheduler="cosine_with_restarts", completion_only_loss=False, packing=True)
    trainer, *_ = build(cfg, "lora", tmp_path)
    args = trainer.args
    assert (args.weight_decay, args.max_grad_norm, args.optim) == (0.05, 0.0, "adamw_torch")
    assert args.lr_scheduler_type == "cosine_with_restarts"
    assert args.lr_scheduler_kwargs == {"num_cycles": config.RESTART_CYCLES}
    assert args.completion_only_loss is False
    assert (args.packing, args.packing_strategy, args.padding_free) == (True, "bfd", True)


def test_lora_knobs_reach_the_peft_config(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, target_modules="attention", use_rslora=True)
    trainer, *_ = build(cfg, "lora", tmp_path)
    peft_config = trainer.model.peft_config["default"]
    assert set(peft_config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert peft_config.use_rslora and not peft_config.use_dora
    adapted = {name.split(".")[-1] for name, module in trainer.model.named_modules() if hasattr(module, "lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_fp4_qlora_without_double_quant_trains_on_cpu(tiny_model_dir, workspace_home, tmp_path) -> None:
    import bitsandbytes as bnb
    import torch

    cfg = tiny_config(tiny_model_dir, tmp_path, method="qlora", quant_type="fp4", double_quant=False,
                      compute_dtype="bfloat16")
    trainer, _, job, _ = build(cfg, "qlora", tmp_path)
    layers = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_state.quant_type == "fp4" for m in layers)
    assert all(m.weight.quant_state.nested is False for m in layers)
    assert all(m.compute_dtype == torch.bfloat16 for m in layers)
    assert_lora_trains(trainer, job)


def test_qlora_defaults_are_nf4_double_quantised_in_fp32_on_cpu(tiny_model_dir, workspace_home, tmp_path) -> None:
    import bitsandbytes as bnb
    import torch

    trainer, *_ = build(tiny_config(tiny_model_dir, tmp_path, method="qlora"), "qlora", tmp_path)
    layer = next(m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.quant_state.quant_type == "nf4" and layer.weight.quant_state.nested
    assert layer.compute_dtype == torch.float32


@pytest.mark.parametrize("knob", ["use_dora", "use_rslora"])
def test_dora_and_rslora_train_a_few_steps(knob, tiny_model_dir, workspace_home, tmp_path) -> None:
    trainer, _, job, _ = build(tiny_config(tiny_model_dir, tmp_path, **{knob: True}), "lora", tmp_path)
    assert getattr(trainer.model.peft_config["default"], knob)
    if knob == "use_dora":
        assert any("lora_magnitude_vector" in name for name, _ in trainer.model.named_parameters())
    assert_lora_trains(trainer, job)


def assert_lora_trains(trainer, job) -> None:
    before = snapshot(trainer.model, True)
    trainer.train()
    after = snapshot(trainer.model, True)
    assert before and all("lora_" in name for name in before)
    assert any(not before[n].equal(after[n]) for n in before)
    losses = [m["values"]["loss"] for m in job.messages() if m["type"] == "metrics"]
    assert len(losses) == SHORT["max_steps"] and all(loss == loss for loss in losses)


def test_full_fine_tune_changes_base_weights_and_saves_a_loadable_model(
        tiny_model_dir, workspace_home, tmp_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train import run as train

    cfg = tiny_config(tiny_model_dir, tmp_path, method="full", learning_rate=1e-3)
    trainer, callback, job, run = build(cfg, "full", tmp_path)
    before = snapshot(trainer.model, True)
    assert "model.layers.0.self_attn.q_proj.weight" in before and not any("lora_" in n for n in before)
    trainer.train()
    after = snapshot(trainer.model, True)
    assert not before["model.layers.0.self_attn.q_proj.weight"].equal(after["model.layers.0.self_attn.q_proj.weight"])
    assert train.finish(run, job, trainer, callback, workspace.FINISHED) == protocol.ExitCode.OK

    saved = run.path / "model"
    assert not run.adapter.exists() and not list(run.path.glob(".model.*"))
    artifacts = [m for m in job.messages() if m["type"] == "artifact" and m.get("kind") in ("model", "adapter")]
    assert [(m["kind"], m["path"]) for m in artifacts] == [("model", str(saved))]
    result = next(m["data"] for m in job.messages() if m["type"] == "result")
    assert result["artifact_kind"] == "model" and result["model"] == str(saved)
    assert run.info()["artifact_kind"] == "model" and run.info()["tuned_model"] == str(saved)
    reloaded = AutoModelForCausalLM.from_pretrained(str(saved))
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trainer.model.cpu().eval()(ids).logits, atol=1e-5)
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        assert not torch.allclose(base(ids).logits, reloaded(ids).logits)


def test_packed_run_trains_without_attention_across_examples(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir, tmp_path, packing=True)
    trainer, _, job, _ = build(cfg, "lora", tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    # Padding-free: one row of several examples, position_ids restarting at each, no mask.
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert int((batch["position_ids"][0] == 0).sum()) > 1
    assert (batch["labels"] == -100).any()  # completion-only loss still masks the prompts
    assert_lora_trains(trainer, job)


def test_packed_positions_keep_examples_apart_in_attention(tiny_model_dir) -> None:
    """What padding-free packing relies on, on CPU attention (SDPA): the second example in a
    packed row sees only itself, exactly as if it had been run alone."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    first, second = torch.tensor([[3, 8, 21, 34, 55]]), torch.tensor([[7, 11, 19, 29]])
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(5), torch.arange(4)]).unsqueeze(0)
    with torch.no_grad():
        alone = model(second).logits
        # No cache, as in SFTTrainer.compute_loss: transformers looks for packed sequences
        # (position_ids restarting, no attention mask) only when there is no KV cache.
        together = model(packed, position_ids=positions, use_cache=False).logits[:, 5:]
        crossing = model(packed, use_cache=False).logits[:, 5:]
    assert torch.allclose(alone, together, atol=1e-5)
    assert not torch.allclose(alone, crossing, atol=1e-3)  # the check can fail


def test_paged_optimizer_is_refused_when_auto_resolves_to_the_cpu() -> None:
    from engine.train import run as train

    cfg = TrainConfig(optimizer="paged_adamw_8bit", device="auto")
    with pytest.raises(ConfigError) as caught:
        train.check_runtime(cfg, "cpu")
    assert caught.value.field == "optimizer" and "CUDA GPU" in str(caught.value)
    train.check_runtime(dataclasses.replace(cfg, optimizer="adamw_torch"), "cpu")


def test_cli_refuses_a_paged_optimizer_once_auto_picks_the_cpu(
        tiny_model_dir, engine_argv, engine_env, workspace_home) -> None:
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("auto resolves to the GPU here")
    done = subprocess.run(engine_argv("train", "--json", "--model", str(tiny_model_dir), "--device", "auto",
                                      "--optimizer", "paged_adamw_8bit"),
                          env=engine_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == protocol.ExitCode.USAGE
    errors = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert len(errors) == 1 and "optimizer: paged_adamw_8bit needs a CUDA GPU" in errors[0]["message"]
    assert "Traceback" not in done.stderr
