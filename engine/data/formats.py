"""Readers for every file format `data import` accepts, each yielding one record at a time.

A reader yields :class:`Record` objects: where the record came from (a 1-based physical line for
line-based formats, a 1-based row number for JSON, Parquet and ``datasets`` folders) and either
the parsed record (a dict) or a :class:`RowError` saying why it could not be read. Whole-file
problems (binary content, an unreadable file, JSON that does not parse) raise EngineError
INVALID_INPUT naming the file, because no row of such a file can be trusted.

Readers never hold all rows in memory except for JSON documents, which have to be parsed whole.
Hostile input is bounded by :mod:`engine.core.untrusted`: a line (or a TXT record) over
``MAX_LINE_BYTES`` becomes that line's problem without being held, a JSON document over
``MAX_DOCUMENT_BYTES`` is refused before it is read, every JSON value goes through its checked
parser (depth, duplicate keys, NaN, surrogates), and a Parquet file's metadata is checked
(columns, uncompressed row-group size) before any data is decompressed.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.core import errors, untrusted

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "txt", "arrow")
TXT_MODES = ("paragraphs", "file")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".md": "txt",
            ".text": "txt"}
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 8192
BATCH_ROWS = 10_000  # rows pulled at once from Parquet and Arrow: bounded memory, few calls
MAX_COLUMNS = untrusted.MAX_KEYS
MAX_ROW_GROUP_BYTES = 1024 * 1024 * 1024  # uncompressed; a Parquet row group is read whole
# Stands in for a line too long to keep, so a CSV reader still sees a row to report it on.
TOO_LONG_TEXT = "\ufffd\n"


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
        yield from _utf16_lines(source.path)
        return
    with source.path.open("rb") as handle:
        for number, raw in enumerate(untrusted.bounded_lines(handle), start=1):
            if isinstance(raw, untrusted.LineTooLong):
                yield number, TOO_LONG_TEXT, RowError("(line)", raw.problem)
                continue
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                problem = RowError("(line)", f"not UTF-8 text (byte {exc.start + 1})")
                yield number, raw.decode("utf-8", errors="replace"), problem


def _utf16_lines(path: Path) -> Iterator[tuple[int, str, RowError | None]]:
    with path.open("rb") as raw:
        # newline="" keeps CR LF as it is, so the csv module can see quoted line breaks.
        handle = io.TextIOWrapper(raw, encoding="utf-16", newline="")
        number = 0
        try:
            for number, line in enumerate(untrusted.bounded_lines(handle, untrusted.MAX_LINE_BYTES // 2), start=1):
                if isinstance(line, untrusted.LineTooLong):
                    yield number, TOO_LONG_TEXT, RowError("(line)", line.problem.replace("bytes", "characters"))
                else:
                    yield number, line, None
        except UnicodeDecodeError as exc:
            line = _first_undecodable_utf16_line(path)
            raise errors.invalid_input(f"{path.name}:{line}: not valid UTF-16 text ({exc.reason})") from None


def _first_undecodable_utf16_line(path: Path) -> int:
    """The decoder reads ahead in blocks, so its error does not say which line; decoding again
    with replacement finds the first line holding a replacement character."""
    with path.open("rb") as raw:
        handle = io.TextIOWrapper(raw, encoding="utf-16", errors="replace", newline="")
        number = 0
        for number, line in enumerate(untrusted.bounded_lines(handle, untrusted.MAX_LINE_BYTES // 2), start=1):
            if isinstance(line, str) and "\ufffd" in line:
                return number
    return max(number, 1)


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
            yield Record(number, untrusted.json_loads(text))
        except untrusted.InputError as exc:
            yield Record(number, RowError("(line)", f"not valid JSON: {exc}"))


def read_json(source: Source) -> Iterator[Record]:
    """An array of records, or an object of equally long columns. A ``.json`` file that is
    really JSON Lines (several values, one a line) is read as JSONL."""
    try:
        text = untrusted.read_text(source.path, untrusted.MAX_DOCUMENT_BYTES, source.encoding)
    except untrusted.InputError as exc:
        if exc.line:
            raise errors.invalid_input(exc.located(source.path.name)) from None
        raise errors.invalid_input(f"{source.path.name}: {exc}; a JSON array is read whole, so convert it to "
                                   "JSON Lines (one record a line)") from None
    try:
        document = untrusted.json_loads(text)
    except untrusted.InputError as exc:
        if exc.problem == "Extra data":
            yield from read_jsonl(source)
            return
        raise errors.invalid_input(f"{source.path.name}:{exc.line}: not valid JSON: {exc}" if exc.column
                                   else f"{source.path.name}: not usable JSON: {exc}") from None
    finally:
        del text
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
    # A quoted field may span lines; this bounds what one field can hold (the default, 128 KiB,
    # refused long texts that are fine).
    csv.field_size_limit(untrusted.MAX_LINE_BYTES)
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
                header = _csv_header(source.path.name, start, cells)
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


def _csv_header(name: str, line: int, cells: list[str]) -> list[str]:
    header = [cell.strip() for cell in cells]
    if len(header) > MAX_COLUMNS:
        raise errors.invalid_input(f"{name}:{line}: header: {len(header)} columns, more than the {MAX_COLUMNS} "
                                   "a dataset can have")
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise errors.invalid_input(f"{name}:{line}: header: column {column[:40]!r} appears twice")
        seen.add(column)
    return header


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
    start = size = 0
    oversized = False  # the current record passed the limit: its lines are dropped, not kept
    for number, text in text_lines(source):
        if isinstance(text, RowError):
            yield Record(number, text)
            continue
        if mode == "paragraphs" and not text.strip():
            if block and not oversized:
                yield Record(start, {"text": "".join(block).strip()})
            block, size, oversized = [], 0, False
            continue
        if not block and not oversized:
            start = number
        size += len(text)
        if size > untrusted.MAX_LINE_BYTES and not oversized:
            oversized, block = True, []
            yield Record(start, RowError("text", f"longer than the {untrusted.size_text(untrusted.MAX_LINE_BYTES)} "
                                                 "limit for one record; split it"))
        if not oversized:
            block.append(text.replace("\r\n", "\n"))
    if block and not oversized and "".join(block).strip():
        yield Record(start, {"text": "".join(block).strip() if mode == "paragraphs" else "".join(block)})


def read_parquet(source: Source) -> Iterator[Record]:
    """Rows in batches, so a large file never sits in memory as Python objects.

    A Parquet file can expand enormously when read (a "zip bomb"): a compressed page of
    repeated bytes, or one long string that a dictionary repeats on every row. The metadata is
    checked before anything is decompressed (columns, each row group's uncompressed size), and
    dictionary-encoded text stays encoded until each row's decoded size has been measured: a
    row over ``MAX_LINE_BYTES`` becomes that row's problem, and rows are turned into Python
    objects ``SLICE_BYTES`` at a time."""
    parquet, dictionary_columns = _open_parquet(source.path)
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            for value in _batch_rows(batch, dictionary_columns):
                index += 1
                yield Record(index, value, "row")
    except (OSError, ValueError, NotImplementedError) as exc:  # pyarrow's errors derive from these
        raise errors.invalid_input(f"{source.path.name}:row {index + 1}: cannot read Parquet: "
                                   f"{_one_line(exc)}") from None


SLICE_BYTES = 64 * 1024 * 1024  # decoded text turned into Python objects at once


def _open_parquet(path: Path) -> tuple[Any, list[str]]:
    """The file, opened to keep its dictionary-encoded text columns encoded, after checking
    its metadata; raises EngineError INVALID_INPUT naming what is too large."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(str(path))
        schema = metadata.schema.to_arrow_schema()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise errors.invalid_input(f"{path.name}: cannot read Parquet: {_one_line(exc)}") from None
    if metadata.num_columns > MAX_COLUMNS:
        raise errors.invalid_input(f"{path.name}: {metadata.num_columns} columns, more than the "
                                   f"{MAX_COLUMNS} a dataset can have")
    for number in range(metadata.num_row_groups):
        group = metadata.row_group(number)
        if group.num_columns != metadata.num_columns:
            # pyarrow aborts the process (not an exception) reading such a row group's columns.
            raise errors.invalid_input(f"{path.name}: cannot read Parquet: row group {number + 1} has "
                                       f"{group.num_columns} columns, the file {metadata.num_columns}")
        size = max(group.total_byte_size,
                   sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)))
        if size > MAX_ROW_GROUP_BYTES:
            raise errors.invalid_input(
                f"{path.name}: row group {number + 1} expands to {untrusted.size_text(size)}, more than the "
                f"{untrusted.size_text(MAX_ROW_GROUP_BYTES)} limit (write it with smaller row groups)")
    dictionary = [field.name for field in schema if _is_text(field.type)]
    try:
        return pq.ParquetFile(str(path), read_dictionary=dictionary), dictionary
    except Exception as exc:
        raise errors.invalid_input(f"{path.name}: cannot read Parquet: {_one_line(exc)}") from None


