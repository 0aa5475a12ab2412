"""A sweep's definition: its settings, the base run config and the search space.

Standard library only (like engine/core/config.py), so the help text, the checks and the TOML
form are one schema that the CLI, the files and the window share. A sweep file::

    [sweep]
    name = "lr-rank"
    n_trials = 6
    sampler = "tpe"
    pruner = "median"

    [sweep.base]                 # a [train] table: every trial starts from these settings
    dataset = "sample"
    val_fraction = 0.1
    eval_steps = 2

    [sweep.space.learning_rate]  # any TrainConfig knob: a range ...
    low = 1e-5
    high = 1e-2
    log = true

    [sweep.space.lora_r]         # ... or a list of choices
    choices = [4, 8, 16]

With ``objective = "metric"`` each finished trial is also evaluated (engine/eval, the same code as
`evaluate run`) on its own adapter, and the trial's value is ``metric`` from that evaluation; the
evaluation spec is a file (``eval_spec``, an ``[evaluate]`` table) or an inline
``[sweep.evaluate]`` table, and ``direction`` must be given and agree with the metric.

The definition travels inside the study (:func:`to_dict`), so a worker on another machine
needs only the storage URL.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import config, schema
from engine.core.config import TrainConfig
from engine.core.schema import ConfigError, knob
from engine.eval import catalog
from engine.eval import spec as eval_specs
from engine.eval.spec import EvalSpec

SECTION = "sweep"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
OBJECTIVES = ("val_loss", "metric")
METRICS = catalog.known_metrics()
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "successive_halving", "none")


@dataclass
class SweepConfig:
    """How a sweep searches: the settings of the ``[sweep]`` table besides base and space."""

    name: str = knob(
        "", "The sweep's name: the study's name and its file sweeps/NAME.db in the workspace "
        "(letters, digits, '-', '_', '.'); empty = the sweep file's name.", label="Name")
    objective: str = knob(
        "val_loss", "What a trial scores. val_loss: the run's best validation loss (the "
        "checkpoint its adapter keeps), so base.val_fraction must be above 0. metric: after "
        "training, the trial's adapter is evaluated with an evaluation spec (eval_spec or a "
        "[sweep.evaluate] table) and the trial scores that evaluation's `metric`.",
        label="Objective", choices=OBJECTIVES)
    metric: str | None = knob(
        None, "objective = metric: the evaluation metric each trial scores, e.g. token_f1, rougeL, "
        "accuracy, json_field_match or perplexity (see `evaluate run --help`).", label="Metric",
        choices=METRICS)
    eval_spec: str = knob(
        "", "objective = metric: an evaluation spec file (an [evaluate] table, as for `evaluate run "
        "--config`; relative to the sweep file) run on each trial's adapter. Its dataset should be a "
        "held-out split; adapters and model are left empty (the trial's adapter and its base are "
        "used). Instead of a file, a [sweep.evaluate] table may hold the spec.",
        label="Evaluation spec")
    direction: str = knob(
        "minimize", "Whether lower or higher objective values are better; validation loss is "
        "minimised. With objective = metric it must be given, and agree with the metric "
        "(maximize for token_f1, minimize for perplexity).", label="Direction",
        choices=("minimize", "maximize"))
    n_trials: int = knob(
        20, "Trials the sweep runs, counting finished and pruned ones (a failed trial does not "
        "count; a killed one is retried).", label="Trials", minimum=1, maximum=10_000)
    timeout_s: int = knob(
        0, "Time budget of each `sweep run` or `sweep worker` in seconds: no new trial starts "
        "after it (the running one finishes). 0 = none.", label="Time budget (s)", minimum=0,
        maximum=10_000_000)
    sampler: str = knob(
        "tpe", "How the next trial's knobs are picked. tpe: Tree-structured Parzen Estimator, "
        "learns from earlier trials (the usual choice). random: independent draws. grid: every "
        "combination once (every range needs a step, or use choices). cmaes: CMA-ES for "
        "continuous ranges (needs the cmaes package; choices are drawn at random).",
        label="Sampler", choices=SAMPLERS)
    sampler_startup_trials: int = knob(
        5, "tpe and cmaes: trials drawn at random before the model of earlier trials is used.",
        label="Random trials first", minimum=0, maximum=1000)
    pruner: str = knob(
        "median", "Stopping bad trials early, from the validation loss at each evaluation step. "
        "median: stop a trial whose loss is worse than the median of earlier trials at the same "
        "step. successive_halving: keep the best third at each rung of steps. none: every trial "
        "runs to the end.", label="Pruner", choices=PRUNERS)
    pruner_startup_trials: int = knob(
        2, "median: trials that run to the end before any trial is pruned.",
        label="Trials before pruning", minimum=0, maximum=1000)
    pruner_warmup_steps: int = knob(
        0, "median: steps of each trial before it may be pruned.", label="Warm-up steps",
        minimum=0, maximum=10_000_000)
    seed: int = knob(
        0, "Seed of the sampler; each trial's training seed is base.seed unless the space "
        "searches seed.", label="Seed", minimum=0, maximum=2**31 - 1)
    heartbeat_s: int = knob(
        30, "How often a running trial tells the storage it is alive. A trial silent for twice "
        "this long (its worker was killed) is marked failed and queued again.",
        label="Heartbeat (s)", minimum=1, maximum=3600)
    max_retries: int = knob(
        2, "How many times a killed trial is queued again.", label="Retries", minimum=0, maximum=100)


@dataclass
class Param:
    """One knob of the search space: a range (``low``..``high``) or a list of ``choices``."""

    name: str = knob("", "The TrainConfig knob searched, e.g. learning_rate.")
    low: float | None = knob(None, "Smallest value of a range (number knobs only).")
    high: float | None = knob(None, "Largest value of a range.")
    log: bool = knob(False, "Draw the range on a log scale (learning rates); low must be above 0.")
    step: float | None = knob(None, "Spacing of the values a range may take (e.g. 1 for whole "
                              "epochs); grid search needs it.")
    choices: list[str] = knob([], "The values to choose from instead of a range (any knob; "
                              "numbers, text or true/false).")

    @property
    def is_range(self) -> bool:
        return not self.choices

    def as_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        values = {"low": self.low, "high": self.high, "log": self.log, "step": self.step}
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class Sweep:
    """A whole definition: settings, the base run config and the space."""

    settings: SweepConfig
    base: TrainConfig
    space: dict[str, Param] = field(default_factory=dict)
    evaluation: EvalSpec | None = None  # objective = metric: the spec run on each trial's adapter

    @property
    def name(self) -> str:
        return self.settings.name

    def trial_config(self, values: dict[str, Any], name: str = "") -> TrainConfig:
        """The base with one trial's knob values, checked as training checks any config."""
        return config.validate(dataclasses.replace(self.base, **values, name=name or self.base.name),
                               f"sweep {self.name}")


