"""EngineClient against the fake engine: a real subprocess speaking the real protocol."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from engine.core import protocol
from gui.engine_client import ClientState, EngineClient, LineBuffer, format_command

FINISH_TIMEOUT_MS = 15_000


@dataclass
class Recorder:
    """Everything a client emitted, in order."""

    states: list[str] = field(default_factory=list)
    hellos: list[dict] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    finished: list[tuple[int, str]] = field(default_factory=list)

    def attach(self, client: EngineClient) -> None:
        client.sig_state_changed.connect(self.states.append)
        client.sig_hello.connect(self.hellos.append)
        client.sig_log.connect(lambda level, text: self.logs.append((level, text)))
        client.sig_progress.connect(self.progress.append)
        client.sig_metrics.connect(self.metrics.append)
        client.sig_result.connect(self.results.append)
        client.sig_error.connect(self.errors.append)
        client.sig_stderr.connect(self.stderr.append)
        client.sig_finished.connect(lambda code, summary: self.finished.append((code, summary)))


def run_to_end(qtbot, client: EngineClient, argv: list[str]) -> Recorder:
    recorder = Recorder()
    recorder.attach(client)
    with qtbot.waitSignal(client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        client.start(argv)
    return recorder


@pytest.fixture
def client(qtbot):
    engine_client = EngineClient(grace_s=60)
    yield engine_client
    engine_client.kill()


def test_handshake_then_messages_in_order(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson") + ["train", "--json"])

    assert rec.states == ["starting", "running", "exited"]
    assert [h["command"] for h in rec.hellos] == ["train"]
    assert [m["step"] for m in rec.metrics] == list(range(1, 13))
    assert rec.results[-1]["data"]["status"] == "finished"
    assert rec.finished == [(0, "The engine finished.")]
    assert any("replaying train_tiny.ndjson" in line for line in rec.stderr)


def test_lines_split_across_chunks_are_reassembled(qtbot, client, fake_engine):
    # Each line arrives in two writes 20 ms apart; the last line has no newline at all.
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--mode", "split"))

    assert not [text for level, text in rec.logs if level == "warning"]
    assert len(rec.metrics) == 12
    assert rec.results and rec.results[-1]["data"]["steps"] == 12
    assert rec.finished[0][0] == 0


def test_non_json_lines_become_warnings_not_failures(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--mode", "garbage"))

    warnings = [text for level, text in rec.logs if level == "warning"]
    assert warnings and all(w.startswith("engine wrote a non-protocol line") for w in warnings)
    assert any("this line is not JSON" in w for w in warnings)
    assert len(rec.metrics) == 12
    assert rec.finished[0][0] == 0 and client.state == ClientState.EXITED


def test_wrong_protocol_is_refused_and_the_process_killed(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--mode", "wrong-protocol", "--delay", "0.05"))

    assert client.state == ClientState.CRASHED
    assert rec.hellos == [] and rec.progress == [] and rec.metrics == []
    assert "different protocol" in rec.errors[0]["message"]
    assert rec.errors[0]["code"] == protocol.ExitCode.PROTOCOL
    code, summary = rec.finished[0]
    assert code != 0 and "speaks protocol 99" in summary


def test_non_zero_exit_summary_carries_the_stderr_tail(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--exit", "1"))

    code, summary = rec.finished[0]
    assert code == 1 and client.state == ClientState.EXITED
    first, *tail = summary.splitlines()
    assert first == "The engine failed with an internal error (see the engine log)."
    assert tail[-1] == "fake engine: last stderr line before exit 1"
    assert client.stderr_tail()[-1] == tail[-1]


def test_error_message_goes_into_the_summary(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("data_import_invalid.ndjson"))

    code, summary = rec.finished[0]
    assert code == protocol.ExitCode.INVALID_INPUT
    assert summary == ("The engine found invalid rows or fields in its input. "
                       "bad.jsonl:37: field 'completion' is missing")


def test_cancel_stops_with_exit_7_well_within_the_grace_period(qtbot, client, fake_engine):
    recorder = Recorder()
    recorder.attach(client)
    client.sig_metrics.connect(lambda message: client.cancel() if message["step"] == 2 else None)
    started = time.monotonic()
    with qtbot.waitSignal(client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        client.start(fake_engine("train_tiny.ndjson", "--delay", "0.1"))

    assert time.monotonic() - started < 10  # the whole transcript alone takes 3.6 s
    assert "stopping" in recorder.states
    assert recorder.results[-1]["data"]["status"] == "cancelled"
    assert len(recorder.metrics) < 12
    code, summary = recorder.finished[0]
    assert code == protocol.ExitCode.CANCELLED
    assert summary == "The engine was cancelled; work done so far was saved."


def test_cancel_before_the_hello_still_checks_the_handshake(qtbot, client, fake_engine):
    recorder = Recorder()
    recorder.attach(client)
    with qtbot.waitSignal(client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        client.start(fake_engine("train_tiny.ndjson", "--delay", "0.05"))
        client.cancel()

    assert [h["command"] for h in recorder.hellos] == ["train"]
    assert recorder.states == ["starting", "stopping", "exited"]
    assert recorder.finished[0][0] == protocol.ExitCode.CANCELLED


def test_engine_ignoring_cancel_is_killed_after_the_grace_period(qtbot, fake_engine):
    client = EngineClient(grace_s=0.5)
    recorder = Recorder()
    recorder.attach(client)
    client.sig_hello.connect(lambda _: client.cancel())
    started = time.monotonic()
    with qtbot.waitSignal(client.sig_finished, timeout=FINISH_TIMEOUT_MS):
        # 36 lines x 0.5 s: would run 18 s if it were not killed.
        client.start(fake_engine("train_tiny.ndjson", "--delay", "0.5", "--mode", "ignore-cancel"))

    assert time.monotonic() - started < 6
    assert client.state == ClientState.CRASHED
    code, summary = recorder.finished[0]
    assert code < 0
    assert summary == "The engine did not stop within 0.5 s of the cancel request and was killed."
    assert any("cancel received" in line for line in recorder.stderr)


def test_missing_interpreter_fails_cleanly(qtbot, client, tmp_path):
    missing = str(tmp_path / "no-such-python")
    rec = run_to_end(qtbot, client, [missing, "-m", "engine", "train", "--json"])

    assert client.state == ClientState.CRASHED
    code, summary = rec.finished[0]
    assert code == -1
    assert summary.startswith("Could not start the engine: ") and missing in summary
    assert "\n" not in summary


def test_ping_is_answered_with_pong(qtbot, client, fake_engine):
    client.sig_hello.connect(lambda _: client.ping())
    with qtbot.waitSignal(client.sig_pong, timeout=FINISH_TIMEOUT_MS):
        client.start(fake_engine("train_tiny.ndjson", "--delay", "0.1"))
    client.cancel()
    qtbot.waitUntil(lambda: not client.is_active(), timeout=FINISH_TIMEOUT_MS)


def test_a_second_job_is_refused_while_one_runs(qtbot, client, fake_engine):
    client.start(fake_engine("train_tiny.ndjson", "--delay", "0.1"))
    with pytest.raises(RuntimeError):
        client.start(fake_engine("train_tiny.ndjson"))


def test_the_client_can_run_again_after_a_job(qtbot, client, fake_engine):
    run_to_end(qtbot, client, fake_engine("data_import_invalid.ndjson"))
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson"))
    assert rec.finished == [(0, "The engine finished.")]


def test_line_buffer_keeps_partial_lines_and_multibyte_characters():
    buffer = LineBuffer()
    text = '{"type":"token","text":"naïve — ok"}\n'.encode()
    cut = text.index("ï".encode()) + 1  # in the middle of a two-byte character
    assert buffer.feed(text[:cut]) == []
    assert buffer.feed(text[cut:] + b'{"type":"pong"') == ['{"type":"token","text":"naïve — ok"}']
    assert buffer.flush() == ['{"type":"pong"']
    assert buffer.flush() == []


def test_command_line_quotes_arguments_for_the_shell(qtbot, client, fake_engine):
    run_to_end(qtbot, client, fake_engine("data_import_invalid.ndjson") + ["--prompt", "it's two words"])
    assert client.command_line().endswith("--prompt 'it'\"'\"'s two words'")
    assert format_command(["python", "-m", "engine"]) == "python -m engine"


def test_hostile_lines_cost_one_warning_each_and_the_job_goes_on(qtbot, client, fake_engine):
    """An over-long line (never buffered whole), a line nested 50,000 deep and a message cut off
    mid-line: three warnings, then every real message still arrives."""
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--mode", "hostile"))

    warnings = [text for level, text in rec.logs if level == "warning"]
    assert len(warnings) == 3, warnings
    assert "too long to read" in warnings[0] and f"over the {protocol.MAX_LINE_BYTES}-byte limit" in warnings[0]
    assert "nested more than" in warnings[1]
    assert warnings[2].startswith("engine wrote a non-protocol line")
    assert all(len(w) < 400 for w in warnings)
    assert len(rec.metrics) == 12 and rec.finished[0][0] == 0 and client.state == ClientState.EXITED


def test_engine_dying_mid_line_ends_with_one_summary(qtbot, client, fake_engine):
    rec = run_to_end(qtbot, client, fake_engine("train_tiny.ndjson", "--mode", "die-mid-line"))

    assert client.state == ClientState.CRASHED
    code, summary = rec.finished[0]
    assert code != 0 and summary.splitlines()[0] == f"The engine was killed (exit code {code})."
    warnings = [text for level, text in rec.logs if level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("engine wrote a non-protocol line")


def test_line_buffer_never_holds_more_than_its_limit():
    buffer = LineBuffer(limit=100)
    assert buffer.feed(b"x" * 60) == [] and buffer.feed(b"x" * 60) == []
    assert len(buffer._pending) == 0  # dropped, not held
    for _ in range(1000):
        assert buffer.feed(b"y" * 1000) == []
    [line] = buffer.feed(b"z\n")
    assert line.size == 120 + 1000 * 1000 + 1 and "was dropped" in line
    assert buffer.feed(b'{"ok": 1}\n' + b"w" * 101 + b"\nlast") == [
        '{"ok": 1}', "(a line of 101 bytes, over the 100-byte limit, was dropped)"]
    assert buffer.flush() == ["last"]
    buffer.feed(b"v" * 200)
    assert buffer.flush() == ["(a line of 200 bytes, over the 100-byte limit, was dropped)"]
