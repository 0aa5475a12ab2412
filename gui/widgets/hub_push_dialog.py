"""The Runs page's "Push to the Hugging Face Hub…" dialog: a repository name, the adapter or the
merged model, private or not, and a Push button that runs `tunebench-engine push` as a one-off
job (engine/export/hub_push.py) with its stages and the repository's address shown as it goes.

The window itself never goes online; the engine does, for this command alone, with the token
`models login` put in the OS keyring. A refusal comes back as the engine's one line.
"""

from __future__ import annotations

import re
from typing import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.core import names, protocol
from gui.engine_client import EngineClient
from gui.state.run_history import RunRow
from gui.widgets.status_line import StatusLine

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # the engine checks it fully
STAGE_TEXT = {"prepare": "Gathering the files…", "model card": "Writing the model card…",
              "create repository": "Creating the repository…", "upload": "Uploading…", "done": "Uploaded."}


def suggested_name(run: RunRow) -> str:
    """A repository name from the run's title: what the Hub accepts, lower case."""
    return names.slug(run.title, run.id, lower=True, limit=64)


class HubPushDialog(QDialog):
    sig_pushed = Signal(str)  # the repository's URL

    def __init__(self, run: RunRow, engine_command: Callable[[], list[str]],
                 engine_env: Callable[[], dict[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Push {run.title} to the Hugging Face Hub")
        self.resize(620, 300)
        self._run, self._engine_command, self._engine_env = run, engine_command, engine_env
        self.client = EngineClient(self)
        self._url = ""
        self._build(run)
        self.client.sig_progress.connect(self._on_progress)
        self.client.sig_result.connect(self._on_result)
        self.client.sig_finished.connect(self._on_finished)

    def _build(self, run: RunRow) -> None:
        self.repo_edit = QLineEdit(placeholderText=f"your-name/{suggested_name(run)}")
        self.repo_edit.textChanged.connect(self._show_state)
        self.merged_check = QCheckBox("Push the model with the adapter merged in (instead of the adapter alone)")
        self.merged_check.setEnabled(run.has_adapter())  # a full fine-tune is the whole model already
        self.private_check = QCheckBox("Create the repository private")
        self.message_edit = QLineEdit(placeholderText=f"Push run {run.id} from Tunebench")
        form = QFormLayout()
        form.addRow("Repository (OWNER/NAME)", self.repo_edit)
        form.addRow("", self.merged_check)
        form.addRow("", self.private_check)
        form.addRow("Commit message", self.message_edit)
        hint = QLabel("Uploads safetensors, configs, tokenizer files and the chat template, never pickles, with a "
                      "model card written from the run (base model, dataset version and hash, settings, loss "
                      "curve, evaluations). Needs a token with write access: tunebench-engine models login.",
                      wordWrap=True)
        hint.setObjectName("hint")
        self.status_line = StatusLine()
        self.push_button = QPushButton("Push")
        self.push_button.setDefault(True)
        self.push_button.clicked.connect(self.push)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status_line, 1)
        buttons.addWidget(self.push_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addStretch(1)
        layout.addLayout(buttons)
        self._show_state()

    def command(self) -> list[str]:
        extra = [flag for flag, on in (("--merged", self.merged_check.isChecked()),
                                       ("--private", self.private_check.isChecked())) if on]
        message = self.message_edit.text().strip()
        return [*self._engine_command(), "push", "--json", str(self._run.path), "--repo",
                self.repo_edit.text().strip(), *extra, *(["--message", message] if message else [])]

    def push(self) -> None:
        if self.client.is_active() or not REPO_ID.match(self.repo_edit.text().strip()):
            return
        self._url = ""
        self.client.start(self.command(), env=self._engine_env())
        self.status_line.show_message("Starting…")
        self._show_state()

    def _show_state(self) -> None:
        busy = self.client.is_active()
        self.push_button.setEnabled(not busy and bool(REPO_ID.match(self.repo_edit.text().strip())))
        for widget in (self.repo_edit, self.merged_check, self.private_check, self.message_edit):
            widget.setEnabled(not busy and (widget is not self.merged_check or self._run.has_adapter()))

    def _on_result(self, message: dict) -> None:
        self._url = str((message.get("data") or {}).get("url", ""))

    def _on_progress(self, message: dict) -> None:
        self.status_line.show_message(STAGE_TEXT.get(str(message.get("stage", "")), "Pushing…"))

    def _on_finished(self, code: int, summary: str) -> None:
        if code == protocol.ExitCode.OK and self._url:
            self.status_line.show_message(f"Pushed to {self._url}")
            self.sig_pushed.emit(self._url)
        elif code == protocol.ExitCode.CANCELLED:
            self.status_line.show_message("Push cancelled; nothing was sent.")
        else:
            self.status_line.show_message(summary, error=True)
        self._show_state()

    def reject(self) -> None:
        if self.client.is_active():
            self.client.cancel()  # stops before the upload; an upload under way finishes
        super().reject()
