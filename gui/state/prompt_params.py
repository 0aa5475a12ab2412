"""Sampling parameters of the Prompt page, their help text and presets. Qt-free.

:class:`Params` is built from the engine's stdlib sampling schema,
``engine.infer.params.SamplingParams`` (the same fields, defaults, help and limits), plus the
page's ``greedy`` switch. The wire form (:meth:`Params.to_wire`) is the ``params`` object of a
session ``generate`` request; greedy is sent as temperature 0, as the protocol defines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engine.core.schema import knob
from engine.infer.params import SamplingParams
from gui.state import remote_keys

GREEDY_HELP = "Always pick the most likely token (temperature 0): repeatable, often repetitive."


class _ParamsMethods:
    """What the page adds to the engine's fields."""

    def to_wire(self) -> dict[str, Any]:
        wire = asdict(self)  # type: ignore[call-overload]
        if wire.pop("greedy"):
            wire["temperature"] = 0.0
        wire["stop"] = list(wire["stop"])
        return wire

    def summary(self) -> str:
        """A short line for a column header."""
        p: Any = self
        sampling = "greedy" if p.greedy or p.temperature == 0 else f"T {p.temperature:g}, top-p {p.top_p:g}"
        seed = f", seed {p.seed}" if p.seed is not None else ""
        json_out = "" if not p.json_schema else ", any JSON" if p.json_schema == "any" else ", JSON schema"
        return f"{sampling}, max {p.max_new_tokens}{seed}{json_out}"


def _fields() -> list[tuple[str, Any, Any]]:
    """The engine's sampling fields (a fresh Field each: a Field belongs to one class), then greedy."""
    fields = [(f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
              for f in dataclasses.fields(SamplingParams)]
    return fields + [("greedy", "bool", knob(False, GREEDY_HELP, label="Greedy"))]


# Made, not written out, so that a sampling knob added to the engine appears on the page.
if TYPE_CHECKING:
    Params = Any  # a class made at run time has no static fields; tests check its fields instead
else:
    Params = dataclasses.make_dataclass(
        "Params", _fields(), bases=(_ParamsMethods,), frozen=True,
        namespace={"__module__": __name__, "__doc__": "One column's sampling parameters and greedy switch."})

PRESETS: dict[str, Params] = {
    "Precise": Params(temperature=0.2, top_p=0.9, top_k=40, repetition_penalty=1.05),
    "Balanced": Params(temperature=0.7, top_p=0.95, min_p=0.05, repetition_penalty=1.1),
    "Creative": Params(temperature=1.1, top_p=1.0, min_p=0.05, repetition_penalty=1.15),
    "Greedy": Params(greedy=True, temperature=0.0),
}
DEFAULT_PRESET = "Balanced"
CUSTOM = "Custom"


def preset_of(params: Params) -> str:
    """The preset these parameters equal (ignoring length, stop strings, seed and JSON schema), or Custom."""
    for name, preset in PRESETS.items():
        if replace(params, max_new_tokens=preset.max_new_tokens, stop=(), seed=None, json_schema="") == preset:
            return name
    return CUSTOM


def apply_preset(params: Params, name: str) -> Params:
    """The preset's sampling settings, keeping the length, stop strings, seed and JSON schema chosen."""
    return replace(PRESETS[name], max_new_tokens=params.max_new_tokens, stop=params.stop, seed=params.seed,
                   json_schema=params.json_schema)


def parse_stop(text: str) -> tuple[str, ...]:
    r"""One stop string per line; ``\n`` and ``\t`` written out stand for those characters."""
    lines = [line for line in text.splitlines() if line]
    return tuple(line.replace("\\n", "\n").replace("\\t", "\t") for line in lines)


def format_stop(stop: tuple[str, ...]) -> str:
    return "\n".join(s.replace("\n", "\\n").replace("\t", "\\t") for s in stop)


BACKEND_ITEMS = [("Auto", "auto"), ("llama.cpp", "llama.cpp"), ("transformers", "transformers")]  # (label, value)


@dataclass
class ColumnConfig:
    """One side-by-side column: what runs (model, adapter, adapter on/off) and how it samples.
    With a ``base_url`` an OpenAI-compatible server answers and ``model`` is its model id."""

    model: str = "default"
    adapter: str = ""
    adapter_on: bool = True
    params: Params = field(default_factory=lambda: PRESETS[DEFAULT_PRESET])
    base_url: str = ""
    backend: str = "auto"  # what runs a local model: auto, llama.cpp or transformers
    adapter_scale: float = 1.0  # the adapter's weight: 1 = as trained

    @property
    def active_adapter(self) -> str:
        return "" if self.base_url or not self.adapter_on else self.adapter

    def local_fields(self) -> dict[str, Any]:
        """The backend and the adapter's scale, sent only where they differ from the defaults."""
        fields: dict[str, Any] = {"backend": self.backend} if self.backend != "auto" else {}
        if self.active_adapter and self.adapter_scale != 1.0:
            fields["adapter_scale"] = self.adapter_scale
        return fields

    def target_fields(self) -> dict[str, Any]:
        """The session request's fields that say what answers: a local model and adapter, or a
        server with its key (the key goes to the engine over its stdin pipe, never to a file)."""
        if not self.base_url:
            return {"model": self.model or "default", "adapter": self.active_adapter, **self.local_fields()}
        return {"model": self.model, "adapter": "",
                "remote": {"base_url": self.base_url, "api_key": remote_keys.get(self.base_url)}}

    def describe(self) -> dict[str, Any]:
        """What ratings and result tables record about this configuration (never a key)."""
        where = {"base_url": self.base_url} if self.base_url else self.local_fields()
        return {"model": self.model or ("" if self.base_url else "default"), "adapter": self.active_adapter,
                **where, "params": self.params.to_wire()}
