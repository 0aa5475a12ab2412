"""One schema for every engine command: its settings and options as dataclasses of knobs.

Standard library only, so the window builds its forms, limits and tooltips from the same
fields that make the command-line flags, the TOML files and the checks (docs/architecture.md).

A schema is a dataclass whose fields come from :func:`knob`. Its flags come in two kinds:

- *settings* (``TrainConfig``, ``EvalSpec``) resolve in layers (defaults < preset or file <
  flags), so their flags default to None, meaning "not given", and the help shows the field's
  default;
- *options* (every other command's flags) go straight to the handler, so their flags carry the
  field defaults and the help is shown as written.

:func:`knobs` is what a form needs: each field's kind, label, help, limits, choices and group.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engine.core import untrusted

LISTS = (list, tuple)


class ConfigError(ValueError):
    """A setting or option that cannot be used; ``field`` names it, the message says why."""

    def __init__(self, field_name: str, message: str, source: str = "") -> None:
        self.field = field_name
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field_name}: {message}")


def knob(default: Any, help: str, *, label: str = "", minimum: float | None = None,
         maximum: float | None = None, choices: tuple[str, ...] = (), group: str = "",
         flags: tuple[str, ...] = (), positional: bool = False, nargs: str | None = None,
         metavar: str | None = None, required: bool = False, repeatable: bool = False,
         negatable: bool = False, min_exclusive: bool = False, shown_default: str | None = None,
         gui: bool = True, ui_minimum: float | None = None, ui_maximum: float | None = None,
         step: float | None = None, hidden: bool = False) -> Any:
    """A schema field with the metadata that the CLI, the TOML files and the GUI all read.

    Args:
        default: the value when nothing sets it; a list default is copied for each instance.
        help: what the knob does, for ``--help``, tooltips and the docs.
        label: the GUI's short name (default: the field name).
        minimum: the smallest value allowed (see ``min_exclusive``).
        maximum: the largest value allowed.
        choices: the values allowed; argparse refuses others too.
        group: the argparse group and GUI box the knob sits in ("" for none).
        flags: the flag names, when not ``--field-name`` (e.g. ``("-v", "--verbose")``).
        positional: a positional argument rather than a flag.
        nargs: argparse's nargs, e.g. ``argparse.REMAINDER``.
        metavar: the placeholder ``--help`` shows.
        required: the flag must be given.
        repeatable: a list given one flag per item (``--map a=b --map c=d``); other lists are
            given comma-separated.
        negatable: a boolean option with a ``--no-`` form that defaults to ``default``. Other
            boolean options set ``True`` when given (``False`` when the default is ``True``).
        min_exclusive: ``minimum`` itself is refused.
        shown_default: how a setting's help shows the default (default: the value itself).
        gui: whether forms show the knob.
        ui_minimum: the smallest value a form offers, when narrower than ``minimum``.
        ui_maximum: the largest value a form offers, when narrower than ``maximum``.
        step: a form's spin box step.
        hidden: an internal flag that ``--help`` and forms leave out (e.g. how a parent process
            starts its workers).
    """
    meta = {"help": help, "label": label, "min": minimum, "max": maximum, "choices": tuple(choices),
            "group": group, "flags": tuple(flags), "positional": positional, "nargs": nargs,
            "metavar": metavar, "required": required, "repeatable": repeatable, "negatable": negatable,
            "min_exclusive": min_exclusive, "shown_default": shown_default, "gui": gui,
            "ui_min": ui_minimum, "ui_max": ui_maximum, "step": step,
            "hidden": hidden}
    if isinstance(default, list):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def knob_from(schema: type, name: str, **overrides: Any) -> Any:
    """A knob like ``schema``'s field ``name`` (help, limits, label), with ``overrides`` such
    as another default: a command's flag that means the same as a shared setting."""
    source = knob_of(schema, name)
    keys = {"minimum": "min", "maximum": "max", "ui_minimum": "ui_min", "ui_maximum": "ui_max"}
    # knob()'s keyword-only parameters, each read back from the metadata it was stored as.
    inherited = {arg: source.meta[keys.get(arg, arg)] for arg in knob.__kwdefaults__ or {}}
    inherited = {**inherited, "help": source.help, **overrides}
    return knob(inherited.pop("default", source.default), **inherited)


