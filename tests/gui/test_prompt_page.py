"""The Prompt page against a fake engine session replaying tests/transcripts/session_*.ndjson."""

from __future__ import annotations

from gui_helpers import make_run, transcript_results
from PySide6.QtCore import Qt

from gui.pages.prompt import PromptPage
from gui.state.prompt_params import PRESETS, Params

TIMEOUT_MS = 15_000


def send_and_wait(qtbot, page: PromptPage, text: str | None = None) -> None:
    if text is not None:
        page.prompt_edit.setPlainText(text)
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)


def test_tokens_stream_into_the_column_with_ttft_and_speed(qtbot, make_prompt_page):
    page = make_prompt_page("session_chat.ndjson", "--delay", "0.01")
    column = page.columns[0]
    seen: list[str] = []
    page.session.sig_token.connect(lambda *_: seen.append(column.conversation.last_answer().text))
    send_and_wait(qtbot, page)

    answer = column.conversation.last_answer()
    expected = transcript_results("session_chat.ndjson")[0]
    assert answer.text == expected and seen[-1] == expected and len(seen) == len(answer.tokens) == 7
    assert all(seen[i + 1].startswith(seen[i]) for i in range(len(seen) - 1))  # grew token by token
    column.render_now()
    shown = column.view.toPlainText()
    assert "What is the capital of France?" in shown and expected in shown
    assert "TTFT 0.21 s · 42.5 tok/s · 7 tokens · end of answer" in shown
    assert not page.status.is_error() and page.send_button.isEnabled() and not page.stop_button.isEnabled()
    assert page.session_label.text() == "Engine: ready on CPU (2 cores)"


def test_an_adapter_brings_the_system_prompt_its_run_trained_with(qtbot, make_prompt_page):
    trained = "Read the product review and answer with one line of JSON."
    run = make_run("reviews", adapter=True)
    run.update_info(system_prompt=trained)
    other = make_run("other", adapter=True)
    other.update_info(system_prompt="Answer in French.")
    page = make_prompt_page()
    page.refresh_adapters()
    combo = page.columns[0].adapter_combo
    combo.setCurrentIndex(combo.findData(str(run.adapter)))
    assert page.system_edit.toPlainText() == trained
    request = page.build_request(page.columns[0], "The stand wobbles.")
    assert request["messages"][0] == {"role": "system", "content": trained}

    # Another adapter replaces a prompt the page put there, never one the user wrote.
    combo.setCurrentIndex(combo.findData(str(other.adapter)))
    assert page.system_edit.toPlainText() == "Answer in French."
    page.system_edit.setPlainText("My own prompt.")
    combo.setCurrentIndex(combo.findData(str(run.adapter)))
    assert page.system_edit.toPlainText() == "My own prompt."


def test_an_adapter_run_without_a_system_prompt_leaves_the_field_alone(qtbot, make_prompt_page):
    run = make_run("plain", adapter=True)
    page = make_prompt_page()
    page.refresh_adapters()
    page.columns[0].adapter_combo.setCurrentIndex(page.columns[0].adapter_combo.findData(str(run.adapter)))
    assert page.system_edit.toPlainText() == ""


def test_a_gguf_lora_file_is_offered_as_the_columns_adapter_and_survives_a_refresh(qtbot, make_prompt_page,
                                                                                  tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    lora = tmp_path / "reviews-lora.gguf"
    run = make_run("reviews", adapter=True)
    page = make_prompt_page()
    page.refresh_adapters()
    column = page.columns[0]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(lora), "GGUF (*.gguf)"))
    next(a for a in column.browse_button.menu().actions() if a.text() == "GGUF LoRA adapter file…").trigger()
    assert column.adapter_combo.currentText() == "reviews-lora.gguf (file)" and column.config.adapter == str(lora)
    page.refresh_adapters()  # a run finished: the list is rebuilt, the file stays chosen
    assert column.config.adapter == str(lora) and column.adapter_combo.findData(str(run.adapter)) > 0
    assert page.build_request(column, "The stand wobbles.")["adapter"] == str(lora)


