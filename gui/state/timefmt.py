"""Timestamps from workspace files (epoch seconds or ISO text) as short local times. Qt-free."""

from __future__ import annotations

import datetime as dt
from typing import Any

DISPLAY_FORMAT = "%Y-%m-%d %H:%M"


def format_time(value: Any, fallback: float | None = None) -> str:
    """``value`` as local "YYYY-MM-DD HH:MM"; unparsable text is shown as it is."""
    if isinstance(value, str) and value:
        try:
            return _display(dt.datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _display(dt.datetime.fromtimestamp(value))
    return _display(dt.datetime.fromtimestamp(fallback)) if fallback is not None else ""


def _display(when: dt.datetime) -> str:
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime(DISPLAY_FORMAT)
