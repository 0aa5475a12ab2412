"""Prompt suites: saved prompts with ``{{variables}}``, few-shot example blocks and test cases.

Standard library only (plus engine.paths/workspace/errors): the GUI saves and lists suites with
this module and ``tunebench-engine batch`` runs them with it.

A suite file (``<workspace>/suites/<slug>.json``, also the JSON import/export format)::

    {"format": "tunebench-suite", "version": 1,
     "name": "Reviews", "description": "...",
     "prompts": [{"name": "summary", "system": "You are terse.",
                  "template": "Summarise: {{review}}",
                  "examples": [{"input": "Great sound, weak battery.", "output": "Mixed."}],
                  "mode": "chat"}],
     "cases": [{"review": "Arrived broken."}, {"review": "Love it."}]}

Every prompt is run once per case (once when there are no cases). A prompt without examples
is zero-shot; its examples become user/assistant turns before the question in chat mode and
``Input:``/``Output:`` blocks in raw mode.

API: :func:`render`, :class:`Prompt`, :class:`Suite`, :func:`expand` (suite → items to run),
:func:`load_suite`/:func:`save_suite`/:func:`list_suites`/:func:`delete_suite`,
:func:`import_json`/:func:`export_json`, :func:`read_column` (prompts from a CSV/JSONL column).
Bad input raises ``EngineError`` with one line naming the file, prompt or field.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import errors, names, paths, untrusted, workspace

FORMAT = "tunebench-suite"
VERSION = 1
MODES = ("chat", "raw")
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
EXAMPLE_BLOCK = "Input: {input}\nOutput: {output}\n\n"
RAW_QUESTION = "Input: {input}\nOutput:"


def variables(template: str) -> list[str]:
    """The variable names a template uses, in first-use order, without repeats."""
    return list(dict.fromkeys(VARIABLE.findall(template)))


def render(template: str, values: dict[str, Any], where: str = "prompt") -> str:
    """Fills ``{{name}}`` placeholders; every variable must have a value.

    Raises:
        EngineError: INVALID_INPUT naming the first missing variable and ``where`` it is used.
    """
    missing = [name for name in variables(template) if name not in values]
    if missing:
        given = ", ".join(sorted(values)) or "none"
        raise errors.invalid_input(f"{where}: no value for variable {{{{{missing[0]}}}}} (values given: {given})")
    return VARIABLE.sub(lambda m: str(values[m.group(1)]), template)


@dataclass
class Example:
    """One few-shot example: what was asked and the answer wanted."""

    input: str
    output: str


@dataclass
class Prompt:
    """A saved prompt: a template with variables, an optional system prompt and examples."""

    name: str
    template: str
    system: str = ""
    examples: list[Example] = field(default_factory=list)
    mode: str = "chat"

    @property
    def zero_shot(self) -> bool:
        return not self.examples

    def variables(self) -> list[str]:
        texts = [self.system, self.template] + [t for e in self.examples for t in (e.input, e.output)]
        return list(dict.fromkeys(name for text in texts for name in variables(text)))

    def messages(self, values: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """Chat messages: system, one user/assistant pair per example, then the question."""
        values = values or {}
        where = f"prompt {self.name!r}"
        out = [{"role": "system", "content": render(self.system, values, where)}] if self.system.strip() else []
        for example in self.examples:
            out.append({"role": "user", "content": render(example.input, values, where)})
            out.append({"role": "assistant", "content": render(example.output, values, where)})
        out.append({"role": "user", "content": render(self.template, values, where)})
        return out

    def raw_text(self, values: dict[str, Any] | None = None) -> str:
        """Raw completion text: the system line, ``Input:/Output:`` example blocks, the
        question (zero-shot: the rendered template alone)."""
        values = values or {}
        where = f"prompt {self.name!r}"
        question = render(self.template, values, where)
        if self.zero_shot:
            head = render(self.system, values, where) + "\n\n" if self.system.strip() else ""
            return head + question
        blocks = "".join(EXAMPLE_BLOCK.format(input=render(e.input, values, where),
                                              output=render(e.output, values, where)) for e in self.examples)
        head = render(self.system, values, where) + "\n\n" if self.system.strip() else ""
        return head + blocks + RAW_QUESTION.format(input=question)


@dataclass
class Suite:
    """Prompts and the cases (variable values) each prompt is run with."""

    name: str
    prompts: list[Prompt] = field(default_factory=list)
    cases: list[dict[str, str]] = field(default_factory=list)
    description: str = ""

    @property
    def slug(self) -> str:
        return slug_of(self.name)


@dataclass(frozen=True)
class Item:
    """One thing to generate: a prompt with one case's values, rendered."""

    prompt: str  # the prompt's name
    case: int  # index into suite.cases (0 when there are none)
    values: dict[str, str]
    mode: str
    messages: list[dict[str, str]]
    text: str  # raw mode text; in chat mode the last user message (for tables)


