"""Ollama: a Modelfile beside the exported GGUF file, and ``ollama create`` run on it.

The Modelfile's TEMPLATE is written in Ollama's Go-template syntax from the chat-template family
the tokenizer's Jinja template renders as (chat_families.py). It ranges over ``.Messages``,
closes every turn as training did and opens the assistant's turn after a last non-assistant
message, which is what the Jinja template renders with ``add_generation_prompt``. Ollama puts
the Modelfile's SYSTEM in front of a conversation that has none, so SYSTEM carries the system
prompt the run trained with (or the template's own default, SmolLM2's and Qwen's).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.core import errors, names, protocol, workspace
from engine.export.chat_families import Family, Match

log = logging.getLogger("engine.export.ollama")

# Ollama's own templates find the last message this way (its Go templates have no "last" helper).
LAST = "{{ $last := eq (len (slice $.Messages $i)) 1 }}"


@dataclass
class Modelfile:
    path: Path
    template: str
    stops: list[str]
    system: str | None


def modelfile_path(gguf: Path) -> Path:
    """``<name>.Modelfile`` beside ``<name>.gguf``: one folder can hold several exports of a run
    (F16, Q8_0...) and each keeps its own."""
    return gguf.with_suffix(".Modelfile")


def go_template(match: Match) -> str:
    """The TEMPLATE text. No ``{{-`` trim markers: the families' turn texts end in newlines that
    a trim marker would swallow."""
    family = match.family
    body = "".join(f'{{{{ {"if" if index == 0 else "else if"} eq .Role "{role}" }}}}{_turn(family, role)}'
                   for index, role in enumerate(family.turns))
    opening = f'{{{{ if and $last (ne .Role "assistant") }}}}{family.generation}{{{{ end }}}}' \
        if family.generation else ""
    return f"{match.bos_text}{{{{ range $i, $_ := .Messages }}}}{LAST}{body}{{{{ end }}}}{opening}{{{{ end }}}}"


def _turn(family: Family, role: str) -> str:
    before, after = family.turns[role]
    content = "{{ .Content }}"
    if role == "user" and family.system_before_user:
        # The system message (index 0, where Ollama puts SYSTEM) goes in front of the first user turn.
        system = family.system_before_user.format(system="{{ $.System }}")
        content = f"{{{{ if and $.System (eq $i 1) }}}}{system}{{{{ end }}}}{content}"
    return before + content + after


def modelfile_text(gguf: Path, match: Match, system: str | None) -> str:
    """FROM, TEMPLATE, one PARAMETER stop per end-of-turn token and SYSTEM (when there is one)."""
    template = go_template(match)
    lines = [f"FROM ./{gguf.name}", f'TEMPLATE """{_triple_quoted(template, "the chat template")}"""']
    lines += [f'PARAMETER stop "{_quoted(stop)}"' for stop in match.stops]
    if system:
        lines.append(f'SYSTEM """{_triple_quoted(system, "the system prompt")}"""')
    return "\n".join(lines) + "\n"


def _triple_quoted(text: str, what: str) -> str:
    if '"""' in text:  # Ollama's Modelfile parser has no escape for the closing quotes
        raise errors.invalid_input(f'ollama: {what} contains """, which a Modelfile cannot hold')
    return text


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def system_prompt(run_info: dict[str, Any], match: Match) -> str | None:
    """The run's training system prompt, else the template's default; None when neither."""
    trained = run_info.get("system_prompt")
    if trained and not match.system_allowed:
        raise errors.invalid_input("ollama: the run trained with a system prompt, but its chat template "
                                   "refuses a system message")
    return str(trained) if trained else match.default_system


def write_modelfile(gguf: Path, match: Match, system: str | None) -> Path:
    path = modelfile_path(gguf)
    workspace.atomic_write_text(path, modelfile_text(gguf, match, system))
    return path


def create_command(name: str, modelfile: Path) -> list[str]:
    return ["ollama", "create", name, "-f", str(modelfile)]


# [host/][namespace/]model[:tag], as `ollama create` accepts them.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
NAME = re.compile(rf"(?:{_PART}/){{0,2}}{_PART}(?::[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})?")


def is_model_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


def suggested_name(run_name: str) -> str:
    """An Ollama model name from the run's name: Ollama's names are lowercase letters, digits,
    dots, dashes and underscores."""
    return names.slug(run_name, "tuned", lower=True)


def command_text(name: str, modelfile: Path) -> str:
    """The command as a person would type it (quoted for a POSIX shell)."""
    return shlex.join(create_command(name, modelfile))


def create(name: str, modelfile: Path, on_line: Callable[[str], None],
           cancelled: Callable[[], bool]) -> dict[str, Any]:
    """Runs ``ollama create`` when Ollama is installed, passing each progress line to
    ``on_line``; else says the command to run. EngineError when ollama fails."""
    command = create_command(name, modelfile)
    shown = command_text(name, modelfile)
    binary = shutil.which("ollama")
    if binary is None:
        log.info("Ollama is not installed here; to add the model, run: %s", shown)
        return {"name": name, "created": False, "command": shown}
    lines = _run([binary, *command[1:]], modelfile.parent, on_line, cancelled)
    return {"name": name, "created": True, "command": shown, "output": lines[-5:]}


def _run(argv: list[str], folder: Path, on_line: Callable[[str], None], cancelled: Callable[[], bool]) -> list[str]:
    # cwd: the Modelfile's FROM is relative to its folder. stderr joins stdout: ollama writes its
    # progress to stderr, and one stream keeps lines in order.
    process = subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               encoding="utf-8", errors="replace", stdin=subprocess.DEVNULL)
    lines: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        # Ollama redraws its progress bars with carriage returns; each redraw is a line here.
        for line in (part.strip() for part in raw.replace("\r", "\n").split("\n")):
            if line:
                lines.append(line)
                on_line(line)
        if cancelled():
            process.kill()
            break
    code = process.wait()
    if cancelled():
        raise errors.EngineError(protocol.ExitCode.CANCELLED,
                                 "ollama create was cancelled; the GGUF file and Modelfile are kept")
    if code != 0:
        last = lines[-1] if lines else f"exit code {code}"
        raise errors.invalid_input(f"ollama: `{shlex.join(argv[1:])}` failed: {last}")
    return lines
