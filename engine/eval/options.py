"""Options of the `evaluate` commands. `evaluate run`'s settings are the EvalSpec schema
(engine/eval/spec.py); these are the flags around it."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob
from engine.runtime.options import device_knob

HARDEST_SPLITS = ("train", "validation", "test")


@dataclass
class EvalRunOptions:
    config: str | None = knob(None, "an evaluation spec file with an [evaluate] table; flags override it",
                              metavar="SPEC.toml")


@dataclass
class JudgeOptions:
    config: str | None = knob(None, "a file with a [judge] table of judge settings; flags override it",
                              metavar="JUDGE.toml")


@dataclass
class HardestOptions:
    run: str = knob("", "run id or run folder", positional=True)
    top: int = knob(20, "how many rows to keep (default 20)")
    split: str = knob("train", "split of the run's dataset to score (default: train)", choices=HARDEST_SPLITS)
    batch_size: int = knob(8, "rows per forward pass (default 8)")
    device: str = device_knob()


@dataclass
class ReportOptions:
    evaluation: str = knob("", "evaluation id or folder (see evaluate list)", positional=True)
