"""The engine's own exception: an expected failure with an exit code and a one-line message.

Anything raised as EngineError reaches the user as that one line (and an ``error`` message);
anything else is a bug and gets the FAILED code with the traceback in the log.
"""

from __future__ import annotations

from engine.core.protocol import ExitCode


class EngineError(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(message: str) -> EngineError:
    return EngineError(ExitCode.NOT_FOUND, message)


def invalid_input(message: str) -> EngineError:
    return EngineError(ExitCode.INVALID_INPUT, message)


def usage(message: str) -> EngineError:
    return EngineError(ExitCode.USAGE, message)


def missing_dependency(message: str) -> EngineError:
    return EngineError(ExitCode.MISSING_DEPENDENCY, message)


def one_line(value: object, *, last: bool = False, limit: int = 200) -> str:
    """A library's message (often several lines) as one clipped line: its first non-blank line,
    or with ``last`` its last (the Hub's client puts the detail last); the exception's type name
    when the message is empty."""
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    if not lines:
        return type(value).__name__
    return (lines[-1] if last else lines[0])[:limit]
