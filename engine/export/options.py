"""Options of `export`: a run's tuned model, merged, as a folder or one GGUF file."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob

EXPORT_FORMATS = ("merged", "gguf")


@dataclass
class ExportOptions:
    run: str = knob("", "a run id, a run folder or an adapter folder", positional=True)
    format: str = knob("merged", "merged: safetensors, tokenizer and chat template in a folder; gguf: one "
                       "file (Llama-family models)", choices=EXPORT_FORMATS)
    outtype: str | None = knob(None, "merged: f16 (default), bf16 or f32; gguf: f16 (default), q8_0 (half "
                               "the size, near-lossless), q5_0, q4_0 (about a third and a quarter of f16) or "
                               "f32")
    out: str | None = knob(None, "where to write (default: exports/ in the run's folder)")
    force: bool = knob(False, "replace what is already at --out")
    check: bool = knob(True, "after writing, load the export back and answer the run's sample prompts "
                       "greedily: f32/f16 must give the adapter's text, lower precisions its first tokens "
                       "and an end-of-turn; the chat template must render as in training (--no-check skips)",
                       negatable=True)
    model: str | None = knob(None, "the base model (default: the one the run was trained on)")