def test_chat_sends_the_system_prompt_and_the_history(qtbot, make_prompt_page):
    page = make_prompt_page()
    page.system_edit.setPlainText("Be brief.")
    send_and_wait(qtbot, page, "Capital of France?")
    first = transcript_results("session_chat.ndjson")[0]
    request = page.build_request(page.columns[0], "And its population?")
    assert request["mode"] == "chat" and request["top_logprobs"] == 5
    assert request["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Capital of France?"},
                                   {"role": "assistant", "content": first},
                                   {"role": "user", "content": "And its population?"}]
    assert page.prompt_edit.toPlainText() == ""  # ready for the next turn
    page.clear_button.click()
    assert page.build_request(page.columns[0], "Hi")["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_raw_mode_sends_the_text_as_it_is(qtbot, make_prompt_page):
    page = make_prompt_page()
    page.mode_combo.setCurrentIndex(1)
    assert page.system_row.isHidden()
    request = page.build_request(page.columns[0], "Once upon a time")
    assert request["mode"] == "raw" and request["prompt"] == "Once upon a time" and "messages" not in request


def test_parameters_and_presets_go_into_the_request(qtbot, make_prompt_page):
    page = make_prompt_page()
    panel = page.params_panel
    panel.preset_combo.setCurrentText("Precise")
    assert page.columns[0].config.params.top_k == PRESETS["Precise"].top_k
    panel.max_new_tokens.setValue(64)
    panel.stop.setPlainText("\\n\\nUser:")
    panel.seed.setText("7")
    panel.greedy.setChecked(True)
    params = page.build_request(page.columns[0], "x")["params"]
    assert params == {"temperature": 0.0, "top_p": 0.9, "top_k": 40, "min_p": 0.0, "repetition_penalty": 1.05,
                      "max_new_tokens": 64, "stop": ["\n\nUser:"], "seed": 7, "json_schema": ""}
    assert panel.preset_combo.currentText() == "Greedy" or panel.preset_combo.currentText() == "Custom"
    assert "greedy, max 64, seed 7" == page.columns[0].params_label.text()
    assert panel.temperature.toolTip().startswith("Randomness")


def test_side_by_side_answers_stream_into_their_own_columns(qtbot, make_prompt_page):
    run = make_run("tuned", adapter=True)
    page = make_prompt_page("session_chat.ndjson", "--delay", "0.005")
    page.columns[0].adapter_combo.setCurrentIndex(1)
    b = page.add_column()
    b.adapter_switch.setChecked(False)  # the same adapter, switched off: the base model
    c = page.add_column()  # a copy of the selected column (B), selected in turn
    assert c.config.adapter == str(run.adapter) and not c.adapter_switch.isChecked()
    c.adapter_switch.setChecked(True)
    page.params_panel.preset_combo.setCurrentText("Creative")
    assert len(page.columns) == 3 and [col.letter for col in page.columns] == ["A", "B", "C"]
    requests = [page.build_request(col, "Capital?") for col in page.columns]
    assert [r["adapter"] for r in requests] == [str(run.adapter), "", str(run.adapter)]
    assert (
        requests[2]["params"]["temperature"] == PRESETS["Creative"].temperature != requests[0]["params"]["temperature"]
    )
    send_and_wait(qtbot, page, "Capital?")

    expected = transcript_results("session_chat.ndjson")[:3]
    assert [col.conversation.last_answer().text for col in page.columns] == expected
    assert page.status.text().startswith("Done: A 42.5 tok/s; B 42.5 tok/s; C 42.5 tok/s")


def test_four_columns_at_most_and_columns_can_be_removed(qtbot, make_prompt_page):
    page = make_prompt_page()
    while page.add_column():
        pass
    assert len(page.columns) == 4 and not page.add_column_button.isEnabled()
    page.remove_column(page.columns[1])
    assert [col.letter for col in page.columns] == ["A", "B", "C"] and page.add_column_button.isEnabled()


def test_stop_cancels_at_once_and_keeps_the_text_so_far(qtbot, make_prompt_page):
    page = make_prompt_page("session_long.ndjson", "--delay", "0.02")
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    answer = page.columns[0].conversation.last_answer()
    qtbot.waitUntil(lambda: len(answer.tokens) >= 3, timeout=TIMEOUT_MS)
    assert page.stop_button.isEnabled() and not page.send_button.isEnabled()
    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=5_000)
    assert answer.finish_reason == "cancelled" and answer.text.startswith(" word0 word1 word2")
    assert len(answer.tokens) < 200 and answer.stats_line().endswith("stopped")
    send_and_wait(qtbot, page, "Again")  # the session survived the stop
    assert page.columns[0].conversation.last_answer().text == "Paris is the capital of France."


def test_an_engine_error_is_one_line_and_the_page_keeps_working(qtbot, make_prompt_page):
    page = make_prompt_page("session_error.ndjson")
    page.columns[0].model_combo.setEditText("missing-model")
    send_and_wait(qtbot, page)
    assert page.status.is_error()
    assert page.status.text() == ("Column A: model: 'missing-model' is not a local folder, a .gguf file or "
                                  "a known model")
    page.columns[0].render_now()
    assert "⚠ model: 'missing-model'" in page.columns[0].view.toPlainText()
    page.columns[0].model_combo.set_value("default")
    send_and_wait(qtbot, page, "Capital?")
    assert page.columns[0].conversation.last_answer().text == transcript_results("session_error.ndjson")[0]
    # The failed turn is not part of the history the next request sends.
    assert [m["content"] for m in page.build_request(page.columns[0], "x")["messages"]] == [
        "Capital?", transcript_results("session_error.ndjson")[0], "x"]


