"""`generate`: one prompt through a base model, optionally with a LoRA adapter, tokens streamed.

The adapter can be named by its folder, its run folder or its run id. A run records the system
prompt its training data used; generating with that run's adapter uses the same system prompt
unless ``--system`` says otherwise, so the model is asked the way it was taught.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from engine import device, errors, models, protocol, workspace

log = logging.getLogger("engine.generate")


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
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path") or "default"
    return base if Path(base).is_dir() else "default"


def load(model_spec: str | None, adapter_spec: str, device_name: str) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, run_info = resolve_adapter(adapter_spec) if adapter_spec else (None, {})
    if adapter_dir and not (adapter_dir / "adapter_config.json").is_file():
        model_spec, adapter_dir = str(adapter_dir), None  # a full fine-tune: the model itself
    base = base_for_adapter(adapter_dir, model_spec) if adapter_dir else (model_spec or "default")
    model_dir = models.prepare(base)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir or model_dir))
    dtype = torch.bfloat16 if device_name == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device_name)
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


def generation_kwargs(args: argparse.Namespace, tokenizer: Any, cancelled: threading.Event) -> dict[str, Any]:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnCancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return cancelled.is_set()

    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens,
                              "stopping_criteria": StoppingCriteriaList([StopOnCancel()]),
                              "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
    if args.temperature > 0:
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def make_streamer(tokenizer: Any) -> Any:
    """A streamer that yields text per token, not per word as transformers' TextIteratorStreamer
    does: the window shows each token as it comes. Text is held back only while the tokens so
    far end inside a multi-byte character (decoded as U+FFFD), at most a few tokens."""
    import queue

    from transformers.generation.streamers import BaseStreamer

    class TokenStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.ids: list[int] = []
            self.sent = ""
            self.prompt_seen = False
            self.pending = 0
            self.queue: queue.Queue[str | None] = queue.Queue()

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # the first call carries the prompt
                self.prompt_seen = True
                return
            self.ids.extend(int(i) for i in value.reshape(-1).tolist())
            text = tokenizer.decode(self.ids, skip_special_tokens=True)
            self.pending += 1
            if text.endswith("\ufffd") and self.pending < 4:
                return
            self.pending = 0
            if text.startswith(self.sent) and len(text) > len(self.sent):
                self.queue.put(text[len(self.sent):])
                self.sent = text

        def end(self) -> None:
            text = tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.startswith(self.sent) and len(text) > len(self.sent):
                self.queue.put(text[len(self.sent):])
            self.queue.put(None)

        def __iter__(self) -> Any:
            return iter(self.queue.get, None)

    return TokenStreamer()


def cmd_generate(args: argparse.Namespace, job: Any) -> int:
    import torch

    if args.max_new_tokens < 1:
        raise errors.usage("max_new_tokens: must be at least 1")
    if args.temperature < 0:
        raise errors.usage("temperature: must be 0 (greedy) or more")
    device_name = device.pick(args.device)
    model, tokenizer, run_info = load(args.model, args.adapter, device_name)
    system = args.system if args.system is not None else run_info.get("system_prompt")
    if system and args.system is None:
        log.info("Using the system prompt the adapter was trained with: %s", system)
    text = build_prompt(tokenizer, args.prompt, system, args.raw)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=args.raw).to(device_name)
    torch.manual_seed(args.seed)
    streamer = make_streamer(tokenizer)
    kwargs = generation_kwargs(args, tokenizer, job.control.cancelled)
    failure: list[BaseException] = []
    worker = threading.Thread(target=_generate, args=(model, inputs, streamer, kwargs, failure), daemon=True)
    started = time.monotonic()
    worker.start()
    pieces, first = _stream(streamer, job, started)
    worker.join()
    if failure:
        raise failure[0]
    seconds = time.monotonic() - started
    count = len(streamer.ids)
    job.channel.send(protocol.result({
        "text": "".join(pieces), "tokens": count, "seconds": round(seconds, 3),
        "tokens_per_s": round(count / seconds, 2) if seconds else 0.0,
        "first_token_s": round(first, 3) if first is not None else None}))
    return protocol.ExitCode.CANCELLED if job.control.cancelled.is_set() else protocol.ExitCode.OK


def _generate(model: Any, inputs: Any, streamer: Any, kwargs: dict[str, Any],
              failure: list[BaseException]) -> None:
    import torch

    try:
        with torch.inference_mode():
            model.generate(**inputs, streamer=streamer, **kwargs)
    except BaseException as exc:  # re-raised on the main thread, which owns error reporting
        failure.append(exc)
        streamer.end()  # otherwise the reader waits for tokens that never come


def _stream(streamer: Any, job: Any, started: float) -> tuple[list[str], float | None]:
    pieces: list[str] = []
    first: float | None = None
    for piece in streamer:
        if not piece:
            continue
        if first is None:
            first = time.monotonic() - started
        pieces.append(piece)
        job.channel.send(protocol.token(piece, index=len(pieces) - 1))
    return pieces, first
