"""The one checker for user-supplied names and output paths (docs/architecture.md, 'Paths').

Standard library only, so the GUI and every engine layer can call it. A *name* (a dataset, run,
suite, batch or sweep name) becomes one folder or file inside a workspace folder, so it must be
one plain path component: no separators, no ``..``, nothing absolute, no NUL or control
characters, and nothing Windows cannot create (CON, NUL, COM1..., a trailing dot or space), so a
workspace copied to another system still opens. :func:`child` also resolves the result and
checks it stayed inside its folder, which catches a symlink pointing out of it.

An *output path* (``--out``, ``--report``) may lie anywhere the user chooses, so ``..`` and
absolute paths are allowed there; :func:`check_out_path` refuses only what no system can hold
safely (NUL, control characters, reserved Windows names).

Every refusal is one line: ``<what> <value>: <problem>``, raised as EngineError USAGE.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from engine.core import errors

MAX_NAME_CHARS = 120
# Windows refuses these as a file's stem, whatever the extension (CON.json is CON).
RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                      *(f"COM{n}" for n in "123456789¹²³"), *(f"LPT{n}" for n in "123456789¹²³")})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')


def name_problem(value: str) -> str:
    """Why ``value`` cannot be a name, or "" when it can."""
    if not value:
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if _CONTROL.search(value):
        return "contains a control character"
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
        return "is an absolute path; give a plain name"
    if "/" in value or "\\" in value:
        return "contains a path separator; give a plain name"
    if value in (".", ".."):
        return "is not a name"
    return _portable_problem(value) or ("is longer than %d characters" % MAX_NAME_CHARS
                                        if len(value) > MAX_NAME_CHARS else "")


def _portable_problem(component: str) -> str:
    """What Windows cannot create, checked on every system so a workspace stays portable."""
    if component.endswith((".", " ")):
        return "ends with a dot or a space (Windows cannot create it)"
    if component.split(".", 1)[0].rstrip(" ").upper() in RESERVED:
        return f"is a reserved name on Windows ({component.split('.', 1)[0].upper()})"
    if _WINDOWS_FORBIDDEN.search(component):
        return 'contains one of < > : " | ? * (Windows cannot create it)'
    return ""


def is_name(value: str) -> bool:
    return not name_problem(value)


def check_name(value: str, what: str) -> str:
    """``value`` when it is a valid name, else EngineError USAGE: ``<what> <value>: <problem>``."""
    problem = name_problem(value)
    if problem:
        raise errors.usage(f"{what} {value!r}: {problem}")
    return value


def child(root: Path, value: str, what: str) -> Path:
    """``root / value`` for a valid name, refused if it would resolve outside ``root``."""
    check_name(value, what)
    path = root / value
    inside(root, path, what)
    return path


def inside(root: Path, path: Path, what: str) -> Path:
    """``path`` when it resolves (symlinks followed) inside ``root``, else EngineError USAGE."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise errors.usage(f"{what} {str(path)!r}: points outside {root}")
    return path


def check_out_path(value: str, what: str) -> Path:
    """An output path the user chose: anywhere, but nothing no system can hold safely."""
    if "\x00" in value:
        raise errors.usage(f"{what} {value!r}: contains a NUL character")
    if _CONTROL.search(value):
        raise errors.usage(f"{what} {value!r}: contains a control character")
    path = Path(value).expanduser()
    if not value.strip() or not path.name:
        raise errors.usage(f"{what} {value!r}: names no file")
    for component in path.parts:
        if component in (path.anchor, ".", ".."):
            continue
        problem = _portable_problem(component)
        if problem:
            raise errors.usage(f"{what} {value!r}: {component!r} {problem}")
    return path


def slug(text: str, fallback: str, lower: bool = False, limit: int | None = None) -> str:
    """``text`` as a name other tools take as it is (Ollama models, LM Studio folders, Hub
    repositories, dataset names): letters, digits, '.', '_' and '-', each other run of
    characters one dash, no dash or dot at the ends; ``fallback`` when nothing is left."""
    value = _NOT_SLUG.sub("-", text.lower() if lower else text)[:limit].strip("-.")
    return value or fallback
