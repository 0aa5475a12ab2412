"""Ratings: storage in the workspace, replacement, preference pairs, and the exported file read
back by the Datasets importer as a preference dataset."""

from __future__ import annotations

import json

import pytest

from engine.core import errors, paths
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.infer import ratings
from engine.infer.ratings import Rating

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
BASE = {"model": "default", "adapter": "", "params": {"temperature": 0.7}}
TUNED = {"model": "default", "adapter": "runs/x/adapter", "params": {"temperature": 0.7}}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_HOME", str(tmp_path / "home"))


def test_ratings_are_appended_and_a_second_rating_replaces_the_first():
    first = Rating("thumbs", CHAT, "Paris.", 1, BASE, key="a1")
    ratings.record(first)
    ratings.record(Rating("score", "Once upon", " a time", 4, TUNED, mode="raw", key="a2"))
    assert ratings.ratings_file() == paths.ratings_dir() / "ratings.jsonl"
    assert [r.key for r in ratings.load()] == ["a1", "a2"]
    ratings.record(Rating("thumbs", CHAT, "Paris.", -1, BASE, key="a1"))
    stored = ratings.load()
    assert [(r.key, r.value) for r in stored] == [("a2", 4), ("a1", -1)]
    assert stored[1].prompt == CHAT and stored[1].config == BASE
    assert not list(paths.ratings_dir().glob(".*.tmp"))


def test_a_torn_line_is_skipped_not_fatal():
    ratings.record(Rating("score", CHAT, "Paris.", 5, BASE, key="ok"))
    with ratings.ratings_file().open("a", encoding="utf-8") as handle:
        handle.write('{"kind": "score", "prompt": "x", "ans')
    assert [r.key for r in ratings.load()] == ["ok"]


@pytest.mark.parametrize("bad, message", [
    (Rating("stars", CHAT, "x"), "kind 'stars'"), (Rating("score", CHAT, "x", 9), "score must be 1 to 5"),
    (Rating("thumbs", CHAT, "x", 0), "thumbs value"), (Rating("ab", CHAT, "x", 0), "needs the other answer")])
def test_invalid_ratings_are_refused_with_one_line(bad, message):
    with pytest.raises(errors.EngineError, match=message):
        ratings.record(bad)


def test_preference_rows_from_ab_picks_and_differing_ratings():
    stored = [Rating("ab", CHAT, "Paris.", config=TUNED, other_answer="Lyon.", other_config=BASE),
              Rating("thumbs", CHAT, "Paris is the capital.", 1, TUNED),
              Rating("score", CHAT, "I do not know.", 2, BASE),
              Rating("score", CHAT, "Paris, of course.", 5, BASE),  # same as thumbs up: no pair
              Rating("score", "Raw text", "same", 3), Rating("score", "Raw text", "same", 1)]
    rows = ratings.preference_rows(stored)
    assert {(r["chosen"], r["rejected"]) for r in rows} == {
        ("Paris.", "Lyon."), ("Paris is the capital.", "I do not know."), ("Paris, of course.", "I do not know.")}
    assert rows[0]["prompt"] == CHAT


def test_exported_preferences_import_as_a_preference_dataset(tmp_path):
    ratings.record(Rating("ab", CHAT, "Paris.", config=TUNED, other_answer="Lyon.", other_config=BASE))
    ratings.record(Rating("thumbs", "The sky is", " blue.", 1, BASE, mode="raw"))
    ratings.record(Rating("thumbs", "The sky is", " green.", -1, TUNED, mode="raw"))
    out = tmp_path / "prefs.jsonl"
    assert ratings.export_preferences(out) == 2
    assert [json.loads(line)["chosen"] for line in out.read_text(encoding="utf-8").splitlines()] == ["Paris.", " blue."]

    version, report = data_import.import_file(out, name="prefs")
    assert version.manifest["shape"] == "preference" and report.rows == 2
    rows = list(data_split.load_rows(version))
    assert rows[0]["prompt"] == CHAT
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "Paris."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "Lyon."}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "The sky is"}]
    assert rows[1]["chosen"][0]["content"] == " blue."


def test_nothing_to_export_is_a_clear_error(tmp_path):
    ratings.record(Rating("thumbs", CHAT, "Paris.", 1, BASE))
    with pytest.raises(errors.EngineError, match="no preference pairs yet"):
        ratings.export_preferences(tmp_path / "p.jsonl")
    assert not (tmp_path / "p.jsonl").exists()
