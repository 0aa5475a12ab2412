"""The one config schema: presets, validation naming the field, TOML and flag round trips."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from engine import config
from engine.config import ConfigError, TrainConfig


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


@pytest.mark.parametrize("values, field", [
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"method": "full-ish"}, "method"),
    ({"epochs": "three"}, "epochs"),
    ({"lora_r": 2.5}, "lora_r"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing"),
    ({"target_modules": "  "}, "target_modules"),
    ({"no_such_knob": 1}, "no_such_knob"),
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
