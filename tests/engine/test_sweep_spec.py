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


# -- objective = "metric": an evaluation run on each trial's adapter ------------------------------

METRIC = BASE.replace('n_trials = 4', 'n_trials = 4\nobjective = "metric"\nmetric = "token_f1"\n'
                      'direction = "maximize"\neval_spec = "eval.toml"')
EVAL = """[evaluate]
dataset = "sample"
split = "all"
max_examples = 8
metrics = ["token_f1", "perplexity"]
"""


def test_a_metric_objective_reads_its_evaluation_spec_and_stores_it_inline(tmp_path) -> None:
    write(tmp_path, EVAL, "eval.toml")
    sweep = spec.load_toml(write(tmp_path, METRIC))
    assert sweep.settings.objective == "metric" and sweep.settings.metric == "token_f1"
    assert sweep.evaluation is not None and sweep.evaluation.max_examples == 8
    definition = spec.to_dict(sweep)
    assert definition["evaluate"]["dataset"] == "sample"
    (tmp_path / "eval.toml").unlink()  # a worker elsewhere has only the stored definition
    assert spec.from_dict(definition) == sweep
    assert spec.load_toml(write(tmp_path, spec.to_toml(sweep), "again.toml")) == sweep
    trial = spec.trial_evaluation(sweep, "run-1", 3)
    assert trial.adapters == ["run-1"] and trial.metrics == ["token_f1", "perplexity"]
    assert spec.objective_label(sweep.settings) == "Token F1" and spec.pruning_note(sweep) == ""


def test_an_inline_evaluate_table_needs_no_file_and_defaults_to_the_objective_metric(tmp_path) -> None:
    text = METRIC.replace('eval_spec = "eval.toml"', "") + '\n[sweep.evaluate]\ndataset = "sample"\n'
    sweep = spec.load_toml(write(tmp_path, text))
    assert spec.trial_evaluation(sweep, "r", 0).metrics == ["token_f1"]


def test_without_a_validation_split_pruning_is_off_and_says_why(tmp_path) -> None:
    write(tmp_path, EVAL, "eval.toml")
    sweep = spec.load_toml(write(tmp_path, METRIC.replace("val_fraction = 0.1", "val_fraction = 0.0")))
    assert "pruning is off" in spec.pruning_note(sweep) and "val_fraction is 0" in spec.pruning_note(sweep)


def line_of(text: str, words: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if words in line)


@pytest.mark.parametrize("change, field, words", [
    (('metric = "token_f1"', 'metric = "token_f2"'), "metric", "must be one of"),
    (('direction = "maximize"\n', ''), "direction", 'must be given with objective = "metric"'),
    (('direction = "maximize"', 'direction = "minimize"'), "direction", "better higher; use maximize"),
    (('metric = "token_f1"\n', ''), "metric", "is required"),
    (('eval_spec = "eval.toml"', 'eval_spec = "missing.toml"'), "eval_spec", "file not found"),
    (('eval_spec = "eval.toml"', 'eval_spec = "eval.toml"\nmetric = "rougeL"'), "metric", ""),  # duplicate key
])
def test_a_bad_metric_objective_names_the_file_line_and_field(tmp_path, change, field, words) -> None:
    write(tmp_path, EVAL, "eval.toml")
    text = METRIC.replace(*change, 1)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(path)
    if not words:  # the TOML reader refuses a duplicate key, naming its line
        assert f"{path}:" in str(caught.value)
        return
    assert caught.value.field == field, str(caught.value)
    keys = [line for line in text.splitlines() if line.startswith(f"{field} =")]
    if keys:  # the field is written in the file: its line is named
        assert f"{path}:{line_of(text, keys[0])}: {field}:" in str(caught.value)
    else:
        assert f"{path}: {field}:" in str(caught.value)
    assert words in str(caught.value)


def test_a_metric_the_evaluation_spec_does_not_compute_names_that_files_line(tmp_path) -> None:
    eval_path = write(tmp_path, EVAL.replace('"token_f1", ', ""), "eval.toml")
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(write(tmp_path, METRIC))
    assert str(caught.value).startswith(f"{eval_path}:{line_of(EVAL, 'metrics =')}: metrics: does not include")


def test_an_evaluation_spec_naming_adapters_is_refused_at_its_line(tmp_path) -> None:
    text = EVAL + 'adapters = ["some-run"]\n'
    eval_path = write(tmp_path, text, "eval.toml")
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(write(tmp_path, METRIC))
    assert str(caught.value).startswith(f"{eval_path}:{line_of(text, 'adapters')}: adapters: must be empty")


def test_metric_settings_with_the_val_loss_objective_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        spec.load_toml(write(tmp_path, BASE.replace('n_trials = 4', 'n_trials = 4\nmetric = "rougeL"')))
    assert caught.value.field == "metric" and 'only used with objective = "metric"' in str(caught.value)


def test_the_cli_reports_a_bad_metric_in_one_line_with_file_and_line(tmp_path, engine_argv, engine_env) -> None:
    write(tmp_path, EVAL, "eval.toml")
    text = METRIC.replace('metric = "token_f1"', 'metric = "f1"')
    path = write(tmp_path, text)
    done = subprocess.run(engine_argv("sweep", "create", str(path)), env=engine_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if "metric:" in line]
    assert len(error_lines) == 1 and f"{path}:{line_of(text, 'metric = ')}: metric: must be one of" in error_lines[0]
    assert "Traceback" not in done.stderr
