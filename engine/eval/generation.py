"""The model side of an evaluation: loading base and tuned models, batched greedy generation
sorted by length, answer-only perplexity, the raw-text NLL of text rows (lm-eval's
``loglikelihood_rolling``) and log-likelihood label accuracy.

Generation sorts prompts by token length and left-pads each batch: rows of similar length share
a batch, so little compute goes to padding, and left padding keeps every prompt's last token at
the end of the row, where generation continues. Outputs are returned in the original order.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.core import errors
from engine.eval import perplexity
from engine.eval.examples import EvalExample
from engine.eval.metrics import score_multiple_choice
from engine.infer import structured
from engine.infer.decode import eos_ids
from engine.infer.generate import base_for_adapter, resolve_adapter
from engine.runtime import models

log = logging.getLogger("engine.eval.run")

Progress = Callable[[int], None]  # called with the number of rows just finished


@dataclass(frozen=True)
class ModelRef:
    """One model of an evaluation: ``label`` names its column in every table."""

    label: str
    adapter: Path | None  # None = the base model itself
    model_dir: Path | None = None  # a full fine-tune replaces the base model
    trained_system_prompt: str = ""  # the system prompt its run's training data used


def resolve_models(base_spec: str, adapters: Sequence[str], with_base: bool = True) -> tuple[str, list[ModelRef]]:
    """(base model spec, models to evaluate: the base first unless ``with_base`` is false, then
    each adapter)."""

    refs = [ModelRef("base", None)]
    for spec in adapters:
        folder, info = resolve_adapter(spec)
        label = _unique_label(str(info.get("id") or folder.parent.name or folder.name), refs)
        system = str(info.get("system_prompt") or "")
        if (folder / "adapter_config.json").is_file():
            base_spec = base_spec or base_for_adapter(folder, None)
            refs.append(ModelRef(label, folder, trained_system_prompt=system))
        else:
            refs.append(ModelRef(label, None, folder, trained_system_prompt=system))
    return base_spec or "default", refs if with_base else refs[1:]


def _unique_label(label: str, refs: Sequence[ModelRef]) -> str:
    taken = {r.label for r in refs}
    candidate, n = label, 2
    while candidate in taken:
        candidate, n = f"{label}-{n}", n + 1
    return candidate


def load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base_dir: Path, ref: ModelRef, device_name: str) -> Any:
    """The base model, with the adapter on top when ``ref`` has one, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device_name == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(ref.model_dir or base_dir), dtype=dtype).to(device_name)
    if ref.adapter is not None:
        from peft import PeftModel

        # peft asks transformers a deprecated question on load; the warning is not the user's.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        try:
            model = PeftModel.from_pretrained(model, str(ref.adapter))
        except (RuntimeError, ValueError, KeyError) as exc:  # shapes or module names do not fit
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise errors.invalid_input(f"adapters: {ref.label} does not fit the base model {base_dir.name} "
                                       f"(was it trained on another model?): {first}") from None
    return model.eval()


def prepare_base(spec: str) -> Path:
    try:
        return models.prepare(spec)
    except errors.EngineError:
        raise
    except OSError as exc:
        raise errors.not_found(f"model: cannot read {spec!r}: {exc}") from None


def render_prompt(tokenizer: Any, example: EvalExample) -> str:
    """The prompt text exactly as generation sees it: the chat template with the assistant turn
    opened, or the plain user text for a tokenizer without a template."""
    if not tokenizer.chat_template:
        return "\n\n".join(m["content"] for m in example.messages)
    return tokenizer.apply_chat_template(list(example.messages), tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    # The chat template already writes the special tokens the model expects.
    return tokenizer(prompt, add_special_tokens=not tokenizer.chat_template)["input_ids"]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of similar length, longest first (a memory problem
    shows up in the first batch, and the ETA starts pessimistic rather than optimistic)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate_batched(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int,
                     batch_size: int, cancelled: threading.Event, on_rows: Progress | None = None,
                     sort: bool = True, json_schema: str = "") -> list[str]:
    """Greedy answers to ``prompts`` (in their order), ``batch_size`` at a time.

    Args:
        sort: Batch by length (the default); False keeps the given order (the naive baseline).
        json_schema: "", "any" or a JSON Schema's text: every answer is constrained to it
            (engine.infer.structured).

    Raises:
        EngineError: CANCELLED between batches when ``cancelled`` is set.
    """
    import torch

    ids = [prompt_ids(tokenizer, p) for p in prompts]
    batches = (length_sorted_batches([len(x) for x in ids], batch_size) if sort
               else [list(range(i, min(i + batch_size, len(ids)))) for i in range(0, len(ids), batch_size)])
    outputs = [""] * len(prompts)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    for batch in batches:
        _check_cancel(cancelled)
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch], device=device)
        attention = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch], device=device)
        constraints = ([structured.BatchJsonConstraint(tokenizer, json_schema, len(batch), eos_ids(model, tokenizer))]
                       if json_schema else None)
        with torch.inference_mode():
            generated = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=pad, temperature=None,
                                       top_p=None, top_k=None,
                                       logits_processor=constraints)
        for row, i in enumerate(batch):
            outputs[i] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
        if on_rows:
            on_rows(len(batch))
    return outputs


