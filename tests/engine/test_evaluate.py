"""`evaluate run` on the tiny model: base vs a LoRA adapter trained for a few steps, the
evaluation folder, perplexity equal to engine.eval.perplexity, one-line errors and cancel."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.core import paths, protocol
from engine.core.channel import Channel
from engine.core.control import Control
from engine.eval.spec import EvalSpec

TRAIN_FLAGS = ["--device", "cpu", "--max-steps", "4", "--batch-size", "4", "--learning-rate", "0.01",
               "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--max-length", "128",
               "--save-steps", "100"]


class FakeJob:
    """What the CLI hands a job, with the protocol stream captured in memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.channel = Channel(self.stream, json_mode=True)
        self.control = Control(self.channel)

    def messages(self) -> list[dict]:
        return [protocol.decode(line) for line in self.stream.getvalue().splitlines()]


def engine(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, TUNEBENCH_HOME=str(home), PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with the sample dataset split 90/10 and a 4-step LoRA run on the tiny model."""
    home = tmp_path_factory.mktemp("eval-home")
    done = engine(home, "data", "split", "sample", "--val", "0.1", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    done = engine(home, "train", "--json", "--model", str(tiny_model_dir), "--dataset", "sample-product-reviews@v2",
                  *TRAIN_FLAGS)
    assert done.returncode == 0, done.stderr[-2000:]
    result = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "result")
    return {"home": home, "run_dir": Path(result["data"]["run_dir"]), "model": tiny_model_dir}


@pytest.fixture
def home(trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("TUNEBENCH_HOME", str(trained["home"]))
    yield trained


def small_spec(trained: dict[str, Any], **changes: Any) -> EvalSpec:
    values = dict(dataset="sample-product-reviews@v2", split="validation", model=str(trained["model"]),
                  adapters=[trained["run_dir"].name], max_examples=6, max_new_tokens=8, batch_size=4,
                  metrics=["perplexity", "token_f1", "chrf", "json_field_match"], bootstrap=50, device="cpu")
    values.update(changes)
    return EvalSpec(**values)


def test_base_and_adapter_give_two_columns_with_different_outputs(home) -> None:
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    job = FakeJob()
    folder, summary = evaluate.evaluate(small_spec(home), job)
    assert folder.parent == paths.evals_dir() and not folder.name.startswith(".")
    labels = [m["label"] for m in summary["models"]]
    assert labels == ["base", home["run_dir"].name]
    assert summary["dataset"] == "sample-product-reviews@v2" and summary["split"] == "validation"
    for name in ("perplexity", "token_f1", "chrf", "json_field_match"):
        values = summary["metrics"][name]["values"]
        assert set(values) == set(labels)
        for value in values.values():
            assert value["low"] <= value["estimate"] <= value["high"]
    ppl = summary["metrics"]["perplexity"]["values"]
    assert ppl["base"]["estimate"] != ppl[labels[1]]["estimate"]
    rows = eval_report.read_examples(folder)
    assert len(rows) == 6 and all(set(r["outputs"]) == set(labels) for r in rows)
    assert any(r["outputs"]["base"] != r["outputs"][labels[1]] for r in rows)
    assert all(set(r["metrics"]["base"]) == {"perplexity", "token_f1", "chrf", "json_field_match"} for r in rows)
    assert "sample-product-reviews@v2" in (folder / "spec.toml").read_text()
    kinds = [m["type"] for m in job.messages()]
    assert kinds.count("metrics") == 2 and "progress" in kinds
    progress = [m for m in job.messages() if m["type"] == "progress"]
    assert progress[-1]["current"] == progress[-1]["total"] and "eta_s" in progress[-1]
    assert any(e["id"] == folder.name for e in eval_report.list_evaluations())


def test_perplexity_in_the_evaluation_equals_perplexity_module(home) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.eval import perplexity
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report
    from engine.eval.generation import render_prompt

    folder, summary = evaluate.evaluate(small_spec(home, adapters=[], metrics=["perplexity"]), FakeJob())
    assert summary["generation"]["backends"] == {}  # perplexity alone generates no answers
    version, _, shape, examples = evaluate.load_examples(small_spec(home))
    tokenizer = AutoTokenizer.from_pretrained(str(home["model"]))
    model = AutoModelForCausalLM.from_pretrained(str(home["model"])).eval()
    prompts = [render_prompt(tokenizer, e) for e in examples]
    # The chat template writes its own special tokens; score_texts adds none for this tokenizer.
    direct = perplexity.score_texts(model, tokenizer, prompts, [e.reference for e in examples])
    assert summary["metrics"]["perplexity"]["values"]["base"]["estimate"] == pytest.approx(direct.perplexity, rel=1e-4)
    rows = eval_report.read_examples(folder)
    for i, row in enumerate(rows):
        expected = direct.example_mean_nll(i)
        assert row["metrics"]["base"]["perplexity"] == pytest.approx(2.718281828459045 ** expected, rel=1e-4)


@pytest.mark.parametrize("args, code, words", [
    (["--dataset", "nope"], protocol.ExitCode.NOT_FOUND, "dataset: 'nope'"),
    (["--dataset", "x", "--metrics", "bleu,wer"], protocol.ExitCode.USAGE, "metrics: unknown metric 'wer'"),
    (["--dataset", "x", "--max-new-tokens", "0"], protocol.ExitCode.USAGE, "max_new_tokens: must be at least 1"),
    (["--dataset", "x", "--robustness", "emoji"], protocol.ExitCode.USAGE, "robustness: unknown perturbation"),
    ([], protocol.ExitCode.USAGE, "dataset: is required"),
])
def test_bad_spec_gives_one_error_line_and_its_exit_code(args, code, words, tmp_path) -> None:
    done = engine(tmp_path, "evaluate", "run", "--json", *args, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    errors_ = [m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error"]
    assert len(errors_) == 1 and words in errors_[0]["message"] and "\n" not in errors_[0]["message"]
    assert "Traceback" not in done.stderr


def test_bad_toml_spec_names_the_file_and_field(tmp_path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[evaluate]\ndataset = "x"\nmax_examples = "many"\n', encoding="utf-8")
    done = engine(tmp_path, "evaluate", "run", "--json", "--config", str(spec), timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE
    message = next(m for m in map(protocol.decode, done.stdout.splitlines()) if m["type"] == "error")["message"]
    assert str(spec) in message and "max_examples: must be a whole number" in message


def test_cancel_leaves_no_finished_folder(home) -> None:
    from engine.core import errors
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    before = {e["id"] for e in eval_report.list_evaluations()}
    job = FakeJob()
    original_send = job.channel.send

    def send(message: dict) -> None:
        original_send(message)
        if message["type"] == "progress":  # cancel as soon as the first batch is done
            job.control.cancelled.set()

    job.channel.send = send  # type: ignore[method-assign]
    with pytest.raises(errors.EngineError) as caught:
        evaluate.evaluate(small_spec(home), job)
    assert caught.value.code == protocol.ExitCode.CANCELLED
    assert {e["id"] for e in eval_report.list_evaluations()} == before
    assert not [p for p in paths.evals_dir().iterdir() if p.name.startswith(".")]


def test_cli_run_with_cancel_on_stdin_exits_7(home) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "evaluate",
            "run",
            "--json",
            "--dataset",
            "sample-product-reviews@v2",
            "--split",
            "train",
            "--model",
            str(home["model"]),
            "--max-examples",
            "60",
            "--batch-size",
            "2",
            "--metrics",
            "token_f1",
            "--device",
            "cpu",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None and process.stdin is not None
    for line in process.stdout:
        if protocol.decode(line)["type"] == "progress":
            process.stdin.write(protocol.encode(protocol.make("cancel")))
            process.stdin.flush()
            break
    rest = process.stdout.read()
    assert process.wait(timeout=120) == protocol.ExitCode.CANCELLED
    assert "cancelled" in [m for m in map(protocol.decode, rest.splitlines()) if m["type"] == "error"][0]["message"]
    process.stderr.close()  # type: ignore[union-attr]


def test_hardest_lists_training_rows_by_loss_highest_first(home) -> None:
    from engine.eval import hardest as eval_hardest
    from engine.eval import store as eval_report

    job = FakeJob()
    folder, summary = eval_hardest.hardest(home["run_dir"].name, 5, "train", 8, "cpu", job)
    rows = eval_report.read_examples(folder)
    label = home["run_dir"].name
    losses = [r["metrics"][label]["loss"] for r in rows]
    assert len(rows) == 5 and losses == sorted(losses, reverse=True)
    assert summary["kind"] == "hardest" and summary["scored"] == 216  # the 90% train split
    # The top rows are the highest of all: the set mean is below the smallest listed loss.
    assert summary["metrics"]["loss"]["values"][label]["estimate"] < losses[-1]
    assert len({r["index"] for r in rows}) == 5


def test_classification_slices_and_shuffled_choices_add_up(home, tmp_path) -> None:
    """Label accuracy by log-likelihood, sliced by label: each slice equals the mean of its rows'
    scores in examples.jsonl, and the robustness entry is perturbed minus clean."""
    from engine.data import importer as data_import
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    rows = [{"text": t, "label": label} for t, label in [
        ("Great kettle, boils fast", "positive"), ("Broke after a day", "negative"), ("It is fine", "neutral"),
        ("Love the colour", "positive"), ("Terrible support", "negative"), ("Does the job", "neutral"),
        ("Best purchase this year", "positive")]]
    file = tmp_path / "labels.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data_import.import_file(file, name="labels")
    spec = small_spec(home, dataset="labels", split="auto", adapters=[], metrics=["mc_accuracy", "accuracy"],
                      slice_column="label", robustness=["shuffle_choices"], max_examples=0)
    folder, summary = evaluate.evaluate(spec, FakeJob())
    assert summary["split"] == "all" and summary["examples"] == 7
    table = eval_report.read_examples(folder)
    assert all(r["picks"]["base"] in ("negative", "neutral", "positive") for r in table)
    assert all(r["metrics"]["base"]["mc_accuracy"] == float(r["picks"]["base"] == r["reference"]) for r in table)
    groups = summary["slices"]["groups"]
    assert {k: g["n"] for k, g in groups.items()} == {"positive": 3, "negative": 2, "neutral": 2}
    for label, group in groups.items():
        scores = [r["metrics"]["base"]["mc_accuracy"] for r in table if r["slice"] == label]
        assert group["metrics"]["mc_accuracy"]["base"] == pytest.approx(sum(scores) / len(scores))
    overall = summary["metrics"]["mc_accuracy"]["values"]["base"]["estimate"]
    shuffled = summary["robustness"]["shuffle_choices"]["mc_accuracy"]["base"]
    assert shuffled["clean"] == pytest.approx(overall)
    assert shuffled["delta"] == pytest.approx(shuffled["perturbed"] - shuffled["clean"])
    assert (folder / "spec.toml").read_text().count('split = "all"') == 1


TICKETS = [("Where is my parcel?", "It ships today.", "shipping"), ("Refund please", "Refund sent.", "billing"),
           ("Change my address", "Address changed.", "shipping"), ("Invoice missing", "Invoice resent.", "billing"),
           ("Package damaged", "Replacement sent.", "shipping"), ("Card declined", "Try another card.", "billing"),
           ("Track order", "Here is the link.", "shipping")]


@pytest.fixture
def tagged(home, tmp_path) -> str:
    """A chat dataset whose file has an extra ``category`` column (kept as metadata)."""
    from engine.data import importer as data_import

    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "category": c,
             "priority": i % 2} for i, (q, a, c) in enumerate(TICKETS)]
    file = tmp_path / "tickets.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data_import.import_file(file, name="tickets")[0].ref


def test_slice_by_a_column_of_the_file_counts_its_rows(home, tagged) -> None:
    from collections import Counter

    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    spec = small_spec(home, dataset=tagged, split="auto", metrics=["token_f1", "perplexity"], slice_column="category",
                      max_examples=0)
    folder, summary = evaluate.evaluate(spec, FakeJob())
    groups = summary["slices"]["groups"]
    assert summary["slices"]["column"] == "category"
    assert {k: g["n"] for k, g in groups.items()} == dict(Counter(c for _, _, c in TICKETS))
    labels = [m["label"] for m in summary["models"]]
    table = eval_report.read_examples(folder)
    assert [r["slice"] for r in table] == [c for _, _, c in TICKETS]
    for value, group in groups.items():
        assert set(group["metrics"]["token_f1"]) == set(labels)
        scores = [r["metrics"]["base"]["token_f1"] for r in table if r["slice"] == value]
        assert group["metrics"]["token_f1"]["base"] == pytest.approx(sum(scores) / len(scores))


def test_unknown_slice_column_lists_the_columns_in_one_line(home, tagged) -> None:
    from engine.core import errors
    from engine.eval import run as evaluate

    with pytest.raises(errors.EngineError) as caught:
        evaluate.evaluate(small_spec(home, dataset=tagged, split="auto", slice_column="colour"), FakeJob())
    assert caught.value.code == protocol.ExitCode.USAGE
    assert caught.value.message == (f"slice_column: {tagged} has no column 'colour'; "
                                    "columns: category, priority, reference")


def test_training_ignores_meta(home, tagged) -> None:
    from engine.core.config import TrainConfig
    from engine.train import sft

    data, version, _ = sft.load_training_data(TrainConfig(dataset=tagged))
    assert version.ref == tagged and sorted(data.column_names) == ["completion", "prompt"] and len(data) == 7
    done = engine(home["home"], "train", "--json", "--model", str(home["model"]), "--dataset", tagged,
                  *TRAIN_FLAGS[:2], "--max-steps", "1", *TRAIN_FLAGS[4:])
    assert done.returncode == 0, done.stderr[-2000:]


SENTIMENT_SCHEMA = {"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "mixed"]}},
                    "required": ["sentiment"], "additionalProperties": False}


def _parses_as_sentiment(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) == {"sentiment"} and value["sentiment"] in ("positive", "negative",
                                                                                              "mixed")


def test_json_schema_holds_every_generated_answer_to_it(home, tmp_path) -> None:
    """50 prompts on the tiny random model: unconstrained it writes no JSON; under the schema every
    answer parses and follows it."""
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    schema_file = tmp_path / "sentiment.schema.json"
    schema_file.write_text(json.dumps(SENTIMENT_SCHEMA), encoding="utf-8")
    spec = dict(adapters=[], split="all", max_examples=50, max_new_tokens=40, batch_size=8, metrics=["exact_match"])
    free, _ = evaluate.evaluate(small_spec(home, **spec), FakeJob())
    held, summary = evaluate.evaluate(small_spec(home, json_schema=str(schema_file), **spec), FakeJob())
    free_outputs = [r["outputs"]["base"] for r in eval_report.read_examples(free)]
    held_outputs = [r["outputs"]["base"] for r in eval_report.read_examples(held)]
    assert len(held_outputs) == 50
    assert not any(map(_parses_as_sentiment, free_outputs))
    assert all(map(_parses_as_sentiment, held_outputs)), [t for t in held_outputs if not _parses_as_sentiment(t)]
    assert json.loads(summary["generation"]["json_schema"]) == SENTIMENT_SCHEMA


def test_unreadable_json_schema_fails_in_one_line_before_any_model_loads(home, tmp_path) -> None:
    from engine.core import errors
    from engine.eval import run as evaluate

    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": ', encoding="utf-8")
    job = FakeJob()
    with pytest.raises(errors.EngineError) as caught:
        evaluate.evaluate(small_spec(home, json_schema=str(bad)), job)
    assert str(bad) in caught.value.message and "\n" not in caught.value.message
    assert not [m for m in job.messages() if m["type"] == "progress"]


@pytest.fixture
def no_system_rows(home, tmp_path) -> str:
    """The sample's rows with their system turn taken out, imported as a dataset."""
    sample = Path(__file__).resolve().parents[2] / "resources" / "sample_data" / "product_reviews.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()[:8]]
    file = tmp_path / "nosystem.jsonl"
    file.write_text("".join(json.dumps({"messages": [m for m in r["messages"] if m["role"] != "system"]}) + "\n"
                            for r in rows), encoding="utf-8")
    done = engine(home["home"], "data", "import", str(file), "--name", "nosystem")
    assert done.returncode == 0, done.stderr[-2000:]
    return "nosystem@v1"


def test_rows_without_a_system_turn_are_asked_with_the_adapters_trained_one(home, no_system_rows) -> None:
    from engine.eval import run as evaluate

    trained_with = json.loads((home["run_dir"] / "run.json").read_text(encoding="utf-8"))["system_prompt"]
    assert trained_with.startswith("Read the product review")
    spec = dict(dataset=no_system_rows, split="all", max_examples=8, metrics=["perplexity"])
    _, default = evaluate.evaluate(small_spec(home, **spec), FakeJob())
    _, explicit = evaluate.evaluate(small_spec(home, system_prompt=trained_with, **spec), FakeJob())
    _, other = evaluate.evaluate(small_spec(home, system_prompt="You are a pirate.", **spec), FakeJob())
    label = home["run_dir"].name
    assert default["generation"]["system_prompts"] == {"base": trained_with, label: trained_with}
    ppl = {name: s["metrics"]["perplexity"]["values"] for name, s in
           (("default", default), ("explicit", explicit), ("other", other))}
    for model in ("base", label):
        assert ppl["default"][model]["estimate"] == pytest.approx(ppl["explicit"][model]["estimate"], rel=1e-6)
        assert ppl["default"][model]["estimate"] != pytest.approx(ppl["other"][model]["estimate"], rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (installer/bootstrap.py setup builds it)")
def test_a_gguf_base_generates_in_llama_cpp_with_transformers_answers(home, tiny_gguf, tmp_path) -> None:
    """The tiny model as an F32 GGUF file, with the run's adapter: llama.cpp (auto) gives the same
    greedy answers as transformers, a JSON schema holds there too, and with generation metrics
    only the GGUF file is never converted for transformers."""
    from engine.eval import run as evaluate
    from engine.eval import store as eval_report

    spec = dict(model=str(tiny_gguf), metrics=["token_f1", "exact_match"], batch_size=1, max_new_tokens=12)
    llama, summary = evaluate.evaluate(small_spec(home, **spec), FakeJob())
    assert set(summary["generation"]["backends"].values()) == {"llama.cpp"}
    assert not any(paths.models_cache_dir().glob("tiny-f32-*"))  # never converted
    plain, other = evaluate.evaluate(small_spec(home, backend="transformers", **spec), FakeJob())
    assert set(other["generation"]["backends"].values()) == {"transformers"}
    outputs = [r["outputs"] for r in eval_report.read_examples(llama)]
    assert outputs == [r["outputs"] for r in eval_report.read_examples(plain)]
    assert any(o["base"] != o[home["run_dir"].name] for o in outputs)  # the adapter is on in llama.cpp
    schema_file = tmp_path / "sentiment.schema.json"
    schema_file.write_text(json.dumps(SENTIMENT_SCHEMA), encoding="utf-8")
    held, _ = evaluate.evaluate(small_spec(home, json_schema=str(schema_file), **dict(spec, max_new_tokens=40)),
                                FakeJob())
    assert all(_parses_as_sentiment(o) for r in eval_report.read_examples(held) for o in r["outputs"].values())
