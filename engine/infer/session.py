"""`tunebench-engine session`: a long-lived engine that keeps models loaded for the playground.

The protocol is in engine/core/protocol.py (overview in docs/architecture.md, 'The protocol'):
requests (``generate``, ``unload``, ``shutdown``) arrive on stdin one JSON object per line and
run one at a time in arrival order; ``cancel`` and ``ping`` are handled at once by the reader
thread, even while a generation runs. A failed request answers an ``error`` with its ``id`` and
the session goes on.

Models stay loaded in a :class:`ModelPool`; adapters are attached to their base by name with
peft, so switching adapters, or running the base with adapters disabled, never reloads it.
On CPU the bases hold weight-only int8 Linear layers by default (engine.infer.decode: about 1.7x
the fp32 decode speed, fp32's greedy token ~96% of the time); adapters attach on top of them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import queue
import signal
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from engine.core import errors, protocol
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.infer import generate, gguf_backend, remote, sampling
from engine.infer.decode import Decoder
from engine.infer.generate import attention_for
from engine.infer.int8 import int8_supported, quantize_weights_int8
from engine.runtime import device, models

log = logging.getLogger("engine.infer.session")

MAX_TOP_LOGPROBS = 5
MAX_ADAPTER_SCALE = 4.0
Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- loaded models


@dataclass
class LoadedBase:
    """A base model in memory with the adapters attached to it by name."""

    key: str
    model: Any
    tokenizer: Any
    decoder: Any
    nbytes: int
    adapters: dict[str, str] = field(default_factory=dict)  # adapter folder -> peft name
    tokenizers: dict[str, Any] = field(default_factory=dict)  # adapter folder -> its tokenizer
    weights: str = "fp32"  # how the base's Linear weights are held: "int8", "fp32" or "bf16"
    backend: str = gguf_backend.TRANSFORMERS

    def close(self) -> None:
        """Nothing to free by hand: the garbage collector takes the model."""


@dataclass
class Target:
    """What one request runs on: a loaded base, and the adapter to enable ("" = none)."""

    base: Any  # a LoadedBase (transformers) or an engine.infer.gguf_backend.GgufBase (llama.cpp)
    adapter_dir: str
    adapter_name: str
    label: str
    # The system prompt the adapter's run trained with (run.json), or None: prompts that bring no
    # system turn of their own get it, as `generate --adapter` does, so the adapter sees what it
    # learned from.
    trained_system_prompt: str | None = None
    adapter_scale: float = 1.0  # the adapter's weight: 0 = off, 1 = as trained

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizers.get(self.adapter_dir, self.base.tokenizer)

    @property
    def backend(self) -> str:
        return str(self.base.backend)


class ModelPool:
    """Loaded bases, least recently used first; evicts before a load would exceed memory."""

    def __init__(self, device: str, max_models: int = 0, int8: bool = False, backend: str = gguf_backend.AUTO,
                 threads: int = 0, context: int = gguf_backend.DEFAULT_CONTEXT) -> None:

        self.device = device
        self.max_models = max_models
        self.backend = backend
        self.threads = threads
        self.context = context
        self.int8 = int8 and device == "cpu" and int8_supported()
        if int8 and device == "cpu" and not self.int8:
            log.warning("This torch has no CPU int8-weight matmul; decoding with fp32 weights")
        self._bases: OrderedDict[str, LoadedBase] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bases)

    def unload(self) -> None:
        for base in self._bases.values():
            base.close()
        self._bases.clear()
        _free_memory()

    def target(self, model_spec: str, adapter_spec: str, progress: Progress, backend: str = "",
               adapter_scale: float = 1.0) -> Target:
        """What a request runs on. ``backend`` overrides the pool's (auto, llama.cpp, transformers)."""
        if adapter_spec and gguf_backend.is_lora_file(adapter_spec):
            return self._lora_file_target(model_spec, Path(adapter_spec).expanduser(), progress,
                                          backend or self.backend, adapter_scale)
        adapter_dir, run_info = generate.resolve_adapter(adapter_spec) if adapter_spec else (None, {})
        if adapter_dir and not (adapter_dir / "adapter_config.json").is_file():
            model_spec, adapter_dir = str(adapter_dir), None  # a full fine-tune: a model itself
        spec = (generate.base_for_adapter(adapter_dir, model_spec or None) if adapter_dir
                else (model_spec or "default"))
        gguf_file = models.gguf_origin(spec)
        bundled = gguf_file is not None and models.is_bundled(gguf_file)
        chosen = gguf_backend.choose(backend or self.backend, gguf_file, self.device, bundled, adapter_dir)
        if chosen == gguf_backend.LLAMA_CPP:
            assert gguf_file is not None  # choose() takes llama.cpp only for a GGUF model
            base: Any = self._base(gguf_file, progress, self._load_gguf)
            label = gguf_file.stem
        else:
            model_dir = models.prepare(spec)
            base = self._base(model_dir, progress, self._load_transformers)
            label = Path(model_dir).name
        if not adapter_dir:
            return Target(base, "", "", label)
        if base.backend == gguf_backend.LLAMA_CPP:
            name = base.attach(adapter_dir)
        else:
            name = self._attach(base, adapter_dir)
        system = run_info.get("system_prompt")
        return Target(base, str(adapter_dir), name, f"{label} + {run_info.get('id') or adapter_dir.name}",
                      system if isinstance(system, str) and system else None, adapter_scale)

    def _lora_file_target(self, model_spec: str, lora_file: Path, progress: Progress, backend: str,
                          adapter_scale: float) -> Target:
        """A GGUF LoRA file (from an export, or LM Studio's): llama.cpp only, over a GGUF base,
        the bundled model included."""
        problem = gguf_backend.lora_file_problem(lora_file)
        if problem:
            raise errors.invalid_input(f"adapter: {lora_file.name} is {problem}")
        if backend == gguf_backend.TRANSFORMERS:
            raise errors.usage("backend: a GGUF LoRA file runs in llama.cpp; pick Auto or llama.cpp, or its "
                               "peft folder for transformers")
        gguf_file = models.gguf_origin(model_spec or "default")
        gguf_backend.choose(gguf_backend.LLAMA_CPP, gguf_file, self.device)  # the one-line reason it cannot
        assert gguf_file is not None  # choose() refuses llama.cpp without a GGUF file
        base = self._base(gguf_file, progress, self._load_gguf)
        return Target(base, str(lora_file), base.attach(lora_file), f"{gguf_file.stem} + {lora_file.stem}",
                      None, adapter_scale)

    def _load_transformers(self, source: Path) -> LoadedBase:
        return _load_base(str(source.resolve()), source, self.device, self.int8)

    def _load_gguf(self, source: Path) -> Any:
        return gguf_backend.load(source, self.device, self.threads, self.context)

    def _base(self, source: Path, progress: Progress, loader: Callable[[Path], Any]) -> Any:
        key = f"{loader.__name__}:{Path(source).resolve()}"
        if key in self._bases:
            self._bases.move_to_end(key)
            return self._bases[key]
        self._make_room(source.stat().st_size if source.is_file() else _folder_bytes(source))
        progress(0, 2)
        base = loader(source)
        progress(1, 2)
        self._bases[key] = base
        log.info("Loaded %s with %s (%.0f MB, %s weights); %d model(s) in memory", source.name, base.backend,
                 base.nbytes / 2**20, base.weights, len(self))
        return base

    def _attach(self, base: LoadedBase, adapter_dir: Path) -> str:
        """Attaches an adapter by name (once); later requests only switch to it."""
        from peft import PeftModel

        key = str(adapter_dir.resolve())
        if key in base.adapters:
            return base.adapters[key]
        name = f"adapter{len(base.adapters)}"
        if isinstance(base.model, PeftModel):
            base.model.load_adapter(key, adapter_name=name)
        else:
            base.model = PeftModel.from_pretrained(base.model, key, adapter_name=name)
            base.decoder.model = base.model
        base.model.eval()
        base.adapters[key] = name
        if (adapter_dir / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            base.tokenizers[key] = AutoTokenizer.from_pretrained(key)
        log.info("Attached adapter %s as %s", adapter_dir, name)
        return name

    def _make_room(self, needed: int) -> None:
        limit = self.max_models or _models_that_fit(needed, self.device)
        while self._bases and (len(self._bases) >= limit or _available_bytes(self.device) < 1.5 * needed):
            key, evicted = self._bases.popitem(last=False)
            evicted.close()
            log.info("Unloaded %s to make room", Path(key).name)
            _free_memory()


def _load_base(key: str, model_dir: Path, device: str, int8: bool = False) -> LoadedBase:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer


    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype,
                                                 attn_implementation=attention_for(device)).to(device)
    model.eval()
    weights = str(dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
    if int8:
        # Decoding at batch 1 on a CPU is bound by reading the weights: int8 reads a quarter.
        model = quantize_weights_int8(model)
        weights = "int8"
    nbytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return LoadedBase(key, model, tokenizer, Decoder(model, tokenizer, device), nbytes, weights=weights)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) or \
        sum(f.stat().st_size for f in Path(folder).glob("*.bin"))


