"""Readers for every file format `data import` accepts, each yielding one record at a time.

A reader yields :class:`Record` objects: where the record came from (a 1-based physical line for
line-based formats, a 1-based row number for JSON, Parquet and ``datasets`` folders) and either
the parsed record (a dict) or a :class:`RowError` saying why it could not be read. Whole-file
problems (binary content, an unreadable file, JSON that does not parse) raise EngineError
INVALID_INPUT naming the file, because no row of such a file can be trusted.

Readers never hold all rows in memory except for JSON documents, which have to be parsed whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.core import errors

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "txt", "arrow")
TXT_MODES = ("paragraphs", "file")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".md": "txt",
            ".text": "txt"}
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 8192
BATCH_ROWS = 10_000  # rows pulled at once from Parquet and Arrow: bounded memory, few calls


class RowError(ValueError):
    """One row's problem: the field it concerns and what is wrong with it."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field_name
        self.problem = problem


@dataclass
class Record:
    """One record read from a source file.

    Attributes:
        position: 1-based physical line (``unit == "line"``) or row number (``unit == "row"``).
        value: the parsed record, or the RowError that stopped it being read.
        unit: "line" for JSONL, CSV/TSV and TXT; "row" for JSON, Parquet and Arrow folders.
    """

    position: int
    value: Any
    unit: str = "line"


@dataclass
class Source:
    """A file or folder with its detected format and text encoding.

    Attributes:
        path: the file or ``datasets`` folder.
        format: one of FORMATS.
        encoding: the Python codec for text formats ("utf-8", "utf-8-sig" or "utf-16").
    """

    path: Path
    format: str
    encoding: str = "utf-8"

    @property
    def is_text(self) -> bool:
        return self.format not in ("parquet", "arrow")


# -- detecting ---------------------------------------------------------------------------------

def open_source(path: Path, forced_format: str = "") -> Source:
    """Detects format and encoding, refusing binary or unreadable files with one clear line.

    Args:
        path: the file or folder to import.
        forced_format: one of FORMATS to skip detection, or "" to detect from the name/content.

    Returns:
        The Source to hand to :func:`read_records`.

    Raises:
        EngineError: INVALID_INPUT when the file is binary, unreadable or of an unknown format.
    """
    if path.is_dir():
        if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
            raise errors.invalid_input(f"{path.name}: a folder, but not one saved by datasets "
                                       "(no dataset_info.json or dataset_dict.json)")
        return Source(path, "arrow")
    head = _read_head(path)
    fmt = forced_format or _format_from_name(path) or _format_from_content(head)
    if fmt not in FORMATS:
        raise errors.invalid_input(f"{path.name}: cannot tell the file format; use --format "
                                   f"({', '.join(FORMATS)})")
    if fmt == "parquet":
        if not head.startswith(PARQUET_MAGIC):
            raise errors.invalid_input(f"{path.name}: not a Parquet file (no PAR1 header)")
        return Source(path, fmt)
    return Source(path, fmt, _text_encoding(path, head))


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise errors.invalid_input(f"{path.name}: cannot read the file: {exc.strerror or exc}") from None


def _format_from_name(path: Path) -> str:
    return SUFFIXES.get(path.suffix.lower(), "")


def _format_from_content(head: bytes) -> str:
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(codecs.BOM_UTF8).lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    if text.startswith(b"["):
        return "json"
    return ""


