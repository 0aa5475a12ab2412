"""Which files of a Hub repository `models download` fetches, and where the model lands.

Standard library only. Tunebench loads tensors and plain data, never pickles
(engine/runtime/pickles.py), so a download takes the weights as safetensors or GGUF and the
config, tokenizer and chat-template files beside them, and leaves every pickled file
(``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.pkl``) and any Python code on the Hub.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from engine.core import errors, names

WEIGHT_SUFFIXES = (".safetensors", ".gguf")
# Configs, tokenizers and chat templates: JSON and text (tokenizer.model is sentencepiece's
# protobuf, plain data); README.md is the model card, kept with the model.
TEXT_SUFFIXES = (".json", ".txt", ".jinja", ".model", ".md")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class RepoFile:
    name: str  # the path inside the repository
    size: int  # bytes; 0 when the Hub did not say


@dataclass(frozen=True)
class Selection:
    files: tuple[RepoFile, ...]  # what to fetch
    pickles: tuple[str, ...]  # pickled files left on the Hub, named in the log

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def gguf(self) -> RepoFile | None:
        return next((file for file in self.files if file.name.lower().endswith(".gguf")), None)


def folder_name(repo_id: str) -> str:
    """``owner/name`` -> ``owner--name``: one folder in the models cache, the name `models list`
    shows and every picker takes (the Hub's own cache spells repositories the same way)."""
    parts = repo_id.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise errors.usage(f"models download: {repo_id!r} is not a Hub model id (owner/name)")
    return names.check_name("--".join(parts), "model")


def select(files: list[RepoFile], include: str = "") -> Selection:
    """The files to fetch: top-level weights (safetensors, or GGUF when there are none) and text
    files, narrowed by the ``include`` glob when given. Refuses a repository with no usable
    weights, or with several GGUF files and no ``include`` to pick one (GGUF repositories hold
    one file per quantisation, often tens of GB together)."""
    top = [file for file in files if "/" not in file.name]
    pickles = tuple(file.name for file in top if file.name.lower().endswith(PICKLE_SUFFIXES))
    wanted = [file for file in top if file.name.lower().endswith(WEIGHT_SUFFIXES + TEXT_SUFFIXES)]
    if any(file.name.endswith(".safetensors") for file in wanted):
        wanted = [file for file in wanted if not file.name.lower().endswith(".gguf")]
    if include:
        wanted = [file for file in wanted if fnmatch.fnmatch(file.name, include)
                  or not file.name.lower().endswith(WEIGHT_SUFFIXES)]
    weights = [file.name for file in wanted if file.name.lower().endswith(WEIGHT_SUFFIXES)]
    if not weights:
        why = " (only pickled weights, which Tunebench never loads)" if pickles else ""
        raise errors.not_found(f"models download: no safetensors or GGUF weights to fetch{why}")
    ggufs = [name for name in weights if name.lower().endswith(".gguf")]
    if len(ggufs) > 1:
        shown = ", ".join(ggufs[:4]) + (", ..." if len(ggufs) > 4 else "")
        raise errors.usage(f"models download: the repository has {len(ggufs)} GGUF files ({shown}); "
                           "pick one with --include, e.g. --include '*Q4_K_M.gguf'")
    return Selection(tuple(wanted), pickles)
