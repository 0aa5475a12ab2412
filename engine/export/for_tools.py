"""The export options that set a GGUF file up for a tool: ``--ollama`` (a Modelfile beside it),
``--ollama-create NAME`` (then ``ollama create``) and ``--lmstudio`` (into LM Studio's models
folder). Checked before the merge, so a template Ollama cannot be given fails in seconds."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import errors, names, protocol
from engine.core.job import Job
from engine.export import chat_families, lmstudio, ollama

log = logging.getLogger("engine.export")

# The recognised chat template and the Modelfile's SYSTEM text.
OllamaPlan = tuple[chat_families.Match, "str | None"]


@dataclass
class ToolOptions:
    ollama: bool = False
    ollama_name: str | None = None
    lmstudio_dir: Path | None = None

    @property
    def wants_gguf(self) -> bool:
        return self.ollama or self.lmstudio_dir is not None


def tool_options(args: argparse.Namespace) -> ToolOptions:
    # getattr: callers that build the namespace by hand (tests, older scripts) may leave these out.
    name = getattr(args, "ollama_create", None)
    if name is not None and not ollama.is_model_name(name):
        raise errors.usage(f"ollama-create: {name!r} is not an Ollama model name: letters, digits, '.', '_' "
                           "and '-', as in kettle-helper or me/kettle:v2")
    lmstudio_dir = None
    if getattr(args, "lmstudio", False) or getattr(args, "lmstudio_dir", None):
        if args.out:
            raise errors.usage("out: --lmstudio places the file in LM Studio's models folder; give --lmstudio-dir "
                               "instead of --out")
        given = getattr(args, "lmstudio_dir", None)
        lmstudio_dir = names.check_out_path(given, "--lmstudio-dir") if given else lmstudio.default_models_dir()
    return ToolOptions(bool(getattr(args, "ollama", False) or name), name, lmstudio_dir)


def ollama_plan(options: ToolOptions, tokenizer: Any, run_info: dict[str, Any]) -> OllamaPlan | None:
    """(the template's family, the SYSTEM text) when a Modelfile is wanted; EngineError when the
    chat template is none of the families Ollama can be given."""
    if not options.ollama:
        return None
    match = chat_families.recognise(tokenizer)
    log.info("Chat template recognised as %s; the Modelfile's TEMPLATE reproduces it", match.family.name)
    return match, ollama.system_prompt(run_info, match)


def finish(options: ToolOptions, plan: OllamaPlan | None, target: Path, run_name: str,
           job: Job) -> dict[str, Any]:
    """Writes the Modelfile and runs ``ollama create``; the result's extra fields."""
    out: dict[str, Any] = {}
    if options.lmstudio_dir is not None:
        out["lmstudio"] = {"models_dir": str(options.lmstudio_dir), "path": str(target)}
    if plan is None:
        return out
    modelfile = ollama.write_modelfile(target, *plan)
    log.info("Wrote %s (%s template, stop %s)", modelfile, plan[0].family.name, ", ".join(plan[0].stops))
    out["modelfile"] = str(modelfile)
    if options.ollama_name:
        def on_line(line: str) -> None:
            job.channel.send(protocol.progress(0, 0, unit="ollama", message=line))

        out["ollama"] = ollama.create(options.ollama_name, modelfile, on_line, job.control.cancelled.is_set)
    else:
        name = ollama.suggested_name(run_name)
        out["ollama"] = {"name": name, "created": False, "command": ollama.command_text(name, modelfile)}
        log.info("To add it to Ollama: %s, then: ollama run %s", out["ollama"]["command"], name)
    return out
