"""A row as training sees it (from `data preview`): the chat-template text with the tokens that
count in the loss highlighted and the masked ones dimmed; tokens past the cutoff struck out."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

LOSS_STYLE = "background:#dbeafe;color:#1e3a8a;"
MASKED_STYLE = "color:#9aa3b2;"
CUT_STYLE = "text-decoration:line-through;color:#b42318;"
BOUNDARY = "background:#bfdbfe;"  # every other loss token a shade darker: token edges show


def spans_html(spans: list[dict]) -> str:
    """HTML for the spans; whitespace and line breaks kept as the template renders them."""
    parts = []
    loss_index = 0
    for span in spans:
        text = html.escape(span.get("text", "")).replace("\n", "↵<br>")
        if span.get("cut"):
            style = CUT_STYLE
        elif span.get("loss"):
            style = LOSS_STYLE + (BOUNDARY if loss_index % 2 else "")
            loss_index += 1
        else:
            style = MASKED_STYLE
        parts.append(f'<span style="{style}">{text}</span>')
    return '<div style="font-family:monospace;white-space:pre-wrap;">' + "".join(parts) + "</div>"


def summary_text(result: dict) -> str:
    text = (f"Row {result.get('row')} of {result.get('dataset')}: {result.get('tokens', 0):,} tokens, "
            f"{result.get('loss_tokens', 0):,} count in the loss (highlighted); the rest are masked (grey).")
    if result.get("cut_tokens"):
        text += f" {result['cut_tokens']:,} tokens past the cutoff of {result.get('max_length')} are struck out."
    return text


class TokenView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel("Pick a row in the Rows tab and press “Show as training sees it”.", wordWrap=True,
                              objectName="hint")
        self.text = QTextBrowser()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.text, 1)

    def show_preview(self, result: dict) -> None:
        self.summary.setText(summary_text(result))
        self.text.setHtml(spans_html(result.get("spans") or []))
