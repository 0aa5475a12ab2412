"""Options of the `models` commands, and the device knob every torch command shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.schema import knob

DEVICES = ("auto", "cpu", "cuda")


def device_knob() -> Any:
    """``--device``: where a command runs its model."""
    return knob("auto", "where to run: auto uses a CUDA GPU when there is one, else the CPU",
                choices=DEVICES)


@dataclass
class ModelsPrepareOptions:
    model: str = knob("", "'default', a local Hugging Face folder or a .gguf file", positional=True)
