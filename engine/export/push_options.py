"""Options of `push`: a run's adapter, or its model with the adapter merged in, to a repository
on the Hugging Face Hub, with a model card written from the run."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob

MERGED_TYPES = ("f16", "bf16", "f32")  # engine/export/model.py writes these


@dataclass
class PushOptions:
    run: str = knob("", "a run id or a run folder", positional=True)
    repo: str = knob("", "the Hub repository to push to, as OWNER/NAME; created when missing (your account "
                     "or an organisation your token may write to)", metavar="OWNER/NAME", required=True)
    merged: bool = knob(False, "push the base model with the adapter merged in (safetensors, tokenizer, chat "
                        "template), written to a temporary folder first, instead of the adapter alone")
    outtype: str = knob("f16", "with --merged: the weights' type", choices=MERGED_TYPES)
    private: bool = knob(False, "create the repository private (an existing one keeps its visibility)")
    message: str = knob("", "the commit message (default: 'Push run RUN from Tunebench')")