def _text_encoding(path: Path, head: bytes) -> str:
    """UTF-16 needs its BOM (that is how it is told apart from UTF-8); NUL bytes in anything
    else mean a binary file, which would otherwise surface as thousands of row errors."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise errors.invalid_input(f"{path.name}: a binary file, not text (NUL bytes near the start); "
                                   "expected JSONL, JSON, CSV, TSV, TXT or Parquet")
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


# -- text lines ----------------------------------------------------------------------------------

def text_lines(source: Source) -> Iterator[tuple[int, str | RowError]]:
    """(1-based physical line, text with its line end) for every line of a text file.

    UTF-8 is decoded line by line so one bad byte costs one row, not the file; UTF-16 is decoded
    as a stream (its lines cannot be split on bytes) and a bad sequence refuses the file.
    """
    for number, text, problem in _decoded_lines(source):
        yield number, problem or text


def _decoded_lines(source: Source) -> Iterator[tuple[int, str, RowError | None]]:
    """(line number, text, problem): a line that is not UTF-8 comes with its problem and its
    text decoded with replacement characters, for readers that must keep parsing around it."""
    if source.encoding == "utf-16":
        yield from ((number, text, None) for number, text in _utf16_lines(source.path))
        return
    with source.path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                problem = RowError("(line)", f"not UTF-8 text (byte {exc.start + 1})")
                yield number, raw.decode("utf-8", errors="replace"), problem


def _utf16_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as raw:
        # newline="" keeps CR LF as it is, so the csv module can see quoted line breaks.
        handle = io.TextIOWrapper(raw, encoding="utf-16", newline="")
        try:
            for number, line in enumerate(handle, start=1):
                yield number, line
        except UnicodeDecodeError as exc:
            raise errors.invalid_input(f"{path.name}: not valid UTF-16 text ({exc.reason})") from None


# -- readers ---------------------------------------------------------------------------------------

def read_jsonl(source: Source) -> Iterator[Record]:
    """One record per non-blank line; a line that is not JSON becomes a RowError."""
    for number, text in text_lines(source):
        if isinstance(text, RowError):
            yield Record(number, text)
            continue
        if not text.strip():
            continue
        try:
            yield Record(number, json.loads(text))
        except json.JSONDecodeError as exc:
            yield Record(number, RowError("(line)", f"not valid JSON: {_json_problem(exc)}"))


def _json_problem(exc: json.JSONDecodeError) -> str:
    # Some of json's messages end in "at" already ("Invalid control character at").
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


def read_json(source: Source) -> Iterator[Record]:
    """An array of records, or an object of equally long columns. A ``.json`` file that is
    really JSON Lines (several values, one a line) is read as JSONL."""
    try:
        document = json.loads(source.path.read_text(encoding=source.encoding))
    except UnicodeDecodeError as exc:
        raise errors.invalid_input(f"{source.path.name}: not {source.encoding} text "
                                   f"(byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            yield from read_jsonl(source)
            return
        raise errors.invalid_input(f"{source.path.name}:{exc.lineno}: not valid JSON: "
                                   f"{_json_problem(exc)}") from None
    for index, value in enumerate(_json_records(source.path.name, document), start=1):
        yield Record(index, value, "row")


def _json_records(name: str, document: Any) -> Iterator[Any]:
    """Records of an array, of an object of columns, or a lone object as one record."""
    if isinstance(document, list):
        yield from document
    elif _is_columns(document):
        lengths = {len(v) for v in document.values()}
        if len(lengths) != 1:
            raise errors.invalid_input(f"{name}: columns have different lengths "
                                       f"({', '.join(f'{k}: {len(v)}' for k, v in document.items())})")
        columns = list(document)
        for values in zip(*document.values()):
            yield dict(zip(columns, values))
    elif isinstance(document, dict):
        yield document
    else:
        raise errors.invalid_input(f"{name}: expected a JSON array of records or an object of "
                                   f"columns (lists), found {type(document).__name__}")


def _is_columns(document: Any) -> bool:
    # {"messages": [{...}, ...]} is one record whose only field is a list of objects; a column
    # holds one value per row, and rows of such a column would be lists, not objects.
    return (isinstance(document, dict) and bool(document)
            and all(isinstance(v, list) for v in document.values())
            and not any(isinstance(item, dict) for v in document.values() for item in v))


def read_csv(source: Source) -> Iterator[Record]:
    """Comma- or tab-separated with a header row; quoted fields may span lines. Each record is
    numbered by the physical line it starts on."""
    delimiter = "\t" if source.format == "tsv" else ","
    bad_lines: dict[int, RowError] = {}
    lines = _csv_text(source, bad_lines)
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    last_line = 0
    try:
        for cells in reader:
            start, last_line = last_line + 1, reader.line_num
            if not cells or (header is not None and cells == [""]):
                continue  # blank line
            problem = next((bad_lines[n] for n in range(start, last_line + 1) if n in bad_lines), None)
            if header is None:
                if problem:
                    raise errors.invalid_input(f"{source.path.name}:{start}: header: {problem.problem}")
                header = [name.strip() for name in cells]
                continue
            yield Record(start, problem or _csv_row(header, cells))
    except csv.Error as exc:
        raise errors.invalid_input(f"{source.path.name}:{reader.line_num}: not valid CSV: {exc}") from None


def _csv_text(source: Source, bad_lines: dict[int, RowError]) -> Iterator[str]:
    """Lines for the csv module; undecodable lines are noted and passed on as replacement text
    so the record they belong to can be reported and the rest of the file still parses."""
    for number, text, problem in _decoded_lines(source):
        if problem is not None:
            bad_lines[number] = problem
        yield text


def _csv_row(header: list[str], cells: list[str]) -> dict | RowError:
    if len(cells) > len(header):
        return RowError("(row)", f"has {len(cells)} fields but the header names {len(header)}")
    # Missing trailing cells read as absent fields, so "missing" is reported for them. A quoted
    # line break keeps the file's CR LF; stored text uses LF like every other format.
    return {name: cell.replace("\r\n", "\n") for name, cell in zip(header, cells)}


def read_txt(source: Source, mode: str = "paragraphs") -> Iterator[Record]:
    """``file``: the whole file as one ``{"text"}`` record; ``paragraphs``: one record for each
    block of text separated by blank lines, numbered by the line it starts on."""
    block: list[str] = []
    start = 0
    for number, text in text_lines(source):
        if isinstance(text, RowError):
            yield Record(number, text)
            continue
        if mode == "paragraphs" and not text.strip():
            if block:
                yield Record(start, {"text": "".join(block).strip()})
            block = []
            continue
        if not block:
            start = number
        block.append(text.replace("\r\n", "\n"))
    if block and "".join(block).strip():
        yield Record(start, {"text": "".join(block).strip() if mode == "paragraphs" else "".join(block)})


def read_parquet(source: Source) -> Iterator[Record]:
    """Rows in batches, so a large file never sits in memory as Python objects."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(source.path))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise errors.invalid_input(f"{source.path.name}: cannot read Parquet: {exc}") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        for value in batch.to_pylist():
            index += 1
            yield Record(index, value, "row")


