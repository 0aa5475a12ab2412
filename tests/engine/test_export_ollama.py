"""Ollama and LM Studio targets of `export` (engine/export/ollama.py, chat_families.py,
lmstudio.py): the Modelfile's TEMPLATE, rendered by a small Go-template renderer, must give the
same tokens as the tokenizer's own Jinja chat template; a template of no known family is refused
in one line; `ollama create` is run (a fake ollama on PATH) or, without Ollama, spelled out; the
LM Studio layout holds a GGUF file whose metadata carries the chat template."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.core import errors, protocol
from engine.export import chat_families, lmstudio, ollama

from .test_export_model import run_engine, train
from .test_train import FakeJob

# --- a renderer for the subset of Go's text/template that Ollama's templates use -----------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+')


def go_render(template: str, data: dict[str, Any]) -> str:
    """Renders ``template`` with ``data`` as Ollama would: text, ``{{ .Field }}``, ``$.Field``,
    ``range $i, $_ := .X``, ``$v := ...``, if / else if / else / end, and the functions eq,
    ne, and, or, not, len, slice. Anything else raises, so the test notices a template that
    needs more than this subset."""
    nodes, rest = _parse(_lex(template), 0)
    assert rest == len(_lex(template)), "unbalanced {{ end }}"
    out: list[str] = []
    _run(nodes, data, data, {}, out)
    return "".join(out)


def _lex(template: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    position = 0
    for action in _ACTION.finditer(template):
        text = template[position:action.start()]
        if action.group(1):
            text = text.rstrip()
        if parts and parts[-1][0] == "trim":
            parts.pop()
            text = text.lstrip()
        parts.append(("text", text))
        parts.append(("action", action.group(2).strip()))
        if action.group(3):
            parts.append(("trim", ""))
        position = action.end()
    tail = template[position:]
    if parts and parts[-1][0] == "trim":
        parts.pop()
        tail = tail.lstrip()
    parts.append(("text", tail))
    return parts


def _parse(parts: list[tuple[str, str]], index: int) -> tuple[list[Any], int]:
    """Nodes until an unmatched end/else (returned at that index)."""
    nodes: list[Any] = []
    while index < len(parts):
        kind, value = parts[index]
        if kind == "text":
            nodes.append(("text", value))
        elif value == "end" or value.startswith("else"):
            return nodes, index
        elif value.startswith(("if ", "range ")):
            node, index = _block(parts, index)
            nodes.append(node)
            continue
        elif re.match(r"\$\w+\s*:=", value):
            name, expression = value.split(":=", 1)
            nodes.append(("set", name.strip(), expression.strip()))
        else:
            nodes.append(("out", value))
        index += 1
    return nodes, index


def _block(parts: list[tuple[str, str]], index: int) -> tuple[Any, int]:
    head = parts[index][1]
    if head.startswith("range "):
        variables, expression = head[len("range "):].split(":=")
        body, index = _parse(parts, index + 1)
        assert parts[index][1] == "end"
        return ("range", [v.strip() for v in variables.split(",")], expression.strip(), body), index + 1
    branches = []
    condition: str | None = head[len("if "):]
    while True:
        body, index = _parse(parts, index + 1)
        branches.append((condition, body))
        action = parts[index][1]
        if action == "end":
            return ("if", branches), index + 1
        condition = action[len("else if "):] if action.startswith("else if ") else None


def _run(nodes: list[Any], dot: Any, root: dict[str, Any], variables: dict[str, Any], out: list[str]) -> None:
    variables = dict(variables)  # a block's variables end with it
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "out":
            out.append(str(_eval(node[1], dot, root, variables)))
        elif node[0] == "set":
            variables[node[1]] = _eval(node[2], dot, root, variables)
        elif node[0] == "range":
            for position, item in enumerate(_eval(node[2], dot, root, variables)):
                scope = dict(variables, **dict(zip(node[1], (position, item))))
                _run(node[3], item, root, scope, out)
        else:
            body = next((body for condition, body in node[1]
                         if condition is None or _truthy(_eval(condition, dot, root, variables))), [])
            _run(body, dot, root, variables, out)


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


FUNCTIONS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not _truthy(a),
    "len": len, "slice": lambda items, start: items[start:],
}


def _eval(expression: str, dot: Any, root: dict[str, Any], variables: dict[str, Any]) -> Any:
    value, rest = _command(_TOKEN.findall(expression), dot, root, variables)
    assert not rest, f"unparsed {rest} in {expression!r}"
    return value


def _command(tokens: list[str], dot: Any, root: dict[str, Any], variables: dict[str, Any]) -> tuple[Any, list]:
    head, tokens = tokens[0], tokens[1:]
    if head in ("and", "or"):
        values = []
        while tokens and tokens[0] != ")":
            value, tokens = _operand(tokens, dot, root, variables)
            values.append(value)
        pick = (lambda v: not _truthy(v)) if head == "and" else _truthy
        return next((v for v in values if pick(v)), values[-1]), tokens
    if head in FUNCTIONS:
        args = []
        while tokens and tokens[0] != ")":
            value, tokens = _operand(tokens, dot, root, variables)
            args.append(value)
        return FUNCTIONS[head](*args), tokens
    return _operand([head, *tokens], dot, root, variables)


def _operand(tokens: list[str], dot: Any, root: dict[str, Any], variables: dict[str, Any]) -> tuple[Any, list]:
    token, tokens = tokens[0], tokens[1:]
    if token == "(":
        value, tokens = _command(tokens, dot, root, variables)
        assert tokens[0] == ")"
        return value, tokens[1:]
    if token.startswith('"'):
        return json.loads(token), tokens
    if token.isdigit():
        return int(token), tokens
    if token.startswith("$."):
        return root[token[2:]], tokens
    if token.startswith("$"):
        return variables[token], tokens
    if token.startswith("."):
        return dot[token[1:]], tokens
    raise AssertionError(f"the test renderer does not know {token!r}")


def ollama_prompt(template: str, messages: list[dict[str, str]], system: str | None = None) -> str:
    """The prompt Ollama builds for a chat request: the Modelfile's SYSTEM goes first when the
    request has no system message, and .System holds the system messages' text."""
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return go_render(template, {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages],
                                "System": "\n\n".join(m["content"] for m in messages if m["role"] == "system")})


