"""The one config schema: presets, validation naming the field, TOML and flag round trips."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from engine.core import config
from engine.core.config import ConfigError, TrainConfig


def test_every_field_has_help_text_and_a_label() -> None:
    for field in config.fields_of():
        assert len(field.metadata["help"]) > 20, field.name
        assert field.metadata["label"], field.name


def test_bundled_presets_load_and_say_which_method_they_use() -> None:
    presets = {p.key: p for p in config.list_presets()}
    demo, gpu = presets["cpu-quick-demo"], presets["gpu-12gb"]
    assert config.from_mapping(demo.values).method == "lora"
    assert "LoRA" in demo.description and "QLoRA" in demo.description
    assert config.from_mapping(gpu.values).method == "qlora"
    assert demo.title == "CPU quick demo" and gpu.title == "12 GB GPU"


def test_preset_descriptions_cite_no_repository_paths() -> None:
    """Descriptions are shown to end users, who have no checkout to look files up in."""
    import re

    for preset in config.list_presets(Path(__file__).resolve().parents[2] / "resources" / "presets"):
        found = re.findall(r"\b(?:benchmarks|tests|engine|gui|resources|docs)/\S*|\S+\.(?:json|py|toml)\b",
                           preset.description)
        assert not found, (preset.key, found)


@pytest.mark.parametrize("values, field", [
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"method": "full-ish"}, "method"),
    ({"epochs": "three"}, "epochs"),
    ({"lora_r": 2.5}, "lora_r"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing"),
    ({"target_modules": "  "}, "target_modules"),
    ({"no_such_knob": 1}, "no_such_knob"),
    ({"target_modules": " , "}, "target_modules"),
    ({"quant_type": "int8"}, "quant_type"),
    ({"compute_dtype": "half"}, "compute_dtype"),
    ({"double_quant": 1}, "double_quant"),
    ({"weight_decay": 1.5}, "weight_decay"),
    ({"max_grad_norm": -0.1}, "max_grad_norm"),
    ({"lr_scheduler": "cosine_with_hard_restarts"}, "lr_scheduler"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"optimizer": "paged_adamw_8bit", "device": "cpu"}, "optimizer"),
    ({"packing": "yes"}, "packing"),
])
def test_bad_values_are_refused_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(values, source="run.toml")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"run.toml: {field}:")
    assert "\n" not in str(caught.value)


def test_toml_run_file_round_trips(tmp_path: Path) -> None:
    original = TrainConfig(learning_rate=1e-3, max_steps=7, gradient_checkpointing=True, name="x y")
    file = tmp_path / "run.toml"
    file.write_text(config.to_toml(original, "a comment"), encoding="utf-8")
    assert config.load_toml(file) == original


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("[train]\nlearning_rate = = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml"):
        config.load_toml(file)


def test_flags_round_trip_through_the_parser() -> None:
    wanted = TrainConfig(learning_rate=3e-4, method="qlora", gradient_checkpointing=True, lora_r=8)
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(config.to_arguments(wanted))
    assert config.from_arguments(args, TrainConfig()) == wanted


def test_flags_override_the_base_but_unset_flags_keep_it() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    base = dataclasses.replace(TrainConfig(), max_steps=60, batch_size=8)
    resolved = config.from_arguments(parser.parse_args(["--max-steps", "5"]), base)
    assert (resolved.max_steps, resolved.batch_size) == (5, 8)


def test_new_methods_schedulers_and_optimisers_are_accepted() -> None:
    cfg = config.from_mapping({"method": "full", "lr_scheduler": "cosine_with_restarts", "weight_decay": 0.1,
                               "max_grad_norm": 0, "packing": True, "completion_only_loss": False,
                               "use_dora": True, "use_rslora": True, "quant_type": "fp4",
                               "compute_dtype": "bfloat16", "double_quant": False})
    assert (cfg.method, cfg.max_grad_norm, cfg.packing, cfg.quant_type) == ("full", 0.0, True, "fp4")
    # A paged optimiser is a GPU feature: allowed where the run may land on a GPU.
    for device in ("cuda", "auto"):
        assert config.from_mapping({"optimizer": "paged_adamw_8bit", "device": device}).device == device


def test_paged_optimizer_refusal_is_one_line_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*use adamw_torch") as caught:
        config.from_mapping({"optimizer": "paged_adamw_8bit", "device": "cpu"})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, targets", [
    ("all-linear", "all-linear"),
    (" attention ", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("q_proj, v_proj,", ["q_proj", "v_proj"]),
])
def test_target_module_keywords(text: str, targets) -> None:
    assert config.lora_targets(text) == targets


def test_new_knobs_round_trip_through_flags_and_toml(tmp_path: Path) -> None:
    wanted = TrainConfig(method="full", double_quant=False, quant_type="fp4", use_dora=True,
                         completion_only_loss=False, packing=True, weight_decay=0.01,
                         lr_scheduler="cosine_with_restarts", optimizer="paged_adamw_8bit", device="cuda")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    argv = config.to_arguments(wanted)
    assert "--no-double-quant" in argv and "--no-completion-only-loss" in argv
    assert config.from_arguments(parser.parse_args(argv), TrainConfig()) == wanted
    file = tmp_path / "run.toml"
    file.write_text(config.to_toml(wanted), encoding="utf-8")
    assert config.load_toml(file) == wanted


def test_help_renders_every_field_with_literal_percent_signs() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = " ".join(parser.format_help().split())  # undo argparse's line wrapping
    assert "about 30% slower" in text and "75% of optimiser memory" in text
    assert "--quant-type" in text and "--no-double-quant" in text


def test_preference_prompt_learning_and_sample_knobs_round_trip(tmp_path: Path) -> None:
    wanted = TrainConfig(objective="dpo", beta=0.25, sample_prompts="First prompt?\nSecond: \"quoted\"",
                         sample_count=2, sample_max_tokens=32)
    file = tmp_path / "run.toml"
    file.write_text(config.to_toml(wanted), encoding="utf-8")
    assert config.load_toml(file) == wanted
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.from_arguments(parser.parse_args(config.to_arguments(wanted)), TrainConfig()) == wanted
    assert config.sample_prompt_list(wanted.sample_prompts) == ["First prompt?", 'Second: "quoted"']
    prompt = TrainConfig(method="prefix_tuning", num_virtual_tokens=12)
    assert config.from_mapping(dataclasses.asdict(prompt)) == prompt


def test_help_lists_the_new_methods_and_objectives() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "prompt_tuning" in text and "prefix_tuning" in text and "--num-virtual-tokens" in text
    assert "--objective {sft,dpo,orpo}" in text and "--beta" in text and "--sample-prompts" in text


def test_unused_fields_follow_the_method_objective_and_validation() -> None:
    defaults = dataclasses.asdict(config.TrainConfig())
    lora_sft = config.unused_fields({**defaults, "method": "lora", "max_steps": 60})
    assert {"beta", "num_virtual_tokens", "quant_type", "epochs", "early_stopping_patience"} <= set(lora_sft)
    assert "lora_r" not in lora_sft and "completion_only_loss" not in lora_sft
    prefix_dpo = config.unused_fields({**defaults, "method": "prefix_tuning", "objective": "dpo",
                                       "val_fraction": 0.1})
    assert {"lora_r", "use_dora", "completion_only_loss"} <= set(prefix_dpo)
    assert not {"beta", "num_virtual_tokens", "early_stopping_patience", "epochs"} & set(prefix_dpo)
    assert "compact_weights" not in lora_sft
    assert "compact_weights" in config.unused_fields({**defaults, "method": "qlora"})
    assert "compact_weights" in config.unused_fields({**defaults, "method": "lora", "precision": "bf16"})
    # auto may pick QLoRA (on a CUDA GPU), so its 4-bit knobs stay live.
    assert "quant_type" not in config.unused_fields({**defaults, "method": "auto"})