def expand(suite: Suite) -> list[Item]:
    """Every prompt × every case, rendered; a missing variable fails before anything runs."""
    cases = suite.cases or [{}]
    items = []
    for prompt in suite.prompts:
        for index, values in enumerate(cases):
            messages = prompt.messages(values)
            text = prompt.raw_text(values) if prompt.mode == "raw" else messages[-1]["content"]
            items.append(Item(prompt.name, index, dict(values), prompt.mode, messages, text))
    return items


# -- JSON ------------------------------------------------------------------------------------

def to_json(suite: Suite) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "name": suite.name, "description": suite.description,
            "prompts": [{"name": p.name, "system": p.system, "template": p.template, "mode": p.mode,
                         "examples": [{"input": e.input, "output": e.output} for e in p.examples]}
                        for p in suite.prompts],
            "cases": [dict(case) for case in suite.cases]}


def from_json(document: Any, source: str = "suite") -> Suite:
    """A suite from its JSON form, validated; errors name ``source`` and the field."""
    if not isinstance(document, dict):
        raise errors.invalid_input(f"{source}: expected a JSON object with 'name' and 'prompts'")
    if document.get("format", FORMAT) != FORMAT:
        raise errors.invalid_input(f"{source}: format is {document.get('format')!r}, expected {FORMAT!r}")
    name = _text(document, "name", source)
    prompts = document.get("prompts")
    if not isinstance(prompts, list):
        raise errors.invalid_input(f"{source}: 'prompts' must be a list")
    cases = document.get("cases", [])
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise errors.invalid_input(f"{source}: 'cases' must be a list of objects (variable → value)")
    suite = Suite(name=name, description=str(document.get("description") or ""),
                  prompts=[_prompt(p, f"{source}: prompts[{i}]") for i, p in enumerate(prompts)],
                  cases=[{str(k): str(v) for k, v in case.items()} for case in cases])
    _check_names(suite, source)
    return suite


