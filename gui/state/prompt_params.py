"""Sampling parameters of the Prompt page, their help text and presets. Qt-free.

The wire form (:meth:`Params.to_wire`) is the ``params`` object of a session ``generate``
request; greedy is sent as temperature 0, as the protocol defines. The fields mirror
``engine.infer.sampling.SamplingParams`` on purpose: that module also builds transformers' logits
processors, so importing it would put transformers behind the GUI (the import contract
forbids it), and the engine validates every value it receives anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Params:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    greedy: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire = asdict(self)
        wire.pop("greedy")
        wire["stop"] = list(self.stop)
        if self.greedy:
            wire["temperature"] = 0.0
        return wire

    def summary(self) -> str:
        """A short line for a column header."""
        sampling = "greedy" if self.greedy or self.temperature == 0 else f"T {self.temperature:g}, top-p {self.top_p:g}"
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"{sampling}, max {self.max_new_tokens}{seed}"


HELP: dict[str, str] = {
    "temperature": "Randomness of sampling. 0 = greedy; 0.2–0.5 focused; 0.7–1.0 varied; above 1.2 "
                   "often incoherent.",
    "top_p": "Nucleus sampling: sample only from the most likely tokens whose probabilities add up "
             "to this. 1 = off.",
    "top_k": "Sample only from the k most likely tokens. 0 = off.",
    "min_p": "Drop tokens less likely than this fraction of the most likely token's probability "
             "(0.05 is a common choice). 0 = off.",
    "repetition_penalty": "Above 1 makes tokens already in the text less likely (1.1 curbs loops). "
                          "1 = off.",
    "max_new_tokens": "Stop after this many generated tokens.",
    "stop": "Stop as soon as the answer contains one of these strings (one per line; write \\n "
            "for a newline). The stop string is not shown.",
    "seed": "Fixes the random choices: the same seed, prompt and settings give the same answer. "
            "Empty = a new random answer each time.",
    "greedy": "Always pick the most likely token (temperature 0): repeatable, often repetitive.",
}

PRESETS: dict[str, Params] = {
    "Precise": Params(temperature=0.2, top_p=0.9, top_k=40, repetition_penalty=1.05),
    "Balanced": Params(temperature=0.7, top_p=0.95, min_p=0.05, repetition_penalty=1.1),
    "Creative": Params(temperature=1.1, top_p=1.0, min_p=0.05, repetition_penalty=1.15),
    "Greedy": Params(greedy=True, temperature=0.0),
}
DEFAULT_PRESET = "Balanced"
CUSTOM = "Custom"


def preset_of(params: Params) -> str:
    """The preset these parameters equal (ignoring length, stop strings and seed), or Custom."""
    for name, preset in PRESETS.items():
        if replace(params, max_new_tokens=preset.max_new_tokens, stop=(), seed=None) == preset:
            return name
    return CUSTOM


def apply_preset(params: Params, name: str) -> Params:
    """The preset's sampling settings, keeping the length, stop strings and seed chosen."""
    return replace(PRESETS[name], max_new_tokens=params.max_new_tokens, stop=params.stop, seed=params.seed)


def parse_stop(text: str) -> tuple[str, ...]:
    r"""One stop string per line; ``\n`` and ``\t`` written out stand for those characters."""
    lines = [line for line in text.splitlines() if line]
    return tuple(line.replace("\\n", "\n").replace("\\t", "\t") for line in lines)


def format_stop(stop: tuple[str, ...]) -> str:
    return "\n".join(s.replace("\n", "\\n").replace("\t", "\\t") for s in stop)


@dataclass
class ColumnConfig:
    """One side-by-side column: what runs (model, adapter, adapter on/off) and how it samples."""

    model: str = "default"
    adapter: str = ""
    adapter_on: bool = True
    params: Params = field(default_factory=lambda: PRESETS[DEFAULT_PRESET])

    @property
    def active_adapter(self) -> str:
        return self.adapter if self.adapter_on else ""

    def describe(self) -> dict[str, Any]:
        """What ratings and result tables record about this configuration."""
        return {"model": self.model or "default", "adapter": self.active_adapter, "params": self.params.to_wire()}