# --- tiny tokenizers with each family's real chat template ---------------------------------------

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# SmolLM2's own template: ChatML with a default system prompt when the conversation has none.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{% set ns_system = "
    "message['content'] %}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{% if loop.index0 == 1 and "
    "messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}{{ message['content'] + "
    "' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}")
PHI3_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
ALPACA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] "
    "+ '\n\n' }}{% else %}{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}")

FAMILY_TOKENIZERS = {
    "ChatML": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_start|>", "<|im_end|>", SMOLLM2_TEMPLATE),
    "Llama 3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                 "<|eot_id|>"], "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TEMPLATE),
    "Mistral [INST]": (["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", MISTRAL_TEMPLATE),
    "Gemma": (["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", GEMMA_TEMPLATE),
    "Phi-3": (["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|endoftext|>",
              "<|endoftext|>", PHI3_TEMPLATE),
}


def tiny_tokenizer(specials: list[str], bos: str, eos: str, template: str, adds_bos: bool = False) -> Any:
    """A small byte-level BPE tokenizer whose special tokens are the family's markers
    (``adds_bos``: it puts BOS in front of any text by itself, as Llama 3's does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Is the kettle any good?", "It boils fast and the handle stays cool.", "Be brief and kind."] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    tokenizer.chat_template = template
    return tokenizer


SYSTEM = {"role": "system", "content": "Be brief and kind."}
USER = {"role": "user", "content": "Is the kettle any good?"}
ANSWER = {"role": "assistant", "content": "It boils fast and the handle stays cool."}
FOLLOW_UP = {"role": "user", "content": "And the handle?"}
CONVERSATIONS = [
    ([SYSTEM, USER], True),
    ([SYSTEM, USER, ANSWER], False),
    ([SYSTEM, USER, ANSWER, FOLLOW_UP], True),
    ([USER], True),
    ([USER, ANSWER], False),
]


def ollama_tokens(tokenizer: Any, match: chat_families.Match, messages: list[dict[str, str]],
                  system: str | None) -> list[int]:
    return tokenizer(ollama_prompt(ollama.go_template(match), messages, system), add_special_tokens=False)[
        "input_ids"]


@pytest.mark.parametrize("family", list(FAMILY_TOKENIZERS))
def test_the_modelfile_template_renders_the_same_tokens_as_the_chat_template(family) -> None:
    tokenizer = tiny_tokenizer(*FAMILY_TOKENIZERS[family])
    match = chat_families.recognise(tokenizer)
    assert match.family.name == family
    system = ollama.system_prompt({}, match)  # the template's default system prompt, if it has one
    compared = 0
    for messages, generation in CONVERSATIONS:
        if messages[0]["role"] == "system" and not match.system_allowed:
            continue  # Gemma 1 and 2 refuse a system turn; a run on them cannot have trained with one
        want = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        if want.endswith(str(tokenizer.eos_token)) and not want.endswith(match.family.stop):
            want = want[:-len(tokenizer.eos_token)]  # Phi-3 ends a finished conversation with <|endoftext|>
        have = ollama_prompt(ollama.go_template(match), messages, system)
        assert have == want, (messages, generation)
        assert ollama_tokens(tokenizer, match, messages, system) == \
            tokenizer(want, add_special_tokens=False)["input_ids"]
        compared += 1
    assert compared >= 2


def test_chatml_and_llama3_templates_match_apply_chat_template_token_for_token() -> None:
    """The brief's two must-haves, spelled out: system + user + assistant, and add_generation_prompt."""
    for family in ("ChatML", "Llama 3"):
        tokenizer = tiny_tokenizer(*FAMILY_TOKENIZERS[family])
        match = chat_families.recognise(tokenizer)
        for messages, generation in (([SYSTEM, USER, ANSWER], False), ([SYSTEM, USER], True)):
            want = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation,
                                                 return_dict=True)["input_ids"]
            assert ollama_tokens(tokenizer, match, messages, None) == list(want), family


def test_a_tokenizer_that_adds_bos_itself_gets_no_second_bos_from_the_template() -> None:
    """llama.cpp adds BOS to Ollama's prompt when the GGUF says the tokenizer does (Llama 3), so
    the TEMPLATE leaves it out; the prompt's tokens, BOS added, are still training's."""
    tokenizer = tiny_tokenizer(*FAMILY_TOKENIZERS["Llama 3"], adds_bos=True)
    match = chat_families.recognise(tokenizer)
    assert match.family.name == "Llama 3" and match.bos_text == ""
    assert not ollama.go_template(match).startswith("<|begin_of_text|>")
    for messages, generation in (([SYSTEM, USER, ANSWER], False), ([SYSTEM, USER], True)):
        want = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation,
                                             return_dict=True)["input_ids"]
        prompt = ollama_prompt(ollama.go_template(match), messages)
        assert tokenizer(prompt)["input_ids"] == list(want)


