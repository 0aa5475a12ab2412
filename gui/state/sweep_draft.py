"""A sweep defined from the Train page: the form's settings as the base, the knobs picked to
search, and the sweep's own settings, checked and written as a sweep file; Qt-free.

Everything goes through engine/sweep/spec.py (the same schema, checks and TOML as `sweep create`),
so a sweep made in the window is a sweep file a terminal could have written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import config, schema, workspace
from engine.core.schema import ConfigError, Knob
from engine.sweep import spec


@dataclass
class SpaceRow:
    """One knob the user ticked: a range (``low``..``high``, ``log``, ``step``) or ``choices``,
    as typed (text), parsed by :func:`parse_row`."""

    name: str
    low: str = ""
    high: str = ""
    log: bool = False
    step: str = ""
    choices: str = ""


def searchable_knobs() -> list[Knob]:
    """The train knobs a sweep may search: every form knob except the run's name."""
    return [k for k in schema.knobs(config.TrainConfig) if k.gui and k.name != "name"]


def is_number(k: Knob) -> bool:
    return k.kind in (int, float) and not k.choices


def suggested_row(k: Knob, value: Any) -> SpaceRow:
    """A starting range around the form's value: a tenth to ten times it on a log scale for
    positive floats, half to twice it for whole numbers; other knobs start with their value."""
    if is_number(k) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if k.kind is float and value > 0:
            low, high = value / 10, value * 10
            if k.maximum is not None:
                high = min(high, float(k.maximum))
            return SpaceRow(k.name, _shown(low), _shown(high), log=True)
        if k.kind is int:
            low, high = max(int(value) // 2, int(k.minimum or 0)), max(int(value) * 2, int(value) + 1)
            return SpaceRow(k.name, str(low), str(high), step="1")
        return SpaceRow(k.name, "0", _shown(float(value) or 1.0))
    if k.choices:
        return SpaceRow(k.name, choices=", ".join(k.choices))
    if k.kind is bool:
        return SpaceRow(k.name, choices="true, false")
    return SpaceRow(k.name, choices=_shown(value))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def parse_row(row: SpaceRow) -> dict[str, Any]:
    """A ``[sweep.space.KNOB]`` table from typed text; ConfigError names ``space.KNOB.FIELD``."""
    k = schema.knob_of(config.TrainConfig, row.name)
    where = f"space.{row.name}"
    if row.choices.strip():
        return {"choices": [_choice(k, text.strip(), where) for text in row.choices.split(",") if text.strip()]}
    table: dict[str, Any] = {"low": _number(row.low, f"{where}.low"), "high": _number(row.high, f"{where}.high")}
    if row.log:
        table["log"] = True
    if row.step.strip():
        table["step"] = _number(row.step, f"{where}.step")
    if k.kind is int:
        table = {key: int(v) if isinstance(v, float) and v.is_integer() else v for key, v in table.items()}
    return table


def _number(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(where, f"must be a number, not {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ConfigError(where, "must be a finite number")
    return value


def _choice(k: Knob, text: str, where: str) -> Any:
    if k.kind is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"{where}.choices", f"must be true or false, not {text!r}")
        return text.lower() == "true"
    if k.kind in (int, float):
        number = _number(text, f"{where}.choices")
        return int(number) if k.kind is int and number.is_integer() else number
    return text


def build(settings: dict[str, Any], base: dict[str, Any], rows: list[SpaceRow],
          evaluate: dict[str, Any] | None = None) -> spec.Sweep:
    """The sweep, checked as `sweep create` checks a file; ConfigError names the field."""
    table: dict[str, Any] = {key: value for key, value in settings.items() if value not in (None, "")}
    table["base"] = {key: value for key, value in base.items() if value is not None}
    table["space"] = {row.name: parse_row(row) for row in rows}
    if evaluate is not None:
        table["evaluate"] = evaluate
    return spec.from_dict(table, source="sweep")


def write(sweep: spec.Sweep, folder: Path) -> Path:
    """The sweep file ``folder/NAME.toml``, written atomically; USAGE names a taken name."""
    target = folder / f"{sweep.name}.toml"
    folder.mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_text(target, spec.to_toml(sweep))
    return target
