"""The round-trip check every export ends with: load what was written back, as another tool
would, and answer the run's sample prompts greedily, then compare with the unmerged adapter.

The most reported export failure in the field is a model that rambles after export because its
chat template or end-of-turn token was lost on the way. So the check looks at both the cause and
the symptom:

- **the template**: the export's own chat template (read from the GGUF's metadata, or the merged
  folder's tokenizer) must render every prompt exactly as the training tokenizer does, and its
  end-of-turn token must be the same;
- **the answers**: F32 and F16 files and merged folders in F32/F16 must give the same greedy
  text as the unmerged adapter. Lower precisions (Q8_0, Q5_0, Q4_0, BF16) round every weight, so
  they must give the same first tokens, and must end their answer with the end-of-turn token
  within the sample length wherever the adapter did: an export that rambles fails.

How each export is read back (llama.cpp where llama-cpp-python is installed, else transformers'
GGUF loader) is readback.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.core import workspace

log = logging.getLogger("engine.export")

# Prompts for an adapter folder that has no run (and so no sample prompts of its own).
FALLBACK_PROMPTS = ("Say hello in one short sentence.", "What is two plus two?")
MAX_PROMPTS = 3
SAMPLE_TOKENS = 48
# Rounded weights may pick another token after a while; the opening must still be the adapter's.
FIRST_TOKENS = 3
EXACT_TYPES = frozenset({"f32", "f16"})


@dataclass
class Answer:
    tokens: list[int]
    text: str
    ended: bool  # the end-of-turn token came within SAMPLE_TOKENS


@dataclass
class Report:
    passed: bool
    rule: str
    prompts: int
    cause: str = ""
    differing: list[dict[str, str]] = field(default_factory=list)
    loader: str = ""  # what read the export back: llama.cpp or transformers

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rule": self.rule, "prompts": self.prompts, "cause": self.cause,
                "differing": self.differing, "loader": self.loader}


def conversations(run_folder: Path | None, run_info: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The run's own sample prompts (the last step's, from samples.jsonl) under the system prompt
    it trained with; two neutral prompts for an adapter without a run."""
    sampled = workspace.read_samples(run_folder) if run_folder else []
    texts = [sample["prompt"] for sample in sampled[-1][1] if sample["prompt"]] if sampled else []
    texts = texts[:MAX_PROMPTS] or list(FALLBACK_PROMPTS)
    system = run_info.get("system_prompt")
    head = [{"role": "system", "content": str(system)}] if system else []
    return [[*head, {"role": "user", "content": text}] for text in texts]


def answers(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]]) -> list[Answer]:
    """Greedy answers, each rendered with ``tokenizer``'s own chat template."""
    import torch

    out = []
    eos = _end_of_turn(tokenizer)
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=SAMPLE_TOKENS,
                                       do_sample=False, eos_token_id=eos, pad_token_id=eos)
        tokens = generated[0, ids.shape[1]:].tolist()
        ended = eos is not None and eos in tokens
        if ended:
            tokens = tokens[:tokens.index(eos)]
        out.append(Answer(tokens, tokenizer.decode(tokens, skip_special_tokens=True), ended))
    return out


def load_gguf(target: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(target.parent), gguf_file=target.name).eval()
    return model, AutoTokenizer.from_pretrained(str(target.parent), gguf_file=target.name)


def load_folder(target: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(target))


def check(prompts: list[list[dict[str, str]]], expected: list[Answer], trained_tokenizer: Any,
          exported_tokenizer: Any, answer: Callable[[list[list[dict[str, str]]]], list[Answer]], exact: bool,
          loader: str = "") -> Report:
    """Compares the export's answers (``answer(prompts)``) with the adapter's, after checking the
    template they were rendered with; the report names the cause when it is the template."""
    rule = ("the same greedy text as the unmerged adapter" if exact else
            f"the adapter's first {FIRST_TOKENS} tokens, and an end-of-turn wherever the adapter gave one")
    cause = template_difference(prompts, trained_tokenizer, exported_tokenizer)
    if cause:
        return Report(False, rule, len(prompts), cause=cause, loader=loader)
    got = answer(prompts)
    differing = [{"prompt": messages[-1]["content"], "expected": want.text, "got": have.text,
                  "why": why}
                 for messages, want, have in zip(prompts, expected, got)
                 if (why := _difference(want, have, exact))]
    if differing:
        cause = f"{len(differing)} of {len(prompts)} answers differ: {differing[0]['why']}"
    return Report(not differing, rule, len(prompts), cause=cause, differing=differing, loader=loader)


def template_difference(prompts: list[list[dict[str, str]]], trained: Any, exported: Any) -> str:
    """Why the export's chat template is not the training one ('' when it is)."""
    if not getattr(exported, "chat_template", None):
        return "the export carries no chat template, so chat tools would prompt it in another format"
    trained_eot, exported_eot = _end_of_turn(trained), _end_of_turn(exported)
    trained_name = trained.convert_ids_to_tokens(trained_eot) if trained_eot is not None else None
    exported_name = exported.convert_ids_to_tokens(exported_eot) if exported_eot is not None else None
    if trained_name != exported_name:
        return (f"the export's end-of-turn token is {exported_name!r}, training's is {trained_name!r}: "
                "answers would not stop where the model learned to stop")
    for messages in prompts:
        want = trained.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        have = exported.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if want != have:
            at = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            return (f"the export's chat template renders prompts differently from training's (from character "
                    f"{at}: {have[at:at + 40]!r} instead of {want[at:at + 40]!r})")
    return ""


def _difference(want: Answer, have: Answer, exact: bool) -> str:
    if exact:
        return "" if want.text == have.text else f"{have.text[:60]!r} instead of {want.text[:60]!r}"
    if have.tokens[:FIRST_TOKENS] != want.tokens[:FIRST_TOKENS]:
        return f"it opens {have.text[:40]!r} instead of {want.text[:40]!r}"
    if want.ended and not have.ended:
        return f"no end-of-turn within {SAMPLE_TOKENS} tokens (the adapter ended its answer): the export rambles"
    return ""


def _end_of_turn(tokenizer: Any) -> int | None:
    return tokenizer.eos_token_id
