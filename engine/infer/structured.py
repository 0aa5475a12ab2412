"""Structured output: a JSON Schema enforced token by token with llguidance.

At every decoding step the matcher's bitmask of allowed tokens is applied to the logits before a
token is drawn, so an answer under a schema cannot leave the grammar; end of sequence is allowed
only once the JSON is complete, and the answer ends as soon as nothing more can follow. An answer
cut short by ``max_new_tokens`` ends with finish_reason "length" (incomplete JSON). llguidance was
chosen over xgrammar by its measured per-token cost on a CPU (benchmarks/constrained_overhead.py).
The parameter itself (``json_schema``: empty, "any" or a schema's text) is validated for its JSON
in :mod:`engine.infer.params`; :func:`check` adds the schema's own errors (unknown types, bad
references or patterns) as one line.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any, Sequence

from engine.core import errors, untrusted
from engine.infer.params import ANY_JSON, schema_problem

ANY_JSON_SCHEMA = {"type": "object"}  # as OpenAI's JSON mode: any JSON object
# Compact JSON, one space after ':' and ','. llguidance's default allows any whitespace between
# tokens, where a small model can loop on newlines until max_new_tokens; a schema may still set
# its own "x-guidance" options.
LAYOUT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


def schema_text(json_schema: str) -> str:
    # Already checked by params.schema_problem; parsed again through the same checked reader.
    schema = ANY_JSON_SCHEMA if json_schema == ANY_JSON else untrusted.json_loads(json_schema)
    return json.dumps({"x-guidance": LAYOUT, **schema})


def check(json_schema: str, field: str = "params.json_schema") -> None:
    """Raises a USAGE EngineError, one line naming ``field``, if the schema cannot be compiled."""
    if not json_schema:
        return
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_text(json_schema))
    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem:
        lines = [line.strip() for line in problem.splitlines() if line.strip() and line.strip() != "^"]
        raise errors.usage(f"{field}: not a usable JSON Schema: {'; '.join(lines)}")


def from_flag(value: str) -> str:
    """``--json-schema any|FILE`` as the json_schema parameter: "any", or the file's schema, read
    and checked; an error is one INVALID_INPUT line naming the file."""
    if value in ("", ANY_JSON):
        return value
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.invalid_input(f"--json-schema {path}: cannot read it ({exc.strerror or exc})") from None
    problem = schema_problem(text)
    if problem:
        raise errors.invalid_input(f"--json-schema {path}: {problem}")
    try:
        check(text.strip(), f"--json-schema {path}")
    except errors.EngineError as exc:
        raise errors.invalid_input(exc.message) from None
    return text.strip()


class JsonConstraint:
    """One generation's matcher: masks logits, follows the chosen tokens, says when the JSON is done."""

    def __init__(self, tokenizer: Any, json_schema: str, n_vocab: int, eos_ids: Sequence[int]) -> None:
        import llguidance
        import llguidance.torch

        check(json_schema)
        self._torch = llguidance.torch
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_text(json_schema))
        self.matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer, n_vocab), grammar)
        if self.matcher.is_error():
            raise errors.usage(f"params.json_schema: {self.matcher.get_error()}")
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, n_vocab)
        self.eos_ids = [i for i in eos_ids if 0 <= i < n_vocab]

    def mask(self, scores: Any) -> Any:
        """``scores`` (1 x vocab) with every token the grammar forbids at -inf. End of sequence
        (any of the model's EOS ids) is allowed only when the JSON is complete."""
        self._torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        masked = apply_bitmask(scores.float(), self.bitmask)
        accepting = self.matcher.is_accepting()
        for eos in self.eos_ids:
            masked[0, eos] = scores[0, eos] if accepting else float("-inf")
        return masked

    def accept(self, token_id: int) -> None:
        if not self.matcher.consume_token(token_id):
            raise RuntimeError(f"structured output: token {token_id} left the grammar: {self.matcher.get_error()}")

    @property
    def complete(self) -> bool:
        """Nothing but end of sequence can follow: the JSON is finished."""
        return self.matcher.is_stopped()


class BatchJsonConstraint:
    """Structured output for a batch of greedy ``model.generate`` rows, as a transformers logits
    processor: one matcher per row, each following its row's last token and masking its logits.
    A row whose JSON is complete can only end; a row that ended is left alone (generate pads it)."""

    def __init__(self, tokenizer: Any, json_schema: str, rows: int, eos_ids: Sequence[int]) -> None:
        self.tokenizer, self.json_schema, self.eos_ids = tokenizer, json_schema, list(eos_ids)
        self.matchers: list[JsonConstraint] = []  # made at the first step, when the vocabulary width is known
        self.ended = [False] * rows

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.matchers:
            self.matchers = [JsonConstraint(self.tokenizer, self.json_schema, scores.shape[-1], self.eos_ids)
                             for _ in self.ended]
        else:
            self._follow(input_ids[:, -1].tolist())
        for row, matcher in enumerate(self.matchers):
            if self.ended[row]:
                continue
            if matcher.complete and matcher.eos_ids:
                scores[row] = float("-inf")
                scores[row, matcher.eos_ids[0]] = 0.0
            else:
                scores[row] = matcher.mask(scores[row:row + 1])[0].to(scores.dtype)
        return scores

    def _follow(self, last_tokens: list[int]) -> None:
        for row, token in enumerate(last_tokens):
            if self.ended[row]:
                continue
            if token in self.eos_ids:
                self.ended[row] = True
            else:
                self.matchers[row].accept(token)


def apply_bitmask(scores: Any, bitmask: Any) -> Any:
    """A copy of ``scores`` (1 x vocab) with the tokens whose bit is 0 in ``bitmask`` (int32 words,
    token i is bit i % 32 of word i // 32) at -inf. Plain tensor operations, where
    llguidance.torch.apply_token_bitmask_inplace is a TorchScript function whose first call takes
    1.5 s or more per process (benchmarks/results/constrained_overhead.json)."""
    import torch

    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).bool().view(bitmask.shape[0], -1)
    return scores.masked_fill(~allowed[:, : scores.shape[-1]].to(scores.device), float("-inf"))


# hf tokenizer -> (n_vocab, llguidance's index); weak, so an unloaded model's tokenizer can go.
_TOKENIZERS: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()


def _ll_tokenizer(tokenizer: Any, n_vocab: int) -> Any:
    """llguidance's index of a tokenizer's vocabulary (a third of a second for 49k tokens), kept."""
    import llguidance.hf

    cached = _TOKENIZERS.get(tokenizer)
    if cached and cached[0] == n_vocab:
        return cached[1]
    built = llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab)
    _TOKENIZERS[tokenizer] = (n_vocab, built)
    return built
