"""Each metric against hand-computed or published values on small cases (issue 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.eval import metrics
from engine.eval.metrics import METRICS, get_metric

# sacrebleu's README example: three system sentences, two reference streams.
SACREBLEU_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SACREBLEU_REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
                  ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
# The same references the way Tunebench holds them: per example, not per stream.
PER_EXAMPLE_REFS = [list(refs) for refs in zip(*SACREBLEU_REFS)]


# --- registry ------------------------------------------------------------------------------------


def test_every_metric_has_a_definition_and_both_functions() -> None:
    expected = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "token_f1",
                "accuracy", "regex_match", "json_field_match"}
    assert set(METRICS) == expected
    for metric in METRICS.values():
        assert len(metric.definition) > 100, metric.name
        assert metric.unit in ("0-100", "0-1")
        assert callable(metric.per_example) and callable(metric.aggregate)
    with pytest.raises(ValueError, match="unknown metric 'blue'.*bleu"):
        get_metric("blue")


# --- BLEU and chrF ---------------------------------------------------------------------------------


def test_bleu_of_identical_sentences_is_100() -> None:
    sentences = ["the cat sat on the mat", "a quick brown fox jumps"]
    assert get_metric("bleu").aggregate(sentences, sentences) == pytest.approx(100.0)
    assert get_metric("bleu").per_example(sentences[0], sentences[0]) == pytest.approx(100.0)


def test_bleu_and_chrf_match_the_sacrebleu_readme_example() -> None:
    assert get_metric("bleu").aggregate(SACREBLEU_SYS, PER_EXAMPLE_REFS) == pytest.approx(48.53, abs=0.005)
    assert get_metric("chrf").aggregate(SACREBLEU_SYS, PER_EXAMPLE_REFS) == pytest.approx(59.73, abs=0.005)


def test_bleu_allows_a_different_number_of_references_per_example() -> None:
    refs: list[Any] = [["the cat sat on the mat", "a cat sat on a mat"], "a quick brown fox jumps"]
    assert get_metric("bleu").aggregate(["the cat sat on the mat", "a quick brown fox jumps"], refs) == pytest.approx(
        100.0
    )


# --- ROUGE -------------------------------------------------------------------------------------------


def test_rouge_on_a_hand_computed_example() -> None:
    # pred: the cat sat on the mat / ref: the cat lay on the mat
    # unigrams: 5 of 6 shared (the x2, cat, on, mat) -> P = R = F = 5/6
    # bigrams: "the cat", "on the", "the mat" of 5 -> 3/5
    # LCS: "the cat on the mat" = 5 of 6 -> 5/6
    scores = metrics.rouge_scores("the cat sat on the mat", "the cat lay on the mat")
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)
    assert get_metric("rouge2").aggregate(["the cat sat on the mat", "x y"], ["the cat lay on the mat", "x y"]) \
        == pytest.approx((0.6 + 1.0) / 2)


def test_rouge_lsum_scores_newline_separated_sentences() -> None:
    # Same two sentences in swapped order. Whole-text LCS is 3 of 6 words; per sentence every
    # reference sentence is found whole, so the summary-level LCS covers all 6.
    prediction, reference = "the cat sat.\non the mat", "on the mat\nthe cat sat."
    scores = metrics.rouge_scores(prediction, reference)
    assert scores["rougeL"] == pytest.approx(0.5)
    assert scores["rougeLsum"] == pytest.approx(1.0)


def test_rouge_uses_the_stemmer_and_the_best_reference() -> None:
    assert metrics.rouge_scores("cats running", "cat runs")["rouge1"] == pytest.approx(1.0)
    assert get_metric("rouge1").per_example("red apple", ["green pear", "red apple"]) == pytest.approx(1.0)


# --- SQuAD exact match and F1 --------------------------------------------------------------------------


def test_squad_normalisation_drops_case_punctuation_articles_and_spaces() -> None:
    assert metrics.normalize_answer("  The  Eiffel-Tower!  ") == "eiffeltower"
    assert metrics.normalize_answer("An apple, a pear and THE plum.") == "apple pear and plum"


@pytest.mark.parametrize(("prediction", "references", "em", "f1"), [
    ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),
    ("an apple", ["Apple."], 1.0, 1.0),
    # tokens [in, paris, france] vs [paris]: P = 1/3, R = 1 -> F1 = 0.5 (best of the two refs)
    ("in Paris, France", ["Paris", "France."], 0.0, 0.5),
    # [denver, broncos, won] vs [broncos]: 1/3 and 1 -> 0.5; vs [denver, broncos]: 2/3, 1 -> 0.8
    ("Denver Broncos won", ["Broncos", "the Denver Broncos"], 0.0, 0.8),
    ("the", ["a"], 1.0, 0.0),  # both normalise to "": equal strings, but no shared tokens
    ("London", ["Paris"], 0.0, 0.0),
])
def test_exact_match_and_token_f1(prediction: str, references: list[str], em: float, f1: float) -> None:
    assert get_metric("exact_match").per_example(prediction, references) == em
    assert get_metric("token_f1").per_example(prediction, references) == pytest.approx(f1)


def test_token_f1_counts_repeated_words_once_per_match() -> None:
    # [the] dropped; [cat, cat, cat] vs [cat, sat]: one shared -> P = 1/3, R = 1/2, F1 = 0.4
    assert metrics.token_f1("cat cat cat", "the cat sat") == pytest.approx(0.4)


# --- accuracy, regex, JSON -------------------------------------------------------------------------------


def test_label_accuracy_ignores_case_spaces_and_surrounding_punctuation() -> None:
    accuracy = get_metric("accuracy")
    assert accuracy.per_example(" Positive.\n", "positive") == 1.0
    assert accuracy.per_example("A", "a") == 1.0  # not erased as an article
    assert accuracy.per_example("positive, mostly", "positive") == 0.0
    assert accuracy.aggregate(["pos", "neg", "neg", "pos"], ["pos", "neg", "pos", "neg"]) == 0.5


def test_regex_match_is_a_full_match_of_the_stripped_output() -> None:
    regex = get_metric("regex_match")
    date = r"\d{4}-\d{2}-\d{2}"
    assert regex.per_example(" 2024-05-01\n", [], pattern=date) == 1.0
    assert regex.per_example("Date: 2024-05-01", [], pattern=date) == 0.0
    assert regex.aggregate(["2024-05-01", "soon", "1999-12-31"], ["", "", ""], pattern=date) == pytest.approx(2 / 3)


def test_an_invalid_regex_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"invalid pattern '\(ab'.*missing \)"):
        metrics.regex_match("ab", pattern="(ab")


def test_json_field_match_reads_the_first_object_and_compares_chosen_fields() -> None:
    json_match = get_metric("json_field_match")
    reference = '{"name": "Ada", "age": 36, "city": "London"}'
    output = 'Here you go:\n```json\n{"name": "Ada", "age": 37, "city": "London"}\n``` {"name": "x"}'
    assert json_match.per_example(output, reference, fields=["name", "city"]) == 1.0
    assert json_match.per_example(output, reference) == pytest.approx(2 / 3)  # all fields; age wrong
    assert json_match.per_example('{"name": "Ada"}', reference, fields=["name", "age"]) == 0.5
    assert json_match.per_example('{"name": "Ada", age: 36}', reference) == 0.0  # unparsable
    assert json_match.per_example("no json here", reference) == 0.0
    assert json_match.per_example('{"age": 36}', {"age": 36}) == 1.0


# --- bootstrap ---------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_estimate_and_repeats_with_its_seed() -> None:
    predictions = ["yes", "no", "yes", "yes", "no", "yes", "no", "no", "yes", "yes"] * 3
    references = ["yes", "no", "no", "yes", "no", "yes", "yes", "no", "yes", "no"] * 3
    first = metrics.bootstrap_ci("accuracy", predictions, references, seed=7)
    assert first.estimate == pytest.approx(0.7)
    assert first.low < first.estimate < first.high
    assert 0.4 < first.low and first.high < 0.95
    assert metrics.bootstrap_ci("accuracy", predictions, references, seed=7) == first
    # With continuous scores the seed visibly matters (0/1 scores can land on the same percentiles).
    scores = [0.1 * (i % 7) + 0.01 * i for i in range(30)]
    assert metrics.bootstrap_mean_ci(scores, seed=1) == metrics.bootstrap_mean_ci(scores, seed=1)
    assert metrics.bootstrap_mean_ci(scores, seed=1) != metrics.bootstrap_mean_ci(scores, seed=2)


def test_bootstrap_of_bleu_recomputes_the_corpus_score() -> None:
    predictions = SACREBLEU_SYS * 4
    references = PER_EXAMPLE_REFS * 4
    interval = metrics.bootstrap_ci("bleu", predictions, references, n_resamples=200, seed=0)
    assert interval.estimate == pytest.approx(48.53, abs=0.005)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.low < interval.high
    assert metrics.bootstrap_ci("bleu", predictions, references, n_resamples=200, seed=0) == interval


def test_bootstrap_mean_ci_of_constant_scores_is_a_point() -> None:
    interval = metrics.bootstrap_mean_ci([0.25] * 20, n_resamples=100)
    assert (interval.low, interval.estimate, interval.high) == pytest.approx((0.25, 0.25, 0.25))


# --- log-likelihood multiple choice ------------------------------------------------------------------


def test_acc_norm_divides_by_utf8_bytes_not_characters() -> None:
    # acc picks the higher raw log-likelihood; per byte the long choice wins.
    assert metrics.pick_choices([-2.0, -5.0], ["a", "long answer"]) == (0, 1)
    # "é" is 1 character but 2 bytes: per byte -1.0 beats -1.5 ("ab"); per character it would lose.
    assert metrics.pick_choices([-2.0, -3.0], ["é", "ab"]) == (0, 0)


def test_encode_pair_moves_trailing_context_spaces_to_the_continuation() -> None:
    class Chars:  # a tokenizer with one token per character makes the split visible
        bos_token_id, eos_token_id = 1, 2

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [ord(c) for c in text]

    assert metrics.encode_pair(Chars(), "Q: 2+2? A: ", "4") == ([ord(c) for c in "Q: 2+2? A:"], [ord(" "), ord("4")])
    assert metrics.encode_pair(Chars(), "", "4") == ([1], [ord("4")])


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_model_dir))


def direct_continuation_logprob(model: Any, tokenizer: Any, context: str, continuation: str) -> float:
    """Sum of log p(token | everything before it) over the continuation, one unpadded pass."""
    import torch

    context_ids = tokenizer.encode(context, add_special_tokens=False)
    ids = tokenizer.encode(context + continuation, add_special_tokens=False)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(len(context_ids), len(ids)))


def test_multiple_choice_picks_the_choice_the_model_finds_most_likely(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    context = "Review: The battery died after a week.\nSentiment:"
    choices = ["positive", "negative", "mixed feelings overall", "neutral"]
    result = metrics.score_multiple_choice(model, tokenizer, context, choices)
    direct = [direct_continuation_logprob(model, tokenizer, context, " " + c) for c in choices]
    assert result.logprobs == pytest.approx(direct, rel=1e-4)
    assert result.pred == max(range(4), key=lambda i: direct[i])
    assert result.byte_lengths == [len(c.encode()) for c in choices]
    assert result.pred_norm == max(range(4), key=lambda i: direct[i] / len(choices[i].encode()))
    gold = result.pred
    summary = metrics.multiple_choice_accuracy(
        model, tokenizer, [(context, choices, gold), (context, choices, (gold + 1) % 4)]
    )
    assert summary["acc"] == 0.5
