"""The evaluation spec: what `evaluate run` scores, on which rows, with which settings.

Standard library only, so the GUI can build and read specs with the same code. A spec is an
:mod:`engine.core.schema` settings schema: it comes from a TOML file with an ``[evaluate]``
table, flags, or both (flags win). Every field has help text; :func:`check` raises one line
naming the bad field, and the engine turns it into a USAGE error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import schema
from engine.core.schema import ConfigError

SECTION = "evaluate"
PERTURBATIONS = ("typos", "casing", "whitespace", "shuffle_choices")
SPLIT_AUTO = "auto"

# The spec's errors are the schema's: one class, so the CLI reports both as USAGE.
SpecError = ConfigError


def _f(default: Any, help_text: str, minimum: int | None = None) -> Any:
    """A spec knob; an empty default reads "(default: none)" in --help."""
    return schema.knob(default, help_text, minimum=minimum,
                       shown_default="none" if default in ("", []) else None)


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
                           "0 = all", minimum=0)
    max_new_tokens: int = _f(64, "most tokens generated per answer (decoding is greedy, so "
                             "every model answers deterministically)", minimum=1)
    batch_size: int = _f(8, "rows per generation and perplexity batch", minimum=1)
    system_prompt: str = _f("", "system turn for rows that have none; when empty, each adapter's run's "
                            "trained system prompt, and the base model is asked with the first adapter's")
    json_schema: str = _f("", "constrain generated answers to JSON: 'any' (any JSON object) or a JSON "
                          "Schema file; every answer then parses and follows the schema unless cut "
                          "short by max_new_tokens")
    regex: str = _f("", "pattern for regex_match (Python syntax; the whole output must match)")
    json_fields: list[str] = _f([], "fields compared by json_field_match (default: all of the "
                                "reference's fields)")
    slice_column: str = _f("", "also report every metric per value of this column (e.g. label)")
    robustness: list[str] = _f([], "perturbations of the inputs to re-run with: "
                               + ", ".join(PERTURBATIONS))
    bootstrap: int = _f(1000, "bootstrap resamples for the confidence intervals", minimum=10)
    seed: int = _f(0, "seed of the bootstrap and the perturbations")
    backend: str = _f("auto", "what generates the answers: auto (llama.cpp for a .gguf base other than the "
                      "bundled model, where llama-cpp-python is installed), llama.cpp or transformers; "
                      "perplexity and label ranking always read transformers' logits")
    device: str = _f("auto", "auto, cpu or cuda")
    name: str = _f("", "a short name for the evaluation folder")


FIELDS = {f.name: f for f in dataclasses.fields(EvalSpec)}


def help_for(name: str) -> str:
    return str(FIELDS[name].metadata["help"])


def from_mapping(values: dict[str, Any], base: EvalSpec | None = None, source: str = "") -> EvalSpec:
    """A spec from ``values`` over ``base``; unknown names and wrong types raise SpecError."""
    return schema.from_mapping(EvalSpec, values, base, source)


def load_toml(path: Path, base: EvalSpec | None = None) -> EvalSpec:
    """Reads a spec file: the settings sit in an ``[evaluate]`` table (or at the top level)."""
    return schema.load_toml(EvalSpec, path, SECTION, base)


def to_toml(spec: EvalSpec, comment: str = "") -> str:
    """The spec as TOML that :func:`load_toml` reads back unchanged."""
    return schema.to_toml(spec, SECTION, comment)


def check(spec: EvalSpec, known_metrics: tuple[str, ...]) -> None:
    """Raises SpecError for the first unusable value."""
    if not spec.dataset.strip():
        raise SpecError("dataset", "is required (a dataset name in the workspace, e.g. reviews@v2)")
    if spec.split not in (SPLIT_AUTO, "train", "validation", "test", "all"):
        raise SpecError("split", f"must be auto, train, validation, test or all, not {spec.split!r}")
    for name in spec.metrics:
        if name not in known_metrics:
            raise SpecError("metrics", f"unknown metric {name!r} (known: {', '.join(known_metrics)})")
    schema.check(spec)  # types and the fields' minimums
    for name in spec.robustness:
        if name not in PERTURBATIONS:
            raise SpecError("robustness", f"unknown perturbation {name!r} (known: {', '.join(PERTURBATIONS)})")
    if "regex_match" in spec.metrics and not spec.regex:
        raise SpecError("regex", "regex_match needs a pattern")
    if spec.device not in ("auto", "cpu", "cuda"):
        raise SpecError("device", f"must be auto, cpu or cuda, not {spec.device!r}")
    if len(set(spec.adapters)) != len(spec.adapters):
        raise SpecError("adapters", "lists the same adapter twice")
