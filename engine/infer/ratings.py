"""Ratings of playground answers, and the preference dataset they become.

Standard library only (plus engine.paths/workspace): the GUI records ratings with this module.

Every rating is one JSON line in ``<workspace>/ratings/ratings.jsonl`` holding the prompt (the
chat messages sent, or the raw text), the configuration (model, adapter, params) and the answer:

- ``thumbs``: value +1 or -1; ``score``: value 1–5 — for one answer;
- ``ab``: the better of two answers to the same prompt (``answer``/``config`` the chosen one,
  ``other_answer``/``other_config`` the rejected one).

Rating the same answer again (same ``key`` and kind) replaces the earlier rating. A new rating is
appended with one write of a whole line (O_APPEND), a replacement rewrites the file atomically;
a torn or foreign line is skipped on reading, never fatal.

:func:`preference_rows` turns ratings into prompt/chosen/rejected rows (TRL's conversational
preference shape, which ``tunebench-engine data import`` detects): every A/B pick, plus, for
each prompt, every pair of its answers whose ratings differ (thumbs up counts as 5, down as 1).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from engine.core import errors, paths, untrusted, workspace

RATINGS_FILE = "ratings.jsonl"
KINDS = ("thumbs", "score", "ab")
THUMBS_AS_SCORE = {1: 5, -1: 1}

Prompt = str | list[dict[str, str]]  # raw text, or chat messages ending with the user turn


@dataclass
class Rating:
    """One rating; ``key`` identifies the rated answer (the GUI gives each answer one)."""

    kind: str
    prompt: Prompt
    answer: str
    value: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    mode: str = "chat"
    other_answer: str = ""
    other_config: dict[str, Any] = field(default_factory=dict)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: float = field(default_factory=lambda: round(time.time(), 3))

    def check(self) -> None:
        """Raises EngineError (USAGE) for a rating that cannot be stored."""
        if self.kind not in KINDS:
            raise errors.usage(f"rating: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "thumbs" and self.value not in (1, -1):
            raise errors.usage("rating: thumbs value must be 1 (up) or -1 (down)")
        if self.kind == "score" and not 1 <= self.value <= 5:
            raise errors.usage(f"rating: score must be 1 to 5, got {self.value}")
        if self.kind == "ab" and not self.other_answer.strip():
            raise errors.usage("rating: an A/B pick needs the other answer")
        if not self.answer.strip():
            raise errors.usage("rating: the answer is empty")

    @property
    def score(self) -> int | None:
        """The 1–5 value used to pair answers, None for A/B picks."""
        if self.kind == "thumbs":
            return THUMBS_AS_SCORE[self.value]
        return self.value if self.kind == "score" else None


def ratings_file() -> Path:
    return paths.ratings_dir() / RATINGS_FILE


def load(path: Path | None = None) -> list[Rating]:
    """Every readable rating, oldest first."""
    path = path or ratings_file()
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    found = []
    with handle:
        for line in untrusted.bounded_lines(handle):
            rating = _rating(line)
            if rating is not None:
                found.append(rating)
    return found


def _rating(line: str | untrusted.LineTooLong) -> Rating | None:
    """The rating on one line, or None for a line cut off by a crash or written by hand: never fatal."""
    if isinstance(line, untrusted.LineTooLong):
        return None
    try:
        data = untrusted.json_loads(line)
        rating = Rating(**{k: v for k, v in data.items() if k in Rating.__dataclass_fields__})
        rating.check()
    except (ValueError, TypeError, KeyError, AttributeError, errors.EngineError):
        return None
    return rating


def record(rating: Rating, path: Path | None = None) -> None:
    """Stores a rating; replaces an earlier one of the same answer and kind."""
    rating.check()
    path = path or ratings_file()
    existing = load(path)
    same = [r for r in existing if r.key == rating.key and r.kind == rating.kind]
    if same:
        kept = [r for r in existing if not (r.key == rating.key and r.kind == rating.kind)] + [rating]
        workspace.atomic_write_text(path, "".join(_line(r) for r in kept))
        return
    _append(path, _line(rating))


def _line(rating: Rating) -> str:
    return json.dumps(asdict(rating), ensure_ascii=False) + "\n"


def _append(path: Path, line: str) -> None:
    # One write() of a whole line with O_APPEND: readers see the line complete or not at all.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


# -- preference dataset ----------------------------------------------------------------------------

def preference_rows(ratings: list[Rating]) -> list[dict[str, Any]]:
    """prompt/chosen/rejected rows: A/B picks, then pairs of differently rated answers of the
    same prompt; a pair with the same text on both sides, or seen before, is left out."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(prompt: Prompt, chosen: str, rejected: str) -> None:
        key = json.dumps([prompt, chosen, rejected], ensure_ascii=False)
        if chosen.strip() != rejected.strip() and key not in seen:
            seen.add(key)
            rows.append({"prompt": _prompt_field(prompt), "chosen": chosen, "rejected": rejected})

    for rating in ratings:
        if rating.kind == "ab":
            add(rating.prompt, rating.answer, rating.other_answer)
    groups: dict[str, dict[str, int]] = {}
    prompts: dict[str, Prompt] = {}
    for rating in ratings:
        if rating.score is None:
            continue
        group = json.dumps(rating.prompt, ensure_ascii=False, sort_keys=True)
        prompts[group] = rating.prompt
        groups.setdefault(group, {})[rating.answer] = rating.score  # the latest rating of a text wins
    for group, scored in groups.items():
        for (first, a), (second, b) in combinations(scored.items(), 2):
            if a != b:
                add(prompts[group], *((first, second) if a > b else (second, first)))
    return rows


def _prompt_field(prompt: Prompt) -> Prompt:
    """Raw text as it is; chat messages as the list (system + turns ending with the user)."""
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def export_preferences(path: Path, ratings: list[Rating] | None = None) -> int:
    """Writes the preference rows as JSONL (atomically); returns how many.

    Raises:
        EngineError: INVALID_INPUT when no pair can be made (nothing to train on).
    """
    rows = preference_rows(load() if ratings is None else ratings)
    if not rows:
        raise errors.invalid_input("no preference pairs yet: pick the better of two answers (A/B), or rate "
                                   "answers to the same prompt differently")
    workspace.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)
