"""Perplexity equals a direct transformers computation on the same tokens (issue 6)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from engine.eval import perplexity
from engine.eval.perplexity import IGNORE_INDEX, TokenizedExample

REL = 1e-4
TEXTS = [
    "Great battery life, the screen is sharp and the speakers are loud enough for a small room.",
    "Arrived broken.",
    "The keyboard feels cheap but it works; I would buy it again for the price.",
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_model_dir))


def direct_loss_sum(model: Any, ids: list[int], labels: list[int]) -> tuple[float, int]:
    """transformers' own mean loss times its token count: the reference NLL sum."""
    import torch

    count = sum(label != IGNORE_INDEX for label in labels[1:])
    if count == 0:  # transformers' mean over no tokens is NaN
        return 0.0, 0
    with torch.no_grad():
        loss = model(torch.tensor([ids]), labels=torch.tensor([labels])).loss
    return float(loss) * count, count


def test_whole_text_equals_direct_transformers_loss(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    ids = tokenizer(TEXTS[0])["input_ids"]
    result = perplexity.score_texts(model, tokenizer, TEXTS[:1])
    expected, count = direct_loss_sum(model, ids, ids)
    assert result.token_counts == [len(ids) - 1] == [count]
    assert result.mean_nll == pytest.approx(expected / count, rel=REL)
    assert result.perplexity == pytest.approx(math.exp(expected / count), rel=REL)


def test_batched_padding_does_not_change_per_example_sums(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    batched = perplexity.score_texts(model, tokenizer, TEXTS, batch_size=3)
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]
        expected, count = direct_loss_sum(model, ids, ids)
        assert batched.token_counts[i] == count
        assert batched.nll_sums[i] == pytest.approx(expected, rel=REL)
    # The aggregate weights examples by tokens, not one vote per text.
    assert batched.mean_nll == pytest.approx(sum(batched.nll_sums) / sum(batched.token_counts), rel=1e-12)
    assert batched.mean_nll != pytest.approx(sum(batched.example_mean_nll(i) for i in range(3)) / 3, rel=1e-6)


def test_stride_equal_to_window_equals_chunked_direct_computation(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    ids = tokenizer(" ".join(TEXTS))["input_ids"]
    window = 8
    assert len(ids) > 3 * window
    result = perplexity.score(model, [TokenizedExample(ids)], window=window, stride=window, batch_size=4)
    chunks = [direct_loss_sum(model, ids[i:i + window], ids[i:i + window]) for i in range(0, len(ids), window)]
    assert result.token_counts == [sum(c for _, c in chunks)]
    assert result.nll_sums[0] == pytest.approx(sum(s for s, _ in chunks), rel=REL)


def test_overlapping_windows_follow_the_transformers_guide(model_and_tokenizer: tuple[Any, Any]) -> None:
    """The loop of the guide ("Perplexity of fixed-length models"), written out here.

    One deliberate difference: the guide counts a window's loss tokens as "valid labels minus
    one" for the label shift, which is right only when the window's first label is scored; for
    the overlapping windows it drops one real token each. The count here is the tokens the
    model's loss actually averaged over (the shifted labels), which makes the sum exact."""
    import torch

    model, tokenizer = model_and_tokenizer
    ids = torch.tensor([tokenizer(" ".join(TEXTS))["input_ids"]])
    max_length, stride, seq_len = 16, 5, ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        num_loss_tokens = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(loss) * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    result = perplexity.score(model, [TokenizedExample(ids[0].tolist())], window=max_length, stride=stride)
    assert result.token_counts == [n_tokens]
    assert result.mean_nll == pytest.approx(nll_sum / n_tokens, rel=REL)
    # Every token but the first is scored exactly once across the windows.
    assert n_tokens == seq_len - 1


def test_answer_only_equals_hand_masked_labels(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    prompt, answer = "Review: Arrived broken.\nSentiment:", " negative"
    result = perplexity.score_texts(model, tokenizer, [prompt], answers=[answer])
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    expected, count = direct_loss_sum(model, prompt_ids + answer_ids, labels)
    assert result.token_counts == [len(answer_ids)] == [count]
    assert result.nll_sums[0] == pytest.approx(expected, rel=REL)
    whole = perplexity.score_texts(model, tokenizer, [prompt + answer])
    assert whole.token_counts[0] > result.token_counts[0]


def test_mask_survives_the_sliding_window(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    ids = tokenizer(TEXTS[0])["input_ids"]
    scored = [i % 3 == 0 for i in range(len(ids))]
    example = TokenizedExample(ids, scored)
    windowed = perplexity.score(model, [example], window=6, stride=6)
    expected = sum(direct_loss_sum(model, ids[i:i + 6], example.labels()[i:i + 6])[0] for i in range(0, len(ids), 6))
    assert windowed.nll_sums[0] == pytest.approx(expected, rel=REL)


def test_bad_stride_and_mask_length_are_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        perplexity.windows(TokenizedExample(list(range(10))), window=4, stride=5)
    with pytest.raises(ValueError, match="mask flags"):
        TokenizedExample([1, 2, 3], [True]).labels()
