"""Recognising a tokenizer's chat template as one of the common families, so that tools which do
not run Jinja (Ollama's Go templates) can be given the same prompt format.

A family is recognised by what the template *renders* for a few probe conversations, never by
its source text: two templates that render the same are the same format, however they are
written, and a template that renders differently in any probe is not converted at all (a wrong
template in Ollama would make the tuned model ramble, which is worse than no template).

Each family is described as data: per role, the text before and after the message, the text
that opens the assistant's turn, and how a system prompt is placed (a turn of its own, or put in
front of the first user message). The same description renders the expected text for the
comparison and writes the Go template (ollama.py), so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from engine.core import errors

Messages = list[dict[str, str]]
Render = Callable[[Messages, bool], "str | None"]

# Probe texts: no spaces or newlines at their edges, so templates that trim content (Llama 3,
# Gemma) render them unchanged, and distinct enough not to appear in any template's own text.
SYSTEM, USER1, ANSWER1, USER2 = "Probe-system-text", "Probe-user-one", "Probe-answer-one", "Probe-user-two"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Family:
    name: str
    turns: dict[str, tuple[str, str]]  # role -> (text before the message, text after it)
    generation: str  # opens the assistant's turn after the last user message
    stop: str  # the end-of-turn marker: Ollama stops on it
    bos: bool = False  # the template starts with the tokenizer's BOS token
    system_before_user: str = ""  # "{system}..." put in front of the first user message; "" = own turn

    def render(self, messages: Messages, generation: bool, bos_text: str = "") -> str:
        """What a template of this family renders for ``messages``."""
        out = [bos_text if self.bos else ""]
        pending = ""
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "system" and self.system_before_user:
                pending = self.system_before_user.format(system=content)
                continue
            if role == "user":
                content, pending = pending + content, ""
            before, after = self.turns[role]
            out.append(before + content + after)
        if generation:
            out.append(self.generation)
        return "".join(out)


FAMILIES = (
    Family("ChatML", {role: (f"<|im_start|>{role}\n", "<|im_end|>\n") for role in ROLES},
           "<|im_start|>assistant\n", "<|im_end|>"),
    Family("Llama 3", {role: (f"<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>") for role in ROLES},
           "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", bos=True),
    Family("Mistral [INST]", {"user": ("[INST] ", " [/INST]"), "assistant": ("", "</s>")}, "", "</s>", bos=True,
           system_before_user="{system}\n\n"),
    Family("Gemma", {"user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
                     "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")},
           "<start_of_turn>model\n", "<end_of_turn>", bos=True, system_before_user="{system}\n\n"),
    Family("Phi-3", {role: (f"<|{role}|>\n", "<|end|>\n") for role in ROLES}, "<|assistant|>\n", "<|end|>"),
)


@dataclass
class Match:
    family: Family
    bos_text: str  # the BOS the TEMPLATE writes ("" when the template has none or the tokenizer adds it)
    default_system: str | None = None  # what the template says when the conversation has no system prompt
    system_allowed: bool = True  # False: the template refuses a system message (Gemma 1 and 2)
    stops: list[str] = field(default_factory=list)


def recognise(tokenizer: Any) -> Match:
    """The family ``tokenizer``'s chat template renders as; EngineError when it is none of them."""
    if not getattr(tokenizer, "chat_template", None):
        raise errors.invalid_input("ollama: the model has no chat template, so there is no prompt format to "
                                   "give Ollama")

    def render(messages: Messages, generation: bool) -> str | None:
        try:
            return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation))
        except Exception:  # jinja2's TemplateError, or whatever a template's raise_exception raises
            return None  # the template refuses this conversation (Gemma 1 and 2 refuse a system turn)

    bos_text = str(getattr(tokenizer, "bos_token", None) or "")
    eos_text = str(getattr(tokenizer, "eos_token", None) or "")
    for family in FAMILIES:
        match = _match(family, render, bos_text, eos_text, tokenizer_adds_bos(tokenizer))
        if match:
            match.stops = [family.stop] + ([eos_text] if eos_text and eos_text != family.stop else [])
            return match
    sample = render([{"role": "user", "content": USER1}], True) or "(it refuses a user message)"
    raise errors.invalid_input(
        f"ollama: the chat template is none of {', '.join(f.name for f in FAMILIES)} (it renders a user "
        f"message as {sample[:80]!r}), so no Modelfile is written rather than one with a wrong TEMPLATE")


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether tokenizing text puts the BOS token in front by itself (Llama 3's tokenizer does).
    The GGUF file records this (add_bos_token) and llama.cpp then adds BOS to Ollama's prompt,
    so the TEMPLATE must not write it a second time."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and tokenizer("a")["input_ids"][:1] == [bos_id]


def _match(family: Family, render: Render, bos_text: str, eos_text: str, adds_bos: bool) -> Match | None:
    system = {"role": "system", "content": SYSTEM}
    chat = [{"role": "user", "content": USER1}, {"role": "assistant", "content": ANSWER1}]
    follow_up = [*chat, {"role": "user", "content": USER2}]
    system_allowed = render([system, *follow_up], True) is not None
    probes = [([system, *follow_up], True), ([system, *chat], False)] if system_allowed else []
    if not all(_same(render, family, messages, generation, bos_text, eos_text) for messages, generation in probes):
        return None
    default = _default_system(family, render, bos_text, system_allowed)
    if default is None:
        return None
    head = [{"role": "system", "content": default}] if default else []
    if not all(_same(render, family, messages, generation, bos_text, eos_text, head)
               for messages, generation in ((follow_up, True), (chat, False))):
        return None
    return Match(family, bos_text if family.bos and not adds_bos else "", default or None, system_allowed)


def _same(render: Render, family: Family, messages: Messages, generation: bool, bos_text: str, eos_text: str,
          head: Messages | None = None) -> bool:
    """Whether the template renders ``messages`` as the family does (``head``: the default
    system prompt the template adds by itself)."""
    got = render(messages, generation)
    want = family.render([*(head or []), *messages], generation, bos_text)
    # Some templates (Phi-3) close a finished conversation with the end-of-text token. Ollama
    # always ends its prompt with the assistant's turn opening, so that trailer never reaches it.
    return got is not None and (got == want or (not generation and bool(eos_text) and got == want + eos_text))


def _default_system(family: Family, render: Render, bos_text: str, system_allowed: bool) -> str | None:
    """The system prompt a template inserts when the conversation has none (SmolLM2 and Qwen
    do): "" when it inserts none, None when the rendering is not this family's at all."""
    messages = [{"role": "user", "content": USER1}]
    got = render(messages, True)
    if got is None:
        return None
    if got == family.render(messages, True, bos_text):
        return ""
    if not system_allowed:
        return None
    marker = "\x00marker\x00"
    head, _, tail = family.render([{"role": "system", "content": marker}, *messages], True, bos_text).partition(
        marker)
    if len(got) < len(head) + len(tail) or not (got.startswith(head) and got.endswith(tail)):
        return None
    default = got[len(head):len(got) - len(tail)]
    return default if family.render([{"role": "system", "content": default}, *messages], True, bos_text) == got \
        else None
