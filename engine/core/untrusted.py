"""Reading files a user hands over: the one place that bounds size, depth and oddities.

Standard library only, so the GUI reads with the same guards. Every reader of a user file (dataset
importers, prompt suites, batch and run files, ratings, evaluation specs, adapter configs) goes
through these helpers, so a hostile or broken file is refused with one line instead of a
traceback or unbounded memory:

- **lines** longer than :data:`MAX_LINE_BYTES` are skipped without being held in memory
  (:func:`bounded_lines`) and reported as that line's problem;
- **whole documents** (a JSON array, a TOML file) larger than their limit are refused before
  they are read (:func:`read_text`); an undecodable byte is reported with its line;
- **JSON** (:func:`json_loads`) refuses nesting deeper than :data:`MAX_DEPTH` (the reported
  RecursionError), objects with more than :data:`MAX_KEYS` keys, duplicate keys, NaN and
  Infinity (not JSON; Python's parser accepts them), numbers too large for a float or with
  more than 4300 digits, and lone UTF-16 surrogates (``"\\ud800"``), which no UTF-8 writer
  downstream could store;
- **TOML** (:func:`toml_loads`) refuses the same depth and nan/inf values.

Limits are documented in README ("What Tunebench guarantees").
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import IO, Any, AnyStr, Iterator

MAX_LINE_BYTES = 16 * 1024 * 1024  # one record, one line: far above any real chat or document
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # a JSON array parsed whole; larger files belong in JSONL
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # run files, suites, specs, adapter configs
MAX_DEPTH = 64  # real records nest 3-5 levels (messages > turn > content parts)
MAX_KEYS = 10_000  # columns of one record
_SKIP_CHUNK = 1 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(ValueError):
    """What is wrong with a piece of user input; ``line``/``column`` are 1-based, 0 if unknown."""

    def __init__(self, problem: str, line: int = 0, column: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.problem} at column {self.column}" if self.column else self.problem

    def located(self, file_name: str) -> str:
        """One line naming the file and, where known, the line: ``file:line: problem``."""
        return f"{file_name}:{self.line}: {self}" if self.line else f"{file_name}: {self}"


class LineTooLong:
    """Stands for a line that was longer than the limit; its bytes were skipped, not kept."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit

    @property
    def problem(self) -> str:
        return f"line is longer than the {size_text(self.limit)} limit ({size_text(self.size)}); split it"


def size_text(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


# -- lines and documents --------------------------------------------------------------------------

def bounded_lines(handle: IO[AnyStr], limit: int | None = None) -> Iterator[AnyStr | LineTooLong]:
    """Every line of ``handle`` (line end kept), or a LineTooLong for one over ``limit`` units
    (default MAX_LINE_BYTES; bytes for a binary handle, characters for a text one). Memory
    stays within ``limit``."""
    limit = MAX_LINE_BYTES if limit is None else limit
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) <= limit or line.endswith(newline):
            yield line
            continue
        size = len(line)
        while not line.endswith(newline):  # skip the rest of it, a chunk at a time
            line = handle.readline(_SKIP_CHUNK)
            if not line:
                break
            size += len(line)
        yield LineTooLong(size, limit)


def read_text(path: Path, limit: int | None = None, encoding: str = "utf-8") -> str:
    """The whole file as text, refused (InputError) when larger than ``limit`` bytes (default
    MAX_CONFIG_BYTES) or not ``encoding``; OSError passes through for the caller to word."""
    limit = MAX_CONFIG_BYTES if limit is None else limit
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"file is larger than the {size_text(limit)} limit for this kind of file")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"not {encoding} text (byte {exc.start + 1})", line) from None


# -- JSON -------------------------------------------------------------------------------------------

def _object(pairs: list[tuple[str, Any]], max_keys: int | None = None) -> dict[str, Any]:
    max_keys = MAX_KEYS if max_keys is None else max_keys
    if len(pairs) > max_keys:
        raise InputError(f"an object with more than {max_keys} keys")
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise InputError(f"duplicate key {_clip(duplicate)!r}")
    return result


def _constant(name: str) -> Any:
    raise InputError(f"{name} is not valid JSON (use null or a number)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"number {_clip(text)} is too large")
    return value


def json_loads(text: str | bytes, max_keys: int | None = None) -> Any:
    """Parses JSON from a user file, raising InputError (never RecursionError, never a value a
    later writer chokes on) for the classes listed in the module docstring. ``max_keys``
    raises the per-object key limit for documents that are indexes, not records."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return _object(pairs, max_keys)

    try:
        value = json.loads(text, object_pairs_hook=hook, parse_constant=_constant, parse_float=_float)
    except InputError:
        raise
    except json.JSONDecodeError as exc:
        raise InputError(exc.msg.removesuffix(" at"), exc.lineno, exc.colno) from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InputError(f"unreadable number: {str(exc).split(':')[0]}") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion (a deep value must not overflow here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InputError(f"text {_clip(item)!r} holds a lone UTF-16 surrogate (not a character)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise InputError(f"nested more than {MAX_DEPTH} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


# -- TOML -------------------------------------------------------------------------------------------

def _toml_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{text} is not a usable number here")
    return value


def toml_loads(text: str) -> dict[str, Any]:
    """Parses TOML from a user file, raising InputError (with its line where tomllib knows it)."""
    try:
        data = tomllib.loads(text, parse_float=_toml_float)
    except InputError:
        raise
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise InputError(problem, int(found.group(1)) if found else 0) from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_value(data)
    return data


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
