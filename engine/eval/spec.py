"""The evaluation spec: what `evaluate run` scores, on which rows, with which settings.

Standard library only (tomllib to read, a tiny writer to save), so the GUI can build and read
specs with the same code. A spec comes from a TOML file with an ``[evaluate]`` table, flags, or
both (flags win). Every field has help text; :func:`check` returns one line naming the bad
field, and the engine turns it into a USAGE error.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import config

SECTION = "evaluate"
PERTURBATIONS = ("typos", "casing", "whitespace", "shuffle_choices")
SPLIT_AUTO = "auto"


class SpecError(ValueError):
    """A spec value that cannot be used: ``field`` names it, the message says why."""

    def __init__(self, field_name: str, message: str, source: str = "") -> None:
        self.field = field_name
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field_name}: {message}")

    @classmethod
    def from_config_error(cls, exc: Any) -> SpecError:
        error = cls(exc.field, "")
        error.args = exc.args  # the same one-line message, already naming file and field
        return error


def _f(default: Any, help_text: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass
class EvalSpec:
    """One evaluation. The base model is always evaluated; each adapter is evaluated on top of
    it with exactly the same rows and generation settings."""

    dataset: str = _f("", "dataset NAME or NAME@vN in the workspace (the version used is recorded)")
    split: str = _f(SPLIT_AUTO, "split to score: test, validation, train or all (every row); auto = "
                    "test if the version has one, else validation, else all rows")
    model: str = _f("", "base model: 'default', a local folder or a .gguf file (default: the "
                    "first adapter's base, else the bundled model)")
    adapters: list[str] = _f([], "adapters to compare with the base: run ids, run folders or "
                             "adapter folders")
    metrics: list[str] = _f([], "metrics to compute (default: perplexity plus the usual ones "
                            "for the dataset's shape)")
    max_examples: int = _f(200, "score at most this many rows (the first ones of the split); "
                           "0 = all")
    max_new_tokens: int = _f(64, "most tokens generated per answer (decoding is greedy, so "
                             "every model answers deterministically)")
    batch_size: int = _f(8, "rows per generation and perplexity batch")
    regex: str = _f("", "pattern for regex_match (Python syntax; the whole output must match)")
    json_fields: list[str] = _f([], "fields compared by json_field_match (default: all of the "
                                "reference's fields)")
    slice_column: str = _f("", "also report every metric per value of this column (e.g. label)")
    robustness: list[str] = _f([], "perturbations of the inputs to re-run with: "
                               + ", ".join(PERTURBATIONS))
    bootstrap: int = _f(1000, "bootstrap resamples for the confidence intervals")
    seed: int = _f(0, "seed of the bootstrap and the perturbations")
    device: str = _f("auto", "auto, cpu or cuda")
    name: str = _f("", "a short name for the evaluation folder")


FIELDS = {f.name: f for f in dataclasses.fields(EvalSpec)}


def help_for(name: str) -> str:
    return str(FIELDS[name].metadata["help"])


def from_mapping(values: dict[str, Any], base: EvalSpec | None = None, source: str = "") -> EvalSpec:
    """A spec from ``values`` over ``base``; unknown names and wrong types raise SpecError."""
    spec = dataclasses.replace(base) if base else EvalSpec()
    for key, value in values.items():
        if key not in FIELDS:
            raise SpecError(key, f"unknown setting (known: {', '.join(FIELDS)})", source)
        setattr(spec, key, _coerce(key, value, source))
    return spec


def _coerce(key: str, value: Any, source: str) -> Any:
    default = getattr(EvalSpec(), key)
    if isinstance(default, list):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(key, "must be a list of strings", source)
        return list(value)
    if isinstance(default, bool) or not isinstance(default, (int, str)):
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(key, f"must be a whole number, not {value!r}", source)
        return value
    if not isinstance(value, str):
        raise SpecError(key, f"must be text, not {value!r}", source)
    return value


def load_toml(path: Path, base: EvalSpec | None = None) -> EvalSpec:
    """Reads a spec file: the settings sit in an ``[evaluate]`` table (or at the top level)."""
    try:
        values = config.read_toml_table(path, SECTION)
    except config.ConfigError as exc:
        raise SpecError.from_config_error(exc) from None
    return from_mapping(values, base, source=str(path))


def to_toml(spec: EvalSpec, comment: str = "") -> str:
    """The spec as TOML that :func:`load_toml` reads back unchanged (strings, ints, string
    lists only, so JSON quoting is valid TOML quoting)."""
    lines = [f"# {line}" for line in comment.splitlines()] + [f"[{SECTION}]"]
    for key, value in dataclasses.asdict(spec).items():
        lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def check(spec: EvalSpec, known_metrics: tuple[str, ...]) -> None:
    """Raises SpecError for the first unusable value."""
    if not spec.dataset.strip():
        raise SpecError("dataset", "is required (a dataset name in the workspace, e.g. reviews@v2)")
    if spec.split not in (SPLIT_AUTO, "train", "validation", "test", "all"):
        raise SpecError("split", f"must be auto, train, validation, test or all, not {spec.split!r}")
    for name in spec.metrics:
        if name not in known_metrics:
            raise SpecError("metrics", f"unknown metric {name!r} (known: {', '.join(known_metrics)})")
    for name, low in (("max_examples", 0), ("max_new_tokens", 1), ("batch_size", 1), ("bootstrap", 10)):
        if getattr(spec, name) < low:
            raise SpecError(name, f"must be at least {low}, not {getattr(spec, name)}")
    for name in spec.robustness:
        if name not in PERTURBATIONS:
            raise SpecError("robustness", f"unknown perturbation {name!r} (known: {', '.join(PERTURBATIONS)})")
    if "regex_match" in spec.metrics and not spec.regex:
        raise SpecError("regex", "regex_match needs a pattern")
    if spec.device not in ("auto", "cpu", "cuda"):
        raise SpecError("device", f"must be auto, cpu or cuda, not {spec.device!r}")
    if len(set(spec.adapters)) != len(spec.adapters):
        raise SpecError("adapters", "lists the same adapter twice")


def add_arguments(parser: Any) -> None:
    """One flag per spec field (``--max-new-tokens`` for ``max_new_tokens``); lists take
    comma-separated values. Defaults are None so a TOML file's values survive unset flags."""
    parser.add_argument("--config", default=None, metavar="SPEC.toml",
                        help="an evaluation spec file with an [evaluate] table; flags override it")
    for name, spec_field in FIELDS.items():
        default = getattr(EvalSpec(), name)
        kind = int if isinstance(default, int) else str
        shown = ",".join(default) if isinstance(default, list) else default
        extra = " (comma-separated)" if isinstance(default, list) else ""
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                            help=f"{spec_field.metadata['help']}{extra} (default: {'none' if shown == '' else shown})")
