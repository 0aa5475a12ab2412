"""Mean negative log-likelihood and perplexity of texts under a causal LM, without generation.

Three scopes:

- **raw text the way lm-evaluation-harness scores it** (:func:`score_rolling`, the text metrics of
  an evaluation): its ``loglikelihood_rolling`` request as the HF model (``HFLM``) of lm-eval
  0.4 runs it. The text is tokenized with the tokenizer's own default special tokens
  (``HFLM.tok_encode``), the first token is conditioned on one prefix token (the tokenizer's BOS,
  else its EOS: ``HFLM.prefix_token_id``), so every token of the text is scored, and a text
  longer than the model's maximum length is cut into disjoint windows of that length
  (``get_rolling_token_windows`` with ``context_len=1`` and ``make_disjoint_window``): each
  window after the first is conditioned on the tokens just before it, up to the maximum length;
- the whole text with the tokenizer's own tokens, the first token unscored (:func:`score`);
- only the answer tokens of a prompt + answer pair (the tokens a fine-tune was trained to
  produce; :func:`score`).

With :func:`score`, long texts are scored with the sliding window of the
transformers perplexity guide (docs: "Perplexity of fixed-length models"): windows of
``window`` tokens that start every ``stride`` tokens, where each window scores only the tokens
the previous window did not reach (the overlap's labels are -100) so every token is counted
once, with up to ``window - stride`` tokens of context carried over. (One difference from
the guide's code: it counts "valid labels minus one" tokens per window, which drops a real
token from every overlapping window's weight; here a window's count is the labels its loss
actually covers, so sums are exact.)

Results are per-example NLL sums and token counts, so the set's mean NLL is weighted by tokens
(a long text counts more than a short one, as in the guide), and per-row values are exact for
the per-example table. torch is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

IGNORE_INDEX = -100  # the label value transformers' loss skips


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of one text and which of them are scored.

    Attributes:
        input_ids: The token ids.
        scored: One flag per token; True = its NLL counts. None scores every token that has a
            preceding token (the first token of a text is never predicted).
    """

    input_ids: list[int]
    scored: list[bool] | None = None

    def labels(self) -> list[int]:
        """Labels for the loss: the ids, with unscored tokens set to -100."""
        if self.scored is None:
            return list(self.input_ids)
        if len(self.scored) != len(self.input_ids):
            raise ValueError(f"{len(self.scored)} mask flags for {len(self.input_ids)} tokens")
        return [t if keep else IGNORE_INDEX for t, keep in zip(self.input_ids, self.scored)]


@dataclass(frozen=True)
class NllResult:
    """Per-example NLL sums (nats) and the number of tokens each sum covers."""

    nll_sums: list[float]
    token_counts: list[int]

    @property
    def mean_nll(self) -> float:
        """Token-weighted mean NLL over the whole set."""
        tokens = sum(self.token_counts)
        return sum(self.nll_sums) / tokens if tokens else float("nan")

    @property
    def perplexity(self) -> float:
        """exp(mean NLL)."""
        return math.exp(self.mean_nll)

    def example_mean_nll(self, index: int) -> float:
        """Mean NLL of one example (NaN when none of its tokens are scored)."""
        count = self.token_counts[index]
        return self.nll_sums[index] / count if count else float("nan")


def tokenize_text(tokenizer: Any, text: str) -> TokenizedExample:
    """The whole text, every token scored. Special tokens follow the tokenizer's own default."""
    return TokenizedExample(tokenizer(text)["input_ids"])


