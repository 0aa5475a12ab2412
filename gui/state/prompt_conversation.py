"""One column's conversation on the Prompt page: turns, the streaming answer, its tokens. Qt-free.

Rendering to HTML lives here too (plain strings), so tests check what the view shows without a
widget: each answer ends with its TTFT and tokens/s line; in the token view each token is a
link coloured by its probability, whose tooltip (:func:`token_tooltip`) lists the alternatives.
"""

from __future__ import annotations

import html
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

TOKEN_LINK = "tok"  # href scheme of a token in the token view: tok:<answer>/<index>


@dataclass
class Token:
    text: str
    prob: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Answer:
    """An assistant answer as it streams in, then finished, cancelled or failed."""

    request_id: str = ""
    tokens: list[Token] = field(default_factory=list)
    text: str = ""
    finish_reason: str = ""
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    completion_tokens: int | None = None
    backend: str = ""  # what ran it, e.g. "llama.cpp · Q4_1" (empty for a server)
    error: str = ""
    status: str = ""  # e.g. "Loading model…" while waiting for the first token
    # What ratings record: a key of its own, the prompt as sent, the configuration.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt: Any = ""
    mode: str = "chat"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return bool(self.finish_reason or self.error)

    @property
    def rateable(self) -> bool:
        return bool(self.finish_reason and not self.error and self.text.strip())

    def add_token(self, message: dict[str, Any]) -> None:
        logprob = message.get("logprob")
        prob = math.exp(logprob) if isinstance(logprob, (int, float)) else None
        top = [(str(t[0]), float(t[1])) for t in message.get("top") or []
               if isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[1], (int, float))]
        piece = str(message.get("text", ""))
        self.text += piece
        if self.tokens and self.tokens[-1].top and not top and not message.get("top"):
            # The session's end-of-stream flush: bytes held back from earlier tokens (an
            # incomplete character), sent without alternatives. It is not a token of its own.
            self.tokens[-1].text += piece
            return
        self.tokens.append(Token(piece, prob, top))
        self.status = ""

    def finish(self, data: dict[str, Any]) -> None:
        # The result's text is authoritative (stop strings are cut from it).
        if isinstance(data.get("text"), str) and (data["text"] or not self.text):
            self.text = data["text"]
        self.finish_reason = str(data.get("finish_reason") or "stop")
        self.ttft_s = _number(data.get("ttft_s"))
        self.tokens_per_s = _number(data.get("tokens_per_s"))
        count = data.get("completion_tokens")
        self.completion_tokens = int(count) if isinstance(count, int) else len(self.tokens)
        self.backend = " · ".join(str(data[k]) for k in ("backend", "weights") if data.get(k))
        self.status = ""

    def fail(self, message: str) -> None:
        self.error = message
        self.status = ""

    def stats_line(self) -> str:
        """"TTFT 0.21 s · 42.5 tok/s · 7 tokens · stopped: end of answer"."""
        if self.error:
            return ""
        if not self.done:
            return self.status or ("Generating…" if self.tokens else "Waiting…")
        parts = [f"TTFT {self.ttft_s:.2f} s" if self.ttft_s is not None else "TTFT –",
                 f"{self.tokens_per_s:.1f} tok/s" if self.tokens_per_s is not None else "– tok/s",
                 f"{self.completion_tokens} tokens", FINISH_WORDS.get(self.finish_reason, self.finish_reason)]
        return " · ".join(parts)


FINISH_WORDS = {"stop": "end of answer", "length": "max tokens reached", "stop_string": "stop string",
                "cancelled": "stopped"}


@dataclass
class Conversation:
    """Turns of one column: user messages and that column's answers (its own history)."""

    turns: list[tuple[str, Any]] = field(default_factory=list)  # ("user", str) | ("assistant", Answer)

    def ask(self, text: str) -> Answer:
        answer = Answer()
        self.turns += [("user", text), ("assistant", answer)]
        return answer

    def messages(self, system: str) -> list[dict[str, str]]:
        """The chat history to send before a new question: the system prompt, then every turn
        so far that got an answer (failed or empty answers and their question are left out;
        stopped ones are kept as far as they got)."""
        out = [{"role": "system", "content": system}] if system.strip() else []
        for (_, question), (_, answer) in zip(self.turns[0::2], self.turns[1::2]):
            if answer.error or not answer.text:
                continue
            out.append({"role": "user", "content": question})
            out.append({"role": "assistant", "content": answer.text})
        return out

    def last_answer(self) -> Answer | None:
        return self.turns[-1][1] if self.turns and self.turns[-1][0] == "assistant" else None

    def last_question(self) -> str:
        return str(self.turns[-2][1]) if len(self.turns) >= 2 else ""

    def answers(self) -> list[Answer]:
        return [a for role, a in self.turns if role == "assistant"]

    def clear(self) -> None:
        self.turns.clear()


# -- rendering ---------------------------------------------------------------------------------

def prob_colour(prob: float | None) -> str:
    """A background for a token: red (unlikely) through amber to green (confident)."""
    if prob is None:
        return "#e5e7eb"
    p = min(max(prob, 0.0), 1.0)
    # Hue 0 (red) → 120 (green), pale enough for black text to stay readable.
    hue = 120 * p
    return _hsl_hex(hue, 0.75, 0.82)


def token_tooltip(token: Token) -> str:
    """The chosen token's probability and the alternatives the model considered."""
    head = f"{_show(token.text)}  p = {token.prob:.3f}" if token.prob is not None else _show(token.text)
    lines = [head]
    if token.top:
        lines.append("Top alternatives:")
        lines += [f"  {_show(text)}  {prob:.3f}" for text, prob in token.top]
    return "\n".join(lines)


def render_html(conversation: Conversation, token_view: bool, raw_prompt: bool = False) -> str:
    """The conversation as HTML for a QTextBrowser."""
    parts = []
    for index, (role, content) in enumerate(conversation.turns):
        if role == "user":
            label = "Prompt" if raw_prompt else "You"
            parts.append(f"<p style='margin:6px 0 2px 0'><b>{label}</b></p>"
                         f"<p style='margin:0 0 6px 0'>{_paragraphs(str(content))}</p>")
        else:
            parts.append(_answer_html(content, index, token_view))
    return "".join(parts)


def _answer_html(answer: Answer, index: int, token_view: bool) -> str:
    body = _token_spans(answer, index) if token_view and answer.tokens else _paragraphs(answer.text)
    if answer.error:
        body += ("<br>" if body else "") + f"<span style='color:#b42318'>⚠ {html.escape(answer.error)}</span>"
    elif not answer.text and not answer.done:
        body = f"<span style='color:#5b6473'>{html.escape(answer.status or 'Waiting for the model…')}</span>"
    stats = answer.stats_line()
    stats_html = f"<br><span style='color:#5b6473; font-size:small'>{html.escape(stats)}</span>" if stats else ""
    return (f"<div style='background:#f3f5f8; margin:2px 0 8px 0; padding:4px'>"
            f"<b>Model</b><br>{body}{stats_html}</div>")


def _token_spans(answer: Answer, index: int) -> str:
    spans = []
    for position, token in enumerate(answer.tokens):
        text = _paragraphs(token.text) or "&nbsp;"
        spans.append(f"<a href='{TOKEN_LINK}:{index}/{position}' style='color:#111827; text-decoration:none; "
                     f"background-color:{prob_colour(token.prob)}'>{text}</a>")
    return "".join(spans)


def _paragraphs(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _show(text: str) -> str:
    return repr(text)[1:-1] if text.strip() != text or not text else text


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _hsl_hex(hue: float, saturation: float, lightness: float) -> str:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))
