"""The generic schema machinery (engine/core/schema.py) on a small schema of its own."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.core import schema
from engine.core.schema import ConfigError, knob, knob_from


@dataclass
class Example:
    name: str = knob("", "a name for it", label="Name")
    count: int = knob(3, "how many", minimum=1, maximum=10, group="Sizes")
    ratio: float = knob(0.5, "a share", minimum=0.0, min_exclusive=True, maximum=1.0, ui_maximum=0.8)
    mode: str = knob("fast", "how to run", choices=("fast", "slow"))
    tags: list[str] = knob([], "labels to attach")
    seed: int | None = knob(None, "seed, or none for a random one")
    on: bool = knob(True, "switch it on")


def test_knobs_describe_each_field_for_forms() -> None:
    name, count, ratio, _, tags, seed, on = schema.knobs(Example)
    assert (name.label, count.label, count.group, count.minimum, count.maximum) == ("Name", "count", "Sizes", 1, 10)
    assert (ratio.ui_range, tags.kind, tags.comma_list, seed.optional, on.kind) == ((0.0, 0.8), list, True, True, bool)
    assert Example().tags is not Example().tags  # a list default is copied


def test_values_are_coerced_and_unknown_keys_refused_naming_them() -> None:
    got = schema.from_mapping(Example, {"count": 4.0, "ratio": 1, "tags": "a, b", "seed": None})
    assert (got.count, type(got.count), got.ratio, got.tags, got.seed) == (4, int, 1.0, ["a", "b"], None)
    with pytest.raises(ConfigError, match=r"^f.toml: colour: is not a known setting \(known: name, count"):
        schema.from_mapping(Example, {"colour": 1}, source="f.toml")
    with pytest.raises(ConfigError, match="see elsewhere"):
        schema.from_mapping(Example, {"colour": 1}, hint="see elsewhere")
    for values, words in (({"count": "many"}, "count: must be a whole number"), ({"count": 2.5}, "whole number"),
                          ({"ratio": "x"}, "ratio: must be a number"), ({"on": 1}, "on: must be true or false"),
                          ({"tags": [1]}, "tags: must be a list of strings"), ({"name": 3}, "name: must be text")):
        with pytest.raises(ConfigError, match=words):
            schema.from_mapping(Example, values)


@pytest.mark.parametrize("values, words", [
    ({"count": 0}, "count: must be at least 1; got 0"),
    ({"count": 11}, "count: must be at most 10; got 11"),
    ({"ratio": 0.0}, "ratio: must be more than 0.0; got 0.0"),
    ({"mode": "medium"}, "mode: must be one of fast, slow; got 'medium'"),
])
def test_check_refuses_values_out_of_limits(values: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        schema.check(schema.from_mapping(Example, values))


def test_toml_round_trip_leaves_none_out(tmp_path: Path) -> None:
    wanted = Example(name='quote " and ü', count=7, tags=["a", "b"], on=False)
    file = tmp_path / "x.toml"
    file.write_text(schema.to_toml(wanted, "example", "a comment"), encoding="utf-8")
    assert "seed" not in file.read_text(encoding="utf-8")
    assert schema.load_toml(Example, file, "example") == wanted


@pytest.mark.parametrize("settings", [False, True])
def test_flags_round_trip_as_options_and_as_settings(settings: bool) -> None:
    parser = argparse.ArgumentParser()
    schema.add_arguments(parser, Example, settings=settings)
    wanted = Example(name="n", count=9, ratio=0.25, mode="slow", tags=["x", "y"], seed=5, on=False)
    args = parser.parse_args(schema.to_arguments(wanted, settings=settings))
    if settings:
        assert schema.from_mapping(Example, schema.given(Example, args)) == wanted
        assert schema.given(Example, parser.parse_args([])) == {}
    else:
        assert schema.from_namespace(Example, args) == wanted
        assert schema.from_namespace(Example, parser.parse_args([])) == Example()


def test_settings_help_shows_the_default_and_escapes_percent_signs() -> None:
    @dataclass
    class Percent:
        share: int = knob(30, "about 30% of it")
        items: list[str] = knob([], "some items", shown_default="none")

    parser = argparse.ArgumentParser()
    schema.add_arguments(parser, Percent, settings=True)
    text = " ".join(parser.format_help().split())
    assert "about 30% of it (default: 30)" in text and "some items (comma-separated) (default: none)" in text


def test_knob_from_shares_help_and_limits_with_another_default() -> None:
    @dataclass
    class Other:
        count: int = knob_from(Example, "count", default=5)

    k = schema.knob_of(Other, "count")
    assert (k.default, k.help, k.minimum, k.maximum, k.group) == (5, "how many", 1, 10, "Sizes")