PARAM_KEYS = ("low", "high", "log", "step", "choices")


def load_toml(path: Path) -> Sweep:
    """A sweep from the ``[sweep]`` table of ``path``; ConfigError names the file, the line
    (where the field is written in the file) and the field."""
    table = schema.read_toml_table(path, SECTION)
    try:
        return from_dict(table, source=str(path), default_name=path.stem, folder=path.parent)
    except ConfigError as exc:
        raise with_line(exc, path, SECTION) from None


def with_line(exc: ConfigError, path: Path, section: str) -> ConfigError:
    """``exc`` with ``file:line`` as its source when it was raised about ``path`` and the line
    that sets its field is found there; else ``exc`` itself."""
    if exc.source != str(path):
        return exc
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return exc
    line = field_line(text, section, exc.field)
    if not line:
        return exc
    message = str(exc).removeprefix(f"{exc.source}: ").removeprefix(f"{exc.field}: ")
    located = ConfigError(exc.field, message, f"{path}:{line}")
    return located


HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def field_line(text: str, section: str, field_name: str) -> int:
    """The 1-based line of a TOML file that sets ``field_name`` (dotted, inside ``[section]``):
    its ``key =`` line, else the header of its table; 0 when neither is written out."""
    parts = [p for p in field_name.split(".") if p]
    if not parts:
        return 0
    wanted = [(".".join([section, *parts[:-1]]), parts[-1]), (".".join([section, *parts]), None)]
    lines = text.splitlines()
    for table, key in wanted:
        current = ""
        for number, line in enumerate(lines, start=1):
            header = HEADER.match(line)
            if header:
                current = ".".join(p.strip().strip("\"'") for p in header.group(1).split("."))
                if key is None and current == table:
                    return number
                continue
            in_table = current == table or (not current and table == section)
            if key is not None and in_table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
    return 0