def _available_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def _models_that_fit(size: int, device: str) -> int:
    """How many bases of about ``size`` bytes to keep: those that fit in half the memory
    available now plus what loaded bases already use, at least one and at most four."""
    return max(1, min(4, int(_available_bytes(device) * 0.5 // max(size, 1))))


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# ---------------------------------------------------------------- requests


@dataclass
class Request:
    id: str
    model: str
    adapter: str
    mode: str
    messages: list[dict[str, str]]
    prompt: str
    params: sampling.SamplingParams
    top_logprobs: int
    server: remote.Server | None = None  # an OpenAI-compatible server instead of a local model
    backend: str = ""  # "" = the session's (auto by default), or auto, llama.cpp, transformers
    adapter_scale: float = 1.0


def parse_request(message: dict[str, Any]) -> Request:
    """A ``generate`` message as a Request, or a USAGE EngineError naming the bad field."""
    rid = message.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
        raise errors.usage("id: every generate request needs an id (a string)")
    mode = message.get("mode", "chat")
    if mode not in ("chat", "raw"):
        raise errors.usage(f"mode: must be 'chat' or 'raw', got {mode!r}")
    model = _string(message, "model", "default")
    adapter = _string(message, "adapter", "")
    messages = _messages(message.get("messages")) if mode == "chat" else []
    prompt = _string(message, "prompt", "") if mode == "raw" else ""
    top = message.get("top_logprobs", 0) or 0
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise errors.usage(f"top_logprobs: must be a whole number from 0 to {MAX_TOP_LOGPROBS}")
    server = remote.server_of(message["remote"]) if message.get("remote") is not None else None
    return Request(str(rid), model, adapter, mode, messages, prompt, sampling.parse(message.get("params")),
                   top, server, backend_of(_string(message, "backend", "")),
                   adapter_scale_of(message.get("adapter_scale", 1.0)))


def backend_of(backend: str) -> str:
    """A request's or batch configuration's backend override, checked ("" keeps the pool's)."""
    if backend and backend not in gguf_backend.BACKENDS:
        raise errors.usage(f"backend: must be one of {', '.join(gguf_backend.BACKENDS)}, got {backend!r}")
    return backend


def adapter_scale_of(value: Any) -> float:
    """An adapter's weight from a request or configuration, checked (absent: as trained)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_ADAPTER_SCALE:
        raise errors.usage(f"adapter_scale: must be a number from 0 to {MAX_ADAPTER_SCALE}")
    return float(value)


def _string(message: dict[str, Any], name: str, default: str) -> str:
    value = message.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.usage(f"{name}: must be a string")
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise errors.usage("messages: chat mode needs a non-empty list of {role, content}")
    out = []
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant") \
                or not isinstance(item.get("content"), str):
            raise errors.usage(f"messages[{number}]: needs role system|user|assistant and a string content")
        out.append({"role": item["role"], "content": item["content"]})
    return out


def prompt_ids(tokenizer: Any, mode: str, messages: list[dict[str, str]], prompt: str) -> list[int]:
    """Token ids of the prompt: the chat template over the whole history, or the raw text.
    A history ending with an assistant message is continued rather than answered anew."""
    if mode == "raw":
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not tokenizer.chat_template:
        raise errors.usage("mode: this model has no chat template; use raw mode")
    continuing = messages[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not continuing,
                                         continue_final_message=continuing)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- the session


class Session:
    def __init__(self, job: Job, pool: ModelPool, remote_timeout_s: float = remote.DEFAULT_TIMEOUT_S) -> None:
        self.job = job
        self.pool = pool
        self.remote_timeout_s = remote_timeout_s
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}  # id -> cancel flag, queued or running

    # -- the reader thread: cancel and ping at once, the rest queued in order
    def read(self, lines: Any) -> None:
        for line in protocol.read_lines(lines):
            try:
                message = protocol.decode(line)
            except protocol.ProtocolError as exc:
                log.warning("ignored a line on stdin: %s", exc)
                continue
            self.accept(message)
        self.requests.put(None)  # end of input ends the session

    def accept(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == protocol.CANCEL:
            self.cancel(message.get("id"))
        elif kind == protocol.PING:
            self.job.channel.send(protocol.make(protocol.PONG, id=message.get("id")))
        elif kind in (protocol.GENERATE, protocol.MODELS, protocol.UNLOAD, protocol.SHUTDOWN):
            if kind in (protocol.GENERATE, protocol.MODELS) and message.get("id") is not None:
                with self._lock:
                    self._flags.setdefault(str(message["id"]), threading.Event())
            self.requests.put(message)
        else:
            log.warning("ignored a %s message: a session takes generate, models, cancel, unload, ping, "
                        "shutdown", kind)

    def cancel(self, rid: Any = None) -> None:
        with self._lock:
            flags = list(self._flags.values()) if rid is None else [self._flags.get(str(rid))]
        for flag in flags:
            if flag is not None:
                flag.set()

    # -- the main loop: one request at a time
    def serve(self) -> int:
        while True:
            message = self.requests.get()
            if message is None or message["type"] == protocol.SHUTDOWN:
                return protocol.ExitCode.OK
            if message["type"] == protocol.UNLOAD:
                self.pool.unload()
                log.info("Unloaded every model")
                continue
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        rid = str(message.get("id")) if message.get("id") is not None else None
        try:
            if message["type"] == protocol.MODELS:
                self.list_models(rid, message.get("remote"))
            else:
                self.generate(parse_request(message))
        except EngineError as exc:
            self.job.channel.send(protocol.error(exc.code, exc.message, id=rid))
        except Exception as exc:  # a bug or OOM: this request fails, the session goes on
            if type(exc).__name__ == "OutOfMemoryError":
                self.pool.unload()
                self.job.channel.send(protocol.error(protocol.ExitCode.OUT_OF_MEMORY,
                                                     "out of memory: models were unloaded; try a smaller "
                                                     "model or fewer max_new_tokens", id=rid))
            else:
                log.exception("request %s failed", rid)
                self.job.channel.send(protocol.error(protocol.ExitCode.FAILED,
                                                     f"internal error: {type(exc).__name__}: {exc}", id=rid))
        finally:
            with self._lock:
                self._flags.pop(rid or "", None)

    def generate(self, request: Request) -> None:
        with self._lock:
            flag = self._flags.setdefault(request.id, threading.Event())
        channel = self.job.channel
        if flag.is_set():  # cancelled while queued: nothing to load or run
            channel.send(result_message(request, None, None))
            return

        if request.server is not None:
            self.generate_remote(request, replace(request.server, timeout_s=self.remote_timeout_s), flag)
            return

        def on_progress(current: int, total: int) -> None:
            channel.send(protocol.progress(current, total, id=request.id, stage="loading model"))

        target = self.pool.target(request.model, request.adapter, on_progress, request.backend,
                                  request.adapter_scale)
        ids = prompt_ids(target.tokenizer, request.mode, request.messages, request.prompt)
        outcome = run_on(target, ids, request.params, request.top_logprobs, flag,
                         lambda event: channel.send(token_message(request.id, event, request.top_logprobs)))
        channel.send(result_message(request, target, outcome))

    def generate_remote(self, request: Request, server: remote.Server, flag: threading.Event) -> None:
        """Streams from an OpenAI-compatible server: pieces of text as tokens without logprobs
        (servers differ in whether and how they send them)."""
        channel = self.job.channel
        index = iter(range(1 << 30))

        def on_text(text: str) -> None:
            channel.send(protocol.token(text, id=request.id, index=next(index), logprob=None))

        outcome = remote.generate(server, request.model, request.mode, request.messages, request.prompt,
                                  request.params, flag, on_text)
        data = {"id": request.id, **outcome.as_dict(), "model": request.model, "adapter": "",
                "base_url": server.base_url}
        channel.send(protocol.make(protocol.RESULT, id=request.id, data=data))

    def list_models(self, rid: str | None, fields: Any) -> None:
        server = replace(remote.server_of(fields), timeout_s=self.remote_timeout_s)
        data = {"id": rid, "base_url": server.base_url, "models": remote.list_models(server)}
        self.job.channel.send(protocol.make(protocol.RESULT, id=rid, data=data))


def run_on(target: Target, ids: list[int], params: sampling.SamplingParams, top_logprobs: int,
           cancelled: threading.Event, on_token: Callable[[Any], None] | None) -> Any:
    """Runs the decoder on ``target`` with its adapter enabled at its scale, or all adapters disabled."""
    if target.backend == gguf_backend.LLAMA_CPP:
        return _run_on_llama_cpp(target, ids, params, top_logprobs, cancelled, on_token)
    model = target.base.model
    decoder = target.base.decoder
    decoder.tokenizer = target.tokenizer
    if target.adapter_name:
        model.set_adapter(target.adapter_name)
        context: Any = _scaled(model, target.adapter_scale)
    else:
        context = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with context:
        # The cached keys hold the adapter's contribution at its scale: another scale is another cache.
        return decoder.run(ids, params, top_logprobs=top_logprobs, cancelled=cancelled,
                           cache_key=(target.adapter_name, target.adapter_scale) if target.adapter_name else None,
                           on_token=on_token)


def _scaled(model: Any, scale: float) -> Any:
    if scale == 1.0:
        return contextlib.nullcontext()
    from peft.helpers import rescale_adapter_scale

    return rescale_adapter_scale(model, scale)


def _run_on_llama_cpp(target: Target, ids: list[int], params: sampling.SamplingParams, top_logprobs: int,
                      cancelled: threading.Event, on_token: Callable[[Any], None] | None) -> Any:
    pointer = target.base.adapters[target.adapter_name] if target.adapter_name else None
    return target.base.decoder.run(ids, params, top_logprobs=top_logprobs, cancelled=cancelled,
                                   cache_key=target.adapter_name or None, on_token=on_token,
                                   adapter=pointer, adapter_scale=target.adapter_scale)


def result_message(request: Request, target: Target | None, outcome: Any) -> dict[str, Any]:
    """The request's result; without an outcome it was cancelled before it ran."""
    data = outcome.as_dict() if outcome else {
        "text": "", "finish_reason": "cancelled", "prompt_tokens": 0, "completion_tokens": 0,
        "ttft_s": None, "tokens_per_s": 0.0}
    data = {"id": request.id, **data, "model": target.label if target else request.model,
            "adapter": request.adapter}
    if target:
        data["weights"] = target.base.weights
        data["backend"] = target.backend
    elif request.server:
        data["backend"] = remote.BACKEND
    return protocol.make(protocol.RESULT, id=request.id, data=data)


def token_message(rid: str, event: Any, top_logprobs: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": rid, "index": event.index, "logprob": event.logprob}
    if top_logprobs:
        fields["top"] = [[text, prob] for text, prob in event.top]
    return protocol.token(event.text, **fields)


def set_threads(threads: int) -> None:
    """0 leaves torch's choice (one per core). On a CPU shared with other busy processes one
    thread decodes faster: small per-token operations otherwise wait on a descheduled peer."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def cmd_session(args: argparse.Namespace, job: Job) -> int:
    """Reads requests from stdin until it closes or ``shutdown`` arrives."""

    set_threads(args.threads)
    pool = ModelPool(device.pick(args.device), max_models=args.max_models, int8=args.int8, backend=args.backend,
                     threads=args.threads, context=args.context)
    session = Session(job, pool, args.remote_timeout)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: session.cancel())
    threading.Thread(target=session.read, args=(sys.stdin,), name="session-input", daemon=True).start()
    log.info("Session ready on %s; waiting for requests", pool.device)
    return session.serve()
