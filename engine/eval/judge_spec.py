"""The judge settings of `evaluate judge`: which evaluation, which two models, which judge.

Standard library only, so the GUI builds judge commands with the same schema. Settings come from
a TOML file's ``[judge]`` table, flags, or both (flags win); :func:`check` raises one line
naming the bad field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import schema
from engine.core.schema import ConfigError

SECTION = "judge"
MODES = ("pairwise", "single")


def _f(default: Any, help_text: str, **extra: Any) -> Any:
    return schema.knob(default, help_text, shown_default="none" if default == "" else None, **extra)


@dataclass
class JudgeSpec:
    """One judging pass over an evaluation's generations."""

    evaluation: str = _f("", "evaluation id or folder whose generations are judged (see evaluate list)")
    pairs: str = _f("", "instead of an evaluation: a JSONL file of two models' answers, one object a line "
                    "with prompt (text or chat messages), a, b and optionally reference; it becomes an "
                    "evaluation folder of its own")
    mode: str = _f("pairwise", "pairwise: which of two answers is better, asked in both orders; single: "
                   "score each answer 1-10", choices=MODES)
    with_reference: bool = _f(False, "put the row's reference answer in the judge's prompt (reference-guided)")
    model_a: str = _f("base", "the first model's label in the evaluation (pairwise: the baseline)")
    model_b: str = _f("", "the second model's label; none = the evaluation's first adapter (with pairs: "
                      "'tuned')")
    judge_model: str = _f("", "a local judge model: 'default', a local folder or a .gguf file "
                          "(used when base_url is empty)")
    base_url: str = _f("", "an OpenAI-compatible server to judge with, e.g. http://127.0.0.1:8000/v1 "
                       "(tunebench-engine serve is one)")
    api_key: str = _f("", "the server's API key; none = $OPENAI_API_KEY if set")
    server_model: str = _f("", "the model name sent to the server; none = the first of its /v1/models")
    prompt: str = _f("", "the judge's prompt template, replacing the preset; placeholders {question}, "
                     "{answer_a}, {answer_b} (pairwise), {answer} (single), {reference}")
    max_examples: int = _f(0, "judge at most this many rows (the first ones); 0 = all", minimum=0)
    max_new_tokens: int = _f(256, "most tokens of each verdict", minimum=8)
    bootstrap: int = _f(1000, "bootstrap resamples for the confidence intervals", minimum=10)
    seed: int = _f(0, "seed of the bootstrap")
    device: str = _f("auto", "auto, cpu or cuda (a local judge)")


FIELDS = {f.name: f for f in dataclasses.fields(JudgeSpec)}


def from_mapping(values: dict[str, Any], base: JudgeSpec | None = None, source: str = "") -> JudgeSpec:
    return schema.from_mapping(JudgeSpec, values, base, source)


def load_toml(path: Path, base: JudgeSpec | None = None) -> JudgeSpec:
    """Reads the ``[judge]`` table of a file (or its top level)."""
    return schema.load_toml(JudgeSpec, path, SECTION, base)


def to_toml(spec: JudgeSpec, comment: str = "") -> str:
    return schema.to_toml(spec, SECTION, comment)


def check(spec: JudgeSpec) -> None:
    """Raises ConfigError for the first unusable value."""
    if not spec.evaluation.strip() and not spec.pairs.strip():
        raise ConfigError("evaluation", "is required (an evaluation id or folder; see evaluate list), or pairs")
    if spec.evaluation.strip() and spec.pairs.strip():
        raise ConfigError("pairs", "judges a file of answers; give it or evaluation, not both")
    if spec.mode not in MODES:
        raise ConfigError("mode", f"must be {' or '.join(MODES)}, not {spec.mode!r}")
    schema.check(spec)
    if spec.device not in ("auto", "cpu", "cuda"):
        raise ConfigError("device", f"must be auto, cpu or cuda, not {spec.device!r}")
    if spec.base_url and not spec.base_url.startswith(("http://", "https://")):
        raise ConfigError("base_url", f"must start with http:// or https://, not {spec.base_url!r}")
    if spec.model_a and spec.model_a == spec.model_b:
        raise ConfigError("model_b", "is the same model as model_a")
