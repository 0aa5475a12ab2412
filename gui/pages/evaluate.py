"""The Evaluate page: a placeholder that says what is coming, with no controls that do nothing."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from gui.context import AppContext

EXPLANATION = """
<h2>Evaluation</h2>
<p>Comparing a base model with its fine-tuned adapter on a held-out split — perplexity, BLEU,
ROUGE and per-example outputs side by side — arrives in a later version of Tunebench.</p>
<p>Until then, the engine's command line shows which jobs this installation can run:</p>
<pre>  tunebench-engine --help</pre>
<p>Trained adapters can already be tried on the <b>Prompt</b> page, and each run's loss curve
is on the <b>Runs</b> page.</p>
"""


class EvaluatePage(QWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.explanation = QLabel(EXPLANATION, wordWrap=True, objectName="explanation")
        self.explanation.setTextFormat(Qt.TextFormat.RichText)
        self.explanation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.explanation.setMinimumWidth(560)
        self.explanation.setMaximumWidth(720)
        # A stretch column beside and below, not an alignment flag: an aligned word-wrapped
        # label gets its one-line height and loses its last paragraphs.
        layout = QGridLayout(self)
        layout.setContentsMargins(32, 24, 32, 24)
        layout.addWidget(self.explanation, 0, 0)
        layout.setColumnStretch(1, 1)
        layout.setRowStretch(1, 1)
