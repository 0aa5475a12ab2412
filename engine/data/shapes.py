"""Dataset shapes: detecting which one a record has, and normalising it to the canonical row.

Canonical rows by shape (what ``datasets`` stores and training reads):

- chat-like shapes (``messages``, ``alpaca``, ``sharegpt``, ``prompt_completion``):
  ``{"messages": [{"role", "content"}, ...]}`` ending with an assistant turn, so training reads
  every one of them the same way;
- ``preference``: ``{"prompt": [messages ending with a user turn], "chosen": [assistant message],
  "rejected": [assistant message]}`` (TRL's conversational preference format);
- ``classification``: ``{"text", "label"}`` with the label stored as text;
- ``text``: ``{"text"}``.

A column mapping (``{"instruction": "question"}``) says which source column holds a shape's
field; it is applied before detection, and problems are reported under the source column name.

Any other column of a row (``category``, ``language``...) with a scalar value (text, number,
true/false or null) is kept as metadata: :func:`extra_columns` picks it out, and the importer
stores it as one ``meta`` column holding a JSON object per row (see :data:`META_COLUMN`).
"""

from __future__ import annotations

from typing import Any, Callable

from engine.data.formats import RowError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "model": "assistant", "system": "system"}
CHAT_SHAPES = ("messages", "alpaca", "sharegpt", "prompt_completion")
# Detection order matters: preference rows also have "prompt", classification rows also "text".
SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("preference", ("prompt", "chosen", "rejected")),
    ("alpaca", ("instruction", "output")),
    ("prompt_completion", ("prompt", "completion")),
    ("classification", ("text", "label")),
    ("text", ("text",)),
)


# The source fields each shape reads; every other column of a row is metadata.
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",), "sharegpt": ("conversations",), "preference": ("prompt", "chosen", "rejected"),
    "alpaca": ("instruction", "input", "output", "system"), "prompt_completion": ("prompt", "completion", "system"),
    "classification": ("text", "label"), "text": ("text",)}
META_COLUMN = "meta"  # canonical column: a JSON object string of the row's extra scalar columns
SCALARS = (str, int, float, bool, type(None))


