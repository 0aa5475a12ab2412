"""Prompt suites: rendering, few-shot blocks, workspace storage, JSON import/export, columns."""

from __future__ import annotations

import json

import pytest

from engine.core import errors, paths
from engine.core.protocol import ExitCode
from engine.infer import suites as prompt_suites
from engine.infer.suites import Example, Prompt, Suite


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_HOME", str(tmp_path / "home"))


def review_suite() -> Suite:
    few_shot = Prompt("sentiment", "Review: {{review}}", system="Answer positive or negative.",
                      examples=[Example("Review: Broke in a day.", "negative")])
    return Suite("Reviews v1", prompts=[few_shot, Prompt("echo", "Repeat: {{ review }}", mode="raw")],
                 cases=[{"review": "Love it"}, {"review": "Too loud"}])


def test_render_fills_variables_and_names_a_missing_one():
    assert prompt_suites.render("Hi {{name}}, {{ name }}!", {"name": "Ana"}) == "Hi Ana, Ana!"
    with pytest.raises(errors.EngineError) as caught:
        prompt_suites.render("{{a}} and {{b}}", {"a": 1}, where="prompt 'x'")
    assert caught.value.code == ExitCode.INVALID_INPUT
    assert caught.value.message == "prompt 'x': no value for variable {{b}} (values given: a)"


def test_few_shot_examples_become_turns_in_chat_and_blocks_in_raw():
    prompt = review_suite().prompts[0]
    assert prompt.variables() == ["review"] and not prompt.zero_shot
    assert prompt.messages({"review": "Fine"}) == [
        {"role": "system", "content": "Answer positive or negative."},
        {"role": "user", "content": "Review: Broke in a day."},
        {"role": "assistant", "content": "negative"},
        {"role": "user", "content": "Review: Fine"}]
    assert prompt.raw_text({"review": "Fine"}) == (
        "Answer positive or negative.\n\nInput: Review: Broke in a day.\nOutput: negative\n\n"
        "Input: Review: Fine\nOutput:")
    zero = Prompt("z", "Say {{x}}")
    assert zero.zero_shot and zero.raw_text({"x": "hi"}) == "Say hi"


def test_expand_runs_every_prompt_for_every_case():
    items = prompt_suites.expand(review_suite())
    assert [(i.prompt, i.case, i.mode, i.text) for i in items] == [
        ("sentiment", 0, "chat", "Review: Love it"), ("sentiment", 1, "chat", "Review: Too loud"),
        ("echo", 0, "raw", "Repeat: Love it"), ("echo", 1, "raw", "Repeat: Too loud")]
    broken = Suite("b", prompts=[Prompt("p", "{{missing}}")], cases=[{"other": "1"}])
    with pytest.raises(errors.EngineError, match=r"prompt 'p': no value for variable \{\{missing\}\}"):
        prompt_suites.expand(broken)


def test_save_list_load_delete_in_the_workspace():
    path = prompt_suites.save_suite(review_suite())
    assert path == paths.suites_dir() / "reviews-v1.json" and path.is_file()
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file
    assert [s.name for s in prompt_suites.list_suites()] == ["Reviews v1"]
    assert prompt_suites.load_suite("Reviews v1") == review_suite()
    prompt_suites.delete_suite("Reviews v1")
    with pytest.raises(errors.EngineError) as caught:
        prompt_suites.load_suite("Reviews v1")
    assert caught.value.code == ExitCode.NOT_FOUND


def test_json_export_import_round_trip_and_clear_errors(tmp_path):
    out = tmp_path / "suite.json"
    prompt_suites.export_json(review_suite(), out)
    assert json.loads(out.read_text())["format"] == "tunebench-suite"
    assert prompt_suites.import_json(out) == review_suite()
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "prompts": [{"name": "a", "template": "t", "mode": "poem"}]}')
    with pytest.raises(errors.EngineError, match=r"bad.json: prompts\[0\]\.mode: 'poem' is not one of chat, raw"):
        prompt_suites.import_json(bad)
    bad.write_text('{"name": "x",\n "prompts": [}')
    with pytest.raises(errors.EngineError, match="bad.json: line 2: not valid JSON"):
        prompt_suites.import_json(bad)


def test_read_column_from_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('id,question\n1,"Hi, there"\n2,Bye\n', encoding="utf-8")
    assert prompt_suites.read_column(csv_file, "question") == ["Hi, there", "Bye"]
    with pytest.raises(errors.EngineError, match=r"no column 'prompt' \(columns: id, question\)"):
        prompt_suites.read_column(csv_file, "prompt")
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(errors.EngineError, match="q.jsonl: line 4: no field 'prompt'"):
        prompt_suites.read_column(jsonl, "prompt")
    jsonl.write_text('{"prompt": "a"}\n{"prompt": "b"}\n', encoding="utf-8")
    assert prompt_suites.read_column(jsonl, "prompt") == ["a", "b"]
