"""Turning canonical dataset rows into evaluation examples: what the model is asked, what the
reference answer is, and (for classification) the label set to choose from.

Standard library only. Shapes (see engine.data.shapes):

- conversations (``messages``): the turns before the last assistant turn are the prompt, the last
  assistant turn is the reference; the shown input is the last user turn.
- ``classification`` (``text``, ``label``): the prompt asks for one of the dataset's labels,
  listed in the prompt; the reference is the label, and the label list are the choices for
  log-likelihood accuracy.
- ``preference``: the prompt, with the chosen answer as the reference.
- ``text``: no prompt; only perplexity over the whole text can be computed.

Every shape's examples carry the row's metadata (the ``meta`` column the importer keeps for a
file's extra columns, e.g. ``category``) as columns to slice by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

GENERATIVE_SHAPES = ("messages", "classification", "preference")


@dataclass(frozen=True)
class EvalExample:
    """One row to score.

    Attributes:
        index: Row number in the split.
        messages: The prompt turns (system/user/assistant), ending with a user turn; empty for
            plain text rows.
        reference: The expected answer (for text rows: the whole text).
        choices: Candidate labels for classification rows, in the order the prompt lists them.
        columns: The row's scalar columns, for slices.
    """

    index: int
    messages: tuple[dict[str, str], ...]
    reference: str
    choices: tuple[str, ...] = ()
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def input(self) -> str:
        """The user's last turn (what a person reads in the per-example table)."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""

    def with_input(self, text: str, choices: Sequence[str] | None = None) -> "EvalExample":
        """A copy whose last user turn is ``text`` (for perturbations)."""
        messages = list(self.messages)
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last] = {"role": "user", "content": text}
        return replace(self, messages=tuple(messages),
                       choices=tuple(choices) if choices is not None else self.choices)


def classification_prompt(text: str, choices: Sequence[str]) -> str:
    """The question asked for a classification row: the text and the labels to pick from."""
    return f"{text}\n\nAnswer with one of: {', '.join(choices)}."


META_COLUMN = "meta"  # engine.data.shapes.META_COLUMN (this module stays standard library only)


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    """The row's metadata columns (empty for rows stored without any)."""
    text = row.get(META_COLUMN)
    value = json.loads(text) if isinstance(text, str) and text else {}
    return value if isinstance(value, dict) else {}


def _scalars(row: dict[str, Any]) -> dict[str, Any]:
    """The row's own scalar columns and its metadata; the row's own columns win a name clash."""
    own = {k: v for k, v in row.items()
           if k != META_COLUMN and (isinstance(v, (str, int, float, bool)) or v is None)}
    return _meta(row) | own


def _from_messages(index: int, row: dict[str, Any]) -> EvalExample:
    messages = [dict(role=m["role"], content=m["content"]) for m in row["messages"]]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 1:
        raise ValueError(f"row {index}: messages: no assistant answer after a user turn")
    return EvalExample(index, tuple(messages[:last]), messages[last]["content"], (), _scalars(row))


def _from_classification(index: int, row: dict[str, Any], labels: Sequence[str]) -> EvalExample:
    prompt = classification_prompt(row["text"], labels)
    return EvalExample(index, ({"role": "user", "content": prompt},), str(row["label"]), tuple(labels),
                       _scalars(row))


def _from_preference(index: int, row: dict[str, Any]) -> EvalExample:
    prompt = tuple(dict(role=m["role"], content=m["content"]) for m in row["prompt"])
    return EvalExample(index, prompt, row["chosen"][-1]["content"], (), _meta(row))


def _from_text(index: int, row: dict[str, Any]) -> EvalExample:
    return EvalExample(index, (), row["text"], (), _meta(row))


def to_examples(rows: Sequence[dict[str, Any]], shape: str) -> list[EvalExample]:
    """Evaluation examples of canonical rows of ``shape`` (raises ValueError naming the row)."""
    if shape == "classification":
        labels = sorted({str(r["label"]) for r in rows})
        return [_from_classification(i, r, labels) for i, r in enumerate(rows)]
    builders: dict[str, Callable[[int, dict[str, Any]], EvalExample]] = {
        "messages": _from_messages, "preference": _from_preference, "text": _from_text}
    if shape not in builders:
        raise ValueError(f"shape {shape!r} cannot be evaluated")
    return [builders[shape](i, r) for i, r in enumerate(rows)]


def slice_value(example: EvalExample, column: str) -> str:
    """The example's value of ``column`` as text; the derived column ``reference`` is the
    expected answer (the label, for classification)."""
    if column == "reference":
        return example.reference
    value = example.columns.get(column)
    return "(missing)" if value is None else str(value)


def slice_columns(examples: Sequence[EvalExample]) -> list[str]:
    """Columns a slice can be taken by: scalar columns and metadata of the rows (a column only
    some rows have counts), and ``reference``."""
    names = sorted({k for e in examples for k in e.columns})
    return names + ["reference"]
