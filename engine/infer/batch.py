"""`tunebench-engine batch`: a prompt suite, or a column of a CSV/JSONL file, over configurations.

Every prompt (× case) runs under every configuration (model × adapter × sampling parameters),
configuration by configuration so each base loads once. Rows stream as ``progress`` messages
(with the row) and are appended to ``results.jsonl`` in the batch folder as they finish; at the
end (or on cancel, for the rows done) the folder also gets ``results.csv`` and ``results.md``.

A batch folder: ``<workspace>/batches/<id>/`` with ``batch.json`` (status, source,
configurations, counts), ``results.jsonl``, ``results.csv``, ``results.md``.

A configuration file is JSON (a list, or {"configs": [...]}) or TOML ([[config]] tables)::

    [[config]]
    name = "base"
    model = "default"
    [[config]]
    name = "tuned, cooler"
    adapter = "20261123-101500-reviews-ab12"
    params = {temperature = 0.2, max_new_tokens = 64}
    [[config]]
    name = "GGUF, adapter at half weight"
    model = "~/models/qwen2.5-1.5b-q4_k_m.gguf"
    adapter = "20261123-101500-reviews-ab12"
    backend = "llama.cpp"                     # or auto (the default), transformers
    adapter_scale = 0.5                       # 0 = adapter off, 1 = as trained, up to 4
    [[config]]
    name = "llama3 in Ollama"
    base_url = "http://127.0.0.1:11434/v1"   # an OpenAI-compatible server (engine/infer/remote.py)
    model = "llama3.2"                        # the server's model id
    api_key_env = "OLLAMA_KEY"                # optional: the environment variable holding its key

Structured output: ``params.json_schema`` ("any", or a JSON Schema as text) in a configuration,
or ``--json-schema any|FILE`` for the flags' one; answers then always parse and follow it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.core import errors, paths, protocol, untrusted, workspace
from engine.core.job import Job
from engine.infer import gguf_backend, remote, sampling, structured
from engine.infer import suites as prompt_suites
from engine.infer.session import ModelPool, adapter_scale_of, backend_of, prompt_ids, run_on
from engine.runtime import device

log = logging.getLogger("engine.infer.batch")

RESULTS = "results.jsonl"
CSV_COLUMNS = ("item", "prompt", "case", "input", "config", "model", "adapter", "backend", "text", "finish_reason",
               "prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s", "error")


@dataclass(frozen=True)
class Config:
    name: str
    model: str
    adapter: str
    params: sampling.SamplingParams
    base_url: str = ""  # an OpenAI-compatible server answers instead of a local model
    api_key_env: str = ""  # the environment variable holding that server's key (never the key itself)
    backend: str = ""  # a local model's backend override ("" = the batch's --backend)
    adapter_scale: float = 1.0  # the adapter's weight: 0 = off, 1 = as trained

    def as_dict(self) -> dict[str, Any]:
        where = ({"base_url": self.base_url, "api_key_env": self.api_key_env} if self.base_url
                 else {"backend": self.backend, "adapter_scale": self.adapter_scale})
        return {"name": self.name, "model": self.model, "adapter": self.adapter, "params": self.params.as_dict(),
                **where}

    def server(self, timeout_s: float = remote.DEFAULT_TIMEOUT_S) -> remote.Server:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return remote.Server(self.base_url, key, timeout_s)


def batches_dir() -> Path:
    folder = paths.workspace_dir() / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_configs(path: Path) -> list[Config]:
    """Configurations from a JSON or TOML file; errors name the file and the entry."""
    if not path.is_file():
        raise errors.not_found(f"{path}: configuration file not found")
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = untrusted.read_text(path)
        if kind == "TOML":
            entries: Any = untrusted.toml_loads(text).get("config")
        else:
            entries = untrusted.json_loads(text)
            entries = entries.get("configs") if isinstance(entries, dict) else entries
    except untrusted.InputError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise errors.invalid_input(f"{where}: not valid {kind}: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise errors.invalid_input(f"{path}: expected a non-empty list of configurations "
                                   "(JSON list or TOML [[config]] tables)")
    return [_config(entry, f"{path}: config {number}") for number, entry in enumerate(entries, 1)]


CONFIG_FIELDS = {"name", "model", "adapter", "params", "base_url", "api_key_env", "backend", "adapter_scale"}


def _config(entry: Any, where: str) -> Config:
    if not isinstance(entry, dict):
        raise errors.invalid_input(f"{where}: expected a table with model, adapter, params")
    unknown = sorted(set(entry) - CONFIG_FIELDS)
    if unknown:
        raise errors.invalid_input(f"{where}: unknown field {unknown[0]!r}")
    model, adapter = str(entry.get("model") or ""), str(entry.get("adapter") or "")
    try:
        params = sampling.parse(entry.get("params"), sampling.SamplingParams(temperature=0.0))
        structured.check(params.json_schema)
        backend = backend_of(str(entry.get("backend") or ""))
        scale = adapter_scale_of(entry.get("adapter_scale"))
        base_url, key_env = _remote_fields(str(entry.get("base_url") or ""), str(entry.get("api_key_env") or ""),
                                           model, adapter, params)
        if base_url and (backend not in ("", gguf_backend.AUTO) or scale != 1.0):
            raise errors.usage("backend, adapter_scale: a remote server's model runs on that server")
    except errors.EngineError as exc:
        raise errors.invalid_input(f"{where}: {exc.message}") from None
    name = str(entry.get("name") or " + ".join(p for p in (model or "default", adapter) if p))
    return Config(name, model, adapter, params, base_url, key_env, backend, scale)


def _remote_fields(base_url: str, key_env: str, model: str, adapter: str,
                   params: sampling.SamplingParams) -> tuple[str, str]:
    """A remote configuration's checked URL and key variable; refuses what a server cannot do here."""
    if not base_url:
        if key_env:
            raise errors.usage("api_key_env: only a configuration with a base_url uses a key")
        return "", ""
    if not model:
        raise errors.usage(f"model: name the model {base_url} serves (its /v1/models list)")
    if adapter:
        raise errors.usage("adapter: a remote server's model takes no local adapter")
    if params.json_schema:
        raise errors.usage("json_schema: structured output is for local models only")
    return remote.normalise_url(base_url), key_env


