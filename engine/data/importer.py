"""`data import` / `data list`: read a dataset file in any common format and shape, validate it
row by row, normalise it to its shape's canonical form and store it as a versioned dataset.

Formats are read by :mod:`engine.data.formats`, shapes detected and normalised by
:mod:`engine.data.shapes`. Rows stream from the reader through validation into
``datasets.Dataset.from_generator``, so no Python list of all rows is ever held. Storage:
``datasets/<name>/v<N>/`` holding the Arrow data (``save_to_disk``) and ``manifest.json``.
Importing an unchanged file again with the same options reuses its version; a changed file gets
a new one, so runs can record exactly what they trained on. A folder saved from a
``datasets.DatasetDict`` keeps its splits as the version's splits (``--split`` imports one).
Columns the shape does not read (``category``, ``language``...) are kept, when their values are
scalars, in one ``meta`` column of JSON objects; a file without such columns is stored exactly
as before, without the column.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.core import errors, names, paths, protocol
from engine.core.control import progress_reporter
from engine.core.job import Job
from engine.core.workspace import (
    atomic_folder,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from engine.data.formats import (
    TXT_MODES,
    Record,
    RowError,
    Source,
    arrow_splits,
    count_rows,
    open_source,
    read_records,
)
from engine.data.shapes import (
    CHAT_SHAPES,
    META_COLUMN,
    NORMALISERS,
    ROLES,
    SHAPES,
    apply_mapping,
    detect_shape,
    extra_columns,
    source_field,
)

__all__ = ["CHAT_SHAPES", "ROLES", "SHAPES", "RowError", "detect_shape", "import_file", "resolve"]

log = logging.getLogger("engine.data")

MANIFEST = "manifest.json"
MAX_REPORTED = 20  # problems listed in the log; the count is always complete
PROGRESS_EVERY = 10_000  # rows between progress events

ProgressCallback = Callable[[int, int], None]


@dataclass
class RowProblem:
    """One invalid row: ``file:line: field: problem`` (``file:row N: ...`` for row formats)."""

    file: str
    line: int
    field: str
    problem: str
    unit: str = "line"
    text: str = ""  # the record, for formats without lines to show (JSON, Parquet, folders)

    def __str__(self) -> str:
        where = self.line if self.unit == "line" else f"row {self.line}"
        return f"{self.file}:{where}: {self.field}: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        found = {"file": self.file, "line": self.line, "unit": self.unit, "field": self.field,
                 "problem": self.problem}
        return found | {"text": self.text} if self.text else found


@dataclass
class ImportReport:
    """What an import found. ``meta_columns``: the extra scalar columns kept as metadata, in the
    order first seen; ``left_out_columns``: extra columns not kept (lists, objects)."""

    shape: str = ""
    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    meta_columns: dict[str, None] = field(default_factory=dict)
    left_out_columns: dict[str, None] = field(default_factory=dict)


@dataclass
class ImportOptions:
    """How to read a file; recorded in the manifest, and part of what makes a version reusable.

    Attributes:
        shape: one of SHAPES to force, or "" to detect from the first readable row.
        mapping: ``{field: source column}`` overrides, e.g. ``{"instruction": "question"}``.
        txt_mode: "paragraphs" (blank-line-separated documents) or "file" (one document).
        format: one of data_formats.FORMATS to force, or "" to detect.
        split: for a folder saved from a ``datasets.DatasetDict``, import only this split; ""
            imports every split, and the folder's splits become the version's splits.
    """

    shape: str = ""
    mapping: dict[str, str] = field(default_factory=dict)
    txt_mode: str = "paragraphs"
    format: str = ""
    split: str = ""


# -- validating ------------------------------------------------------------------------------

def validate_records(source: Source, options: ImportOptions, report: ImportReport,
                     on_progress: ProgressCallback | None = None) -> Iterator[dict]:
    """Yields canonical rows; records every bad row in ``report`` instead of stopping.

    Args:
        source: the opened file or folder.
        options: forced shape, column mapping and TXT mode.
        report: filled in with the shape, the valid row count and every problem.
        on_progress: called with (records read, total or 0) every PROGRESS_EVERY records; it may
            raise (e.g. to cancel).
    """
    total = count_rows(source, options.split)
    if not report.shape:
        report.shape = options.shape or ("text" if source.format == "txt" and not options.mapping else "")
    # A DatasetDict folder's problems name the split: "saved/test:row 3: ...".
    file_name = f"{source.path.name}/{options.split}" if options.split else source.path.name
    seen = 0
    for record in read_records(source, options.txt_mode, options.split):
        seen += 1
        if on_progress and seen % PROGRESS_EVERY == 0:
            on_progress(seen, total)
        try:
            row = _normalise(record, options, report)
        except RowError as exc:
            report.problems.append(RowProblem(file_name, record.position,
                                              source_field(exc.field, options.mapping),
                                              exc.problem, record.unit, _snippet(record)))
            continue
        report.rows += 1
        yield row
    if on_progress:
        on_progress(seen, total or seen)


SNIPPET_CHARS = 300


def _snippet(record: Record) -> str:
    """A row-numbered record as one line of JSON (line formats: the reader shows the line)."""
    if record.unit == "line" or isinstance(record.value, RowError):
        return ""
    text = json.dumps(record.value, ensure_ascii=False, default=str)
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def _normalise(record: Record, options: ImportOptions, report: ImportReport) -> dict:
    if isinstance(record.value, RowError):
        raise record.value
    if not isinstance(record.value, dict):
        raise RowError("(row)", f"must be a JSON object, not {type(record.value).__name__}")
    row = apply_mapping(record.value, options.mapping)
    if not report.shape:
        report.shape = detect_shape(row)
    canonical = NORMALISERS[report.shape](row)
    # Every row gets the column (Arrow needs one schema); _build drops it when no row had any.
    canonical[META_COLUMN] = json.dumps(_meta(record.value, options, report), ensure_ascii=False)
    return canonical


def _meta(record: dict, options: ImportOptions, report: ImportReport) -> dict[str, Any]:
    """The row's extra scalar columns; those with nested values are noted in ``report``."""
    kept, nested = extra_columns(record, report.shape, options.mapping, bool(options.shape))
    report.left_out_columns.update(dict.fromkeys(nested))
    report.meta_columns.update(dict.fromkeys(kept))
    return kept


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
    """SHA-256 of a file, or of every file (relative name and bytes) in a folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dataset_name_for(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    return names.slug(stem, "dataset")


def dataset_folder(name: str) -> Path:
    """``datasets/<name>``; a name that is not one plain folder name is refused (names.py)."""
    return names.child(paths.datasets_dir(), name, "dataset name")


def versions(name: str) -> list[DatasetVersion]:
    folder = dataset_folder(name)
    found = []
    for child in folder.glob("v*") if folder.is_dir() else []:
        manifest = read_json(child / MANIFEST)
        if manifest and child.name[1:].isdigit():
            found.append(DatasetVersion(name, int(child.name[1:]), child, manifest))
    return sorted(found, key=lambda v: v.version)


def import_file(path: Path, name: str = "", skip_invalid: bool = False,
                options: ImportOptions | None = None, on_progress: ProgressCallback | None = None,
                report_file: Path | None = None) -> tuple[DatasetVersion, ImportReport]:
    """Validates and stores ``path`` (a file or a ``datasets`` folder).

    Args:
        path: the file or folder to import.
        name: dataset name (default: from the file name).
        skip_invalid: store the valid rows when some are invalid (default: refuse the file).
        options: format, shape, mapping and TXT mode overrides.
        on_progress: progress callback, see :func:`validate_records`.
        report_file: where to write every problem as JSONL, whether or not the import succeeds.

    Returns:
        The stored version (the existing one when the same content and options were imported
        before) and the report.

    Raises:
        EngineError: NOT_FOUND for a missing path; INVALID_INPUT for an unreadable file, no
            valid rows, or invalid rows without ``skip_invalid``; whatever ``on_progress`` raises.
    """
    options = options or ImportOptions()
    _check_options(options)
    if not path.exists():
        raise errors.not_found(f"dataset: file not found: {path}")
    name = name or dataset_name_for(path)
    dataset_folder(name)  # refuse a bad --name before reading anything
    source = open_source(path, options.format)
    digest = file_hash(path)
    reused = _reusable_version(name, digest, options, source)
    if reused:
        log.info("%s is unchanged since %s; reusing it", path.name, reused.ref)
        _write_report(report_file, [])
        return reused, ImportReport(reused.manifest["shape"], reused.manifest["rows"])
    report = ImportReport()
    try:
        version = _store(source, name, digest, options, report, skip_invalid, on_progress, report_file)
    except OSError:
        # Another process stored the same file as this version first (two sweep workers starting
        # on the bundled sample at once): its version is this one.
        raced = _reusable_version(name, digest, options, source)
        if raced is None:
            raise
        log.info("%s was imported by another process meanwhile; reusing %s", path.name, raced.ref)
        return raced, ImportReport(raced.manifest["shape"], raced.manifest["rows"])
    return version, report


def _check_options(options: ImportOptions) -> None:
    if options.shape and options.shape not in SHAPES:
        raise errors.usage(f"unknown shape {options.shape!r} (use {', '.join(SHAPES)})")
    if options.txt_mode not in TXT_MODES:
        raise errors.usage(f"unknown TXT mode {options.txt_mode!r} (use {', '.join(TXT_MODES)})")


def _reusable_version(name: str, digest: str, options: ImportOptions, source: Source) -> DatasetVersion | None:
    # Manifests written before options were recorded were made with the defaults.
    wanted = asdict(options)
    defaults = asdict(ImportOptions())  # options added later read as their defaults
    for existing in versions(name):
        if (existing.manifest.get("content_hash") == digest
                and {**defaults, **existing.manifest.get("options", {})} == wanted
                and _holds_meta(existing, source, options)):
            return existing
    return None


def _holds_meta(existing: DatasetVersion, source: Source, options: ImportOptions) -> bool:
    """Whether ``existing`` kept the file's extra columns. Versions stored before metadata was
    kept (no ``meta_columns`` in the manifest) did not: they are reused only when the file has
    no extra scalar columns, found by reading it once more."""
    if "meta_columns" in existing.manifest:
        return True
    shape = existing.manifest.get("shape", "")
    splits = arrow_splits(source.path) if source.format == "arrow" and not options.split else [options.split]
    for split in splits:
        for record in read_records(source, options.txt_mode, split):
            if isinstance(record.value, dict) and shape in SHAPES:
                if extra_columns(record.value, shape, options.mapping, bool(options.shape))[0]:
                    return False
    return True


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


def _write_report(report_file: Path | None, problems: list[RowProblem]) -> None:
    if report_file is not None:
        text = "".join(json.dumps(p.as_json(), ensure_ascii=False) + "\n" for p in problems)
        atomic_write_text(report_file, text)


def _store(source: Source, name: str, digest: str, options: ImportOptions, report: ImportReport,
           skip_invalid: bool, on_progress: ProgressCallback | None,
           report_file: Path | None) -> DatasetVersion:
    """Streams validated rows into a temp folder beside the versions, then renames it into
    place; on any failure (invalid rows, cancel) the temp folder is removed, so no half-written
    version is ever visible."""
    existing = versions(name)
    number = existing[-1].version + 1 if existing else 1
    target = dataset_folder(name) / f"v{number}"

    def check_problems() -> None:
        _write_report(report_file, report.problems)
        _raise_for_problems(report, source.path, skip_invalid)

    with atomic_folder(target) as tmp:
        split_rows = _write_rows(source, options, report, on_progress, tmp, f"{digest[:16]}-{number}",
                                 check_problems)
        manifest = {"name": name, "version": number, "source": str(source.path.resolve()),
                    "format": source.format, "encoding": source.encoding if source.is_text else "",
                    "shape": report.shape, "mapping": options.mapping, "options": asdict(options),
                    "rows": report.rows, "skipped": len(report.problems), "content_hash": digest,
                    "meta_columns": list(report.meta_columns), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if split_rows:
            manifest["splits"] = split_rows
        atomic_write_json(tmp / MANIFEST, manifest)
    log.info("Imported %d rows (%s shape) as %s@v%d", report.rows, report.shape, name, number)
    if report.meta_columns:
        log.info("Kept as metadata (for evaluate --slice-column): %s", ", ".join(report.meta_columns))
    for column in report.left_out_columns:  # one line per column, not per row
        log.warning("Column %r holds lists or objects in some rows; those values are not kept as metadata",
                    column)
    return DatasetVersion(name, number, target, manifest)


def _write_rows(source: Source, options: ImportOptions, report: ImportReport,
                on_progress: ProgressCallback | None, folder: Path, fingerprint: str,
                check_problems: Callable[[], None]) -> dict[str, int]:
    """Dataset.from_generator writes Arrow shards under a cache inside ``folder`` (never
    ~/.cache); ``check_problems`` then decides (it raises to refuse the file, before the copy is
    made), save_to_disk writes ``folder/data`` and the cache is removed.

    Returns:
        Rows per split when a DatasetDict folder's splits became the version's splits, else {}.
    """
    import datasets

    cache = folder / "cache"
    splits = arrow_splits(source.path) if source.format == "arrow" and not options.split else []
    if splits:
        parts = {name: _build(source, replace(options, split=name), report, on_progress, cache,
                              f"{fingerprint}-{index}", check_problems)
                 for index, name in enumerate(splits)}
        empty = [name for name, part in parts.items() if part is None]
        check_problems()
        if empty:
            raise errors.invalid_input(f"{source.path.name}/{empty[0]}: no valid rows in this split "
                                       f"(--split picks the splits to import one at a time)")
        if not report.meta_columns:
            parts = {name: _without_meta(part, f"{fingerprint}-{index}")
                     for index, (name, part) in enumerate(parts.items())}
        dataset: Any = datasets.DatasetDict(parts)
    else:
        dataset = _build(source, options, report, on_progress, cache, fingerprint, check_problems)
        check_problems()
        if not report.meta_columns:
            dataset = _without_meta(dataset, fingerprint)
    dataset.save_to_disk(str(folder / "data"))
    counts = {name: len(part) for name, part in dataset.items()} if splits else {}
    del dataset  # release the memory-mapped cache files before removing them (Windows)
    shutil.rmtree(cache, ignore_errors=True)
    return counts


def _without_meta(dataset: Any, fingerprint: str) -> Any:
    """The dataset without its all-empty meta column: stored exactly as before metadata was
    kept (same columns, same fingerprint), so such versions stay as they were."""
    dataset = dataset.remove_columns(META_COLUMN, new_fingerprint=fingerprint)
    # The recorded sizes counted the dropped column; record those of the stored table.
    size = dataset.data.nbytes
    dataset.info.dataset_size = dataset.info.size_in_bytes = size
    for split in (dataset.info.splits or {}).values():
        split.num_bytes = size
    return dataset


def _build(source: Source, options: ImportOptions, report: ImportReport, on_progress: ProgressCallback | None,
           cache: Path, fingerprint: str, check_problems: Callable[[], None]) -> Any:
    """The valid rows of one file or split as a Dataset (None when it has none)."""
    import datasets

    failure: list[BaseException] = []
    rows_before = report.rows

    def rows() -> Iterator[dict]:
        try:
            yield from validate_records(source, options, report, on_progress)
        except Exception as exc:  # datasets wraps it; keep the original to re-raise
            failure.append(exc)
            raise

    try:
        # A fixed fingerprint: datasets would otherwise try to hash this closure.
        return datasets.Dataset.from_generator(rows, cache_dir=str(cache), fingerprint=fingerprint)
    except Exception:
        if failure:
            raise failure[0] from None
        if report.rows == rows_before:  # datasets may refuse to build a dataset from no rows
            if report.rows == 0:
                check_problems()
            return None
        raise


def resolve(spec: str) -> DatasetVersion:
    """'sample', a workspace dataset name (optionally name@vN), or a file/folder to import."""
    if spec == "sample":
        return import_file(paths.sample_dataset_path(), name="sample-product-reviews")[0]
    name, _, wanted = spec.partition("@v")
    known = versions(name) if names.is_name(name) else []  # not a name: perhaps a file path
    if known:
        if not wanted:
            return known[-1]
        for version in known:
            if str(version.version) == wanted:
                return version
        raise errors.not_found(f"dataset: {name} has no version v{wanted}")
    if Path(spec).expanduser().exists():
        return import_file(Path(spec).expanduser())[0]
    raise errors.not_found(f"dataset: {spec!r} is not 'sample', a dataset in the workspace or a file")


def list_datasets() -> list[dict[str, Any]]:
    root = paths.datasets_dir()
    return [v.manifest | {"path": str(v.path)}
            for folder in sorted(root.iterdir()) if folder.is_dir() and names.is_name(folder.name)
            for v in versions(folder.name)]


# -- CLI handlers ------------------------------------------------------------------------------

def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """``["instruction=question", ...]`` → ``{"instruction": "question"}``.

    Raises:
        EngineError: USAGE for a pair without ``=`` or with an empty side.
    """
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        field_name, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not field_name or not column:
            raise errors.usage(f"--map {pair!r}: expected FIELD=COLUMN, e.g. instruction=question")
        mapping[field_name] = column
    return mapping


def cmd_import(args: argparse.Namespace, job: Job) -> int:
    options = ImportOptions(shape=getattr(args, "shape", "") or "",
                            mapping=parse_mapping(getattr(args, "map", None)),
                            txt_mode=getattr(args, "txt_mode", "paragraphs"),
                            format=getattr(args, "format", "") or "",
                            split=getattr(args, "split", "") or "")
    report_file = names.check_out_path(args.report, "--report") if getattr(args, "report", None) else None
    version, report = import_file(Path(args.path).expanduser(), args.name, args.skip_invalid,
                                  options, progress_reporter(job, "import"), report_file)
    data = {"name": version.name, "version": version.version, "rows": report.rows,
            "skipped": len(report.problems), "shape": report.shape, "path": str(version.path)}
    if version.manifest.get("splits"):
        data["splits"] = version.manifest["splits"]
    if version.manifest.get("meta_columns"):
        data["meta_columns"] = version.manifest["meta_columns"]
    job.channel.send(protocol.result(data))
    return protocol.ExitCode.OK


def cmd_list(args: argparse.Namespace, job: Job) -> int:
    job.channel.send(protocol.result({"datasets": list_datasets()}))
    return protocol.ExitCode.OK