def from_dict(table: dict[str, Any], source: str = "", default_name: str = "", folder: Path | None = None) -> Sweep:
    """A sweep from its table; ``folder`` is where a relative ``eval_spec`` path starts."""
    table = dict(table)
    base_values = table.pop("base", {})
    space_values = table.pop("space", {})
    evaluate_values = table.pop("evaluate", None)
    if not isinstance(base_values, dict) or not isinstance(space_values, dict):
        raise ConfigError("base" if not isinstance(base_values, dict) else "space", "must be a table", source)
    if evaluate_values is not None and not isinstance(evaluate_values, dict):
        raise ConfigError("evaluate", "must be a table (an evaluation spec's settings)", source)
    settings = schema.check(schema.from_mapping(SweepConfig, table, source=source), source)
    if not settings.name:
        settings = dataclasses.replace(settings, name=default_name)
    _check_settings(settings, source, direction_given="direction" in table)
    evaluation = _evaluation(settings, evaluate_values, source, folder)
    base = _base(base_values, source)
    space = {name: parse_param(name, values, source) for name, values in space_values.items()}
    sweep = Sweep(settings, base, space, evaluation)
    check(sweep, source)
    return sweep


def _evaluation(settings: SweepConfig, values: dict[str, Any] | None, source: str,
                folder: Path | None) -> EvalSpec | None:
    """The evaluation spec of a metric objective, checked: from the inline table (which a
    stored definition always carries) or from the eval_spec file."""
    if settings.objective != "metric":
        given = [name for name, unset in (("metric", settings.metric is None), ("eval_spec", not settings.eval_spec),
                                          ("evaluate", values is None)) if not unset]
        if given:
            raise ConfigError(given[0], f'is only used with objective = "metric" (the objective is '
                              f"{settings.objective})", source)
        return None
    if values is not None:
        where, prefix = source, "evaluate."
        try:
            evaluation = eval_specs.from_mapping(values, source=source)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc.field}", str(exc).split(f"{exc.field}: ", 1)[-1], source) from None
    elif settings.eval_spec:
        path = Path(settings.eval_spec).expanduser()
        if not path.is_absolute() and folder is not None:
            path = folder / path
        if not path.is_file():
            raise ConfigError("eval_spec", f"file not found: {path}", source)
        where, prefix = str(path), ""
        try:
            evaluation = eval_specs.load_toml(path)
        except ConfigError as exc:
            raise with_line(exc, path, eval_specs.SECTION) from None
    else:
        raise ConfigError("eval_spec", 'is required with objective = "metric": an evaluation spec file '
                          "(an [evaluate] table) or a [sweep.evaluate] table", source)
    try:
        _check_evaluation(settings, evaluation, where, prefix)
    except ConfigError as exc:
        if where != source:
            raise with_line(exc, Path(where), eval_specs.SECTION) from None
        raise
    return evaluation


def _check_evaluation(settings: SweepConfig, evaluation: EvalSpec, where: str, prefix: str) -> None:
    metric = settings.metric or ""
    if evaluation.adapters:
        raise ConfigError(f"{prefix}adapters", "must be empty: each trial's own adapter is evaluated", where)
    if evaluation.model:
        raise ConfigError(f"{prefix}model", "must be empty: the trial's base model is used", where)
    if evaluation.metrics and metric not in evaluation.metrics:
        raise ConfigError(f"{prefix}metrics", f"does not include the sweep's metric {metric!r} "
                          f"({', '.join(evaluation.metrics)})", where)
    try:
        eval_specs.check(evaluation, METRICS)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc.field}", str(exc).split(f"{exc.field}: ", 1)[-1], where) from None


def trial_evaluation(sweep: Sweep, run_id: str, trial_number: int) -> EvalSpec:
    """The evaluation spec run on one trial's adapter: the sweep's, with that adapter and (when
    the spec names no metrics) only the objective metric."""
    if sweep.evaluation is None or not sweep.settings.metric:
        raise ValueError(f"sweep {sweep.name} has no metric objective")
    return dataclasses.replace(sweep.evaluation, adapters=[run_id],
                               metrics=list(sweep.evaluation.metrics) or [sweep.settings.metric],
                               name=sweep.evaluation.name or f"{sweep.name}-trial-{trial_number}")