def flag_config(args: argparse.Namespace) -> Config:
    schema = structured.from_flag(args.json_schema)
    params = sampling.parse({"temperature": args.temperature, "top_p": args.top_p,
                             "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                             "stop": args.stop or []})
    if schema:
        params = sampling.parse({**params.as_dict(), "json_schema": schema})
    name = " + ".join(p for p in (args.model or "default", args.adapter) if p)
    base_url, key_env = _remote_fields(args.base_url, args.api_key_env, args.model or "", args.adapter, params)
    return Config(f"{name} at {base_url}" if base_url else name, args.model or "", args.adapter, params,
                  base_url, key_env)


def items_of(args: argparse.Namespace) -> tuple[list[prompt_suites.Item], dict[str, Any]]:
    """What to run, and a description of where it came from."""
    if bool(args.suite) == bool(args.file):
        raise errors.usage("batch: give either --suite or --file with --column")
    if args.suite:
        suite = prompt_suites.load_suite(args.suite)
        items = prompt_suites.expand(suite)
        source = {"suite": suite.name}
    else:
        if not args.column:
            raise errors.usage("--column: name the column of --file that holds the prompts")
        texts = prompt_suites.read_column(Path(args.file).expanduser(), args.column)
        system = [{"role": "system", "content": args.system}] if args.system else []
        items = [
            prompt_suites.Item(
                args.column,
                number,
                {},
                args.mode,
                system + [{"role": "user", "content": text}],
                text if args.mode == "chat" else (args.system + "\n\n" if args.system else "") + text,
            )
            for number, text in enumerate(texts)
        ]
        source = {"file": str(Path(args.file).resolve()), "column": args.column}
    if not items:
        raise errors.invalid_input("batch: nothing to run (no prompts)")
    return items, source


def cmd_batch(args: argparse.Namespace, job: Job) -> int:

    items, source = items_of(args)
    configs = read_configs(Path(args.config).expanduser()) if args.config else [flag_config(args)]
    pool = ModelPool(device.pick(args.device), max_models=1, backend=args.backend)
    folder = batches_dir() / workspace.new_run_id(args.name or source.get("suite") or source.get("column", ""))
    folder.mkdir(parents=True)
    info = {"id": folder.name, "status": workspace.RUNNING, "source": source, "created": _now(),
            "configs": [c.as_dict() for c in configs], "items": len(items), "rows": 0}
    workspace.atomic_write_json(folder / "batch.json", info)
    job.channel.send(protocol.artifact("batch", str(folder)))
    rows: list[dict[str, Any]] = []
    try:
        with (folder / RESULTS).open("w", encoding="utf-8", newline="\n") as out:
            progress = _Progress(job, out, rows, len(items) * len(configs))
            for config in configs:
                if job.control.cancelled.is_set():
                    break
                _run_config(pool, config, items, job, progress, args.remote_timeout)
    except BaseException:
        # Whatever stopped the batch, its record must not say "running" forever.
        _finish(folder, info, rows, workspace.FAILED)
        raise
    cancelled = job.control.cancelled.is_set()
    exports = _finish(folder, info, rows, workspace.CANCELLED if cancelled else workspace.FINISHED)
    job.channel.send(protocol.result({"batch": folder.name, "folder": str(folder), "rows": len(rows),
                                      "errors": sum(1 for r in rows if r.get("error")),
                                      "status": info["status"], **exports}))
    return protocol.ExitCode.CANCELLED if cancelled else protocol.ExitCode.OK


class _Progress:
    """Appends each finished row to results.jsonl and reports it to the client."""

    def __init__(self, job: Job, out: Any, rows: list[dict[str, Any]], total: int) -> None:
        self.job, self.out, self.rows, self.total = job, out, rows, total

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.out.flush()
        self.job.channel.send(protocol.progress(len(self.rows), self.total, stage="generating", row=row))


def _run_config(pool: Any, config: Config, items: list[prompt_suites.Item], job: Job, progress: _Progress,
                timeout_s: float = remote.DEFAULT_TIMEOUT_S) -> None:
    """Every item through one configuration. A configuration whose model or adapter cannot be
    loaded, or an item it cannot answer, gives rows with the one-line reason, and the batch
    goes on with the rest."""
    if config.base_url:
        _run_remote(config.server(timeout_s), config, items, job, progress)
        return
    try:
        target = pool.target(config.model, config.adapter, lambda c, t: job.channel.send(
            protocol.progress(len(progress.rows), progress.total, stage=f"loading {config.name}")),
            config.backend, config.adapter_scale)
    except errors.EngineError as exc:
        job.channel.send(protocol.log(f"{config.name}: {exc.message}", level="warning"))
        for number, item in enumerate(items):
            progress.add(_row(number, item, config, config.model, None, exc.message))
        return
    job.channel.send(protocol.log(f"{config.name}: {target.label} on {target.backend}"))
    def answer(item: prompt_suites.Item) -> Any:
        ids = prompt_ids(target.tokenizer, item.mode, with_trained_system(item.messages, target), item.text)
        return run_on(target, ids, config.params, 0, job.control.cancelled, None)

    _answer_each(items, config, target.label, progress, answer, target.backend)


def _run_remote(server: remote.Server, config: Config, items: list[prompt_suites.Item], job: Job,
                progress: _Progress) -> None:
    """Every item through an OpenAI-compatible server."""
    job.channel.send(protocol.progress(len(progress.rows), progress.total, stage=f"asking {server.base_url}"))

    def answer(item: prompt_suites.Item) -> Any:
        return remote.generate(server, config.model, item.mode, item.messages, item.text, config.params,
                               job.control.cancelled, None)

    _answer_each(items, config, config.model, progress, answer, remote.BACKEND)


def _answer_each(items: list[prompt_suites.Item], config: Config, label: str, progress: _Progress,
                 answer: Callable[[prompt_suites.Item], Any], backend: str) -> None:
    """A row per item; an item that fails is a row with the one-line reason, and a cancel ends the loop."""
    for number, item in enumerate(items):
        try:
            outcome = answer(item)
        except errors.EngineError as exc:
            progress.add(_row(number, item, config, label, None, exc.message, backend))
            continue
        if outcome.finish_reason == "cancelled":
            return
        progress.add(_row(number, item, config, label, outcome, backend=backend))


def with_trained_system(messages: list[dict[str, Any]], target: Any) -> list[dict[str, Any]]:
    """A chat prompt with no system turn gets the one the column's adapter trained with."""
    system = target.trained_system_prompt
    if not system or any(message.get("role") == "system" for message in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]


def _finish(folder: Path, info: dict[str, Any], rows: list[dict[str, Any]], status: str) -> dict[str, str]:
    exports = write_exports(folder, rows)
    info.update(status=status, rows=len(rows), ended=_now())
    workspace.atomic_write_json(folder / "batch.json", info)
    return exports


def _row(number: int, item: prompt_suites.Item, config: Config, label: str, outcome: Any,
         error: str = "", backend: str = "") -> dict[str, Any]:
    data = outcome.as_dict() if outcome is not None else {
        "text": "", "finish_reason": "error", "prompt_tokens": 0, "completion_tokens": 0,
        "ttft_s": None, "tokens_per_s": None}
    return {"error": error, "item": number, "prompt": item.prompt, "case": item.case, "values": item.values,
            "input": item.text, "mode": item.mode, "config": config.name, "model": label,
            "adapter": config.adapter, "adapter_scale": config.adapter_scale, "backend": backend,
            "params": config.params.as_dict(), "text": data["text"],
            "finish_reason": data["finish_reason"], "prompt_tokens": data["prompt_tokens"],
            "completion_tokens": data["completion_tokens"], "ttft_s": data["ttft_s"],
            "tokens_per_s": data["tokens_per_s"]}


def write_exports(folder: Path, rows: list[dict[str, Any]]) -> dict[str, str]:
    """results.csv and results.md beside results.jsonl, written atomically."""
    csv_path, md_path = folder / "results.csv", folder / "results.md"
    workspace.atomic_write_text(csv_path, to_csv(rows))
    workspace.atomic_write_text(md_path, to_markdown(rows))
    return {"jsonl": str(folder / RESULTS), "csv": str(csv_path), "markdown": str(md_path)}


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """One table per prompt item: the input once, then each configuration's answer."""
    lines = ["# Batch results", ""]
    lines += ["| # | prompt | input | config | answer | tokens | tokens/s |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in (
            row["item"] + 1, row["prompt"], row["input"], row["config"],
            f"error: {row['error']}" if row.get("error") else row["text"],
            row["completion_tokens"], row["tokens_per_s"])) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
