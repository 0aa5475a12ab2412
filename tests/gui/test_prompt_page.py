"""The Prompt page streams tokens from the (fake) engine into the output box."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from gui.pages.prompt import PromptPage

from gui_helpers import TRANSCRIPTS, make_run

FINISH_TIMEOUT_MS = 15_000


def transcript_tokens() -> list[str]:
    lines = (TRANSCRIPTS / "generate_tokens.ndjson").read_text(encoding="utf-8").splitlines()
    return [m["text"] for m in map(json.loads, lines) if m["type"] == "token"]


def test_tokens_stream_into_the_output(qtbot, make_context):
    page = PromptPage(make_context("generate_tokens.ndjson", "--delay", "0.01"))
    qtbot.addWidget(page)
    seen: list[str] = []
    # Connected after the page's own slot, so it sees the output after each token landed.
    page.client.sig_token.connect(lambda _: seen.append(page.output_view.toPlainText()))
    with qtbot.waitSignal(page.client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        qtbot.mouseClick(page.generate_button, Qt.MouseButton.LeftButton)

    tokens = transcript_tokens()
    assert seen == ["".join(tokens[: i + 1]) for i in range(len(tokens))]
    assert page.output_view.toPlainText() == "".join(tokens)
    assert page.stats_label.text() == "21 tokens, 25.0 tok/s, 0.84 s"
    assert page.generate_button.isEnabled() and not page.stop_button.isEnabled()


def test_command_carries_the_chosen_adapter_and_settings(qtbot, make_context):
    run = make_run("tuned", adapter=True)
    page = PromptPage(make_context("generate_tokens.ndjson"))
    qtbot.addWidget(page)
    assert page.adapter_combo.count() == 2
    page.adapter_combo.setCurrentIndex(1)
    page.prompt_edit.setPlainText("Hello there")
    page.max_tokens_spin.setValue(32)
    page.temperature_spin.setValue(0.7)

    argv = page.build_command()
    tail = argv[argv.index("generate"):]
    assert tail == ["generate", "--json", "--model", "default", "--adapter", str(run.adapter),
                    "--prompt", "Hello there", "--max-new-tokens", "32", "--temperature", "0.7"]


def test_an_empty_prompt_is_refused(qtbot, make_context):
    page = PromptPage(make_context("generate_tokens.ndjson"))
    qtbot.addWidget(page)
    page.prompt_edit.setPlainText("  ")
    qtbot.mouseClick(page.generate_button, Qt.MouseButton.LeftButton)
    assert page.stats_label.is_error() and not page.client.is_active()
