"""The first thing a new user tries, end to end: train the CPU quick demo on the bundled model,
open the Prompt page, pick the run's adapter and send a review, typing nothing else. The column
starts from the system prompt the run trained with, so the adapter answers in its trained
one-line JSON: in transformers, and in llama.cpp over the bundled GGUF with the adapter written as
a GGUF LoRA file. Minutes on a 2-core CPU (marked slow)."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest

from engine.core import protocol
from gui.context import AppContext
from gui.pages.prompt import PromptPage

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "peft", "trl")),
    reason="the engine's ML packages are not installed here")]

REVIEW = "Review: 'The handle snapped off after two days and the kettle leaks.'"
ENGINE_TIMEOUT_MS = 300_000


LABELS = {"positive", "negative", "mixed"}  # the sample dataset's verdicts


def _sentiment(text: str) -> str:
    """The verdict of a one-line answer in the trained JSON shape, which opens with the verdict;
    fails on anything else. The page samples (its default preset), and a 135M model trained for
    minutes sometimes misplaces a comma further on: one CI run answered
    '{"sentiment": "mixed", "product": "e-bikes," "aspects": [...]}', so the line is not parsed
    whole."""
    line = text.strip()
    found = re.match(r'\{"sentiment": "([a-z]+)"[,}]', line)
    assert found and line.endswith("}") and "\n" not in line, text
    return found.group(1)


def test_the_quick_demo_adapter_answers_in_its_trained_json_from_the_prompt_page(qtbot, engine_argv, engine_env,
                                                                                 workspace_home) -> None:
    done = subprocess.run(engine_argv("train", "--preset", "cpu-quick-demo", "--json"), env=engine_env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    run = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "result")["data"]
    page = PromptPage(AppContext.from_environment())
    qtbot.addWidget(page)
    try:
        page.refresh_adapters()
        tuned = page.columns[0]
        tuned.adapter_combo.setCurrentIndex(tuned.adapter_combo.findData(run["adapter"]))
        assert tuned.config.adapter == run["adapter"]
        assert page.system_edit.toPlainText().strip()  # the run's trained system prompt, offered
        in_llama = page.add_column()  # a copy of the first: the same adapter
        if importlib.util.find_spec("llama_cpp") is not None:
            in_llama.backend_combo.setCurrentIndex(in_llama.backend_combo.findData("llama.cpp"))
        page.prompt_edit.setPlainText(REVIEW)
        page.send_button.click()
        qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
        answers = [column.conversation.last_answer() for column in page.columns]
        assert not any(a.error for a in answers), [a.error for a in answers]
        # The shape is what the system prompt and the adapter decide. The verdict itself can differ
        # between two trainings, and between the backends' arithmetic (measured: llama.cpp over the
        # bundled Q4_1 file once said "mixed" where transformers said "negative").
        assert all(_sentiment(a.text) in LABELS for a in answers), [a.text for a in answers]
        assert tuned.ran_label.text().startswith("transformers")
        if importlib.util.find_spec("llama_cpp") is not None:
            assert in_llama.ran_label.text().startswith("llama.cpp · ")
    finally:
        page.shutdown()
