"""`evaluate judge`: position-swap handling and unparseable counting against a scripted
OpenAI-compatible server, a judge pass with the tiny local model, the bootstrap intervals and
one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from judge_server import GOOD, ROWS, Scripted, make_evaluation, verdict

from engine.core import protocol
from engine.eval import judge as judging
from engine.eval import store
from engine.eval.judge_spec import JudgeSpec

from .test_train import FakeJob


@pytest.fixture
def server() -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def start(policy: Callable[[str, str, str], str], structured: bool = True) -> Scripted:
        made.append(Scripted(policy, structured))
        return made[-1]

    yield start
    for s in made:
        s.close()


@pytest.fixture
def home(workspace_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    make_evaluation()
    return workspace_home


def run(url: str, **changes: Any) -> tuple[Path, dict[str, Any], FakeJob]:
    job = FakeJob()
    folder, report = judging.judge(JudgeSpec(evaluation="judged", base_url=url, bootstrap=200, **changes), job)
    return folder, report, job


def test_a_judge_that_always_says_a_gives_all_ties(home, server) -> None:
    fake = server(lambda first, second, prompt: verdict("A"))
    folder, report, job = run(fake.url)
    assert report["counts"] == {"win": 0, "tie": len(ROWS), "loss": 0} and report["unparseable"] == 0
    assert report["rates"]["tie"] == {"estimate": 1.0, "low": 1.0, "high": 1.0}
    assert len(fake.requests) == 2 * len(ROWS)  # both orders of every row
    assert all(r["response_format"]["type"] == "json_schema" for r in fake.requests)
    rows = store.read_judge(folder)[1]
    assert [rows[i]["outcome"] for i in range(len(ROWS))] == ["tie"] * len(ROWS)
    assert [o["order"] for o in rows[0]["orders"]] == ["base first", "tuned first"]
    assert rows[0]["orders"][0]["reason"] == "said A"
    progress = [m for m in job.messages() if m["type"] == "progress"]
    assert progress[-1]["current"] == progress[-1]["total"] == 2 * len(ROWS) and progress[-1]["eta_s"] == 0
    assert json.loads((folder / "judge.json").read_text())["counts"]["tie"] == len(ROWS)


def test_a_judge_preferring_the_tuned_answer_in_both_orders_gives_all_wins(home, server) -> None:
    fake = server(lambda first, second, prompt: verdict("A" if first in GOOD else "B"))
    _, report, _ = run(fake.url)
    assert report["counts"] == {"win": len(ROWS), "tie": 0, "loss": 0}
    assert report["rates"]["win"]["estimate"] == 1.0
    # Asked the other way round (model_a = tuned), the same judge gives all losses.
    _, report, _ = run(fake.url, model_a="tuned", model_b="base")
    assert report["counts"] == {"win": 0, "tie": 0, "loss": len(ROWS)}


def test_unparseable_verdicts_are_counted_and_shown_never_guessed(home, server) -> None:
    def policy(first: str, second: str, prompt: str) -> str:
        if "2+2" in prompt and first == "4":
            return "B is better, obviously"  # not JSON
        if "France" in prompt:
            return json.dumps({"verdict": "maybe", "reason": "?"})  # not a verdict
        return verdict("A" if first in GOOD else "B")

    fake = server(policy, structured=False)  # also: the server refuses response_format
    folder, report, _ = run(fake.url)
    assert report["unparseable"] == 2 and report["judged"] == 2
    assert report["counts"] == {"win": 2, "tie": 0, "loss": 0}
    rows = store.read_judge(folder)[1]
    assert rows[0]["outcome"] == "unparseable" and rows[0]["orders"][1]["raw"] == "B is better, obviously"
    assert rows[0]["orders"][0]["verdict"] == "B"
    assert sum("response_format" in r for r in fake.requests) == 1  # asked once, then prompt-only


def test_single_answer_scores_with_reference(home, server) -> None:
    fake = server(lambda answer, _, prompt: json.dumps({"score": 9 if answer in GOOD else 2, "reason": "r"}))
    folder, report, _ = run(fake.url, mode="single", with_reference=True)
    assert "[Reference answer]\n4\n" in fake.requests[0]["messages"][0]["content"]
    assert report["mean_score"]["tuned"]["estimate"] == 9.0 and report["mean_score"]["base"]["estimate"] == 2.0
    assert report["unparseable"] == 0 and report["prompt"] == "single_reference"
    assert store.read_judge(folder)[1][1]["scores"]["base"] == {"score": 2, "reason": "r"}


def test_custom_prompt_replaces_the_preset(home, server) -> None:
    fake = server(lambda *_: verdict("tie"))
    run(fake.url, prompt='Q: {question}\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}\n\nJSON {"verdict": ...}')
    assert fake.requests[0]["messages"][0]["content"].startswith("Q: user: What is 2+2?\n[Answer A]\n5\n")
    assert '{"verdict": ...}' in fake.requests[0]["messages"][0]["content"]


def test_parse_is_strict() -> None:
    assert judging.parse_verdict('{"verdict": "b", "reason": "x"}', "pairwise") == {"verdict": "B", "reason": "x"}
    assert judging.parse_verdict('```json\n{"verdict": "tie", "reason": ""}\n```', "pairwise")["verdict"] == "tie"
    for text in ('The verdict: {"verdict": "A", "reason": ""}', '{"verdict": "A", "reason": 3}', "[1]", "A"):
        assert judging.parse_verdict(text, "pairwise") is None
    assert judging.parse_verdict('{"score": 7, "reason": ""}', "single") == {"score": 7, "reason": ""}
    for text in ('{"score": 11, "reason": ""}', '{"score": 7.5, "reason": ""}', '{"score": true, "reason": ""}'):
        assert judging.parse_verdict(text, "single") is None


def test_combine_counts_a_flip_with_the_order_as_a_tie() -> None:
    assert judging.combine("B", "A") == "win" and judging.combine("A", "B") == "loss"
    assert judging.combine("A", "A") == "tie" and judging.combine("B", "B") == "tie"
    assert judging.combine("B", "tie") == "tie" and judging.combine("tie", "tie") == "tie"
    assert judging.combine(None, "A") is None


def test_bootstrap_rate_intervals() -> None:
    outcomes = ["win"] * 30 + ["tie"] * 10 + ["loss"] * 10
    rates = judging.rate_intervals(outcomes, 1000, seed=3)
    assert rates["win"]["estimate"] == pytest.approx(0.6) and rates["tie"]["estimate"] == pytest.approx(0.2)
    for ci in rates.values():
        assert 0 <= ci["low"] < ci["estimate"] < ci["high"] <= 1
    # The binomial standard error is sqrt(.6*.4/50) = 0.069: the 95% interval spans about 4 of them.
    assert 0.2 < rates["win"]["high"] - rates["win"]["low"] < 0.35
    assert judging.rate_intervals(outcomes, 1000, seed=3) == rates  # seeded
    assert judging.rate_intervals(outcomes, 1000, seed=4) != rates


def engine(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TUNEBENCH_HOME=str(home), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "engine", "evaluate", "judge", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_line_naming_the_file_or_field(home, tmp_path) -> None:
    done = engine(home, "--evaluation", "nope")
    assert done.returncode == protocol.ExitCode.NOT_FOUND and "Traceback" not in done.stderr
    assert "evaluation: no evaluation 'nope'" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    config = tmp_path / "judge.toml"
    config.write_text('[judge]\nevaluation = "judged"\nmode = "best-of"\n', encoding="utf-8")
    done = engine(home, "--config", str(config))
    assert done.returncode == protocol.ExitCode.USAGE and "Traceback" not in done.stderr
    assert "mode" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    config.write_text('[judge]\nevaluation = "judged"\njudge_temperature = 1\n', encoding="utf-8")
    done = engine(home, "--config", str(config))
    assert done.returncode == protocol.ExitCode.USAGE and f"{config}: judge_temperature" in done.stderr
    done = engine(home, "--evaluation", "judged", "--model-b", "adapter-9", "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == protocol.ExitCode.USAGE and "model_b:" in done.stderr and "summary.json" in done.stderr
    done = engine(home, "--evaluation", "judged", "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == protocol.ExitCode.NOT_FOUND and "base_url:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_local_tiny_judge_gives_a_verdict_for_every_pair_in_both_orders(home, tiny_model_dir) -> None:
    job = FakeJob()
    folder, report = judging.judge(JudgeSpec(evaluation="judged", judge_model=str(tiny_model_dir), device="cpu",
                                             max_new_tokens=48, bootstrap=50), job)
    rows = store.read_judge(folder)[1]
    assert len(rows) == len(ROWS) and report["requests"] == 2 * len(ROWS)
    orders = [o for row in rows.values() for o in row["orders"]]
    assert len(orders) == 2 * len(ROWS)
    # The verdict's JSON Schema is enforced token by token, its reason bounded to fit the token
    # budget: even a random model's every reply is a verdict.
    assert all(o["verdict"] in ("A", "B", "tie") for o in orders), orders
    assert report["judged"] == len(ROWS) and report["unparseable"] == 0
    assert sum(report["counts"].values()) == report["judged"]
    for ci in report["rates"].values():
        assert 0 <= ci["low"] <= ci["estimate"] <= ci["high"] <= 1


def test_the_local_judges_schema_fits_its_token_budget() -> None:
    for mode, longest in (("pairwise", {"verdict": "tie"}), ("score", {"score": 10})):
        schema = judging.bounded_schema(mode, 48)
        reason = "x" * schema["properties"]["reason"]["maxLength"]
        assert len(json.dumps({**longest, "reason": reason})) == 48
        assert re.fullmatch(schema["properties"]["reason"]["pattern"].strip("^$"), reason)
        assert not re.fullmatch(schema["properties"]["reason"]["pattern"].strip("^$"), 'say "A"\n')
    assert judging.bounded_schema("pairwise", 8)["properties"]["reason"]["maxLength"] == 0


def test_a_pairs_file_of_two_models_answers_becomes_a_judged_evaluation(home, server, tmp_path) -> None:
    pairs = tmp_path / "answers.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": q, "a": bad, "b": good, "reference": good}) + "\n"
                             for q, bad, good in ROWS), encoding="utf-8")
    fake = server(lambda first, second, prompt: verdict("A" if first in GOOD else "B"))
    job = FakeJob()
    folder, report = judging.judge(JudgeSpec(pairs=str(pairs), base_url=fake.url, model_a="v1", model_b="v2",
                                             bootstrap=100), job)
    assert report["counts"] == {"win": len(ROWS), "tie": 0, "loss": 0}
    assert report["model_a"] == "v1" and report["model_b"] == "v2"
    assert store.read_summary(folder)["kind"] == "judge" and len(store.read_examples(folder)) == len(ROWS)
    assert any(e["id"] == folder.name for e in store.list_evaluations())
    assert "[Question]\nWhat is 2+2?\n" in fake.requests[0]["messages"][0]["content"]


def test_a_bad_pairs_line_names_the_file_line_and_field(home, tmp_path) -> None:
    pairs = tmp_path / "answers.jsonl"
    pairs.write_text('{"prompt": "q", "a": "x", "b": "y"}\n{"prompt": "q", "a": "x"}\n', encoding="utf-8")
    done = engine(home, "--pairs", str(pairs), "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == protocol.ExitCode.INVALID_INPUT and "Traceback" not in done.stderr
    assert f"{pairs}:2: b: must be the answer's text" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = engine(home, "--pairs", str(pairs), "--evaluation", "judged")
    assert done.returncode == protocol.ExitCode.USAGE and "pairs:" in done.stderr


def test_agreement_with_the_prompt_pages_ab_ratings_is_cohens_kappa(home, server) -> None:
    from engine.infer import ratings

    for q, bad, good in ROWS:  # a person preferred the tuned answer, except on the last row
        chosen, other = (bad, good) if q.startswith("Opposite") else (good, bad)
        ratings.record(ratings.Rating("ab", [{"role": "user", "content": q}], chosen, other_answer=other))
    ratings.record(ratings.Rating("ab", [{"role": "user", "content": "unrelated"}], "x", other_answer="y"))
    # The judge prefers the tuned answer in both orders, except on the last row (always "A": a tie).
    fake = server(lambda first, second, prompt: verdict("A" if "hot?" in prompt or first in GOOD else "B"))
    _, report, _ = run(fake.url)
    assert report["counts"] == {"win": 3, "tie": 1, "loss": 0}
    # human win,win,win,loss vs judge win,win,win,tie: p_o = 3/4, p_e = 3/4 * 3/4 = 9/16, kappa = 3/7.
    assert report["human"]["rows"] == 4 and report["human"]["agreement"] == 0.75
    assert report["human"]["kappa"] == pytest.approx(3 / 7)
