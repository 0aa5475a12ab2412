"""End to end: the Prompt page driving the real ``tunebench-engine session`` on a tiny random model.

Skipped where the engine's packages or its session command are not installed."""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine.infer import suites as prompt_suites
from engine.infer.suites import Prompt, Suite
from gui.context import AppContext
from gui.pages.prompt import PromptPage
from gui.state.prompt_params import Params

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "peft", "engine.infer.session")),
    reason="the engine's ML packages or its session command are not installed here")

ENGINE_TIMEOUT_MS = 300_000


@pytest.fixture
def page(qtbot, tiny_model_dir):
    widget = PromptPage(AppContext.from_environment())
    qtbot.addWidget(widget)
    widget.columns[0].model_combo.setEditText(str(tiny_model_dir))
    yield widget
    widget.shutdown()


def test_chat_streams_two_columns_then_stop_cancels(qtbot, page):
    page.columns[0].set_params(Params(greedy=True, temperature=0.0, max_new_tokens=6, seed=1))
    second = page.add_column()
    second.set_params(Params(temperature=1.0, max_new_tokens=6, seed=3))
    page.prompt_edit.setPlainText("Hello")
    page.send_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)

    for column in page.columns:
        answer = column.conversation.last_answer()
        assert not answer.error, answer.error
        assert answer.finish_reason in ("stop", "length", "stop_string")
        assert answer.tokens and "".join(t.text for t in answer.tokens) == answer.text
        assert answer.ttft_s is not None and answer.tokens_per_s is not None
        assert all(t.prob is not None and 0 < t.prob <= 1 and t.top for t in answer.tokens)
    assert page.status.text().startswith("Done: A ")

    # A long answer, stopped after a few tokens: the session cancels it and stays up.
    page.remove_column(second)
    page.columns[0].set_params(Params(temperature=1.0, max_new_tokens=2000, seed=2))
    page.prompt_edit.setPlainText("Tell me a long story")
    page.send_button.click()
    answer = page.columns[0].conversation.last_answer()
    qtbot.waitUntil(lambda: len(answer.tokens) >= 3, timeout=ENGINE_TIMEOUT_MS)
    page.stop_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=30_000)
    assert answer.finish_reason == "cancelled" and len(answer.tokens) < 2000
    assert page.session.is_running()


@pytest.mark.skipif(not importlib.util.find_spec("engine.infer.batch"), reason="no batch command here")
def test_a_suite_batch_through_the_real_batch_command(qtbot, page):
    prompt_suites.save_suite(Suite("Capitals", prompts=[Prompt("capital", "Capital of {{country}}?")],
                                   cases=[{"country": "France"}, {"country": "Spain"}]))
    page.columns[0].set_params(Params(greedy=True, temperature=0.0, max_new_tokens=3))
    page.suites_panel.refresh()
    page.suites_panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert page.status.text().startswith("Batch finished: 2 answers saved in "), page.status.text()
    rows = page.suites_panel.rows
    assert [(r.input, r.column, r.finish_reason) for r in rows] == [
        ("Capital of France?", "A", "length"), ("Capital of Spain?", "A", "length")]
    folder = Path(page.status.text().rsplit(" saved in ", 1)[1].rstrip("."))
    saved = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in saved] == [r.answer for r in rows]


@pytest.mark.skipif(not importlib.util.find_spec("engine.infer.serve"), reason="no serve command here")
def test_the_endpoint_starts_answers_with_its_token_and_stops(qtbot, page):
    panel = page.serve_panel
    panel.start()
    qtbot.waitUntil(lambda: bool(panel.token_edit.text()) or not panel.is_running(), timeout=ENGINE_TIMEOUT_MS)
    url, token = panel.url_edit.text(), panel.token_edit.text()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), panel.status.text()
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200 and json.loads(answer.read())["data"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{url}/models", headers={"Authorization": "Bearer wrong"}),
                               timeout=30)
    assert refused.value.code == 401
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    assert panel.status.text() == "The endpoint stopped." and not panel.url_edit.text()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (installer/bootstrap.py setup builds it)")
def test_a_gguf_model_runs_in_llama_cpp_beside_transformers_with_the_same_greedy_answer(qtbot, page, tiny_gguf):
    """Column A: a .gguf file on auto (llama.cpp); column B: the same file forced to transformers.
    Greedy answers match, and each column's header says what ran."""
    page.columns[0].model_combo.setEditText(str(tiny_gguf))
    page.columns[0].set_params(Params(greedy=True, temperature=0.0, max_new_tokens=12, seed=1))
    second = page.add_column()
    second.backend_combo.setCurrentIndex(second.backend_combo.findData("transformers"))
    assert second.config.backend == "transformers" and page.columns[0].config.backend == "auto"
    page.prompt_edit.setPlainText("Hello")
    page.send_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    first, other = (column.conversation.last_answer() for column in page.columns)
    assert not first.error and not other.error, (first.error, other.error)
    assert first.text == other.text and first.tokens
    assert page.columns[0].ran_label.text() == "llama.cpp · F32"
    assert second.ran_label.text().startswith("transformers · ")
    assert all(t.prob is not None and 0 < t.prob <= 1 and t.top for t in first.tokens)

    # A suite batch runs each column on its own backend too, and its rows say which.
    prompt_suites.save_suite(Suite("Greetings", prompts=[Prompt("greet", "{{word}}")], cases=[{"word": "Hello"}]))
    page.suites_panel.refresh()
    page.suites_panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert page.status.text().startswith("Batch finished: 2 answers saved in "), page.status.text()
    rows = page.suites_panel.rows
    assert [(r.column, r.backend, r.error) for r in rows] == [("A", "llama.cpp", ""), ("B", "transformers", "")]
    assert rows[0].answer == rows[1].answer and rows[0].answer
