"""`generate`: one prompt through a base model, optionally with a LoRA adapter, tokens streamed.

The adapter can be named by its folder, its run folder or its run id. A run records the system
prompt its training data used; generating with that run's adapter uses the same system prompt
unless ``--system`` says otherwise, so the model is asked the way it was taught.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from engine.core import errors, protocol, workspace
from engine.core.job import Job
from engine.infer import sampling, structured
from engine.infer.decode import Decoder
from engine.runtime import device, model_files, models

log = logging.getLogger("engine.infer.generate")


def attention_for(device: str) -> str:
    """PyTorch's CPU flash-attention kernel is slow for one query token (most of the decode
    time of SmolLM2-135M in a profile); the plain implementation is faster there."""
    return "sdpa" if device == "cuda" else "eager"


def resolve_adapter(spec: str) -> tuple[Path, dict[str, Any]]:
    """(tuned folder, its run's run.json or {}) for an adapter folder, a run folder or a run id.
    The folder is a PEFT adapter, or a whole model when the run was a full fine-tune."""
    path = Path(spec).expanduser()
    if (path / "adapter_config.json").is_file():
        run = workspace.open_run(str(path.parent))
        return path, run.info() if run else {}
    run = workspace.open_run(spec)
    if run and (run.adapter / "adapter_config.json").is_file():
        return run.adapter, run.info()
    if run and (run.model / "config.json").is_file():
        return run.model, run.info()
    if run:
        raise errors.not_found(f"adapter: run {run.id} has no finished adapter or model yet")
    raise errors.not_found(f"adapter: {spec!r} is not an adapter folder, a run folder or a run id")


def base_for_adapter(adapter_dir: Path, model_spec: str | None) -> str:
    """The base model to load: the one asked for, else the one the adapter was trained on."""
    if model_spec:
        return model_spec
    config = model_files.check_json_config(adapter_dir / "adapter_config.json", "adapter")
    base = str(config.get("base_model_name_or_path") or "default")
    return base if Path(base).is_dir() else "default"


def resolve(model_spec: str | None, adapter_spec: str) -> tuple[str, Path | None, dict[str, Any]]:
    """(base model spec, PEFT adapter folder or None, the adapter's run.json or {}). A full
    fine-tune's folder is the base itself, with no adapter."""
    adapter_dir, run_info = resolve_adapter(adapter_spec) if adapter_spec else (None, {})
    if adapter_dir and not (adapter_dir / "adapter_config.json").is_file():
        model_spec, adapter_dir = str(adapter_dir), None  # a full fine-tune: the model itself
    if adapter_dir:  # headers checked before PEFT reads them (model_files.py)
        model_files.check_folder(adapter_dir, "adapter_config.json", "adapter")
    base = base_for_adapter(adapter_dir, model_spec) if adapter_dir else (model_spec or "default")
    return base, adapter_dir, run_info


def load(model_spec: str | None, adapter_spec: str, device_name: str,
         dtype: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """(model with the adapter attached, tokenizer, run.json); bf16 on a GPU that has it, fp32
    otherwise, unless ``dtype`` says."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter_dir, run_info = resolve(model_spec, adapter_spec)
    model_dir = models.prepare(base)
    # Runs save the tokenizer beside the adapter; an adapter folder from elsewhere may have none.
    has_tokenizer = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir if has_tokenizer else model_dir))
    if dtype is None:
        dtype = torch.bfloat16 if device_name == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype,
                                                 attn_implementation=attention_for(device_name)).to(device_name)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        log.info("Loaded adapter %s on %s", adapter_dir, model_dir.name)
    model.eval()
    return model, tokenizer, run_info


def build_prompt(tokenizer: Any, prompt: str, system: str | None, raw: bool) -> str:
    if raw or not tokenizer.chat_template:
        return prompt
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def cmd_generate(args: argparse.Namespace, job: Job) -> int:
    if args.max_new_tokens < 1:
        raise errors.usage("max_new_tokens: must be at least 1")
    if args.temperature < 0:
        raise errors.usage("temperature: must be 0 (greedy) or more")
    json_schema = structured.from_flag(args.json_schema)  # a bad schema fails before the model loads
    device_name = device.pick(args.device)
    model, tokenizer, run_info = load(args.model, args.adapter, device_name)
    system = args.system if args.system is not None else run_info.get("system_prompt")
    if system and args.system is None:
        log.info("Using the system prompt the adapter was trained with: %s", system)
    text = build_prompt(tokenizer, args.prompt, system, args.raw)
    ids = list(tokenizer(text, add_special_tokens=args.raw)["input_ids"])
    params = sampling.SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed,
                                     json_schema=json_schema)
    pieces: list[str] = []

    def on_token(event: Any) -> None:
        if event.text:
            pieces.append(event.text)
            job.channel.send(protocol.token(event.text, index=len(pieces) - 1))

    started = time.monotonic()
    outcome = Decoder(model, tokenizer, device_name).run(ids, params, cancelled=job.control.cancelled,
                                                         on_token=on_token)
    seconds = time.monotonic() - started
    job.channel.send(protocol.result({
        "text": outcome.text, "finish_reason": outcome.finish_reason, "tokens": outcome.completion_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(outcome.tokens_per_s, 2),
        "first_token_s": None if outcome.ttft_s is None else round(outcome.ttft_s, 3)}))
    return protocol.ExitCode.CANCELLED if job.control.cancelled.is_set() else protocol.ExitCode.OK
