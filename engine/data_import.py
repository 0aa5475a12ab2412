"""`data import` / `data list`: JSONL in OpenAI ``messages`` or Alpaca shape, validated row by
row, normalised to one canonical form and stored as a versioned dataset in the workspace.

Canonical row: ``{"messages": [{"role": ..., "content": ...}, ...]}`` ending with an assistant
turn. Storage: ``datasets/<name>/v<N>/`` holding the Arrow data (``datasets.save_to_disk``) and
``manifest.json``. Importing an unchanged file again reuses its version; a changed file gets a
new one, so runs can record exactly what they trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine import errors, paths, protocol
from engine.workspace import atomic_write_json, read_json

log = logging.getLogger("engine.data")

MANIFEST = "manifest.json"
ROLES = ("system", "user", "assistant")
MAX_REPORTED = 20  # problems listed in the log; the count is always complete


@dataclass
class RowProblem:
    file: str
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.problem}"


@dataclass
class ImportReport:
    shape: str = ""
    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)


class RowError(ValueError):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field_name
        self.problem = problem


# -- reading and validating -----------------------------------------------------------------

def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value or RowError) for every non-blank line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, RowError("(line)", f"not UTF-8 text (byte {exc.start + 1})")
                continue
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowError("(line)", f"not valid JSON: {exc.msg} at column {exc.colno}")


def detect_shape(row: Any) -> str:
    if isinstance(row, dict):
        if "messages" in row:
            return "messages"
        if "instruction" in row and "output" in row:
            return "alpaca"
    keys = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
    raise RowError("(row)", f"unknown shape: expected a 'messages' field (OpenAI) or "
                   f"'instruction' and 'output' fields (Alpaca); found {keys}")


def _text(row: dict, name: str, required: bool = True) -> str:
    value = row.get(name)
    if value is None:
        if required:
            raise RowError(name, "missing")
        return ""
    if not isinstance(value, str):
        raise RowError(name, f"must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise RowError(name, "is empty")
    return value


def normalise_messages(row: dict) -> dict:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RowError("messages", "must be a non-empty list of {role, content} objects")
    clean = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RowError(where, "must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise RowError(f"{where}.role", f"unknown role {role!r} (use system, user or assistant)")
        content = _text(message, "content")
        clean.append({"role": role, "content": content})
    _check_order(clean)
    return {"messages": clean}


def _check_order(messages: list[dict]) -> None:
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            position = index + (len(messages) - len(turns))
            raise RowError(f"messages[{position}].role",
                           f"expected {expected} here (turns must alternate user, assistant), got {message['role']}")
    if not turns or turns[-1]["role"] != "assistant":
        raise RowError("messages", "conversation has no final assistant turn to learn from")


def normalise_alpaca(row: dict) -> dict:
    instruction = _text(row, "instruction")
    extra = _text(row, "input", required=False)
    output = _text(row, "output")
    system = _text(row, "system", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


NORMALISERS = {"messages": normalise_messages, "alpaca": normalise_alpaca}


def validate_file(path: Path, report: ImportReport) -> Iterator[dict]:
    """Yields canonical rows; records every bad row in ``report`` instead of stopping."""
    name = path.name
    for line, value in read_jsonl(path):
        try:
            if isinstance(value, RowError):
                raise value
            if not isinstance(value, dict):
                raise RowError("(row)", f"must be a JSON object, not {type(value).__name__}")
            if not report.shape:
                report.shape = detect_shape(value)
            row = NORMALISERS[report.shape](value)
        except RowError as exc:
            report.problems.append(RowProblem(name, line, exc.field, exc.problem))
            continue
        report.rows += 1
        yield row


# -- storing ---------------------------------------------------------------------------------

@dataclass
class DatasetVersion:
    name: str
    version: int
    path: Path
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_name_for(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "dataset"


def versions(name: str) -> list[DatasetVersion]:
    folder = paths.datasets_dir() / name
    found = []
    for child in folder.glob("v*") if folder.is_dir() else []:
        manifest = read_json(child / MANIFEST)
        if manifest and child.name[1:].isdigit():
            found.append(DatasetVersion(name, int(child.name[1:]), child, manifest))
    return sorted(found, key=lambda v: v.version)


def import_file(path: Path, name: str = "", skip_invalid: bool = False) -> tuple[DatasetVersion, ImportReport]:
    """Validates and stores ``path``; raises INVALID_INPUT naming the first bad row unless
    ``skip_invalid``; returns the existing version when the same content was imported before."""
    if not path.is_file():
        raise errors.not_found(f"dataset: file not found: {path}")
    name = name or dataset_name_for(path)
    digest = file_hash(path)
    for existing in versions(name):
        if existing.manifest.get("content_hash") == digest:
            log.info("%s is unchanged since %s; reusing it", path.name, existing.ref)
            return existing, ImportReport(existing.manifest["shape"], existing.manifest["rows"])
    report = ImportReport()
    rows = list(validate_file(path, report))  # small files in this version; streaming: issue 3
    _raise_for_problems(report, path, skip_invalid)
    return _store(path, name, digest, rows, report), report


def _raise_for_problems(report: ImportReport, path: Path, skip_invalid: bool) -> None:
    for problem in report.problems[:MAX_REPORTED]:
        log.warning("%s", problem)
    if len(report.problems) > MAX_REPORTED:
        log.warning("... and %d more problems", len(report.problems) - MAX_REPORTED)
    if report.rows == 0:
        first = f"; first: {report.problems[0]}" if report.problems else ""
        raise errors.invalid_input(f"{path.name}: no valid rows{first}")
    if report.problems and not skip_invalid:
        raise errors.invalid_input(
            f"{report.problems[0]} ({len(report.problems)} invalid of "
            f"{report.rows + len(report.problems)} rows; --skip-invalid imports the valid ones)")


def _store(path: Path, name: str, digest: str, rows: list[dict], report: ImportReport) -> DatasetVersion:
    import datasets

    existing = versions(name)
    number = existing[-1].version + 1 if existing else 1
    target = paths.datasets_dir() / name / f"v{number}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{number}.", dir=target.parent))
    try:
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "data"))
        manifest = {"name": name, "version": number, "source": str(path.resolve()),
                    "shape": report.shape, "rows": report.rows, "skipped": len(report.problems),
                    "content_hash": digest, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(tmp / MANIFEST, manifest)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("Imported %d rows (%s shape) as %s@v%d", report.rows, report.shape, name, number)
    return DatasetVersion(name, number, target, manifest)


def resolve(spec: str) -> DatasetVersion:
    """'sample', a workspace dataset name (optionally name@vN), or a JSONL file to import."""
    if spec == "sample":
        return import_file(paths.sample_dataset_path(), name="sample-product-reviews")[0]
    name, _, wanted = spec.partition("@v")
    known = versions(name)
    if known:
        if not wanted:
            return known[-1]
        for version in known:
            if str(version.version) == wanted:
                return version
        raise errors.not_found(f"dataset: {name} has no version v{wanted}")
    if Path(spec).expanduser().is_file():
        return import_file(Path(spec).expanduser())[0]
    raise errors.not_found(f"dataset: {spec!r} is not 'sample', a dataset in the workspace or a file")


def list_datasets() -> list[dict[str, Any]]:
    root = paths.datasets_dir()
    return [v.manifest | {"path": str(v.path)}
            for folder in sorted(root.iterdir()) if folder.is_dir()
            for v in versions(folder.name)]


def cmd_import(args: argparse.Namespace, job: Any) -> int:
    version, report = import_file(Path(args.path).expanduser(), args.name, args.skip_invalid)
    data = {"name": version.name, "version": version.version, "rows": report.rows,
            "skipped": len(report.problems), "shape": report.shape, "path": str(version.path)}
    job.channel.send(protocol.result(data))
    return protocol.ExitCode.OK


def cmd_list(args: argparse.Namespace, job: Any) -> int:
    job.channel.send(protocol.result({"datasets": list_datasets()}))
    return protocol.ExitCode.OK