def objective_label(settings: SweepConfig) -> str:
    """What a trial's value is, in words: "validation loss" or the metric's title."""
    if settings.objective == "metric" and settings.metric:
        return catalog.metric_info(settings.metric)["title"]
    return "validation loss"


def pruning_note(sweep: Sweep) -> str:
    """Why pruning is off although a pruner is set ("" when it works as set)."""
    if sweep.settings.pruner != "none" and sweep.base.val_fraction <= 0:
        return (f"pruning is off: the {sweep.settings.pruner} pruner is fed by the validation loss at each "
                "evaluation step, and base.val_fraction is 0 (no validation split); every trial runs to the end")
    return ""


def _base(values: dict[str, Any], source: str) -> TrainConfig:
    try:
        return config.from_mapping(values, source=source)
    except ConfigError as exc:
        raise ConfigError(f"base.{exc.field}", str(exc).split(f"{exc.field}: ", 1)[-1], source) from None


def _check_settings(settings: SweepConfig, source: str, direction_given: bool = True) -> None:
    if not NAME_PATTERN.match(settings.name):
        raise ConfigError("name", f"{settings.name!r} is not a usable sweep name (letters, digits, '-', '_', "
                          "'.'; at most 80)", source)
    if settings.objective == "val_loss" and settings.direction != "minimize":
        raise ConfigError("direction", "val_loss is minimised; use minimize", source)
    if settings.objective == "metric":
        if not settings.metric:
            raise ConfigError("metric", f'is required with objective = "metric" (one of: {", ".join(METRICS)})',
                              source)
        better = catalog.metric_info(settings.metric)["better"]
        expected = "maximize" if better == "higher" else "minimize"
        if not direction_given:
            raise ConfigError("direction", f'must be given with objective = "metric": {settings.metric} is '
                              f'better {better}, so direction = "{expected}"', source)
        if settings.direction != expected:
            raise ConfigError("direction", f"{settings.metric} is better {better}; use {expected}", source)


def parse_param(name: str, values: Any, source: str = "") -> Param:
    """One ``[sweep.space.NAME]`` table, each value of the knob's own type."""
    where = f"space.{name}"
    try:
        target = schema.knob_of(TrainConfig, name)
    except KeyError:
        raise ConfigError(where, "is not a training knob (see `tunebench-engine train --help`)", source) from None
    if name == "name":
        raise ConfigError(where, "the run name is set per trial", source)
    if not isinstance(values, dict):
        raise ConfigError(where, "must be a table with low/high (and log, step) or choices", source)
    unknown = set(values) - set(PARAM_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", f"is not one of {', '.join(PARAM_KEYS)}", source)
    if "choices" in values:
        return _choices(name, target, values, where, source)
    return _range(name, target, values, where, source)


def _choices(name: str, target: schema.Knob, values: dict[str, Any], where: str, source: str) -> Param:
    if set(values) != {"choices"}:
        raise ConfigError(where, "takes either choices or low/high, not both", source)
    choices = values["choices"]
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}.choices", "must be a non-empty list", source)
    typed = []
    for value in choices:
        try:
            value = schema.coerce(target, value)
            schema.check_limits(target, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}.choices", str(exc).split(": ", 1)[-1], source) from None
        typed.append(value)
    return Param(name=name, choices=typed)


def _range(name: str, target: schema.Knob, values: dict[str, Any], where: str, source: str) -> Param:
    if target.kind not in (int, float):
        raise ConfigError(where, f"{name} is not a number; give choices", source)
    if "low" not in values or "high" not in values:
        raise ConfigError(where, "needs low and high (or choices)", source)
    bounds = {}
    for key in ("low", "high", "step"):
        if key in values:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{key}", f"must be a number, not {value!r}", source)
            if target.kind is int and not float(value).is_integer():
                raise ConfigError(f"{where}.{key}", f"{name} takes whole numbers; got {value}", source)
            bounds[key] = target.kind(value)
    log = values.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", f"must be true or false, not {log!r}", source)
    param = Param(name=name, low=bounds["low"], high=bounds["high"], log=log, step=bounds.get("step"))
    _check_range(param, target, where, source)
    return param


