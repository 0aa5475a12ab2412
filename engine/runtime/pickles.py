"""No pickles: what Tunebench loads from a file is tensors and plain data, never Python objects.

``torch.save`` files (a checkpoint's optimizer.pt, scheduler.pt, scaler.pt, rng_state.pth; a
model's or adapter's ``*.bin`` weights) are pickles, and unpickling one calls whatever it names:
a file handed over, or a run folder copied from elsewhere, could run code on ``train --resume``.
The libraries Tunebench calls load them with ``torch.load(weights_only=True)`` (transformers'
Trainer on resume, PEFT for ``adapter_model.bin``, transformers for ``pytorch_model.bin``), and
torch's restricted unpickler refuses other objects, but with a multi-line traceback and only when
that library is asked to load the file. These checks read each such file before any library does,
statically (torch's disassembly of the pickle, nothing is executed), and refuse one naming
anything beyond the tensors, containers and numpy arrays a checkpoint holds, in one line naming
the file. tests/engine/test_no_pickles_no_remote_code.py checks a malicious pickle is refused and
never runs.

torch is imported only when a folder holds such a file (most hold only safetensors).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from engine.core import errors

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
# The Trainer writes the TrainingArguments object here and never loads it again; nothing in
# Tunebench or the libraries it calls reads it, so it is left alone rather than refused.
NEVER_LOADED = frozenset({"training_args.bin"})


def pickled_files(folder: Path) -> list[Path]:
    """The torch.save files in ``folder`` that a library would load."""
    try:
        files = sorted(folder.iterdir())
    except OSError:
        return []
    return [file for file in files if file.suffix.lower() in PICKLE_SUFFIXES and file.name not in NEVER_LOADED
            and file.is_file()]


def check_folder(folder: Path, what: str) -> None:
    for file in pickled_files(folder):
        check_file(file, what)


def check_file(path: Path, what: str) -> None:
    """One line naming ``path`` when it holds more than tensors and plain data, or is not a
    torch.save file at all; nothing in it is run."""
    import torch

    try:
        with _checkpoint_globals():
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a torch.save zip file, or a damaged one
        raise errors.invalid_input(f"{what}: {path}: not a file saved by torch.save "
                                   f"({type(exc).__name__}); refused, since it is a pickle") from None
    if unsafe:
        names = ", ".join(unsafe[:3]) + (f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else "")
        raise errors.invalid_input(f"{what}: {path}: holds pickled Python objects ({names}); Tunebench "
                                   "loads only tensors and plain data, so it refuses the file")


@contextlib.contextmanager
def _checkpoint_globals() -> Iterator[Any]:
    """What a Trainer checkpoint holds besides torch's own types: the numpy RNG state in
    rng_state.pth (the same allowlist transformers loads it with)."""
    import numpy as np
    import torch

    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    with torch.serialization.safe_globals(allowed):
        yield