def extra_columns(record: dict, shape: str, mapping: dict[str, str],
                  forced: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The record's columns that ``shape`` does not read, as (scalar columns, names of columns
    left out because their values are lists, objects or other non-scalars).

    Args:
        record: the source row before the mapping is applied.
        shape: the shape the row was normalised as.
        mapping: ``{field: source column}``; mapped source columns are the shape's, not extra.
        forced: ``shape`` was forced; the fields of the shape the row would be detected as are
            then not metadata either (forcing ``text`` on ``text``+``label`` rows drops the label).
    """
    fields = set(SHAPE_FIELDS[shape])
    if forced:
        try:
            fields.update(SHAPE_FIELDS[detect_shape(apply_mapping(record, mapping))])
        except RowError:
            pass  # no shape detected: only the forced shape's fields are read
    used = {mapping.get(name, name) for name in fields}
    kept: dict[str, Any] = {}
    nested: list[str] = []
    for column, value in record.items():
        if column in used:
            continue
        if isinstance(value, SCALARS):
            kept[str(column)] = value
        else:
            nested.append(str(column))
    return kept, nested


def apply_mapping(row: dict, mapping: dict[str, str]) -> dict:
    """The row with each mapped field filled from its source column (``{field: column}``)."""
    if not mapping:
        return row
    mapped = dict(row)
    for field_name, column in mapping.items():
        if column in row:
            mapped[field_name] = row[column]
        else:
            mapped.pop(field_name, None)  # so the missing source column is reported
    return mapped


def source_field(field_name: str, mapping: dict[str, str]) -> str:
    """Renames a canonical field in a problem (``instruction``, ``conversations[2].from``) back
    to the source column the user mapped it from, so the report points into their file."""
    for canonical, column in mapping.items():
        if field_name == canonical or field_name.startswith((canonical + "[", canonical + ".")):
            return column + field_name[len(canonical):]
    return field_name


def detect_shape(row: Any) -> str:
    """The first shape whose required fields ``row`` has.

    Raises:
        RowError: when no shape fits, listing the fields found.
    """
    if isinstance(row, dict):
        for shape, required in SIGNATURES:
            if all(name in row for name in required):
                return shape
    keys = ", ".join(sorted(map(str, row))) if isinstance(row, dict) else type(row).__name__
    raise RowError("(row)", "unknown shape: expected 'messages' (OpenAI), 'conversations' "
                   "(ShareGPT), 'instruction'+'output' (Alpaca), 'prompt'+'completion', "
                   "'prompt'+'chosen'+'rejected' (preference), 'text'+'label' (classification) "
                   f"or 'text'; found {keys or 'no fields'} (use --map or --shape)")


# -- field helpers --------------------------------------------------------------------------------

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


def _check_order(messages: list[dict], where: str = "messages", role_key: str = "role",
                 final: str = "assistant") -> None:
    """Turns alternate user, assistant after an optional system prompt and end with ``final``."""
    offset = 1 if messages and messages[0]["role"] == "system" else 0
    turns = messages[offset:]
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise RowError(f"{where}[{index + offset}].{role_key}",
                           f"expected {expected} here (turns must alternate user, assistant), "
                           f"got {message['role']}")
    if not turns or turns[-1]["role"] != final:
        problem = ("conversation has no final assistant turn to learn from" if final == "assistant"
                   else "prompt must end with a user turn")
        raise RowError(where, problem)


def _message_list(value: Any, where: str) -> list[dict]:
    """Validates an OpenAI-style list of {role, content}; fields are named ``where[i].role``."""
    return _turns(value, where, "role", "content", dict(zip(ROLES, ROLES)), "system, user or assistant")


def _turns(value: Any, where: str, role_key: str, text_key: str, roles: dict[str, str],
           known: str) -> list[dict]:
    """A list of {role_key, text_key} turns as canonical {role, content} messages, each role
    mapped through ``roles``; a problem names the turn, e.g. ``conversations[1].from``."""
    if not isinstance(value, list) or not value:
        raise RowError(where, f"must be a non-empty list of {{{role_key}, {text_key}}} objects")
    clean = []
    for index, turn in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(turn, dict):
            raise RowError(at, f"must be an object with {role_key} and {text_key}")
        role = turn.get(role_key)
        if role not in roles:
            raise RowError(f"{at}.{role_key}", f"unknown role {role!r} (use {known})")
        try:
            content = _text(turn, text_key)
        except RowError as exc:
            raise RowError(f"{at}.{exc.field}", exc.problem) from None
        clean.append({"role": roles[role], "content": content})
    return clean


# -- normalisers ----------------------------------------------------------------------------------

def normalise_messages(row: dict) -> dict:
    messages = _message_list(row.get("messages"), "messages")
    _check_order(messages)
    return {"messages": messages}


def normalise_alpaca(row: dict) -> dict:
    instruction = _text(row, "instruction")
    extra = _text(row, "input", required=False)
    output = _text(row, "output")
    system = _text(row, "system", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def normalise_sharegpt(row: dict) -> dict:
    """ShareGPT ``conversations: [{from, value}]`` with human/gpt/system roles → messages."""
    messages = _turns(row.get("conversations"), "conversations", "from", "value", SHAREGPT_ROLES,
                      "human, gpt or system")
    _check_order(messages, where="conversations", role_key="from")
    return {"messages": messages}


def normalise_prompt_completion(row: dict) -> dict:
    """Plain prompt/completion text, or TRL's conversational form: a prompt of messages ending
    with a user turn and a completion of one assistant message."""
    if isinstance(row.get("prompt"), list):
        prompt = _message_list(row["prompt"], "prompt")
        _check_order(prompt, where="prompt", final="user")
        return {"messages": prompt + _answer(row, "completion")}
    system = _text(row, "system", required=False)
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [{"role": "user", "content": _text(row, "prompt")},
                 {"role": "assistant", "content": _text(row, "completion")}]
    return {"messages": messages}


def normalise_preference(row: dict) -> dict:
    """Prompt as text or messages ending with a user turn; chosen/rejected as text or a single
    assistant message."""
    if isinstance(row.get("prompt"), list):
        prompt = _message_list(row["prompt"], "prompt")
        _check_order(prompt, where="prompt", final="user")
    else:
        prompt = [{"role": "user", "content": _text(row, "prompt")}]
    return {"prompt": prompt, "chosen": _answer(row, "chosen"), "rejected": _answer(row, "rejected")}


def _answer(row: dict, name: str) -> list[dict]:
    value = row.get(name)
    if isinstance(value, list):
        messages = _message_list(value, name)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise RowError(name, "must be text or a list of one assistant message")
        return messages
    return [{"role": "assistant", "content": _text(row, name)}]


def normalise_classification(row: dict) -> dict:
    """Labels are stored as text so integer and text labels cannot clash in one Arrow column."""
    label = row.get("label")
    if label is None:
        raise RowError("label", "missing")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise RowError("label", f"must be text or a whole number, not {type(label).__name__}")
    label = str(label).strip()
    if not label:
        raise RowError("label", "is empty")
    return {"text": _text(row, "text"), "label": label}


def normalise_text(row: dict) -> dict:
    return {"text": _text(row, "text")}


NORMALISERS: dict[str, Callable[[dict], dict]] = {
    "messages": normalise_messages, "alpaca": normalise_alpaca, "sharegpt": normalise_sharegpt,
    "prompt_completion": normalise_prompt_completion, "preference": normalise_preference,
    "classification": normalise_classification, "text": normalise_text}
SHAPES = tuple(NORMALISERS)