def test_a_run_system_prompt_becomes_system_and_the_end_of_turn_a_stop(tmp_path) -> None:
    tokenizer = tiny_tokenizer(*FAMILY_TOKENIZERS["Llama 3"])
    match = chat_families.recognise(tokenizer)
    text = ollama.modelfile_text(tmp_path / "tuned-q8_0.gguf", match,
                                 ollama.system_prompt({"system_prompt": "Answer as a kettle expert."}, match))
    lines = text.splitlines()
    assert lines[0] == "FROM ./tuned-q8_0.gguf"
    assert 'PARAMETER stop "<|eot_id|>"' in lines
    assert lines[-1] == 'SYSTEM """Answer as a kettle expert."""'
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    assert template == ollama.go_template(match)
    # With no run prompt and no template default there is no SYSTEM line at all.
    assert "SYSTEM" not in ollama.modelfile_text(tmp_path / "x.gguf", match, ollama.system_prompt({}, match))
    with pytest.raises(errors.EngineError, match='contains """'):
        ollama.modelfile_text(tmp_path / "x.gguf", match, 'say """ hi')


def test_a_template_of_no_known_family_is_refused_in_one_line() -> None:
    tokenizer = tiny_tokenizer(["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>", ALPACA_TEMPLATE)
    with pytest.raises(errors.EngineError) as caught:
        chat_families.recognise(tokenizer)
    message = caught.value.message
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT and "\n" not in message
    assert message.startswith("ollama: the chat template is none of ChatML, Llama 3") and "### Instruction" in message
    # A ChatML look-alike that differs in one newline is not ChatML either.
    near = tiny_tokenizer(*FAMILY_TOKENIZERS["ChatML"][:3], FAMILY_TOKENIZERS["ChatML"][3].replace(
        "'<|im_end|>' + '\n'", "'<|im_end|>'"))
    with pytest.raises(errors.EngineError, match="none of"):
        chat_families.recognise(near)


# --- `ollama create`: a fake ollama on PATH, and none -----------------------------------------

FAKE_OLLAMA = """#!{python}
import json, os, sys
with open(os.environ["FAKE_OLLAMA_LOG"], "w") as log:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, log)
print("gathering model components")
sys.stderr.write("copying file sha256:abc 50%\\rcopying file sha256:abc 100%\\n")
print("success")
sys.exit(int(os.environ.get("FAKE_OLLAMA_EXIT", "0")))
"""


@pytest.fixture
def fake_ollama(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    script = folder / "ollama"
    script.write_text(FAKE_OLLAMA.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_OLLAMA_LOG", str(tmp_path / "ollama-argv.json"))
    return tmp_path / "ollama-argv.json"


@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_ollama_create_runs_the_installed_ollama_and_streams_its_lines(fake_ollama, tmp_path, monkeypatch) -> None:
    modelfile = tmp_path / "out" / "tuned.Modelfile"
    modelfile.parent.mkdir()
    modelfile.write_text("FROM ./tuned.gguf\n", encoding="utf-8")
    lines: list[str] = []
    result = ollama.create("my-kettle:latest", modelfile, lines.append, lambda: False)
    assert json.loads(fake_ollama.read_text(encoding="utf-8")) == {
        "argv": ["create", "my-kettle:latest", "-f", str(modelfile)], "cwd": str(modelfile.parent)}
    assert lines == ["gathering model components", "copying file sha256:abc 50%", "copying file sha256:abc 100%",
                     "success"]
    assert result["created"] is True and result["name"] == "my-kettle:latest"

    with pytest.raises(errors.EngineError) as caught:  # a cancel stops ollama at its next line
        ollama.create("my-kettle:latest", modelfile, lines.append, lambda: True)
    assert caught.value.code == protocol.ExitCode.CANCELLED

    monkeypatch.setenv("FAKE_OLLAMA_EXIT", "1")
    with pytest.raises(errors.EngineError, match="ollama: `create my-kettle:latest -f .*` failed: success"):
        ollama.create("my-kettle:latest", modelfile, lines.append, lambda: False)


def test_without_ollama_the_result_says_the_command_to_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    modelfile = tmp_path / "my exports" / "tuned.Modelfile"
    result = ollama.create("kettle", modelfile, lambda line: None, lambda: False)
    assert result == {"name": "kettle", "created": False,
                      "command": f"ollama create kettle -f '{modelfile}'"}


# --- end to end through the engine -------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="the fake ollama is a POSIX script")
def test_export_ollama_create_and_lmstudio_end_to_end(tiny_model_dir, engine_argv, engine_env, workspace_home,
                                                       fake_ollama, tmp_path) -> None:
    import gguf

    run_id = train(engine_argv, engine_env, tiny_model_dir, "--max-steps", "1", "--name", "kettle helper")
    env = dict(engine_env, PATH=os.environ["PATH"], FAKE_OLLAMA_LOG=str(fake_ollama))
    target = tmp_path / "out" / "tuned.gguf"
    code, messages, stderr = run_engine(engine_argv, env, "export", run_id, "--ollama-create", "kettle",
                                        "--outtype", "q8_0", "--out", str(target), "--no-check")
    assert code == 0, stderr[-2000:]
    result = messages[-1]["data"]
    assert result["format"] == "gguf" and target.is_file()  # --ollama-create implies GGUF
    modelfile = Path(result["modelfile"])
    assert modelfile == tmp_path / "out" / "tuned.Modelfile"
    text = modelfile.read_text(encoding="utf-8")
    assert text.startswith("FROM ./tuned.gguf\n") and 'PARAMETER stop "<|im_end|>"' in text
    assert result["ollama"]["created"] is True
    assert json.loads(fake_ollama.read_text(encoding="utf-8"))["argv"] == ["create", "kettle", "-f", str(modelfile)]
    streamed = [m["message"] for m in messages if m["type"] == "progress" and m.get("unit") == "ollama"]
    assert streamed[0] == "gathering model components" and streamed[-1] == "success"

    models_dir = tmp_path / "lm studio models"
    code, messages, stderr = run_engine(engine_argv, engine_env, "export", run_id, "--lmstudio", "--lmstudio-dir",
                                        str(models_dir), "--outtype", "f16", "--no-check")
    assert code == 0, stderr[-2000:]
    placed = models_dir / lmstudio.PUBLISHER / "kettle-helper" / "kettle-helper-f16.gguf"
    assert Path(messages[-1]["data"]["path"]) == placed and placed.is_file()
    reader = gguf.GGUFReader(str(placed))
    assert reader.fields["tokenizer.chat_template"].contents() == chat_template(tiny_model_dir)


def chat_template(model_dir: Path) -> str:
    from transformers import AutoTokenizer

    return str(AutoTokenizer.from_pretrained(str(model_dir)).chat_template)


def test_an_unknown_template_fails_the_export_before_anything_is_written(tiny_model_dir, tmp_path) -> None:
    import argparse
    import shutil

    model_dir = tmp_path / "alpaca-model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    config["chat_template"] = ALPACA_TEMPLATE
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    target = tmp_path / "out" / "x.gguf"
    args = argparse.Namespace(run="", model=str(model_dir), format="merged", outtype="f16", out=str(target),
                              force=False, check=False, ollama=True, ollama_create=None, lmstudio=False,
                              lmstudio_dir=None)
    from engine.export import model as export_model

    with pytest.raises(errors.EngineError, match="ollama: the chat template is none of"):
        export_model.cmd_export(args, FakeJob())
    assert not target.exists() and not target.with_suffix(".Modelfile").exists()


def test_names_for_lmstudio_and_ollama() -> None:
    assert ollama.suggested_name("Kettle Helper v2!") == "kettle-helper-v2" and ollama.suggested_name("??") == "tuned"
    assert lmstudio.target(Path("models"), "my run: v2/final", "q8_0") == \
        Path("models") / "tunebench" / "my-run-v2-final" / "my-run-v2-final-q8_0.gguf"
    assert lmstudio.model_name("...") == "model"
    for good in ("kettle", "Kettle_2.1", "me/kettle:v2", "host.example/me/kettle:latest"):
        assert ollama.is_model_name(good), good
    for bad in ("", "my kettle", "-kettle", "kettle:", "a/b/c/d", "kettle;rm", "kettle:v 2", "ké"):
        assert not ollama.is_model_name(bad), bad
    assert ollama.is_model_name(ollama.suggested_name("Kettle Helper v2!"))


def test_tool_options_refuse_clashes_and_default_to_lm_studios_folder(tmp_path, monkeypatch) -> None:
    import argparse

    from engine.export import for_tools

    def options(**given: Any) -> for_tools.ToolOptions:
        fields = {"out": None, "ollama": False, "ollama_create": None, "lmstudio": False, "lmstudio_dir": None}
        return for_tools.tool_options(argparse.Namespace(**{**fields, **given}))

    monkeypatch.setattr(Path, "home", lambda: tmp_path / "someone")
    assert options(lmstudio=True).lmstudio_dir == tmp_path / "someone" / ".lmstudio" / "models"
    assert options(lmstudio_dir=str(tmp_path / "m")).lmstudio_dir == tmp_path / "m"  # the folder implies --lmstudio
    assert options(ollama_create="kettle").ollama and not options().wants_gguf
    for given, words in (({"lmstudio": True, "out": "x.gguf"}, "give --lmstudio-dir instead of --out"),
                         ({"ollama_create": "my kettle"}, "is not an Ollama model name"),
                         ({"ollama_create": "kettle;rm"}, "is not an Ollama model name")):
        with pytest.raises(errors.EngineError) as caught:
            options(**given)
        assert caught.value.code == protocol.ExitCode.USAGE and words in caught.value.message
