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


@dataclass
class ModelsSearchOptions:
    query: str = knob("", "words to look for in model names (empty: the most downloaded)", positional=True,
                      nargs="?")
    task: str = knob("", "only models with this pipeline tag, e.g. text-generation")
    architecture: str = knob("", "only models with this tag, e.g. llama, qwen2, gguf")
    license: str = knob("", "only models under this licence, e.g. apache-2.0, mit")
    limit: int = knob(20, "show at most this many models", minimum=1, maximum=200)


@dataclass
class ModelsDownloadOptions:
    repo_id: str = knob("", "the model on the Hub, as owner/name", positional=True)
    revision: str = knob("", "a branch, tag or commit (default: main)")
    include: str = knob("", "fetch only files matching this glob, e.g. '*Q4_K_M.gguf' in a repo of many GGUF files")


@dataclass
class ModelsCardOptions:
    repo_id: str = knob("", "the model on the Hub, as owner/name", positional=True)
