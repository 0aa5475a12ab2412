"""Evaluation scoring on hand-checkable cases: slices, robustness deltas, perturbations, the
perplexity interval, the spec file and the example builders. No model involved."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.eval import robust as eval_robust
from engine.eval import score as eval_score
from engine.eval import spec as specs
from engine.eval.examples import classification_prompt, slice_value, to_examples
from engine.eval.score import ModelOutputs

CLASSIFICATION = [{"text": "Great kettle", "label": "positive"}, {"text": "Broke in a day", "label": "negative"},
                  {"text": "Fine I guess", "label": "neutral"}, {"text": "Love it", "label": "positive"}]
REFS = ["positive", "negative", "neutral", "positive"]


def test_slices_give_the_metric_per_column_value() -> None:
    spec = specs.EvalSpec(dataset="d", slice_column="label")
    out = ModelOutputs(texts=["positive", "positive", "neutral", "negative"],
                       picks=["positive", "negative", "negative", "positive"])
    examples = to_examples(CLASSIFICATION, "classification")
    values = [slice_value(e, "label") for e in examples]
    groups = eval_score.slices(["accuracy", "mc_accuracy"], {"base": out}, REFS, values, spec)
    # positive rows 0 and 3: generated 1 right of 2; ranked 2 right of 2.
    assert groups["positive"]["n"] == 2
    assert groups["positive"]["metrics"]["accuracy"]["base"] == 0.5
    assert groups["positive"]["metrics"]["mc_accuracy"]["base"] == 1.0
    assert groups["negative"]["metrics"]["accuracy"]["base"] == 0.0
    assert groups["negative"]["metrics"]["mc_accuracy"]["base"] == 1.0
    assert groups["neutral"]["metrics"]["accuracy"]["base"] == 1.0
    assert groups["neutral"]["metrics"]["mc_accuracy"]["base"] == 0.0
    assert list(groups) == ["positive", "negative", "neutral"]  # largest slice first


def test_robustness_reports_clean_perturbed_and_delta() -> None:
    spec = specs.EvalSpec(dataset="d", robustness=["casing"])
    out = ModelOutputs(texts=["positive", "negative", "neutral", "negative"],
                       perturbed_texts={"casing": ["positive", "positive", "neutral", "negative"]})
    report = eval_score.robustness(["accuracy"], {"base": out}, REFS, spec)
    assert report["casing"]["accuracy"]["base"] == {"clean": 0.75, "perturbed": 0.5, "delta": -0.25}


def test_slice_of_perplexity_weights_tokens() -> None:
    spec = specs.EvalSpec(dataset="d")
    out = ModelOutputs(nll_sums=[2.0, 6.0, 3.0], token_counts=[1, 3, 3])
    groups = eval_score.slices(["perplexity"], {"m": out}, ["a", "b", "c"], ["x", "x", "y"], spec)
    assert groups["x"]["metrics"]["perplexity"]["m"] == pytest.approx(math.exp(8.0 / 4))
    assert groups["y"]["metrics"]["perplexity"]["m"] == pytest.approx(math.exp(1.0))
    assert eval_score.row_score("perplexity", out, 1, "b", spec) == pytest.approx(math.exp(2.0))


def test_perplexity_interval_brackets_the_estimate() -> None:
    out = ModelOutputs(nll_sums=[1.0, 4.0, 2.0, 9.0], token_counts=[1, 2, 2, 3])
    ci = eval_score.perplexity_ci(out, 200, seed=0)
    assert ci["estimate"] == pytest.approx(math.exp(16 / 8))
    assert ci["low"] <= ci["estimate"] <= ci["high"]
    assert math.exp(1.0) <= ci["low"] and ci["high"] <= math.exp(3.0)  # per-row extremes bound it


def test_text_metrics_divide_the_total_nll_by_tokens_words_or_bytes() -> None:
    # lm-eval's weighted_perplexity and bits_per_byte: sums over the set, not means of rows.
    spec = specs.EvalSpec(dataset="d")
    texts = [" two  words", "naïve café"]  # leading space: an empty first word, as lm-eval counts
    assert [eval_score.count_words(t) for t in texts] == [3, 2]
    assert [eval_score.count_bytes(t) for t in texts] == [11, 12]
    out = ModelOutputs(nll_sums=[6.0, 3.0], token_counts=[4, 2], word_counts=[3, 2], byte_counts=[11, 12])
    rows = [0, 1]
    value = lambda name: eval_score.subset_value(name, [], [], out, texts, rows, spec)  # noqa: E731
    assert value("token_perplexity") == pytest.approx(math.exp(9 / 6))
    assert value("word_perplexity") == pytest.approx(math.exp(9 / 5))
    assert value("byte_perplexity") == pytest.approx(math.exp(9 / 23))
    assert value("bits_per_byte") == pytest.approx(9 / 23 / math.log(2))
    assert eval_score.row_score("bits_per_byte", out, 1, texts[1], spec) == pytest.approx(3 / 12 / math.log(2))
    ci = eval_score.set_value_ci("bits_per_byte", out, texts, specs.EvalSpec(dataset="d", bootstrap=50))
    assert ci["estimate"] == pytest.approx(9 / 23 / math.log(2))
    assert 6 / 11 / math.log(2) >= ci["high"] >= ci["estimate"] >= ci["low"] >= 3 / 12 / math.log(2)
    assert eval_score.robustness(["bits_per_byte"], {"m": out}, texts,
                                 specs.EvalSpec(dataset="d", robustness=["casing"])) == {"casing": {}}


def test_every_metric_has_a_definition_and_text_data_defaults_to_the_text_metrics() -> None:
    for name in eval_score.known_metrics():
        info = eval_score.metric_info(name)
        assert len(info["definition"]) > 80 and info["better"] in ("higher", "lower"), name
    assert eval_score.default_metrics("text") == ["token_perplexity", "word_perplexity", "byte_perplexity",
                                                  "bits_per_byte"]
    assert eval_score.metric_info("perplexity")["title"] == "Answer perplexity"


def test_perturbations_are_seeded_and_do_what_they_say() -> None:
    examples = to_examples(CLASSIFICATION, "classification")
    assert examples[0].choices == ("negative", "neutral", "positive")
    assert examples[0].input == classification_prompt("Great kettle", examples[0].choices)
    cased = eval_robust.perturb(examples, "casing", 0)
    assert cased[0].input.startswith("great kettle\n") and cased[0].reference == "positive"
    shuffled = eval_robust.perturb(examples, "shuffle_choices", 0)
    assert all(s.choices != e.choices and sorted(s.choices) == sorted(e.choices) for s, e in zip(shuffled, examples))
    assert shuffled[0].input.endswith(f"one of: {', '.join(shuffled[0].choices)}.")
    assert eval_robust.perturb(examples, "typos", 3) == eval_robust.perturb(examples, "typos", 3)
    assert eval_robust.add_whitespace("a b") == "  a  b \n"


def test_typos_swap_neighbouring_letters_only() -> None:
    import random

    text = "the battery lasts all day and charges quickly"
    typo = eval_robust.add_typos(text, random.Random(1))
    assert typo != text and sorted(typo) == sorted(text) and len(typo.split()) == len(text.split())
    changed = [(a, b) for a, b in zip(text.split(), typo.split()) if a != b]
    assert len(changed) == round(len(text.split()) * eval_robust.TYPO_RATE)
    for before, after in changed:
        diffs = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
        assert len(diffs) == 2 and diffs[1] == diffs[0] + 1


def test_chat_rows_become_prompt_and_reference() -> None:
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                        {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                        {"role": "assistant", "content": "A2"}]}
    example = to_examples([row], "messages")[0]
    assert example.reference == "A2" and example.input == "Q2" and len(example.messages) == 4
    with pytest.raises(ValueError, match="row 0"):
        to_examples([{"messages": [{"role": "user", "content": "Q"}]}], "messages")


def test_spec_round_trips_through_toml_and_names_bad_fields(tmp_path: Path) -> None:
    spec = specs.EvalSpec(dataset="reviews@v2", adapters=["run-a", "run-b"], metrics=["bleu", "perplexity"],
                          robustness=["typos"], regex='^\\{"a": ".*"\\}$', max_examples=12)
    file = tmp_path / "spec.toml"
    file.write_text(specs.to_toml(spec, "a comment"), encoding="utf-8")
    assert specs.load_toml(file) == spec
    file.write_text("[evaluate]\nmetrics = 3\n", encoding="utf-8")
    with pytest.raises(specs.SpecError, match="metrics: must be a list of strings"):
        specs.load_toml(file)
    file.write_text("[evaluate\n", encoding="utf-8")
    with pytest.raises(specs.SpecError, match=r"spec\.toml:1: config: not valid TOML"):
        specs.load_toml(file)
    with pytest.raises(specs.SpecError, match="config: file not found"):
        specs.load_toml(tmp_path / "missing.toml")
    with pytest.raises(specs.SpecError, match="batch_size: must be at least 1"):
        specs.check(specs.EvalSpec(dataset="d", batch_size=0), eval_score.known_metrics())
    with pytest.raises(specs.SpecError, match="regex: regex_match needs a pattern"):
        specs.check(specs.EvalSpec(dataset="d", metrics=["regex_match"]), eval_score.known_metrics())
    assert specs.from_mapping({"adapters": "a, b"}).adapters == ["a", "b"]


def test_summary_table_lines_up_models() -> None:
    from engine.eval.run import summary_table

    lines = summary_table(
        ["base", "run-1"], {"token_f1": {"base": 0.25, "run-1": 0.5}, "perplexity": {"base": 3.0, "run-1": None}}
    )
    assert lines[1].split() == ["token_f1", "0.2500", "0.5000"] and lines[2].split() == ["perplexity", "3.0000", "-"]


def write_fake_evaluation(folder: Path) -> None:
    """A finished evaluation folder with hand-set numbers (two models, three rows)."""
    from engine.core import workspace
    from engine.eval import store as eval_report

    summary = {
        "id": folder.name,
        "dataset": "d@v1",
        "split": "test",
        "examples": 3,
        "base_model": "m",
        "models": [{"label": "base"}, {"label": "run-1"}],
        "metrics": {
            "token_f1": {
                "title": "Token F1",
                "better": "higher",
                "unit": "0-1",
                "definition": "F1.",
                "values": {
                    "base": {"estimate": 0.2, "low": 0.1, "high": 0.3},
                    "run-1": {"estimate": 0.6, "low": 0.5, "high": 0.7},
                },
            }
        },
        "slices": {"column": "label", "groups": {"a": {"n": 2, "metrics": {"token_f1": {"base": 0.1, "run-1": 0.9}}}}},
        "robustness": {
            "typos": {
                "token_f1": {
                    "base": {"clean": 0.2, "perturbed": 0.1, "delta": -0.1},
                    "run-1": {"clean": 0.6, "perturbed": 0.6, "delta": 0.0},
                }
            }
        },
    }
    rows = [{"index": i, "input": f"q|{i}", "reference": "r", "outputs": {"base": "x", "run-1": "y"},
             "metrics": {"base": {"token_f1": 0.1 * i}, "run-1": {"token_f1": 0.5 * i}}} for i in range(3)]
    workspace.atomic_write_json(folder / eval_report.SUMMARY, summary)
    eval_report.write_examples(folder / eval_report.EXAMPLES, rows)


def test_report_writes_markdown_html_svg_and_csv(tmp_path: Path) -> None:
    import csv

    from engine.eval import report as eval_export

    folder = tmp_path / "e1"
    write_fake_evaluation(folder)
    report = eval_export.write_report(folder)
    assert sorted(p.name for p in report.iterdir()) == ["chart-token_f1.svg", "examples.csv", "report.html",
                                                        "report.md", "summary.csv"]
    md = (report / "report.md").read_text()
    assert "| run-1 | 0.6 | 0.5 – 0.7 |" in md and "![Token F1](chart-token_f1.svg)" in md
    assert "| typos | token_f1 | 0.2 → 0.1 (-0.1) | 0.6 → 0.6 (+0) |" in md
    # Largest change first: row 2 moved by 0.8, row 1 by 0.4, row 0 not at all.
    changes = md.split("## Largest changes")[1]
    assert changes.index("q\\|2") < changes.index("q\\|1") < changes.index("q\\|0")
    summary_rows = list(csv.reader((report / "summary.csv").open()))
    assert summary_rows[2] == ["token_f1", "run-1", "0.6", "0.5", "0.7"]
    examples = list(csv.DictReader((report / "examples.csv").open()))
    assert examples[2]["output:run-1"] == "y" and float(examples[2]["token_f1:run-1"]) == 1.0
    page = (report / "report.html").read_text()
    assert page.count("<svg") == 1 and "<td>q|2</td>" in page and "<table>" in page
    svg = (report / "chart-token_f1.svg").read_text()
    assert svg.count("<rect") == 3 and svg.count("<line") == 2 + 2 * 3  # axes + a whisker per model