def _check_range(param: Param, target: schema.Knob, where: str, source: str) -> None:
    if param.low >= param.high:
        raise ConfigError(where, f"low ({param.low}) must be below high ({param.high})", source)
    if param.log and param.low <= 0:
        raise ConfigError(f"{where}.low", "must be above 0 on a log scale", source)
    if param.log and param.step is not None:
        raise ConfigError(f"{where}.step", "cannot be used with log (Optuna draws log ranges continuously)", source)
    if param.step is not None and param.step <= 0:
        raise ConfigError(f"{where}.step", "must be above 0", source)
    for key in ("low", "high"):
        try:
            schema.check_limits(target, getattr(param, key))
        except ConfigError as exc:
            raise ConfigError(f"{where}.{key}", str(exc).split(": ", 1)[-1], source) from None


def check(sweep: Sweep, source: str = "") -> None:
    """Refuses what no trial could run: no space, no validation for val_loss, grids without
    steps, or a base that training refuses at the space's corners."""
    if not sweep.space:
        raise ConfigError("space", "is empty: add at least one [sweep.space.KNOB] table", source)
    if sweep.settings.objective == "val_loss" and sweep.base.val_fraction <= 0:
        raise ConfigError("base.val_fraction", "must be above 0: the objective is the validation loss", source)
    if sweep.settings.sampler == "grid":
        for param in sweep.space.values():
            if param.is_range and param.step is None:
                raise ConfigError(f"space.{param.name}.step", "grid search needs a step (or choices)", source)
    for corner in ("low", "high"):
        values = {p.name: (getattr(p, corner) if p.is_range else p.choices[0 if corner == "low" else -1])
                  for p in sweep.space.values()}
        try:
            sweep.trial_config(values)
        except ConfigError as exc:
            raise ConfigError(f"space.{exc.field}", f"at its {corner} end: " + str(exc).split(f"{exc.field}: ", 1)[-1],
                              source) from None


def to_dict(sweep: Sweep) -> dict[str, Any]:
    """The definition as plain JSON values: stored in the study, read back by :func:`from_dict`."""
    settings = dataclasses.asdict(sweep.settings)
    definition = {**settings, "base": dataclasses.asdict(sweep.base),
                  "space": {name: param.as_dict() for name, param in sweep.space.items()}}
    if sweep.evaluation is not None:  # inline, so a worker elsewhere needs no spec file
        definition["evaluate"] = dataclasses.asdict(sweep.evaluation)
    return definition


def to_toml(sweep: Sweep) -> str:
    """The definition as a sweep file that :func:`load_toml` reads back unchanged."""
    import tomli_w  # light, pure Python; local so this module stays stdlib-only at import

    definition = {key: value for key, value in to_dict(sweep).items() if value is not None}  # TOML has no null
    return tomli_w.dumps({SECTION: definition})


def template(name: str = "my-sweep") -> str:
    """A sweep file to start from: every setting at its default under its help text, a small
    base and a space of learning rate, LoRA rank and epochs, each space key explained."""
    def comment(text: str) -> list[str]:
        return [f"# {line}" for line in textwrap.wrap(text, 96, break_on_hyphens=False, break_long_words=False)]

    lines = ["[sweep]"]
    for k in schema.knobs(SweepConfig):
        value = name if k.name == "name" else k.default
        # A setting with no default (TOML has no null) is shown commented out.
        written = f"# {k.name} = {json.dumps(k.choices[0])}" if value is None else f"{k.name} = {json.dumps(value)}"
        lines += [*comment(k.help), written, ""]
    lines += [
        "# The run config every trial starts from: any `train` setting (see `train --help`).",
        "[sweep.base]",
        'dataset = "sample"',
        "val_fraction = 0.1",
        "eval_steps = 10",
        "save_steps = 10",
        "",
        *comment("One table per knob searched. " + " ".join(f"{k.name}: {k.help}" for k in schema.knobs(Param)[1:])),
    ]
    lines += ["[sweep.space.learning_rate]", "low = 1e-5", "high = 1e-3", "log = true", "",
              "[sweep.space.lora_r]", "choices = [8, 16, 32]", "",
              "[sweep.space.epochs]", "low = 1.0", "high = 3.0", "step = 1.0"]
    return "\n".join(lines) + "\n"
