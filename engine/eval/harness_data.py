"""Workspace datasets as lm-eval task data.

A user's task YAML may name a dataset imported into the workspace where a data file goes:

    dataset_path: json
    dataset_kwargs:
      data_files:
        test: "@DATASET:reviews:test@"     # NAME, or NAME:SPLIT (default: the whole dataset)
    doc_to_text: "{{messages[1].content}}"

Before lm-eval reads the task, Tunebench writes that split's stored rows (the normalised columns
the Datasets page shows: ``messages``, ``prompt``/``completion``, ``text``...) as JSON lines into
the run's scratch folder and puts that file's path in place of the token. The evaluation records
which version it read (``NAME@vN``), so a later import of the same name does not change what an
old evaluation meant.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.core import errors, names, workspace
from engine.data import importer, split

TOKEN = re.compile(r"@DATASET:([^@:\s]+)(?::([A-Za-z0-9_.-]+))?@")
COPY = "include"  # the scratch folder the rewritten task files go to
# What a task folder needs besides its YAMLs: lm-eval's `!function` tags name Python files beside them.
COPIED = ("*.yaml", "*.yml", "*.py")


def uses_datasets(path: Path) -> bool:
    """Whether a task YAML, or any YAML in a task folder, names a workspace dataset."""
    files = [path] if path.is_file() else [p for pattern in COPIED[:2] for p in path.rglob(pattern)]
    return any(TOKEN.search(p.read_text(encoding="utf-8", errors="replace")) for p in files)


def materialize(source: Path, scratch: Path) -> tuple[Path, dict[str, str]]:
    """A copy of ``source`` (a task YAML or a folder of them) in ``scratch`` with every dataset
    token replaced by a JSONL file of its rows; returns (the copy, ``{token: NAME@vN[:SPLIT]}``).

    Raises:
        EngineError: NOT_FOUND for a dataset or split the workspace does not have, naming the file.
    """
    target = scratch / COPY
    folder = source.parent if source.is_file() else source
    files = [source, *sorted(folder.glob("*.py"))] if source.is_file() else sorted(
        p for pattern in COPIED for p in source.rglob(pattern))
    used: dict[str, str] = {}
    for file in files:
        copy = target / file.relative_to(folder)
        copy.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix == ".py":
            shutil.copyfile(file, copy)
            continue
        text = file.read_text(encoding="utf-8")
        for match in TOKEN.finditer(text):
            if match.group(0) not in used:
                used[match.group(0)] = _write_rows(match, scratch / "data", file)
        for token, ref in used.items():
            text = text.replace(token, (scratch / "data" / _file_name(ref)).as_posix())
        workspace.atomic_write_text(copy, text)
    return (target / source.name if source.is_file() else target), used


def _write_rows(match: re.Match[str], folder: Path, yaml_file: Path) -> str:
    """Writes the named rows as JSON lines; returns ``NAME@vN`` or ``NAME@vN:SPLIT``."""
    spec, wanted = match.group(1), match.group(2)
    known = importer.versions(spec) if names.is_name(spec) else []
    if not known:
        raise errors.not_found(f"{yaml_file}: {match.group(0)}: no dataset named {spec!r} in the workspace "
                               "(import it first: data import FILE --name NAME)")
    version = known[-1]
    try:
        rows = split.load_split(version, wanted) if wanted else split.load_data(version)
    except errors.EngineError as exc:
        raise errors.not_found(f"{yaml_file}: {match.group(0)}: {exc.message}") from None
    if hasattr(rows, "keys"):  # a split version named without a split: its splits, one after another
        raise errors.usage(f"{yaml_file}: {match.group(0)}: {version.ref} is split "
                           f"({', '.join(rows.keys())}); name one, as @DATASET:{spec}:SPLIT@")
    ref = version.ref + (f":{wanted}" if wanted else "")
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_json(str(folder / _file_name(ref)), lines=True, force_ascii=False)
    return ref


def _file_name(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ref) + ".jsonl"
