"""The sweep file: settings with help text, the search space, and one-line errors naming the field."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.core import schema
from engine.core.schema import ConfigError
from engine.sweep import spec

BASE = """
[sweep]
name = "lr"
n_trials = 4

[sweep.base]
dataset = "sample"
val_fraction = 0.1
eval_steps = 5
save_steps = 10

[sweep.space.learning_rate]
low = 1e-5
high = 1e-2
log = true

[sweep.space.lora_r]
choices = [4, 8]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_sweep_setting_and_space_field_has_help_text() -> None:
    for schema_type in (spec.SweepConfig, spec.Param):
        for k in schema.knobs(schema_type):
            assert len(k.help) > 15, f"{schema_type.__name__}.{k.name} has no real help"


def test_the_template_reads_back_as_the_defaults_and_carries_every_help_text(tmp_path) -> None:
    text = spec.template("start")
    sweep = spec.load_toml(write(tmp_path, text))
    assert sweep.settings == spec.SweepConfig(name="start") and list(sweep.space) == [
        "learning_rate",
        "lora_r",
        "epochs",
    ]
    comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    for schema_type in (spec.SweepConfig, spec.Param):
        for k in schema.knobs(schema_type)[1 if schema_type is spec.Param else 0:]:
            assert k.help in comments, k.name


def test_sweep_init_writes_the_template_and_refuses_to_overwrite(tmp_path, engine_argv, engine_env) -> None:
    target = tmp_path / "mine.toml"
    done = subprocess.run(engine_argv("sweep", "init", str(target)), env=engine_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert spec.load_toml(target).name == "mine"
    again = subprocess.run(engine_argv("sweep", "init", str(target)), env=engine_env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_sweep_file_reads_into_typed_settings_base_and_space(tmp_path) -> None:
    sweep = spec.load_toml(write(tmp_path, BASE))
    assert sweep.name == "lr" and sweep.settings.n_trials == 4 and sweep.settings.sampler == "tpe"
    assert sweep.base.val_fraction == 0.1 and sweep.base.eval_steps == 5
    rate, rank = sweep.space["learning_rate"], sweep.space["lora_r"]
    assert (rate.low, rate.high, rate.log) == (1e-5, 1e-2, True) and rate.is_range
    assert rank.choices == [4, 8] and all(isinstance(c, int) for c in rank.choices)
    config = sweep.trial_config({"learning_rate": 3e-4, "lora_r": 8}, name="lr-trial-0")
    assert config.learning_rate == 3e-4 and config.lora_r == 8 and config.name == "lr-trial-0"
    assert config.dataset == "sample"


def test_the_definition_round_trips_through_the_study_form_and_toml(tmp_path) -> None:
    sweep = spec.load_toml(write(tmp_path, BASE.replace("[sweep.space.lora_r]", "[sweep.space.warmup_steps]\nlow = 0\n"
                                                        "high = 4\nstep = 2\n\n[sweep.space.lora_r]")))
    again = spec.from_dict(spec.to_dict(sweep))
    assert again == sweep and again.space["warmup_steps"].low == 0
    assert spec.load_toml(write(tmp_path, spec.to_toml(sweep), "again.toml")) == sweep


def test_the_name_defaults_to_the_file_name(tmp_path) -> None:
    assert spec.load_toml(write(tmp_path, BASE.replace('name = "lr"\n', ""), "my-sweep.toml")).name == "my-sweep"


@pytest.mark.parametrize("change, field, words", [
    (('n_trials = 4', 'n_trials = 0'), "n_trials", "at least 1"),
    (('n_trials = 4', 'n_trials = 4\nsampler = "annealing"'), "sampler", "must be one of"),
    (('n_trials = 4', 'n_trials = 4\ncolour = 1'), "colour", "not a known setting"),
    (('val_fraction = 0.1', 'val_fraction = 0.0'), "base.val_fraction", "validation loss"),
    (('dataset = "sample"', 'dataset = "sample"\nlora_rank = 3'), "base.lora_rank", "not a known setting"),
    (('[sweep.space.lora_r]', '[sweep.space.lora_rank]'), "space.lora_rank", "not a training knob"),
    (('low = 1e-5', 'low = 0.0'), "space.learning_rate.low", "above 0 on a log scale"),
    (('low = 1e-5', 'low = 0.5'), "space.learning_rate", "must be below high"),
    (('high = 1e-2', 'high = 5.0'), "space.learning_rate.high", "at most 1.0"),
    (('choices = [4, 8]', 'choices = [4, "eight"]'), "space.lora_r.choices", "whole number"),
    (('choices = [4, 8]', 'choices = []'), "space.lora_r.choices", "non-empty"),
    (('choices = [4, 8]', 'low = 4\nhigh = 8.5'), "space.lora_r.high", "whole numbers"),
    (('log = true', 'log = true\nstep = 0.001'), "space.learning_rate.step", "log"),
    (('log = true', 'log = true\nstride = 2'), "space.learning_rate.stride", "not one of"),
    (('n_trials = 4', 'n_trials = 4\nsampler = "grid"'), "space.learning_rate.step", "grid search needs"),
    (('name = "lr"', 'name = "a b/c"'), "name", "not a usable sweep name"),
    (('n_trials = 4', 'n_trials = 4\ndirection = "maximize"'), "direction", "minimised"),
])
def test_a_bad_sweep_file_names_the_file_and_the_field(tmp_path, change, field, words) -> None:
    path = write(tmp_path, BASE.replace(*change, 1))
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(path)
    assert caught.value.field == field, str(caught.value)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_a_space_whose_corner_training_refuses_is_refused_at_create(tmp_path) -> None:
    text = BASE.replace(
        "[sweep.space.lora_r]", "[sweep.space.warmup_steps]\nlow = 0\nhigh = 50\n\n[sweep.space.lora_r]"
    )
    text = text.replace('dataset = "sample"', 'dataset = "sample"\nmax_steps = 20')
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(write(tmp_path, text))
    assert caught.value.field == "space.warmup_steps" and "high end" in str(caught.value)


def test_the_cli_reports_a_bad_sweep_file_in_one_line(tmp_path, engine_argv, engine_env) -> None:
    path = write(tmp_path, BASE.replace("low = 1e-5", "low = 0.0"))
    done = subprocess.run(engine_argv("sweep", "create", str(path)), env=engine_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if "space.learning_rate.low" in line]
    assert len(error_lines) == 1 and str(path) in error_lines[0] and "Traceback" not in done.stderr