def test_a_crashed_engine_is_reported_and_restarted(qtbot, make_prompt_page):
    page = make_prompt_page("session_crash.ndjson")
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "restarting" in page.status.text(), timeout=TIMEOUT_MS)
    assert page.status.is_error() and "\n" not in page.status.text()
    answer = page.columns[0].conversation.last_answer()
    assert "out of memory" in answer.error
    qtbot.waitUntil(lambda: page.session.is_running() and page.send_button.isEnabled(), timeout=TIMEOUT_MS)


def test_token_view_colours_tokens_and_explains_them_on_hover(qtbot, make_prompt_page):
    page = make_prompt_page()
    send_and_wait(qtbot, page)
    column = page.columns[0]
    page.token_view_check.setChecked(True)
    html = column.view.toHtml()
    assert html.count("tok:1/") == 7  # one link per generated token
    token = column._token_at("tok:1/6")
    assert token.text == "." and abs(token.prob - 0.62) < 1e-3
    assert column._token_at("tok:0/0") is None and column._token_at("http://x") is None
    from gui.state.prompt_conversation import token_tooltip
    assert token_tooltip(token).splitlines()[:3] == [".  p = 0.620", "Top alternatives:", "  .  0.620"]


def test_a_column_gets_a_json_schema_and_a_bad_one_is_refused_in_one_line(qtbot, make_prompt_page):
    page = make_prompt_page()
    field = page.params_panel.json_schema
    field.mode.setCurrentIndex(1)  # Any JSON
    assert page.build_request(page.columns[0], "x")["params"]["json_schema"] == "any"
    assert page.columns[0].params_label.text().endswith(", any JSON")
    field.mode.setCurrentIndex(2)
    assert field.edit.isVisible() or not page.isVisible()
    field.edit.setPlainText('{"type": "object", "required": ["a"]}')
    assert page.columns[0].config.params.json_schema == '{"type": "object", "required": ["a"]}'
    assert page.columns[0].params_label.text().endswith(", JSON schema") and not field.error.text()
    page.params_panel.preset_combo.setCurrentText("Creative")  # a preset keeps the schema
    assert page.columns[0].config.params.json_schema == '{"type": "object", "required": ["a"]}'
    field.edit.setPlainText('{"type": "object",')
    assert field.error.text().startswith("not valid JSON: Expecting property name")
    page.prompt_edit.setPlainText("hi")
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    assert page.status.is_error() and not page.is_busy()
    assert "\n" not in page.status.text() and page.status.text().startswith("Column A: JSON schema: not valid JSON")


def test_an_empty_prompt_is_refused(qtbot, make_prompt_page):
    page = make_prompt_page()
    page.prompt_edit.setPlainText("  ")
    qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    assert page.status.is_error() and not page.session.is_running() and not page.is_busy()


def test_ctrl_enter_sends_and_hovering_a_token_shows_its_alternatives(qtbot, make_prompt_page):
    from PySide6.QtCore import QUrl
    from PySide6.QtWidgets import QToolTip

    page = make_prompt_page()
    page.show()
    qtbot.waitExposed(page)
    page.prompt_edit.setFocus()
    qtbot.keyClick(page.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.is_busy()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)
    page.token_view_check.setChecked(True)
    page.columns[0].view.highlighted.emit(QUrl("tok:1/0"))
    assert QToolTip.text().startswith("Paris  p = 0.930\nTop alternatives:")


def test_a_transcript_recorded_from_the_real_session_streams_into_three_columns(qtbot, make_prompt_page):
    # Recorded from `tunebench-engine session --json` on the tiny random test model: two chat
    # answers and a raw one, with empty pieces while a multi-byte character is incomplete.
    page = make_prompt_page("session_real_tiny.ndjson")
    page.add_column()
    page.add_column()
    send_and_wait(qtbot, page, "What is the capital of France?")
    recorded = transcript_results("session_real_tiny.ndjson")
    for column, text in zip(page.columns, recorded):
        answer = column.conversation.last_answer()
        assert answer.text == text and answer.finish_reason == "length" and not answer.error
        assert len(answer.tokens) == answer.completion_tokens == 8
        assert all(0 < t.prob < 1 and len(t.top) == 3 for t in answer.tokens)
        assert answer.ttft_s is not None and answer.tokens_per_s > 0
    assert page.session_label.text() == "Engine: ready on x86_64"


def test_the_page_sampling_fields_and_defaults_are_the_engines():
    """The page's Params are built from engine.infer.params.SamplingParams: they must not drift."""
    from engine.infer import sampling

    wire = Params().to_wire()
    assert wire == sampling.SamplingParams().as_dict()
    assert sampling.parse(Params(greedy=True, stop=("\n\n",), seed=4).to_wire()).greedy