def _prompt(data: Any, where: str) -> Prompt:
    if not isinstance(data, dict):
        raise errors.invalid_input(f"{where}: expected an object with 'name' and 'template'")
    mode = str(data.get("mode") or "chat")
    if mode not in MODES:
        raise errors.invalid_input(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    examples = data.get("examples", [])
    if not isinstance(examples, list):
        raise errors.invalid_input(f"{where}.examples: must be a list of {{input, output}} objects")
    return Prompt(name=_text(data, "name", where), template=_text(data, "template", where),
                  system=str(data.get("system") or ""), mode=mode,
                  examples=[Example(_text(e, "input", f"{where}.examples[{i}]"),
                                    _text(e, "output", f"{where}.examples[{i}]"))
                            for i, e in enumerate(examples)])


def _text(data: Any, key: str, where: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_input(f"{where}: '{key}' must be a non-empty string")
    return value


def _check_names(suite: Suite, source: str) -> None:
    seen: set[str] = set()
    for prompt in suite.prompts:
        if prompt.name in seen:
            raise errors.invalid_input(f"{source}: two prompts are named {prompt.name!r}")
        seen.add(prompt.name)


# -- files -----------------------------------------------------------------------------------

def slug_of(name: str) -> str:
    """A file name for a suite name, safe on Windows and Linux."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:60]
    if not slug:
        raise errors.usage(f"suite name {name!r}: needs at least one letter or digit")
    return slug


def suite_path(name: str) -> Path:
    slug = slug_of(name)
    problem = names.name_problem(f"{slug}.json")  # the slug is safe, but may be CON, NUL, COM1...
    if problem:
        raise errors.usage(f"suite name {name!r}: {problem}")
    return names.child(paths.suites_dir(), f"{slug}.json", "suite name")


def save_suite(suite: Suite) -> Path:
    """Writes (or replaces) the suite in the workspace, atomically."""
    from_json(to_json(suite), f"suite {suite.name!r}")  # never store what cannot be loaded
    path = suite_path(suite.name)
    workspace.atomic_write_json(path, to_json(suite))
    return path


def load_suite(name_or_path: str) -> Suite:
    """A suite saved in the workspace (by name) or a suite JSON file (by path)."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix == ".json" and path.is_file()):
        path = suite_path(name_or_path)
    if not path.is_file():
        known = ", ".join(s.name for s in list_suites()) or "none saved"
        raise errors.not_found(f"suite: {name_or_path!r} is not a saved suite ({known}) or a suite file")
    return import_json(path)


def list_suites() -> list[Suite]:
    """Every readable suite in the workspace, by name; unreadable files are skipped."""
    found = []
    for path in sorted(paths.suites_dir().glob("*.json")):
        try:
            found.append(import_json(path))
        except errors.EngineError:
            continue
    return sorted(found, key=lambda s: s.name.lower())


def delete_suite(name: str) -> None:
    suite_path(name).unlink(missing_ok=True)


def import_json(path: Path) -> Suite:
    """Reads a suite JSON file (an exported suite or one written by hand)."""
    try:
        document = untrusted.json_loads(untrusted.read_text(path))
    except OSError as exc:
        raise errors.not_found(f"{path}: cannot read ({exc.strerror})") from None
    except untrusted.InputError as exc:  # this module's style: "FILE: line N: ..."
        where = f"{path}: line {exc.line}" if exc.line else str(path)
        raise errors.invalid_input(f"{where}: not valid JSON ({exc})" if exc.column else f"{where}: {exc}") from None
    return from_json(document, str(path))


def export_json(suite: Suite, path: Path) -> None:
    workspace.atomic_write_json(path, to_json(suite))


# -- prompts from a data file ------------------------------------------------------------------

def read_column(path: Path, column: str) -> list[str]:
    """The values of one column of a CSV or JSONL file, as prompts for a batch run.

    Raises:
        EngineError: NOT_FOUND for a missing file; INVALID_INPUT naming the line of a bad
            row or the missing column.
    """
    if not path.is_file():
        raise errors.not_found(f"{path}: file not found")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return _jsonl_column(path, column)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _csv_column(path, column, "\t" if path.suffix.lower() == ".tsv" else ",")
    raise errors.invalid_input(f"{path}: use a .csv, .tsv or .jsonl file")


def _jsonl_column(path: Path, column: str) -> list[str]:
    values = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(untrusted.bounded_lines(handle), start=1):
            if isinstance(line, untrusted.LineTooLong):
                raise errors.invalid_input(f"{path}: line {number}: {line.problem}")
            if not line.strip():
                continue
            try:
                row = untrusted.json_loads(line)
            except untrusted.InputError as exc:
                raise errors.invalid_input(f"{path}: line {number}: not valid JSON ({exc})") from None
            if not isinstance(row, dict) or column not in row:
                raise errors.invalid_input(f"{path}: line {number}: no field {column!r}")
            values.append(str(row[column]))
    return values


def _csv_column(path: Path, column: str, delimiter: str) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if column not in (reader.fieldnames or []):
            found = ", ".join(reader.fieldnames or []) or "no header"
            raise errors.invalid_input(f"{path}: no column {column!r} (columns: {found})")
        return [row[column] or "" for row in reader]
