"""The Python version check: an interpreter too old for Tunebench gets one line, not a
traceback.

Standard library only. Like every module ``bootstrap.py`` imports, it must stay parseable by
Python 3.7 (no walrus, no match, annotations only as strings): the check itself only runs once
all of them have been imported.
"""

from __future__ import annotations

import sys
from typing import Sequence

MIN_PYTHON = (3, 11)  # TRL 1.16 needs 3.11


def python_version_problem(version_info: Sequence[int]) -> str | None:
    """Say why this Python cannot run Tunebench, or None when it can.

    Args:
        version_info: ``sys.version_info`` or a tuple like ``(3, 9, 7)``.

    Returns:
        One line for the user, or None.
    """
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return None
    found = ".".join(str(part) for part in version_info[:3])
    wanted = "%d.%d" % MIN_PYTHON
    return (
        "Tunebench needs Python %s or newer, but this is Python %s (%s). "
        "Run the same command with a newer Python." % (wanted, found, sys.executable)
    )