def read_arrow_folder(source: Source, split: str = "") -> Iterator[Record]:
    """A folder written by ``datasets.save_to_disk``; for a DatasetDict, its split ``split``
    (default: "train", else its first split)."""
    dataset = load_arrow_folder(source.path, split)
    index = 0
    for batch in dataset.iter(batch_size=BATCH_ROWS):
        columns = list(batch)
        for values in zip(*batch.values()):
            index += 1
            yield Record(index, dict(zip(columns, values)), "row")


def arrow_splits(path: Path) -> list[str]:
    """The split names of a DatasetDict folder (from its dataset_dict.json), [] for a Dataset."""
    index = path / "dataset_dict.json"
    if not index.is_file():
        return []
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        raise errors.invalid_input(f"{path.name}: dataset_dict.json is not readable") from None
    return [str(name) for name in splits]


def read_only_arrow(datasets: Any) -> None:
    """Every ``map`` on a dataset loaded from a folder (a stored version, a user's saved
    dataset) would write cache-*.arrow files into that folder; with caching off the results go
    to a temporary folder that is removed at exit. Engine processes run one job each, so no
    later job misses the cache."""
    datasets.disable_caching()


def load_arrow_folder(path: Path, split: str = "") -> Any:
    import datasets

    read_only_arrow(datasets)
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise errors.invalid_input(f"{path.name}: cannot read the datasets folder: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split and split not in loaded:
            raise errors.usage(f"--split {split}: {path.name} has no such split (it has {', '.join(loaded)})")
        split = split or ("train" if "train" in loaded else next(iter(loaded)))
        return loaded[split]
    if split:
        raise errors.usage(f"--split {split}: {path.name} holds one dataset, not a DatasetDict of splits")
    return loaded


def count_rows(source: Source, split: str = "") -> int:
    """Rows known without reading the data (Parquet metadata, Arrow length), else 0."""
    if source.format == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(source.path)).metadata.num_rows
    if source.format == "arrow":
        return len(load_arrow_folder(source.path, split))
    return 0


def read_records(source: Source, txt_mode: str = "paragraphs", split: str = "") -> Iterator[Record]:
    """Every record of ``source`` in file order (see the module docstring); ``split`` picks one
    split of a DatasetDict folder."""
    readers: dict[str, Callable[[Source], Iterator[Record]]] = {
        "jsonl": read_jsonl, "json": read_json, "csv": read_csv, "tsv": read_csv,
        "parquet": read_parquet, "arrow": lambda s: read_arrow_folder(s, split),
        "txt": lambda s: read_txt(s, txt_mode)}
    return readers[source.format](source)
