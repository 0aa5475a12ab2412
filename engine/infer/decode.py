"""Tunebench's token-by-token decoder: one lean loop over the model with a KV cache.

Why not ``model.generate``: a playground needs, per token, the chosen token's log-probability
and its top alternatives, stop strings that end the answer the moment they appear (and are
not returned), cancel between any two tokens, and the KV cache of the previous chat turn kept
so the next turn only encodes its new tokens. The sampling itself is transformers' logits
processors (engine.infer.sampling); this module only drives the loop. On the CPU, Llama-family models
run through engine.infer.llama_decode's lean forward pass (same logits, a third less time per token);
others through transformers' forward.

Reported log-probabilities are those of the model's distribution after the repetition penalty
and before temperature/top-k/top-p/min-p, which only decide which token is drawn. Under a JSON
schema (``params.json_schema``, engine.infer.structured) the tokens the schema forbids are masked
first, in this same step, so the reported distribution is the constrained one.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine.infer.llama_decode import lean_model
from engine.infer.sampling import SamplingParams, logits_processors
from engine.infer.structured import JsonConstraint, check


@dataclass
class TokenEvent:
    index: int
    token_id: int
    text: str  # the decoded piece to append (may be "" while a character or stop string is incomplete)
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Outcome:
    text: str
    finish_reason: str  # "stop" (end of sequence), "length", "stop_string" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    tokens_per_s: float
    cached_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
                "tokens_per_s": round(self.tokens_per_s, 2), "cached_tokens": self.cached_tokens}


class TextAssembler:
    """Turns generated token ids into streamable text pieces.

    Holds text back while the tokens end inside a multi-byte character (decoded as U+FFFD) and
    while the text ends with the beginning of a stop string, so the pieces sent always add up
    to the final answer, which never contains a stop string."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._stops = tuple(stops)
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self._tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = self._stop_at(text)
        if cut is not None:
            self.stopped = True
            return self._emit(text[:cut])
        if text.endswith("\ufffd"):
            return ""
        return self._emit(text[: len(text) - self._held(text)])

    def finish(self) -> str:
        """The text still held back, once no more tokens come."""
        if self.stopped:
            return ""
        text = self._tokenizer.decode(self.ids, skip_special_tokens=True)
        return self._emit(text)

    def _emit(self, upto: str) -> str:
        if not upto.startswith(self.sent) or len(upto) <= len(self.sent):
            return ""
        piece, self.sent = upto[len(self.sent):], upto
        return piece

    def _stop_at(self, text: str) -> int | None:
        # Only the tail can hold a new match: everything before it was checked already.
        start = max(0, len(self.sent) - max((len(s) for s in self._stops), default=0))
        hits = [i for i in (text.find(s, start) for s in self._stops) if i >= 0]
        return min(hits) if hits else None

    def _held(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins some stop string."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best


class Decoder:
    """Generates for one loaded model, keeping the KV cache of the last sequence it saw.

    ``cache_key`` names what the cache belongs to (e.g. the active adapter): a new key drops it.
    """

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu") -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.lock = threading.Lock()
        self.model = model
        self.eos_ids = eos_ids(model, tokenizer)

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        """A new model (e.g. the base now wrapped by peft) gets its own lean pass and cache."""
        self._model = model
        self.lean = lean_model(model) if self.device == "cpu" else None
        self.reset()

    def reset(self) -> None:
        self._cache, self._cache_ids, self._cache_key = None, [], None

    def run(self, prompt_ids: list[int], params: SamplingParams, *, top_logprobs: int = 0,
            cancelled: threading.Event | None = None, cache_key: Any = None,
            on_token: Callable[[TokenEvent], None] | None = None) -> Outcome:
        import torch

        if not prompt_ids:
            prompt_ids = [self.eos_ids[0]] if self.eos_ids else [0]
        cancelled = cancelled or threading.Event()
        penalties, warpers = logits_processors(params)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        check(params.json_schema)  # a bad schema fails here, before the model is touched
        # Under a schema the JSON's end ends the answer; a stop string could only cut it short.
        assembler = TextAssembler(self.tokenizer, () if params.json_schema else params.stop)
        with self.lock, torch.inference_mode():
            return self._loop(prompt_ids, params, top_logprobs, cancelled, cache_key, on_token,
                              penalties, warpers, generator, assembler)

    def _loop(self, prompt_ids: list[int], params: SamplingParams, top_logprobs: int,
              cancelled: threading.Event, cache_key: Any, on_token: Callable[[TokenEvent], None] | None,
              penalties: Any, warpers: Any, generator: Any, assembler: TextAssembler) -> Outcome:
        import torch

        started = time.perf_counter()
        if self.lean is not None:
            self.lean.refresh()  # which adapters apply may have changed since the last answer
        reused = self._prepare_cache(prompt_ids, cache_key)
        fed = list(prompt_ids)  # every id whose keys/values are (or are about to be) in the cache
        logits = self._forward(prompt_ids[reused:], logits_to_keep=1)
        history = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        first_at: float | None = None
        finish = "length"
        count = 0
        constraint = (JsonConstraint(self.tokenizer, params.json_schema, logits.shape[-1], self.eos_ids)
                      if params.json_schema else None)
        while count < params.max_new_tokens:
            if cancelled.is_set():
                finish = "cancelled"
                break
            scores = penalties(history, logits) if len(penalties) else logits
            if constraint is not None:
                scores = constraint.mask(scores)
            logprobs = torch.log_softmax(scores.float(), dim=-1)
            if params.greedy:
                chosen = int(torch.argmax(scores, dim=-1))
            else:
                warped = warpers(history, scores)
                probs = torch.softmax(warped.float(), dim=-1)
                chosen = int(torch.multinomial(probs[0], 1, generator=generator))
            if chosen in self.eos_ids:
                finish = "stop"
                break
            if constraint is not None:
                constraint.accept(chosen)
            piece = assembler.add(chosen)
            count += 1
            if first_at is None:
                first_at = time.perf_counter()
            if on_token:
                on_token(self._event(count - 1, chosen, piece, logprobs, top_logprobs))
            if assembler.stopped:
                finish = "stop_string"
                break
            if constraint is not None and constraint.complete:
                finish = "stop"  # the JSON is complete: only end of sequence could follow
                break
            if count >= params.max_new_tokens:
                break
            history = torch.cat([history, history.new_tensor([[chosen]])], dim=1)
            fed.append(chosen)
            logits = self._forward([chosen])
        tail = assembler.finish()
        if tail and on_token:
            # Text held back for a stop string that never completed: no new token, just text.
            on_token(TokenEvent(count, -1, tail, 0.0))
        self._cache_ids = fed
        ended = time.perf_counter()
        return Outcome(assembler.sent, finish, len(prompt_ids), count,
                       None if first_at is None else first_at - started,
                       _rate(count, started, first_at, ended), reused)

    def _event(self, index: int, token_id: int, piece: str, logprobs: Any, top_n: int) -> TokenEvent:
        top: list[tuple[str, float]] = []
        if top_n > 0:
            values, ids = logprobs[0].topk(top_n)
            top = [(self.tokenizer.decode([int(i)]), round(float(v.exp()), 6))
                   for v, i in zip(values, ids)]
        return TokenEvent(index, token_id, piece, round(float(logprobs[0, token_id]), 6), top)

    def _prepare_cache(self, prompt_ids: list[int], cache_key: Any) -> int:
        """Keeps the cached keys/values of the longest common prefix; returns its length.
        At least one prompt token is always fed, since its logits start the answer."""
        from transformers import DynamicCache

        reused = 0
        if self._cache is not None and cache_key == self._cache_key:
            limit = min(len(self._cache_ids), len(prompt_ids) - 1)
            while reused < limit and self._cache_ids[reused] == prompt_ids[reused]:
                reused += 1
        if reused == 0:
            self._cache = self.lean.new_cache() if self.lean else DynamicCache(config=self.model.config)
        elif reused < self._cache.get_seq_length():
            self._cache.crop(reused - self._cache.get_seq_length())  # a negative count removes
        self._cache_key = cache_key
        self._cache_ids = list(prompt_ids[:reused])
        return reused

    def _forward(self, ids: list[int], logits_to_keep: int = 1) -> Any:
        import torch

        if self.lean is not None:
            return self.lean.forward(ids, self._cache)
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=tensor, past_key_values=self._cache, use_cache=True,
                         logits_to_keep=logits_to_keep)
        return out.logits[:, -1, :]


def _rate(count: int, started: float, first_at: float | None, ended: float) -> float:
    """Decode speed: tokens after the first over the time after the first (the first token's
    time is the prompt's, reported as time to first token)."""
    if first_at is None or count == 0:
        return 0.0
    if count == 1 or ended <= first_at:
        return count / max(ended - started, 1e-9)
    return (count - 1) / (ended - first_at)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends an answer: the generation config's (one id or several), then the
    tokenizer's."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, (list, tuple)):
            ids.extend(int(v) for v in value)
    return list(dict.fromkeys(ids))
