"""One running engine command: what every handler gets besides its parsed options.

Handlers have the signature ``handler(args, job) -> exit code``; ``job`` carries the protocol
channel, the cancel control and the command's name (``"data import"``), which the ``hello``
message reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.channel import Channel
from engine.core.control import Control
from engine.core.schema import knob


@dataclass
class Job:
    channel: Channel
    control: Control
    command: str


@dataclass
class CommonOptions:
    """The options every command takes."""

    json: bool = knob(False, "write protocol messages (NDJSON) to stdout instead of text")
    verbose: bool = knob(False, "log debug detail to stderr", flags=("-v", "--verbose"))