def _check_cancel(cancelled: threading.Event) -> None:
    if cancelled.is_set():
        raise errors.EngineError(errors.ExitCode.CANCELLED, "evaluation cancelled; nothing was written")


def answer_examples(tokenizer: Any, examples: Sequence[EvalExample]) -> list[perplexity.TokenizedExample]:
    """Prompt (as generation sees it) + reference answer, only the answer's tokens scored; plain
    text rows are scored whole."""
    out = []
    for example in examples:
        if example.messages:
            prompt = prompt_ids(tokenizer, render_prompt(tokenizer, example))
            answer = tokenizer(example.reference, add_special_tokens=False)["input_ids"]
            out.append(perplexity.TokenizedExample(prompt + answer, [False] * len(prompt) + [True] * len(answer)))
        else:
            out.append(perplexity.tokenize_text(tokenizer, example.reference))
    return out


def answer_nll(model: Any, tokenizer: Any, examples: Sequence[EvalExample], batch_size: int,
               cancelled: threading.Event, on_rows: Progress | None = None) -> perplexity.NllResult:
    """Per-example NLL sums of the reference answers (batched forward passes, no generation)."""
    tokenized = answer_examples(tokenizer, examples)
    sums: list[float] = []
    counts: list[int] = []
    # Chunks of rows so cancel and progress work between them; perplexity.score batches inside.
    chunk = batch_size * 4
    for start in range(0, len(tokenized), chunk):
        _check_cancel(cancelled)
        part = perplexity.score(model, tokenized[start:start + chunk], batch_size=batch_size,
                                pad_id=tokenizer.pad_token_id)
        sums += part.nll_sums
        counts += part.token_counts
        if on_rows:
            on_rows(len(part.nll_sums))
    return perplexity.NllResult(sums, counts)


def text_nll(model: Any, tokenizer: Any, examples: Sequence[EvalExample], batch_size: int,
             cancelled: threading.Event, on_rows: Progress | None = None) -> perplexity.NllResult:
    """Per-example NLL sums of the raw texts, every token scored, as lm-eval's
    ``loglikelihood_rolling`` (no chat template; see engine.eval.perplexity.score_rolling)."""
    texts = [e.reference for e in examples]
    limit = perplexity.max_length(model, tokenizer)
    try:
        perplexity.prefix_token_id(tokenizer)
    except ValueError as exc:
        raise errors.invalid_input(f"model: {exc}") from None
    sums: list[float] = []
    counts: list[int] = []
    chunk = batch_size * 4
    for start in range(0, len(texts), chunk):
        _check_cancel(cancelled)
        part = perplexity.score_rolling(model, tokenizer, texts[start:start + chunk], max_len=limit,
                                        batch_size=batch_size)
        sums += part.nll_sums
        counts += part.token_counts
        if on_rows:
            on_rows(len(part.nll_sums))
    return perplexity.NllResult(sums, counts)


def choice_predictions(model: Any, tokenizer: Any, examples: Sequence[EvalExample],
                       cancelled: threading.Event, on_rows: Progress | None = None) -> list[str]:
    """The label each row's model ranks most likely after the prompt (lm-eval's ``acc``)."""

    picks = []
    for example in examples:
        _check_cancel(cancelled)
        context = render_prompt(tokenizer, example)
        scored = score_multiple_choice(model, tokenizer, context, example.choices, delimiter="")
        picks.append(example.choices[scored.pred])
        if on_rows:
            on_rows(1)
    return picks


class Eta:
    """Rows done so far and a rate-based estimate of the seconds left."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()

    def advance(self, rows: int) -> float | None:
        self.done += rows
        elapsed = time.monotonic() - self.started
        if not self.done:
            return None
        return round(elapsed / self.done * (self.total - self.done), 1)
