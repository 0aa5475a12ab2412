"""SessionClient against the fake engine replaying session transcripts (a real subprocess)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from gui_helpers import TRANSCRIPTS

from gui.session_client import SessionClient

TIMEOUT_MS = 15_000
CHAT = {"model": "default", "adapter": "", "mode": "chat",
        "messages": [{"role": "user", "content": "What is the capital of France?"}], "params": {}}


def answers(transcript: str) -> list[str]:
    """The result texts of a session transcript, block by block."""
    lines = map(json.loads, (TRANSCRIPTS / transcript).read_text(encoding="utf-8").splitlines())
    return [m["data"]["text"] for m in lines if m.get("type") == "result"]


@dataclass
class Seen:
    tokens: dict[str, list[str]] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notices: list[tuple[str, bool]] = field(default_factory=list)
    hellos: list[dict] = field(default_factory=list)
    busy: list[bool] = field(default_factory=list)

    def attach(self, session: SessionClient) -> None:
        session.sig_token.connect(lambda rid, m: self.tokens.setdefault(rid, []).append(m["text"]))
        session.sig_result.connect(lambda rid, data: self.results.__setitem__(rid, data))
        session.sig_request_error.connect(lambda rid, text: self.errors.__setitem__(rid, text))
        session.sig_notice.connect(lambda text, error: self.notices.append((text, error)))
        session.sig_ready.connect(self.hellos.append)
        session.sig_busy_changed.connect(self.busy.append)


@pytest.fixture
def make_session(qtbot, fake_engine):
    made: list[SessionClient] = []

    def make(transcript: str, *options: str) -> tuple[SessionClient, Seen]:
        session = SessionClient(lambda: fake_engine(transcript, *options), cancel_grace_s=5)
        seen = Seen()
        seen.attach(session)
        made.append(session)
        return session, seen

    yield make
    for session in made:
        session.shutdown()


def test_answers_are_routed_to_their_request_ids(qtbot, make_session):
    session, seen = make_session("session_chat.ndjson")
    first = session.generate(CHAT)  # sent before the hello: queued, then sent
    second = session.generate({**CHAT, "adapter": "tuned"})
    qtbot.waitUntil(lambda: len(seen.results) == 2, timeout=TIMEOUT_MS)

    expected = answers("session_chat.ndjson")
    assert first != second
    assert "".join(seen.tokens[first]) == seen.results[first]["text"] == expected[0]
    assert "".join(seen.tokens[second]) == seen.results[second]["text"] == expected[1]
    assert seen.results[second]["adapter"] == "tuned"
    assert seen.busy == [True, False] and not session.is_busy()
    assert len(seen.hellos) == 1 and seen.hellos[0]["command"] == "session"


def test_a_request_error_leaves_the_session_running(qtbot, make_session):
    session, seen = make_session("session_error.ndjson")
    bad = session.generate({**CHAT, "model": "missing-model"})
    qtbot.waitUntil(lambda: bad in seen.errors, timeout=TIMEOUT_MS)
    assert "missing-model" in seen.errors[bad] and "\n" not in seen.errors[bad]
    good = session.generate(CHAT)
    qtbot.waitUntil(lambda: good in seen.results, timeout=TIMEOUT_MS)
    assert seen.results[good]["text"] == answers("session_error.ndjson")[0]
    assert len(seen.hellos) == 1 and not seen.notices  # same process all along


def test_cancel_stops_the_answer_at_once_and_the_next_one_runs(qtbot, make_session):
    session, seen = make_session("session_long.ndjson", "--delay", "0.02")
    long = session.generate(CHAT)
    qtbot.waitUntil(lambda: len(seen.tokens.get(long, [])) >= 3, timeout=TIMEOUT_MS)
    session.cancel(long)
    qtbot.waitUntil(lambda: long in seen.results, timeout=TIMEOUT_MS)
    result = seen.results[long]
    assert result["finish_reason"] == "cancelled"
    assert result["text"].startswith(" word0 word1 word2") and len(seen.tokens[long]) < 200
    nxt = session.generate(CHAT)
    qtbot.waitUntil(lambda: nxt in seen.results, timeout=TIMEOUT_MS)
    assert seen.results[nxt]["text"] == "Paris is the capital of France."


def test_a_queued_request_is_cancelled_without_reaching_the_engine(qtbot, make_session):
    session, seen = make_session("session_chat.ndjson")
    queued = session.generate(CHAT)
    session.cancel(queued)
    assert seen.results[queued]["finish_reason"] == "cancelled"
    assert not session.is_busy()


def test_a_crashed_session_fails_the_open_request_and_restarts(qtbot, make_session):
    session, seen = make_session("session_crash.ndjson")
    lost = session.generate(CHAT)
    qtbot.waitUntil(lambda: lost in seen.errors and len(seen.hellos) == 2, timeout=TIMEOUT_MS)
    assert "out of memory" in seen.errors[lost]
    assert seen.notices and seen.notices[-1][1] and "restarting" in seen.notices[-1][0]
    assert session.is_running() and not session.is_busy()


def test_unload_is_sent_to_an_idle_running_session(qtbot, make_session):
    session, seen = make_session("session_chat.ndjson")
    assert not session.unload()  # nothing running yet
    stderr: list[str] = []
    session.client.sig_stderr.connect(stderr.append)
    done = session.generate(CHAT)
    qtbot.waitUntil(lambda: done in seen.results, timeout=TIMEOUT_MS)
    assert session.unload()
    # The fake engine has no block for it and says so: proof the request line arrived.
    qtbot.waitUntil(lambda: any("'unload'" in line for line in stderr), timeout=TIMEOUT_MS)