def tokenize_prompt_answer(tokenizer: Any, prompt: str, answer: str) -> TokenizedExample:
    """Prompt then answer, only the answer's tokens scored.

    The two parts are tokenized separately and joined, so the boundary between scored and
    unscored tokens is exact (a joint tokenization could merge characters across it).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return TokenizedExample(prompt_ids + answer_ids, [False] * len(prompt_ids) + [True] * len(answer_ids))


@dataclass(frozen=True)
class _Segment:
    """One forward pass's worth of one example: a window of ids and, for each position, the
    token that position predicts (-100: not scored)."""

    example: int
    input_ids: list[int]
    targets: list[int]

    @classmethod
    def of_labels(cls, example: int, input_ids: list[int], labels: list[int]) -> "_Segment":
        """From labels aligned with the ids (transformers' convention: position t predicts t+1)."""
        return cls(example, input_ids, labels[1:] + [IGNORE_INDEX])


def windows(example: TokenizedExample, window: int | None, stride: int | None) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) of each window, exactly as the transformers perplexity guide builds them.

    Args:
        example: The tokens and their scoring mask.
        window: Most tokens per forward pass; None = the whole text in one pass.
        stride: Start-to-start distance of windows; None = ``window`` (no overlap).

    Returns:
        One (ids, labels) pair per window; labels of tokens scored by an earlier window are -100.
    """
    ids, labels = example.input_ids, example.labels()
    if window is None or len(ids) <= window:
        return [(list(ids), labels)]
    stride = stride or window
    if not 0 < stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    pieces, previous_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        new_tokens = end - previous_end  # tokens no earlier window has scored
        piece_labels = labels[begin:end]
        piece_labels[: len(piece_labels) - new_tokens] = [IGNORE_INDEX] * (len(piece_labels) - new_tokens)
        pieces.append((ids[begin:end], piece_labels))
        previous_end = end
        if end == len(ids):
            break
    return pieces


def _segments(examples: Sequence[TokenizedExample], window: int | None, stride: int | None) -> list[_Segment]:
    return [_Segment.of_labels(i, ids, labels) for i, example in enumerate(examples)
            for ids, labels in windows(example, window, stride)]


def _segment_nll(model: Any, batch: Sequence[_Segment], pad_id: int) -> list[tuple[float, int]]:
    """(NLL sum, scored token count) of each segment, from one right-padded forward pass."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    width = max(len(s.input_ids) for s in batch)
    ids = torch.tensor([s.input_ids + [pad_id] * (width - len(s.input_ids)) for s in batch], device=device)
    targets = torch.tensor([s.targets + [IGNORE_INDEX] * (width - len(s.targets)) for s in batch], device=device)
    attention = torch.tensor([[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in batch],
                             device=device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits
    # The targets are already shifted (position t predicts targets[t]). float32 for the sums,
    # since bf16 log-softmax would cost the 1e-4 agreement with a direct computation.
    losses = F.cross_entropy(logits.float().transpose(1, 2), targets,
                             ignore_index=IGNORE_INDEX, reduction="none")
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    return [(float(loss), int(count)) for loss, count in zip(losses.sum(dim=1), counts)]


def _batches(segments: list[_Segment], batch_size: int) -> list[list[_Segment]]:
    # Similar lengths together so padding wastes little compute; results are keyed by example,
    # so the order of forward passes does not matter.
    ordered = sorted(segments, key=lambda s: len(s.input_ids))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def _score_segments(model: Any, segments: list[_Segment], examples: int, batch_size: int,
                    pad_id: int) -> NllResult:
    sums, counts = [0.0] * examples, [0] * examples
    for batch in _batches(segments, batch_size):
        for segment, (nll, count) in zip(batch, _segment_nll(model, batch, pad_id)):
            sums[segment.example] += nll
            counts[segment.example] += count
    return NllResult(sums, counts)


def score(model: Any, examples: Sequence[TokenizedExample], *, window: int | None = None,
          stride: int | None = None, batch_size: int = 8, pad_id: int = 0) -> NllResult:
    """NLL sums and token counts of each example, batched, with a sliding window for long texts.

    Args:
        model: A causal LM (transformers or peft) on its device, in eval mode.
        examples: The token ids and scoring masks (see :func:`tokenize_text` and
            :func:`tokenize_prompt_answer`).
        window: Most tokens per forward pass; None = the model's ``max_position_embeddings``.
        stride: Start-to-start distance of windows; None = ``window``. A smaller stride gives
            each scored token more context and costs more passes.
        batch_size: Windows per forward pass.
        pad_id: Token id used for padding (masked out, so any valid id works).

    Returns:
        One NLL sum (nats) and scored-token count per example.
    """
    window = window or getattr(model.config, "max_position_embeddings", None)
    return _score_segments(model, _segments(examples, window, stride), len(examples), batch_size, pad_id)


def score_texts(model: Any, tokenizer: Any, texts: Sequence[str], answers: Sequence[str] | None = None,
                **options: Any) -> NllResult:
    """:func:`score` for raw strings: whole texts, or (with ``answers``) prompt + answer pairs
    scored on the answer tokens only. ``options`` go to :func:`score`."""
    if answers is None:
        examples = [tokenize_text(tokenizer, t) for t in texts]
    else:
        if len(answers) != len(texts):
            raise ValueError(f"{len(texts)} prompts but {len(answers)} answers")
        examples = [tokenize_prompt_answer(tokenizer, p, a) for p, a in zip(texts, answers)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return score(model, examples, pad_id=pad_id, **options)


# -- raw text, as lm-evaluation-harness's loglikelihood_rolling ------------------------------------

DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM default when neither config nor tokenizer gives one
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "no limit" model_max_length


def prefix_token_id(tokenizer: Any) -> int:
    """The token a text's first token is conditioned on: BOS, else EOS (lm-eval's
    ``HFLM.prefix_token_id``)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition the first token on")
    return int(token)


def max_length(model: Any, tokenizer: Any) -> int:
    """The model's maximum length as lm-eval's HFLM resolves it: the (text) config's
    ``n_positions``, ``max_position_embeddings`` or ``n_ctx``, else the tokenizer's
    ``model_max_length``, else 2048."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_MAX_LENGTH


def tokenize_rolling(tokenizer: Any, text: str) -> list[int]:
    """The text's tokens as lm-eval's ``HFLM.tok_encode`` makes them: the tokenizer's default
    special tokens, none added when the text already starts with the prefix token's text."""
    prefix = tokenizer.decode(prefix_token_id(tokenizer))
    add = not text.startswith(prefix)  # lm-eval's has_bos_prefix (an empty prefix text counts)
    return list(tokenizer.encode(text, add_special_tokens=add))


def rolling_windows(tokens: Sequence[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) pairs that score every token once, as lm-eval's
    ``get_rolling_token_windows(context_len=1)`` followed by ``make_disjoint_window``.

    The first window predicts the first ``max_len`` tokens after ``prefix``; each later window
    predicts the next ``max_len`` tokens (fewer at the end) given the tokens before them, so
    that context + continuation minus its last token is at most ``max_len`` tokens.
    """
    if max_len < 1:
        raise ValueError(f"the maximum length must be at least 1, got {max_len}")
    tokens = list(tokens)
    if not tokens:
        return []
    first = min(max_len, len(tokens))
    pairs = [([prefix], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        count = min(len(tokens) - predicted, max_len)
        end = predicted + count
        context = tokens[max(end - max_len - 1, 0):end - 1]
        # make_disjoint_window: drop the context tokens the continuation already holds.
        pairs.append((context[:len(context) - (count - 1)], tokens[end - count:end]))
        predicted = end
    return pairs


def rolling_segments(tokens: Sequence[Sequence[int]], prefix: int, max_len: int) -> list[_Segment]:
    """One forward pass per window: input = (context + continuation) without its last token,
    the continuation's tokens predicted by the last ``len(continuation)`` positions."""
    segments = []
    for i, ids in enumerate(tokens):
        for context, continuation in rolling_windows(ids, prefix, max_len):
            full = context + continuation
            segments.append(_Segment(i, full[:-1], [IGNORE_INDEX] * (len(context) - 1) + continuation))
    return segments


def score_rolling(model: Any, tokenizer: Any, texts: Sequence[str], *, max_len: int | None = None,
                  batch_size: int = 8) -> NllResult:
    """NLL sums (nats) of whole texts and the number of tokens each covers, every token scored,
    exactly as lm-eval's ``loglikelihood_rolling`` on its HF model (see the module docstring).

    Args:
        model: A causal LM (transformers or peft) on its device, in eval mode.
        tokenizer: Its tokenizer.
        texts: The raw texts; no chat template is applied.
        max_len: Most tokens per forward pass; None = :func:`max_length` (lm-eval's default).
        batch_size: Windows per forward pass.
    """
    prefix = prefix_token_id(tokenizer)
    limit = max_len or max_length(model, tokenizer)
    tokens = [tokenize_rolling(tokenizer, t) for t in texts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return _score_segments(model, rolling_segments(tokens, prefix, limit), len(texts), batch_size, pad_id)
