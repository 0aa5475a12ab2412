"""Checks a model or adapter the user points at before any library loads it (issue 19).

A damaged or hostile GGUF file, safetensors file or config.json would otherwise surface deep
inside transformers, PEFT or the gguf package as a traceback, or ask for an allocation of
whatever size its header claims. These checks read only headers, with the standard library,
and refuse with one line naming the file and what is wrong:

- GGUF: the magic, a known version, and tensor/metadata counts no real model exceeds;
- safetensors: the 8-byte header length (within the file and :data:`MAX_HEADER_BYTES`), the
  header JSON (through :mod:`engine.core.untrusted`: depth, duplicate keys...), and every
  tensor's byte range lying inside the file;
- config.json / adapter_config.json: a JSON object within the config size limit;
- pickled weights (``*.bin``, ``*.pt``): tensors and plain data only (:mod:`engine.runtime.pickles`,
  which reads them with torch, imported only for such a file);
- custom code: a folder whose config.json or tokenizer_config.json names its own Python classes
  (``auto_map``) is refused unless transformers has the architecture built in, in which case
  transformers uses its own class and ignores the folder's code. Tunebench never passes
  ``trust_remote_code=True`` and has no setting for it, so code shipped in a model folder is
  never run; this check says so in one line instead of transformers' prompt on stdin (which
  would also write into the protocol on stdout).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from engine.core import errors, untrusted
from engine.runtime import pickles

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
MAX_GGUF_TENSORS = 1_000_000
MAX_GGUF_KEYS = 100_000
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own reader refuses larger headers too
MAX_TENSORS = 1_000_000  # one safetensors header lists each tensor of its shard as a key


def check_gguf(path: Path, what: str = "model") -> None:
    """Refuses a file that is not a GGUF file the gguf package can safely read."""
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        raise errors.invalid_input(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise errors.invalid_input(f"{what}: {path}: not a GGUF file (no GGUF header)")
    version, tensors, keys = struct.unpack("<IQQ", head[4:24])
    if version not in GGUF_VERSIONS:
        raise errors.invalid_input(f"{what}: {path}: GGUF version {version} is not one Tunebench reads "
                                   f"({', '.join(map(str, GGUF_VERSIONS))})")
    if tensors > MAX_GGUF_TENSORS or keys > MAX_GGUF_KEYS:
        raise errors.invalid_input(f"{what}: {path}: damaged GGUF header ({tensors} tensors, {keys} keys)")


def check_safetensors(path: Path, what: str = "model") -> None:
    """Refuses a safetensors file whose header is damaged or points outside the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise errors.invalid_input(f"{what}: {path}: damaged safetensors file (header length {length} "
                                           f"in a file of {size} bytes)")
            header = untrusted.json_loads(handle.read(length), max_keys=MAX_TENSORS)
    except OSError as exc:
        raise errors.invalid_input(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except untrusted.InputError as exc:
        raise errors.invalid_input(f"{what}: {path}: damaged safetensors header: {exc}") from None
    _check_tensor_ranges(path, header, size - 8 - length, what)


def _check_tensor_ranges(path: Path, header: Any, data_bytes: int, what: str) -> None:
    if not isinstance(header, dict):
        raise errors.invalid_input(f"{what}: {path}: damaged safetensors header: not a JSON object")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise errors.invalid_input(f"{what}: {path}: damaged safetensors header: tensor {name[:60]!r} "
                                       "lies outside the file")


def check_json_config(path: Path, what: str = "model") -> dict[str, Any]:
    """config.json / adapter_config.json as a dict, or one line saying what is wrong."""
    try:
        data = untrusted.json_loads(untrusted.read_text(path))
    except OSError as exc:
        raise errors.invalid_input(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except untrusted.InputError as exc:
        raise errors.invalid_input(f"{what}: {exc.located(str(path))}") from None
    if not isinstance(data, dict):
        raise errors.invalid_input(f"{what}: {path}: expected a JSON object")
    return data


def check_folder(folder: Path, config_name: str = "config.json", what: str = "model") -> dict[str, Any]:
    """A Hugging Face model folder or a PEFT adapter folder: its config, every safetensors file,
    every pickled weights file, and no custom code."""
    config = check_json_config(folder / config_name, what)
    for file in sorted(folder.glob("*.safetensors")):
        check_safetensors(file, what)
    pickles.check_folder(folder, what)
    check_no_custom_code(folder, config, what)
    return config


def check_no_custom_code(folder: Path, config: dict[str, Any], what: str = "model") -> None:
    """Refuses a folder that would need its own Python code (see the module's docstring)."""
    tokenizer_config = folder / "tokenizer_config.json"
    tokenizer = check_json_config(tokenizer_config, what) if tokenizer_config.is_file() else {}
    for name, data, built_in in (("config.json", config, _built_in_architecture),
                                 ("tokenizer_config.json", tokenizer, _built_in_tokenizer)):
        if "auto_map" in data and not built_in(data):
            raise errors.invalid_input(
                f"{what}: {folder / name}: needs the folder's own Python code (auto_map); Tunebench never "
                "runs code from a model folder (no trust_remote_code), and transformers has no built-in "
                "class for it")


def _built_in_architecture(config: dict[str, Any]) -> bool:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _built_in_tokenizer(tokenizer_config: dict[str, Any]) -> bool:
    import transformers

    name = tokenizer_config.get("tokenizer_class")
    return isinstance(name, str) and name.isidentifier() and (
        hasattr(transformers, name) or hasattr(transformers, name.removesuffix("Fast")))
