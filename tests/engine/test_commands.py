"""The command table: every engine subcommand's options come from one schema, and the CLI's
parsers, the schemas and copy-as-command agree."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import cli
from engine.commands import COMMANDS, GROUPS, Command, find
from engine.core import config, schema
from engine.core.config import TrainConfig
from engine.core.schema import Knob, knobs

REPO = Path(__file__).resolve().parents[2]
IDS = [c.name for c in COMMANDS]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every leaf parser of the real CLI by command name ("data import")."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(words)] = parser
        for action in subs:
            for word, sub in action.choices.items():
                walk(sub, [*words, word])

    walk(cli.build_parser(), [])
    return found


PARSERS = _parsers()


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_the_cli_has_exactly_the_commands_of_the_table() -> None:
    assert list(PARSERS) == IDS
    assert len(set(IDS)) == len(IDS)
    assert {c.name.split()[0] for c in COMMANDS if " " in c.name} == set(GROUPS)
    assert find("data import").handler == "engine.data.importer:cmd_import"


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_every_option_of_every_command_has_help_text(command: Command) -> None:
    assert command.help
    for schema_class in command.schemas:
        for k in knobs(schema_class):
            assert len(k.help) >= 10, f"{command.name}: {k.name}"
    for action in _actions(PARSERS[command.name]):
        assert action.help, f"{command.name}: {action.dest}"


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_the_cli_flags_are_the_schema_fields(command: Command) -> None:
    expected = [(k.name, k.flags) for schema_class in command.schemas for k in knobs(schema_class)]
    actual = [(a.dest, _positive(a.option_strings) or (a.dest,)) for a in _actions(PARSERS[command.name])]
    assert actual == expected
    for action, k in zip(_actions(PARSERS[command.name]), _all_knobs(command)):
        assert tuple(action.choices or ()) == k.choices, k.name


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_defaults_and_handler_resolve(command: Command) -> None:
    """Given only what is required, the parsed options are the schema's defaults."""
    samples = {s: _required_only(s) for s in command.schemas if s is not command.settings}
    args = _parse(command, samples, {})
    for schema_class, sample in samples.items():
        assert schema.from_namespace(schema_class, args) == sample
    if command.settings:
        assert schema.given(command.settings, args) == {}
    assert callable(command.load())
    assert args.entry is command


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_every_option_round_trips_through_the_real_parser(command: Command) -> None:
    """Copy-as-command of a value that differs from the default in every field parses back to it."""
    samples = {s: _changed(s) for s in command.schemas}
    options = {s: v for s, v in samples.items() if s is not command.settings}
    settings = {s: v for s, v in samples.items() if s is command.settings}
    args = _parse(command, options, settings)
    for schema_class, sample in options.items():
        assert schema.from_namespace(schema_class, _strip_queue_separator(args)) == sample
    for schema_class, sample in settings.items():
        assert schema.from_mapping(schema_class, schema.given(schema_class, args)) == sample


def test_train_copy_as_command_round_trips_a_valid_config_through_the_cli() -> None:
    wanted = dataclasses.replace(TrainConfig(), method="lora", learning_rate=1e-4, max_steps=30, packing=True,
                                 completion_only_loss=False, target_modules="q_proj,v_proj", name="a b",
                                 sample_prompts="One?\nTwo?", val_fraction=0.1, eval_steps=10, save_steps=10)
    args = cli.build_parser().parse_args(["train", *config.to_arguments(config.validate(wanted))])
    assert config.from_arguments(args, TrainConfig()) == wanted


def test_heavy_commands_are_the_ones_that_load_torch_and_only_session_and_login_read_their_own_stdin() -> None:
    heavy = {c.name for c in COMMANDS if c.heavy}
    assert heavy == {"check-env", "models prepare", "train", "generate", "session", "serve", "batch",
                     "evaluate run", "evaluate harness", "evaluate hardest", "export", "sweep run", "sweep worker"}
    # `models login` reads the token from stdin, so no cancel reader may take its line.
    assert [c.name for c in COMMANDS if c.own_stdin] == ["models login", "session"]


def test_only_the_hub_commands_go_online() -> None:
    """Rule 9: every other command runs with huggingface_hub in offline mode."""
    assert {c.name for c in COMMANDS if c.online} == {"models search", "models card", "models download", "push"}


def test_help_imports_no_ml_package() -> None:
    code = ("import sys, contextlib, io\n"
            "from engine import cli\n"
            "for argv in (['--help'], ['train', '--help'], ['evaluate', 'run', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        cli.build_parser().parse_args(argv)\n"
            "print(sorted({'torch', 'transformers', 'datasets', 'peft', 'trl'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_handler_takes_an_untyped_job() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "engine").rglob("*.py") if "job: Any" in p.read_text()]
    assert offenders == []


# -- helpers ---------------------------------------------------------------------------------------

def _positive(option_strings: list[str]) -> tuple[str, ...]:
    """The flags without a boolean's --no- form, which argparse adds itself."""
    return tuple(s for s in option_strings if not s.startswith("--no-"))


def _all_knobs(command: Command) -> list[Knob]:
    return [k for schema_class in command.schemas for k in knobs(schema_class)]


def _parse(command: Command, options: dict[type, Any], settings: dict[type, Any]) -> argparse.Namespace:
    words: list[str] = []
    tail: list[str] = []  # a REMAINDER positional's "-- ..." must come last
    for sample in options.values():
        argv = schema.to_arguments(sample)
        cut = argv.index("--") if "--" in argv else len(argv)
        words, tail = [*words, *argv[:cut]], [*tail, *argv[cut:]]
    for sample in settings.values():
        words += schema.to_arguments(sample, settings=True)
    return cli.build_parser().parse_args([*command.name.split(), *words, *tail])


def _strip_queue_separator(args: argparse.Namespace) -> argparse.Namespace:
    """`queue add` keeps the "--" before the train flags; its handler drops it."""
    if isinstance(getattr(args, "train_args", None), list):
        args = argparse.Namespace(**{**vars(args), "train_args": [a for a in args.train_args if a != "--"]})
    return args


def _required_only(schema_class: type) -> Any:
    """The defaults, with a value for each positional and required option."""
    return dataclasses.replace(schema_class(), **{k.name: _other(k) for k in knobs(schema_class)
                                                  if (k.positional or k.meta["required"])
                                                  and k.meta["nargs"] != argparse.REMAINDER})


def _changed(schema_class: type) -> Any:
    """An instance that differs from the defaults in every field."""
    return schema_class(**{k.name: _other(k) for k in knobs(schema_class)})


def _other(k: Knob) -> Any:
    """A value of the knob's type other than its default."""
    if k.choices:
        return next(c for c in k.choices if c != k.default)
    if k.kind is bool:
        return not k.default
    if k.kind in (list, tuple):
        return k.kind(["--preset", "cpu-quick-demo"] if k.positional else ["a", "b=c"])
    if k.kind is int:
        return (k.default or 0) + 2
    if k.kind is float:
        return (k.default or 0.0) + 0.5
    return "x y" if k.default != "x y" else "z"
