"""The bootstrap's messages and its log file.

Every ``[tunebench]`` line is printed for the user and appended to the log, which also gets
pip's verbose log and each command run (``<venv>/tunebench-bootstrap.log``).

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class Log:
    """The messages and log file of one bootstrap invocation.

    Attributes:
        path: The log file; None until ``start`` (lines are then printed only).
    """

    path: Path | None = None

    def say(self, message: str, error: bool = False) -> None:
        """Print a ``[tunebench]`` line for the user and append it to the log.

        Args:
            message: The text. Keep our own wording ASCII; paths in it may be anything.
            error: Print to stderr instead of stdout.
        """
        stream = sys.stderr if error else sys.stdout
        text = "[tunebench] " + message
        try:
            print(text, file=stream, flush=True)
        except UnicodeEncodeError:  # e.g. a path with accents, redirected to a cp1252 file
            encoding = getattr(stream, "encoding", None) or "ascii"
            print(text.encode(encoding, "replace").decode(encoding), file=stream, flush=True)
        self.write(message)

    def write(self, line: str) -> None:
        """Append a line to the log; logging must never be the reason a setup fails."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(time.strftime("%H:%M:%S ") + line + "\n")
        except OSError:
            pass

    def start(self, path: Path) -> None:
        """Start a fresh log for this invocation: it should show the latest attempt only."""
        self.path = path
        try:
            path.unlink()
        except OSError:
            pass
        self.write("bootstrap " + format_command(sys.argv) + " with Python "
                   + sys.version.split()[0])


def readme_command(command: str) -> str:
    """The README's spelling of a bootstrap command on this platform."""
    if os.name == "nt":
        return "py installer\\bootstrap.py " + command
    return "python installer/bootstrap.py " + command


def format_command(argv: Sequence[str]) -> str:
    """Quote a command so that it can be pasted into this platform's shell."""
    args = [str(arg) for arg in argv]
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)