def _is_text(kind: Any) -> bool:
    """Text or bytes, or a dictionary of them (a file written from an Arrow dictionary column)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return any(check(kind) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                         pa.types.is_large_binary))


def _batch_rows(batch: Any, dictionary_columns: list[str]) -> Iterator[Any]:
    """The batch's rows as dicts, or a RowError for a row whose text is over the line limit."""
    sizes = _row_text_sizes(batch, dictionary_columns)
    start = 0
    while start < batch.num_rows:
        if sizes[start] > untrusted.MAX_LINE_BYTES:
            yield RowError("(row)", f"holds {untrusted.size_text(sizes[start])} of text, more than the "
                                    f"{untrusted.size_text(untrusted.MAX_LINE_BYTES)} limit for one record")
            start += 1
            continue
        end, total = start, 0
        while end < batch.num_rows and sizes[end] <= untrusted.MAX_LINE_BYTES and (
                end == start or total + sizes[end] <= SLICE_BYTES):
            total += sizes[end]
            end += 1
        yield from batch.slice(start, end - start).to_pylist()
        start = end


def _row_text_sizes(batch: Any, columns: list[str]) -> list[int]:
    """Decoded bytes of each row's text columns, measured without decoding them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    totals = pa.array([0] * batch.num_rows, pa.int64())
    for name in columns:
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            lengths = pc.take(pc.binary_length(column.dictionary).cast(pa.int64()), column.indices)
        else:
            lengths = pc.binary_length(column).cast(pa.int64())
        totals = pc.add(totals, pc.fill_null(lengths, 0))
    return totals.to_pylist()


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
        splits = untrusted.json_loads(untrusted.read_text(index))["splits"]
        if not isinstance(splits, list):
            raise TypeError
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
        raise errors.invalid_input(f"{path.name}: cannot read the datasets folder: {_one_line(exc)}") from None
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
        return _open_parquet(source.path)[0].metadata.num_rows
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


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's message (pyarrow's span several lines) as one clipped line."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
