"""Remote columns on the Prompt page: a column configured for an OpenAI-compatible server (a
real `serve` on 127.0.0.1, tiny model) lists its models and streams through the real engine
session; the key never reaches settings.json; a wrong key is a one-line error and the window
goes on. TUNEBENCH_SCREENSHOTS=<folder> keeps the picture (prompt_remote_column.png)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from served import serving

from engine.infer import ratings
from engine.infer import suites as prompt_suites
from engine.infer.suites import Prompt, Suite
from gui import style
from gui.context import AppContext
from gui.pages.prompt import PromptPage
from gui.state import remote_keys
from gui.state.prompt_params import Params

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "openai", "engine.infer.remote")),
    reason="the engine's ML packages or the openai client are not installed here")

ENGINE_TIMEOUT_MS = 60_000
SHOTS = os.environ.get("TUNEBENCH_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[dict[str, Any]]:
    with serving(tiny_model_dir, tmp_path_factory.mktemp("serve-home")) as info:
        yield info


@pytest.fixture
def page(qtbot, tiny_model_dir):
    # Never the machine's own keyring: here no backend, so the key is the session's and the column says so.
    import keyring
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    remote_keys.forget_session()
    widget = PromptPage(AppContext.from_environment())
    widget.setStyleSheet(style.STYLESHEET)
    widget.resize(1280, 760)
    qtbot.addWidget(widget)
    widget.show()
    widget.columns[0].model_combo.setEditText(str(tiny_model_dir))
    yield widget
    widget.shutdown()
    remote_keys.forget_session()
    keyring.set_keyring(before)


def configure(qtbot, column, server: dict[str, Any], key: str) -> None:
    column.source_combo.setCurrentIndex(column.source_combo.findData("server"))
    column.url_edit.setText(server["url"])
    column.key_edit.setText(key)
    column.list_button.click()


def test_a_remote_column_lists_models_and_streams_beside_a_local_one(qtbot, page, server) -> None:
    page.columns[0].set_params(Params(greedy=True, temperature=0.0, max_new_tokens=8))
    column = page.add_column()
    configure(qtbot, column, server, server["token"])
    assert not column.server_box.isHidden() and column.local_box.isHidden()
    assert not column.key_note.isHidden() and "only until Tunebench closes" in column.key_note.text()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert column.server_model_combo.count() == 1, page.status.text()
    assert column.config.model == server["model"] and column.config.base_url == server["url"]

    page.prompt_edit.setPlainText("Is the kettle good?")
    page.send_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    local, remote = (c.conversation.last_answer() for c in page.columns)
    assert not remote.error, remote.error
    # The same tiny model, greedy, answers the same whether local or served.
    assert remote.text and remote.text == "".join(t.text for t in remote.tokens)
    assert remote.ttft_s is not None and remote.tokens_per_s and "tok/s" in remote.stats_line()
    assert remote.config["base_url"] == server["url"] and "api_key" not in json.dumps(remote.config)
    assert local.text.startswith(remote.text) or remote.text.startswith(local.text) or local.text
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.grab().save(str(Path(SHOTS) / "prompt_remote_column.png"))

    # Rated like a local column: the record names the server and its model, never the key.
    page.pick_better(column)
    rating = ratings.load()[-1]
    assert rating.kind == "ab" and rating.config["base_url"] == server["url"]
    assert rating.config["model"] == server["model"] and rating.other_config["model"] != server["model"]

    settings = Path(page._context.settings_path).read_text(encoding="utf-8")
    assert server["token"] not in settings
    assert remote_keys.recent(json.loads(settings))[0] == {
        "base_url": server["url"], "model": server["model"], "has_key": True}


def test_a_wrong_key_is_a_one_line_error_and_the_page_goes_on(qtbot, page, server) -> None:
    column = page.columns[0]
    configure(qtbot, column, server, "wrong")
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert page.status.text() == f"Column A: {server['url']}: 401 unauthorized: the server refused the API key"
    column.server_model_combo.setEditText(server["model"])
    page.send_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert column.conversation.last_answer().error.endswith("401 unauthorized: the server refused the API key")
    assert page.session.is_running()


def test_a_suite_runs_on_a_remote_column_through_the_real_batch_command(qtbot, page, server) -> None:
    prompt_suites.save_suite(Suite("Kettles", prompts=[Prompt("q", "Is the {{thing}} good?")],
                                   cases=[{"thing": "kettle"}, {"thing": "lid"}]))
    column = page.columns[0]
    column.set_params(Params(greedy=True, temperature=0.0, max_new_tokens=4))
    configure(qtbot, column, server, server["token"])
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    page.suites_panel.refresh()
    page.suites_panel.run_suite()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    assert page.status.text().startswith("Batch finished: 2 answers saved in "), page.status.text()
    rows = page.suites_panel.rows
    assert [(r.column, r.model, r.error) for r in rows] == [("A", server["model"], "")] * 2
    assert all(r.answer and r.tokens_per_s is not None for r in rows)
    folder = Path(page.status.text().rsplit(" saved in ", 1)[1].rstrip("."))
    assert server["token"] not in "".join(p.read_text(encoding="utf-8") for p in folder.iterdir())


def test_stop_ends_a_remote_answer_and_keeps_its_text(qtbot, page, server) -> None:
    column = page.columns[0]
    column.set_params(Params(temperature=1.0, max_new_tokens=3000, seed=2))
    configure(qtbot, column, server, server["token"])
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=ENGINE_TIMEOUT_MS)
    page.prompt_edit.setPlainText("Tell me a long story")
    page.send_button.click()
    answer = column.conversation.last_answer()
    qtbot.waitUntil(lambda: len(answer.tokens) >= 3, timeout=ENGINE_TIMEOUT_MS)
    page.stop_button.click()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=30_000)
    assert answer.finish_reason == "cancelled" and 3 <= len(answer.tokens) < 3000 and answer.text
    assert page.session.is_running()
