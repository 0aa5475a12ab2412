"""Options of `export`: a run's tuned model, merged, as a folder or one GGUF file, optionally
set up for Ollama (a Modelfile, `ollama create`) or LM Studio (its models folder)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob

EXPORT_FORMATS = ("merged", "gguf", "gguf-lora")


@dataclass
class ExportOptions:
    run: str = knob("", "a run id, a run folder or an adapter folder", positional=True)
    format: str = knob("merged", "merged: safetensors, tokenizer and chat template in a folder; gguf: one "
                       "file (Llama-family models); gguf-lora: the LoRA adapter alone as a GGUF file, for "
                       "llama.cpp's --lora over the base model's GGUF", choices=EXPORT_FORMATS)
    outtype: str | None = knob(None, "merged: f16 (default), bf16 or f32; gguf: f16 (default), q8_0 (half "
                               "the size, near-lossless), q5_0, q4_0 (about a third and a quarter of f16), f32, "
                               "or the K-quants q6_k, q5_k_m, q4_k_m (llama.cpp's quantizer: needs "
                               "llama-cpp-python); gguf-lora: f16 (default), q8_0 or f32")
    out: str | None = knob(None, "where to write (default: exports/ in the run's folder)")
    force: bool = knob(False, "replace what is already at --out")
    check: bool = knob(True, "after writing, load the export back (in llama.cpp where llama-cpp-python is "
                       "installed) and answer the run's sample prompts greedily: f32, and f16 read by "
                       "transformers, must give the adapter's text, the rest its first tokens and an "
                       "end-of-turn; the chat template must render as in training (--no-check skips)",
                       negatable=True)
    model: str | None = knob(None, "the base model (default: the one the run was trained on)")
    ollama: bool = knob(False, "also write FILE.Modelfile beside FILE.gguf for `ollama create`: FROM, the "
                        "chat template as an Ollama TEMPLATE, PARAMETER stop for the end-of-turn token and "
                        "the run's SYSTEM prompt (ChatML, Llama 3, Mistral, Gemma and Phi-3 templates); "
                        "implies --format gguf", group="Ollama and LM Studio")
    ollama_create: str | None = knob(None, "then run `ollama create NAME -f FILE.Modelfile` when ollama "
                                     "is installed, else give that command; implies --ollama",
                                     metavar="NAME", group="Ollama and LM Studio")
    lmstudio: bool = knob(False, "write the GGUF file into LM Studio's models folder, as tunebench/RUN NAME/"
                          "RUN NAME-TYPE.gguf (the chat template is in its metadata); implies --format gguf",
                          group="Ollama and LM Studio")
    lmstudio_dir: str | None = knob(None, "LM Studio's models folder (default: .lmstudio/models in the home "
                                    "folder); implies --lmstudio", metavar="DIR", group="Ollama and LM Studio")
