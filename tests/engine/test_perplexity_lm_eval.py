"""Text perplexity equals lm-evaluation-harness's own (issue 17).

lm-eval itself (a dev dependency) runs a local ``loglikelihood_rolling`` task, offline, over a
few texts in a JSONL file on the tiny model; Tunebench's `evaluate run` scores the same texts,
imported as a text dataset. Word perplexity, byte perplexity and bits per byte must equal lm-eval's
to 0.1%, and so must each document's log-likelihood. The texts include one longer than the
model's 512 positions, so the rolling windows are exercised, and short ones, where leaving out
the end-of-text prefix (scoring the first token of each text) moves the result far past 0.1%.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from engine.core import protocol
from engine.core.channel import Channel
from engine.core.control import Control

pytest.importorskip("lm_eval")

REL = 1e-3  # the 0.1%
TASK = "tunebench_rolling"
SHORT = [
    "Arrived broken.",
    "  Great battery life, the screen is sharp\n\nand the speakers are loud enough. ",
    "Très bon produit — livré en deux jours, emballage soigné. Je recommande !",
]


class FakeJob:
    def __init__(self) -> None:
        self.channel = Channel(io.StringIO(), json_mode=True)
        self.control = Control(self.channel)


def long_text() -> str:
    """Well over 512 tokens of the sample reviews (the tokenizer was trained on them)."""
    sample = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"
    pieces = [m["content"] for line in sample.read_text(encoding="utf-8").splitlines()
              for m in json.loads(line)["messages"] if m["role"] == "user"]
    return " ".join(pieces)[:6000]


def texts() -> list[str]:
    return [*SHORT, long_text()]


@pytest.fixture(scope="module")
def lm_eval_results(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """lm-eval's metrics and per-document log-likelihoods on a local task, offline."""
    mp = pytest.MonkeyPatch()
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        mp.setenv(name, "1")
    folder = tmp_path_factory.mktemp("lm-eval-task")
    data = folder / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()), encoding="utf-8")
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
        "test_split: test\n"
        "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\n'
        "doc_to_target: text\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n",
        encoding="utf-8")
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        model = HFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=2, dtype="float32")
        out = lm_eval.simple_evaluate(model=model, tasks=[TASK], task_manager=TaskManager(include_path=str(folder)),
                                      log_samples=True, bootstrap_iters=0)
    finally:
        mp.undo()
    assert out is not None
    metrics = {k.split(",")[0]: v for k, v in out["results"][TASK].items() if k.endswith(",none")}
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    loglikelihoods = [float(s["resps"][0][0]) for s in samples]
    return {"metrics": metrics, "loglikelihoods": loglikelihoods, "max_length": model.max_length,
            "prefix": model.prefix_token_id, "tokens": [model.tok_encode(t) for t in texts()]}


@pytest.fixture(scope="module")
def tunebench_results(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`evaluate run` on the same texts imported as a text dataset."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNEBENCH_HOME", str(tmp_path_factory.mktemp("ppl-home")))
    try:
        from engine.data import importer as data_import
        from engine.eval import run as evaluate
        from engine.eval import store
        from engine.eval.spec import EvalSpec

        file = tmp_path_factory.mktemp("ppl-data") / "docs.jsonl"
        file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()), encoding="utf-8")
        version, _ = data_import.import_file(file, name="docs", options=data_import.ImportOptions(shape="text"))
        spec = EvalSpec(dataset=version.ref, split="all", model=str(tiny_model_dir), max_examples=0,
                        batch_size=2, bootstrap=20, device="cpu")
        folder, summary = evaluate.evaluate(spec, FakeJob())
        rows = store.read_examples(folder)
        _, _, shape, examples = evaluate.load_examples(spec)
    finally:
        mp.undo()
    assert shape == "text" and [e.reference for e in examples] == texts()  # stored verbatim
    return {"summary": summary, "rows": rows}


def estimate(summary: dict[str, Any], name: str) -> float:
    return float(summary["metrics"][name]["values"]["base"]["estimate"])


def test_the_long_text_needs_several_windows(lm_eval_results: dict[str, Any]) -> None:
    from engine.eval.perplexity import rolling_windows

    assert lm_eval_results["max_length"] == 512
    longest = max(lm_eval_results["tokens"], key=len)
    assert len(longest) > 2 * 512
    assert len(rolling_windows(longest, lm_eval_results["prefix"], 512)) >= 3


