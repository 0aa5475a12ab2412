"""The wire protocol, without Qt or torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core import protocol


def test_every_message_round_trips_as_one_line() -> None:
    messages = [
        protocol.hello("train", "0.1.0", device={"device": "cpu"}),
        protocol.log("multi\nline\r\nmessage ünïcode", "warning"),
        protocol.progress(3, 10, eta_s=12.5, stage="train"),
        protocol.metrics(3, {"loss": 1.25, "learning_rate": 2e-4}),
        protocol.token("Hello\n"),
        protocol.artifact("adapter", "C:\\runs\\x y\\adapter"),
        protocol.result({"status": "finished"}),
        protocol.error(protocol.ExitCode.NOT_FOUND, "model: nope"),
        protocol.make(protocol.CANCEL),
        protocol.make(protocol.PING, id=7),
        protocol.make(protocol.GENERATE, id="r1", model="default", mode="chat",
                      messages=[{"role": "user", "content": "hi"}], params={"temperature": 0}),
        protocol.make(protocol.CANCEL, id="r1"),
        protocol.make(protocol.UNLOAD),
        protocol.make(protocol.SHUTDOWN),
    ]
    for message in messages:
        line = protocol.encode(message)
        assert line.endswith("\n") and line.count("\n") == 1
        assert protocol.decode(line) == message
        assert protocol.decode(line.encode("utf-8")) == message


@pytest.mark.parametrize("line, reason", [
    ("", "empty"),
    ("Loading weights: 100%", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"type": "shout"}', "unknown message type"),
    ('{"type": "metrics", "step": 1}', "missing values"),
])
def test_bad_lines_raise_protocol_error_saying_why(line: str, reason: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(line)


def test_making_a_message_without_its_fields_is_refused() -> None:
    with pytest.raises(protocol.ProtocolError, match="missing"):
        protocol.make(protocol.ARTIFACT, kind="adapter")
    with pytest.raises(protocol.ProtocolError, match="generate message is missing id"):
        protocol.decode('{"type": "generate", "prompt": "x"}')
    assert {protocol.GENERATE, protocol.UNLOAD, protocol.SHUTDOWN} <= protocol.CLIENT_TO_ENGINE


def test_nan_cannot_be_encoded_because_json_readers_reject_it() -> None:
    with pytest.raises(ValueError):
        protocol.encode(protocol.metrics(1, {"loss": float("nan")}))


def test_hello_check_rejects_other_versions_and_other_first_messages() -> None:
    protocol.check_hello(protocol.hello("train", "0.1.0"))
    other = dict(protocol.hello("train", "0.1.0"), protocol=protocol.PROTOCOL_VERSION + 1)
    with pytest.raises(protocol.ProtocolError, match="protocol"):
        protocol.check_hello(other)
    with pytest.raises(protocol.ProtocolError, match="expected hello"):
        protocol.check_hello(protocol.log("hi"))


def test_exit_codes_are_distinct_and_described() -> None:
    codes = [int(code) for code in protocol.ExitCode]
    assert len(codes) == len(set(codes))
    for code in protocol.ExitCode:
        assert protocol.describe_exit(code) == protocol.EXIT_MESSAGES[code]
    assert "killed" in protocol.describe_exit(-9)


def test_protocol_imports_only_the_standard_library() -> None:
    code = ("import sys, engine.core.protocol, engine.core.config, engine.core.workspace, engine.core.paths;"
            "heavy = {'torch', 'transformers', 'PySide6', 'datasets', 'peft', 'trl'} & set(sys.modules);"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_every_recorded_transcript_decodes_with_todays_protocol() -> None:
    """The GUI tests replay these recordings; each line is a message the decoder accepts, or a
    directive to the fake engine (``{"fake": ...}``), never anything else."""
    transcripts = sorted((Path(__file__).parent / "transcripts").glob("*.ndjson"))
    assert len(transcripts) > 20
    for transcript in transcripts:
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or "fake" in json.loads(line):
                continue
            message = protocol.decode(line)
            assert message["type"] in protocol.REQUIRED_FIELDS, f"{transcript.name}:{number}"


def test_decode_refuses_hostile_lines_with_a_protocol_error(monkeypatch) -> None:
    """Too long, too deep, NaN, duplicate keys: a ProtocolError each, never another exception."""
    monkeypatch.setattr(protocol, "MAX_LINE_BYTES", 1000)
    for line, reason in [
        ('{"type": "pong", "t": 0, "x": "' + "x" * 2000 + '"}', "over the 1000 limit"),
        ('{"type": "pong", "t": 0, "x": ' + "[" * 300 + "]" * 300 + "}", "nested more than"),
        ('{"type": "pong", "t": NaN}', "NaN"),
        ('{"type": "pong", "type": "ping", "t": 0}', "duplicate"),
    ]:
        with pytest.raises(protocol.ProtocolError, match=reason):
            protocol.decode(line)


def test_stdin_lines_are_read_within_the_limit(monkeypatch) -> None:
    import io

    monkeypatch.setattr(protocol, "MAX_LINE_BYTES", 100)
    stream = io.StringIO('{"type": "ping", "t": 0}\n' + "x" * 5000 + '\n{"type": "cancel", "t": 0}\n')
    decoded = []
    for line in protocol.read_lines(stream):
        assert len(line) <= 101
        try:
            decoded.append(protocol.decode(line)["type"])
        except protocol.ProtocolError:
            decoded.append("refused")
    assert decoded == ["ping", "refused", "cancel"]