@dataclass(frozen=True)
class Knob:
    """One schema field as forms and the command line see it."""

    name: str
    kind: type  # bool, int, float, str, list or tuple (of str)
    optional: bool  # None is a valid value
    default: Any
    meta: Mapping[str, Any]

    @property
    def help(self) -> str:
        return str(self.meta["help"])

    @property
    def label(self) -> str:
        return self.meta["label"] or self.name

    @property
    def minimum(self) -> float | None:
        return self.meta["min"]

    @property
    def maximum(self) -> float | None:
        return self.meta["max"]

    @property
    def choices(self) -> tuple[str, ...]:
        return self.meta["choices"]

    @property
    def group(self) -> str:
        return self.meta["group"]

    @property
    def positional(self) -> bool:
        return bool(self.meta["positional"])

    @property
    def gui(self) -> bool:
        return bool(self.meta["gui"])

    @property
    def step(self) -> float | None:
        return self.meta["step"]

    @property
    def flags(self) -> tuple[str, ...]:
        """The option strings (the dest for a positional)."""
        if self.positional:
            return (self.name,)
        return self.meta["flags"] or (flag_name(self.name),)

    @property
    def ui_range(self) -> tuple[float | None, float | None]:
        """(lowest, highest) a form offers: the limits, narrowed where the schema says so."""
        low = self.meta["ui_min"] if self.meta["ui_min"] is not None else self.minimum
        high = self.meta["ui_max"] if self.meta["ui_max"] is not None else self.maximum
        return low, high

    @property
    def comma_list(self) -> bool:
        """A list given as one comma-separated value."""
        return self.kind in LISTS and not self.meta["repeatable"] and not self.positional


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


_KNOBS: dict[type, tuple[Knob, ...]] = {}  # per schema: type hints are slow to resolve


def knobs(schema: type) -> tuple[Knob, ...]:
    """Every field of ``schema`` in declaration order."""
    if schema not in _KNOBS:
        hints = typing.get_type_hints(schema)
        _KNOBS[schema] = tuple(_knob(f, hints[f.name]) for f in dataclasses.fields(schema))
    return _KNOBS[schema]


def knob_of(schema: type, name: str) -> Knob:
    for k in knobs(schema):
        if k.name == name:
            return k
    raise KeyError(name)


def names(schema: type) -> tuple[str, ...]:
    return tuple(k.name for k in knobs(schema))


def _knob(f: dataclasses.Field, hint: Any) -> Knob:
    kind, optional = _kind(hint)
    factory = f.default_factory
    default = factory() if callable(factory) else f.default
    return Knob(f.name, kind, optional, default, f.metadata)