def test_rolling_windows_are_lm_evals_own() -> None:
    """Window by window, for every length around a few maximum lengths: the random tiny model
    barely uses its context, so the windows' context is checked here exactly."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from engine.eval.perplexity import rolling_windows

    for max_len in (1, 2, 3, 7, 16):
        for length in range(0, 5 * max_len + 3):
            tokens = list(range(100, 100 + length))
            theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=tokens, prefix_token=7, max_seq_len=max_len, context_len=1)]
            assert rolling_windows(tokens, 7, max_len) == theirs, (max_len, length)


@pytest.mark.parametrize("name", ["word_perplexity", "byte_perplexity", "bits_per_byte"])
def test_text_metric_equals_lm_eval(name: str, lm_eval_results: dict[str, Any],
                                    tunebench_results: dict[str, Any]) -> None:
    ours, theirs = estimate(tunebench_results["summary"], name), lm_eval_results["metrics"][name]
    print(f"{name}: Tunebench {ours!r} lm-eval {theirs!r} relative difference {abs(ours / theirs - 1):.2e}")
    assert ours == pytest.approx(theirs, rel=REL)


def test_each_document_log_likelihood_equals_lm_eval(lm_eval_results: dict[str, Any],
                                                     tunebench_results: dict[str, Any]) -> None:
    from engine.eval.score import count_bytes

    for i, (row, text) in enumerate(zip(tunebench_results["rows"], texts())):
        # bits per byte of one row times its bytes and ln 2 gives back the row's NLL.
        nll = row["metrics"]["base"]["bits_per_byte"] * count_bytes(text) * math.log(2)
        assert -nll == pytest.approx(lm_eval_results["loglikelihoods"][i], rel=REL), i


def test_token_perplexity_counts_every_token_of_the_text(lm_eval_results: dict[str, Any],
                                                        tunebench_results: dict[str, Any]) -> None:
    tokens = sum(len(t) for t in lm_eval_results["tokens"])
    expected = math.exp(-sum(lm_eval_results["loglikelihoods"]) / tokens)
    assert estimate(tunebench_results["summary"], "token_perplexity") == pytest.approx(expected, rel=REL)
    summary = tunebench_results["summary"]
    assert set(summary["metrics"]) == {"token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
    for name, entry in summary["metrics"].items():
        assert entry["definition"] and entry["better"] == "lower"
        value = entry["values"]["base"]
        assert value["low"] <= value["estimate"] <= value["high"], name


def test_scoring_without_the_end_of_text_prefix_misses_lm_eval(tiny_model_dir: Path,
                                                              lm_eval_results: dict[str, Any]) -> None:
    """The check has teeth: the old whole-text scoring (first token unscored, no prefix) is off
    by more than the tolerance, so a regression to it fails the tests above."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.eval import perplexity
    from engine.eval.score import count_bytes

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    old = perplexity.score_texts(model, tokenizer, texts())
    for i in range(len(SHORT)):  # each short text misses its first token's NLL
        assert abs(-old.nll_sums[i] / lm_eval_results["loglikelihoods"][i] - 1) > 10 * REL, i
    old_bpb = sum(old.nll_sums) / sum(count_bytes(t) for t in texts()) / math.log(2)
    theirs = lm_eval_results["metrics"]["bits_per_byte"]
    assert abs(old_bpb / theirs - 1) > 2 * REL  # even with the long text's weight
    new = perplexity.score_rolling(model, tokenizer, texts())
    new_bpb = sum(new.nll_sums) / sum(count_bytes(t) for t in texts()) / math.log(2)
    assert new_bpb == pytest.approx(theirs, rel=REL)


def test_text_metrics_refuse_conversation_data_and_perplexity_means_token_perplexity_on_text() -> None:
    from engine.core.errors import EngineError
    from engine.eval import run as evaluate
    from engine.eval.spec import EvalSpec

    spec = EvalSpec(dataset="x", metrics=["perplexity", "bits_per_byte"])
    assert evaluate.choose_metrics(spec, "text") == ["token_perplexity", "bits_per_byte"]
    with pytest.raises(EngineError) as caught:
        evaluate.choose_metrics(spec, "messages")
    assert caught.value.code == protocol.ExitCode.USAGE and "bits_per_byte" in str(caught.value)
    with pytest.raises(EngineError):
        evaluate.choose_metrics(EvalSpec(dataset="x", metrics=["token_f1"]), "text")
    assert evaluate.choose_metrics(EvalSpec(dataset="x"), "messages")[0] == "perplexity"
