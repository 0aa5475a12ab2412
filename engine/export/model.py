"""`export`: a run's tuned model as files other tools load, with the adapter merged into the
base weights: a Hugging Face folder (safetensors, tokenizer, chat template) for transformers and
vLLM, or one GGUF file for llama.cpp, LM Studio and Ollama. ``--format gguf-lora`` writes the
adapter alone as a GGUF LoRA file instead, for llama.cpp's ``--lora`` over the base model's GGUF.

The merge happens on the CPU (peft's ``merge_and_unload``), so it works on any machine that can
hold the base: in fp32 for a base stored in fp32, else in bf16 (``merge_dtype``); the result is
then cast to the output type. Both outputs appear
only when complete: the folder is filled beside its final name and renamed, the GGUF file is
written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from engine.core import errors, names, protocol, workspace
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.export import for_tools, history, kquants, lmstudio, readback, roundtrip
from engine.infer import generate
from engine.runtime import gguf_lora, models
from engine.runtime import gguf_writer as export_gguf

log = logging.getLogger("engine.export")

MERGED_TYPES = ("f16", "bf16", "f32")
GGUF_LORA = "gguf-lora"  # the adapter alone, for llama.cpp's --lora
GGUF_TYPES = (*export_gguf.OUTTYPES, *kquants.FTYPES)
Progress = Callable[[int, int], None]
INFO_FILE = "tunebench-export.json"


class Cancelled(Exception):
    """The user asked to stop; whatever was half-written is removed."""


def cmd_export(args: argparse.Namespace, job: Job) -> int:
    tools = for_tools.tool_options(args)
    if tools.wants_gguf and args.format == GGUF_LORA:
        raise errors.usage("format: --ollama and --lmstudio take the whole model; drop --format gguf-lora")
    if tools.wants_gguf and args.format != "gguf":  # Ollama and LM Studio load GGUF files only
        log.info("Writing GGUF, not %s: Ollama and LM Studio load GGUF files only", args.format)
        args.format = "gguf"
    outtype = args.outtype or "f16"
    allowed = {"merged": MERGED_TYPES, GGUF_LORA: gguf_lora.OUTTYPES}.get(args.format, GGUF_TYPES)
    if outtype not in allowed:
        raise errors.usage(f"outtype: {args.format} export writes {', '.join(allowed)}, not {outtype!r}")
    if outtype in kquants.FTYPES:
        kquants.check_available(outtype)  # before minutes of loading and merging
    try:
        base, adapter_dir, run_info = generate.resolve(args.model, args.run)
    except EngineError as exc:  # the shared resolver names its field "adapter"; here it is "run"
        raise EngineError(exc.code, exc.message.replace("adapter: ", "run: ", 1)) from None
    source = adapter_dir or Path(base)
    run_name = run_info.get("name") or source.parent.name
    if tools.lmstudio_dir is not None:
        target = lmstudio.target(tools.lmstudio_dir, run_name, outtype)
    else:
        target = names.check_out_path(args.out, "--out") if args.out else default_target(source, args.format, outtype)
    check_target(target, args.format, args.force)
    started = time.monotonic()
    model, tokenizer, _ = generate.load(args.model, args.run, "cpu", dtype=merge_dtype(base))
    # Before the merge: a chat template Ollama cannot be given fails now, not after minutes of writing.
    ollama_plan = for_tools.ollama_plan(tools, tokenizer, run_info)
    if args.format == GGUF_LORA:
        gguf_lora.pairs(model)  # a run llama.cpp's LoRA files cannot hold fails now, in one line
    prompts = roundtrip.conversations(source.parent if adapter_dir else None, run_info) if args.check else []
    expected = roundtrip.answers(model, tokenizer, prompts) if prompts else []
    if args.format != GGUF_LORA:
        model = merged(model)
    try:
        if args.format == "merged":
            write_merged(model, tokenizer, target, outtype, describe(base, source, outtype))
        elif args.format == GGUF_LORA:
            write_file(target, job, lambda path, progress: gguf_lora.write(model, path, outtype, run_name, progress))
        else:
            write_gguf(model, tokenizer, target, outtype, run_name, models.gguf_origin(base), job)
    except Cancelled:
        log.info("Export cancelled; nothing was written to %s", target)
        return protocol.ExitCode.CANCELLED
    except OSError as exc:  # a full disk, a folder taken away meanwhile: nothing half-written stays
        problem = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise EngineError(protocol.ExitCode.FAILED, f"out: could not write {target}: {problem}; nothing was "
                          "left half-written") from None
    seconds = time.monotonic() - started
    size = _size(target)
    log.info("Exported %s (%s, %s, %.0f MB) in %.0f s", target, args.format, outtype, size / 1e6, seconds)
    if args.format == GGUF_LORA:
        extra_info = lora_usage(target, base)
        loader = functools.partial(readback.lora_file, model, target, base, outtype)
    else:
        extra_info = {}
        del model  # the check loads the export itself; the merged copy is no longer needed
        read = readback.gguf_file if args.format == "gguf" else readback.merged_folder
        loader = functools.partial(read, target, outtype)
    report = check_export(target, loader, prompts, expected, tokenizer, job) if prompts else None
    passed = report is None or report.passed
    # Only a file that passed its check gets a Modelfile or goes into Ollama.
    extra = for_tools.finish(tools, ollama_plan, target, run_name, job) if passed else {}
    job.channel.send(protocol.artifact("export", str(target), format=args.format, outtype=outtype))
    result = {"path": str(target), "format": args.format, "outtype": outtype, "bytes": size,
              "seconds": round(seconds, 1), "roundtrip": report.as_dict() if report else None, **extra_info}
    history.record(source.parent, result)  # the Runs page shows each export's check
    job.channel.send(protocol.result({**result, **extra}))
    if report and not report.passed:
        raise EngineError(protocol.ExitCode.FAILED, f"export: {target} was written, but its round-trip check "
                          f"failed: {report.cause}")
    return protocol.ExitCode.OK


def check_export(target: Path, loader: Callable[[], readback.Readback], prompts: list[list[dict[str, str]]],
                 expected: list[roundtrip.Answer], tokenizer: Any, job: Job) -> roundtrip.Report:
    """Loads the export back as another tool would (``loader``, readback.py) and compares its
    greedy answers (roundtrip.py)."""
    job.channel.send(protocol.progress(0, len(prompts), unit="prompts"))
    log.info("Round-trip check: loading %s back and answering %d sample prompts", target.name, len(prompts))
    back = loader()
    report = roundtrip.check(prompts, expected, tokenizer, back.tokenizer, back.answer, back.exact, back.loader)
    if report.passed:
        log.info("Round-trip check passed with %s: %d prompts, %s", back.loader, report.prompts, report.rule)
    else:
        for item in report.differing:
            log.warning("Round-trip: %r: %s", item["prompt"][:60], item["why"])
    return report


def lora_usage(target: Path, base: str) -> dict[str, Any]:
    """The base GGUF the adapter goes with, when the base came from one, and the command line."""
    origin = models.gguf_origin(base)
    base_file = str(origin) if origin else "BASE.gguf"
    command = f'llama-cli -m "{base_file}" --lora "{target}"'
    log.info("To use it with llama.cpp: %s%s", command,
             "" if origin else " (BASE.gguf: the base model as GGUF, e.g. from llama.cpp's convert_hf_to_gguf.py)")
    return {"base_gguf": str(origin) if origin else None, "llama_cpp_command": command}


def check_target(target: Path, fmt: str, force: bool) -> None:
    """Refuses to overwrite without --force, and even with it never replaces a folder that is
    not an earlier export (a mistyped --out must not delete someone's folder)."""
    if not target.exists():
        try:  # fail now, not after loading the model
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.invalid_input(f"out: cannot create {target.parent}: {exc.strerror or exc}")
        return
    if not force:
        raise errors.invalid_input(f"out: {target} already exists (add --force to replace it)")
    if fmt == "merged" and not (target / INFO_FILE).is_file():
        raise errors.invalid_input(f"out: {target} exists and is not an earlier Tunebench export; "
                                   "choose a new folder name")
    if fmt != "merged" and not target.is_file():
        raise errors.invalid_input(f"out: {target} is a folder; give the GGUF file's name")


def merge_dtype(base: str) -> Any:
    """fp32 for a base stored in fp32 (small models, converted GGUF files): the merge is exact.
    A base stored in bf16/fp16 (most 1B+ checkpoints) is merged in bf16, half the memory: a
    7B model needs about 14 GB instead of 28."""
    import torch
    from transformers import AutoConfig

    stored = getattr(AutoConfig.from_pretrained(str(models.prepare(base))), "dtype", None)
    return torch.float32 if stored in (None, torch.float32, "float32") else torch.bfloat16


def default_target(source: Path, fmt: str, outtype: str) -> Path:
    """``exports/`` in the run's folder: ``<run id>-<type>`` (a folder) or ``<run id>-<type>.gguf``."""
    run_folder = source.parent
    stem = f"{run_folder.name}-{outtype}"
    names_by_format = {"gguf": f"{stem}.gguf", GGUF_LORA: f"{stem}-lora.gguf", "merged": f"{stem}-merged"}
    return run_folder / "exports" / names_by_format[fmt]


def merged(model: Any) -> Any:
    """The base with the adapter's updates added into its weights; a full fine-tune as it is."""
    configs = getattr(model, "peft_config", None)
    if configs is None:
        return model
    if any(getattr(config, "is_prompt_learning", False) for config in configs.values()):
        raise errors.invalid_input(
            "run: prompt and prefix tuning learn virtual tokens, not weight changes, so there is nothing to "
            "merge; use the adapter folder with Tunebench or PEFT")
    return model.merge_and_unload()


def describe(base: str, source: Path, outtype: str) -> dict[str, Any]:
    return {"base_model": base, "tuned": str(source), "outtype": outtype,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_merged(model: Any, tokenizer: Any, target: Path, outtype: str, info: dict[str, Any]) -> None:
    import torch

    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    with workspace.atomic_folder(target, replace=True) as tmp:
        model.to(dtypes[outtype]).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        workspace.atomic_write_json(tmp / INFO_FILE, info)


def write_gguf(model: Any, tokenizer: Any, target: Path, outtype: str, name: str,
               origin: Path | None, job: Job) -> None:
    def write(path: Path, progress: Progress) -> None:
        with tempfile.TemporaryDirectory(prefix="tunebench-tokenizer-") as folder:
            tokenizer.save_pretrained(folder)
            if outtype not in kquants.FTYPES:
                export_gguf.write(model, Path(folder), path, outtype, name, origin, progress)
                return
            staged = path.with_name(f"{path.name}.f16")  # llama.cpp quantises from F16
            try:
                export_gguf.write(model, Path(folder), staged, "f16", name, origin, progress)
                kquants.quantize(staged, path, outtype)
            finally:
                staged.unlink(missing_ok=True)

    write_file(target, job, write)


def write_file(target: Path, job: Job, write: Callable[[Path, Progress], None]) -> None:
    """Runs ``write(path, progress)`` into a temporary name beside ``target`` and renames it
    when complete; a cancel between tensors leaves nothing behind."""
    def progress(done: int, total: int) -> None:
        if job.control.cancelled.is_set():
            raise Cancelled()
        job.channel.send(protocol.progress(done, total, unit="tensors"))

    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        write(partial, progress)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