def _kind(hint: Any) -> tuple[type, bool]:
    """(base type, None allowed) of an annotation such as ``int``, ``str | None``, ``list[str]``."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0]
    return typing.get_origin(hint) or hint, optional


# -- values ----------------------------------------------------------------------------------

def coerce(k: Knob, value: Any, source: str = "") -> Any:
    """``value`` as the knob's type (an int for 8.0, a float for 8, a list for "a, b"), or
    ConfigError naming the field when it is of the wrong type."""
    if value is None and k.optional:
        return None
    if k.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(k.name, f"must be true or false, not {value!r}", source)
        return value
    if k.kind in (int, float):
        return _number(k, value, source)
    if k.kind in LISTS:
        return _strings(k, value, source)
    if not isinstance(value, str):
        raise ConfigError(k.name, f"must be text, not {value!r}", source)
    return value


def _number(k: Knob, value: Any, source: str) -> int | float:
    whole = k.kind is int
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(k.name, f"must be a {'whole ' if whole else ''}number, not {value!r}", source)
    if whole and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(k.name, f"must be a whole number, not {value!r}", source)
        return int(value)
    return float(value) if not whole else value


def _strings(k: Knob, value: Any, source: str) -> list[str] | tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, LISTS) or not all(isinstance(v, str) for v in value):
        raise ConfigError(k.name, "must be a list of strings", source)
    return k.kind(value)


def check_limits(k: Knob, value: Any, source: str = "") -> None:
    """Refuses a value outside the knob's choices or limits (types are :func:`coerce`'s)."""
    if value is None or k.kind in LISTS:
        return
    if k.choices and value not in k.choices:
        raise ConfigError(k.name, f"must be one of {', '.join(k.choices)}; got {value!r}", source)
    low, high = k.minimum, k.maximum
    if low is not None and (value < low or (k.meta["min_exclusive"] and value == low)):
        side = "more than" if k.meta["min_exclusive"] else "at least"
        raise ConfigError(k.name, f"must be {side} {low}; got {value}", source)
    if high is not None and value > high:
        raise ConfigError(k.name, f"must be at most {high}; got {value}", source)


def check(obj: Any, source: str = "") -> Any:
    """Raises ConfigError for the first field of the wrong type or out of limits; returns obj."""
    for k in knobs(type(obj)):
        value = getattr(obj, k.name)
        coerce(k, value, source)
        check_limits(k, value, source)
    return obj


def from_mapping(schema: type, values: Mapping[str, Any], base: Any = None, source: str = "",
                 hint: str = "") -> Any:
    """``values`` over ``base`` (default: the schema's defaults), each of the right type.

    Keys may use dashes for underscores. An unknown key raises ConfigError naming it; ``hint``
    says where the known ones are listed (default: the list itself). Limits are not checked
    here: a schema's own check decides when, since some limits depend on other fields.
    """
    known = {k.name: k for k in knobs(schema)}
    given = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(key, f"is not a known setting ({hint or 'known: ' + ', '.join(known)})", source)
        given[name] = coerce(known[name], value, source)
    return dataclasses.replace(base if base is not None else schema(), **given)


# -- TOML ------------------------------------------------------------------------------------

def read_toml_table(path: Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a settings file, or its top-level keys when it has none;
    ConfigError (field "config") when the file is missing or not TOML."""
    try:
        data = untrusted.toml_loads(untrusted.read_text(path))
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    except untrusted.InputError as exc:  # too large, not UTF-8, not TOML, too deep, nan/inf
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ConfigError("config", f"not valid TOML: {exc}", where) from None
    return data.get(section, {k: v for k, v in data.items() if not isinstance(v, dict)})


def load_toml(schema: type, path: Path, section: str, base: Any = None) -> Any:
    """A schema instance from the ``[section]`` table of a file, over ``base``."""
    return from_mapping(schema, read_toml_table(path, section), base, source=str(path))


def to_toml(obj: Any, section: str, comment: str = "") -> str:
    """``obj`` as one ``[section]`` table that :func:`load_toml` reads back unchanged.

    Values are text, numbers, booleans and lists of text, so JSON quoting is valid TOML
    quoting; None has no TOML form, so a None field is left out (it reads back as its
    default, which must then be None).
    """
    lines = [f"# {line}" for line in comment.splitlines()] + [f"[{section}]"]
    for k in knobs(type(obj)):
        value = getattr(obj, k.name)
        if value is not None:
            shown = list(value) if k.kind in LISTS else value
            lines.append(f"{k.name} = {json.dumps(shown, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, schema: type, *, settings: bool = False) -> None:
    """One argparse argument per knob, in field order, in the knob's group if it has one.

    With ``settings``, flags default to None so a preset's or a file's values survive the flags
    that are not given (:func:`given` collects the rest), and each help ends with the default.
    """
    groups: dict[str, Any] = {}
    for k in knobs(schema):
        target: Any = parser
        if k.group:
            target = groups.get(k.group) or groups.setdefault(k.group, parser.add_argument_group(k.group))
        target.add_argument(*k.flags, **_argparse_options(k, settings))


def _argparse_options(k: Knob, settings: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"help": _help(k, settings)}
    if k.positional:
        return {**options, **_some(choices=k.choices or None, nargs=k.meta["nargs"])}
    options["dest"] = k.name
    if k.kind is bool:
        return {**options, **_boolean(k, settings)}
    if k.meta["repeatable"]:
        return {**options, "action": "append", "default": [], **_some(metavar=k.meta["metavar"])}
    if k.meta["required"]:
        options["required"] = True
    else:
        options["default"] = None if settings else _copy(k.default)
    return {**options, **_some(type=k.kind if k.kind in (int, float) else None, choices=k.choices or None,
                               metavar=k.meta["metavar"])}


def _boolean(k: Knob, settings: bool) -> dict[str, Any]:
    if settings or k.meta["negatable"]:
        return {"action": argparse.BooleanOptionalAction, "default": None if settings else k.default}
    return {"action": "store_false" if k.default else "store_true"}


def _help(k: Knob, settings: bool) -> str:
    if k.meta["hidden"]:
        return argparse.SUPPRESS
    text = k.help + (" (comma-separated)" if k.comma_list else "")
    if settings:
        text += f" (default: {_shown(k)})"
    # argparse %-formats help strings; a literal "30%" in help text must not be read as one.
    return text.replace("%", "%%")


def _shown(k: Knob) -> str:
    if k.meta["shown_default"] is not None:
        return k.meta["shown_default"]
    return ",".join(k.default) if k.kind in LISTS else str(k.default)


def _some(**options: Any) -> dict[str, Any]:
    """The options that are set: argparse's own defaults stand for the rest."""
    return {key: value for key, value in options.items() if value is not None}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def given(schema: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (not None) in parsed ``args``."""
    return {k.name: getattr(args, k.name) for k in knobs(schema) if getattr(args, k.name, None) is not None}


def from_namespace(schema: type, args: argparse.Namespace) -> Any:
    """The options in parsed ``args`` as a ``schema`` instance (argparse has checked them)."""
    values = {}
    for k in knobs(schema):
        value = getattr(args, k.name)
        # argparse gives a comma-separated list as one string, a repeatable one as a list.
        values[k.name] = _strings(k, value, "command line") if k.kind in LISTS and value is not None else value
    return schema(**values)


def to_arguments(obj: Any, base: Any = None, *, settings: bool = False) -> list[str]:
    """The command-line arguments that turn ``base`` (default: the defaults) into ``obj``:
    "copy as command". ``settings`` as for :func:`add_arguments`. Positionals come first, a
    REMAINDER positional last, after ``--``."""
    schema = type(obj)
    base = base if base is not None else schema()
    first: list[str] = []
    flags: list[str] = []
    last: list[str] = []
    for k in knobs(schema):
        value = getattr(obj, k.name)
        if k.meta["nargs"] == argparse.REMAINDER:
            last += ["--", *value] if value else []
        elif k.positional:
            first.append(str(value))
        elif k.meta["required"] or value != getattr(base, k.name):
            flags += _flag_arguments(k, value, settings)
    return first + flags + last


def _flag_arguments(k: Knob, value: Any, settings: bool) -> list[str]:
    flag = k.flags[-1]
    if value is None:
        return []  # no flag gives None back
    if k.kind is bool:
        if settings or k.meta["negatable"]:
            return [flag if value else "--no-" + flag[2:]]
        return [flag] if value != k.default else []  # store_true/store_false go one way only
    if k.meta["repeatable"]:
        return [part for item in value for part in (flag, str(item))]
    if k.kind in LISTS:
        return [flag, ",".join(value)]
    return [flag, str(value)]
