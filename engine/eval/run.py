"""`evaluate run`: score the base model and each adapter on the same split with the same
settings, and write an evaluation folder.

    evals/<id>/
        spec.toml        the resolved spec (dataset pinned to the version used)
        examples.jsonl   one line per row: input, reference, each model's output, per-row metrics
        summary.json     each metric per model with a 95% bootstrap interval, slices, robustness

The folder is filled in a temp folder and renamed into place at the end, so a cancelled or
failed evaluation leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from engine.core import errors, paths, protocol, schema, workspace
from engine.core.job import Job
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.eval import generation as gen
from engine.eval import llama_generation
from engine.eval import spec as specs
from engine.eval.catalog import TEXT_METRICS, TOKEN_PERPLEXITY
from engine.eval.examples import EvalExample, slice_columns, slice_value, to_examples
from engine.eval.generation import Eta
from engine.eval.robust import perturb
from engine.eval.score import (
    MC_ACCURACY,
    PERPLEXITY,
    ModelOutputs,
    count_bytes,
    count_words,
    default_metrics,
    generation_metrics,
    known_metrics,
    row_score,
    subset_value,
    summarize,
)
from engine.eval.store import (
    EXAMPLES,
    SPEC,
    SUMMARY,
    finite,
    list_evaluations,
    read_summary,
    write_examples,
)
from engine.infer import structured
from engine.runtime import device

log = logging.getLogger("engine.eval.run")


# -- the spec --------------------------------------------------------------------------------

def resolve_spec(args: argparse.Namespace) -> specs.EvalSpec:
    """defaults < --config TOML < flags; a bad value raises USAGE naming the field."""
    try:
        spec = specs.load_toml(Path(args.config).expanduser()) if args.config else specs.EvalSpec()
        spec = specs.from_mapping(schema.given(specs.EvalSpec, args), spec, source="flags")
        specs.check(spec, known_metrics())
    except specs.SpecError as exc:
        raise errors.usage(str(exc)) from None
    return spec


def load_examples(spec: specs.EvalSpec) -> tuple[Any, str, str, list[EvalExample]]:
    """(dataset version, split used, shape, examples), at most ``max_examples`` of them."""

    version = data_import.resolve(spec.dataset)
    split = spec.split
    if split == specs.SPLIT_AUTO:
        split = _auto_split(version)
    data = data_split.load_rows(version, "" if split == "all" else split)
    if spec.max_examples:
        data = data.select(range(min(spec.max_examples, len(data))))
    shape = version.manifest.get("shape", "")
    try:
        examples = to_examples(list(data), shape)
    except (ValueError, KeyError) as exc:
        raise errors.invalid_input(f"dataset: {version.ref}: {exc}") from None
    if not examples:
        raise errors.invalid_input(f"dataset: {version.ref} split {split} has no rows")
    return version, split, shape, examples


def _auto_split(version: Any) -> str:
    splits = version.manifest.get("splits") or {}
    for name in ("test", "validation"):
        if name in splits:
            return name
    log.warning("%s is not split: scoring all rows, including any a run trained on "
                "(make a held-out split with: tunebench-engine data split %s)", version.ref, version.ref)
    return "all"


def check_slice_column(spec: specs.EvalSpec, ref: str, examples: list[EvalExample]) -> None:
    """Refuses a slice column no row has (before any model loads), listing those that exist:
    the rows' own scalar columns, the metadata kept at import, and ``reference``."""
    known = slice_columns(examples)
    if spec.slice_column and spec.slice_column not in known:
        raise errors.usage(f"slice_column: {ref} has no column {spec.slice_column!r}; "
                           f"columns: {', '.join(known)}")


def choose_metrics(spec: specs.EvalSpec, shape: str) -> list[str]:
    names = spec.metrics or default_metrics(shape)
    if shape == "text":
        # "perplexity" (answer perplexity) in an older spec: a text row's answer is its whole text.
        names = list(dict.fromkeys(TOKEN_PERPLEXITY if n == PERPLEXITY else n for n in names))
        other = [n for n in names if n not in TEXT_METRICS]
        if other:
            raise errors.usage(f"metrics: a text dataset has no prompts to answer, so {', '.join(other)} "
                               f"cannot be scored; only {', '.join(TEXT_METRICS)} apply")
    elif any(n in TEXT_METRICS for n in names):
        raise errors.usage(f"metrics: {', '.join(n for n in names if n in TEXT_METRICS)} score raw text and "
                           f"need a text dataset; rows with a prompt have answer perplexity ({PERPLEXITY})")
    if MC_ACCURACY in names and shape != "classification":
        raise errors.usage(f"metrics: {MC_ACCURACY} needs a classification dataset (text, label)")
    return names


# -- running ---------------------------------------------------------------------------------

class Runner:
    """Runs one model over the rows: generation (clean and perturbed), label ranking, answer
    perplexity and the raw-text NLL of text rows, with progress and ETA across the whole
    evaluation."""

    def __init__(self, spec: specs.EvalSpec, names: Sequence[str], examples: list[EvalExample],
                 models: int, job: Job) -> None:

        self.spec, self.names, self.examples, self.job = spec, list(names), examples, job
        self.variants = {p: perturb(examples, p, spec.seed) for p in spec.robustness}
        per_set = int(bool(generation_metrics(names))) + int(MC_ACCURACY in names)
        likelihood = PERPLEXITY in names or any(n in TEXT_METRICS for n in names)
        per_model = len(examples) * (int(likelihood) + per_set * (1 + len(self.variants)))
        self.eta = Eta(per_model * models)
        self.label = ""
        self._llama: Any = None
        self._last_tenth = 0
        # "", "any" or a schema's text, read now: a bad schema file fails before any model loads.
        self.json_schema = structured.from_flag(spec.json_schema)

    def progress(self, stage: str) -> Any:
        def on_rows(rows: int) -> None:
            eta = self.eta.advance(rows)
            self.job.channel.send(protocol.progress(self.eta.done, self.eta.total, stage=stage,
                                                    model=self.label, eta_s=eta))
            tenth = self.eta.done * 10 // self.eta.total
            if not self.job.channel.json_mode and tenth > self._last_tenth:
                # A terminal shows no progress messages: a line per tenth of the work instead.
                self._last_tenth = tenth
                log.info("%3d%%  %s: %s  (about %s s left)", tenth * 10, self.label, stage,
                         "?" if eta is None else round(eta))
        return on_rows

    def run(self, model: Any, tokenizer: Any, label: str, system: str = "", llama: Any = None) -> ModelOutputs:
        """Scores one model; ``system`` is the system turn its rows without one are asked with;
        ``llama`` (a llama.cpp target) generates its answers instead of ``model``."""
        self.label, self._llama = label, llama
        out, cancelled = ModelOutputs(), self.job.control.cancelled
        examples = with_system(self.examples, system)
        variants = {name: with_system(rows, system) for name, rows in self.variants.items()}
        if generation_metrics(self.names):
            out.texts = self._generate(model, tokenizer, examples, "generate")
            for name, rows in variants.items():
                out.perturbed_texts[name] = self._generate(model, tokenizer, rows, f"generate ({name})")
        if MC_ACCURACY in self.names:
            out.picks = gen.choice_predictions(model, tokenizer, examples, cancelled, self.progress("rank labels"))
            for name, rows in variants.items():
                out.perturbed_picks[name] = gen.choice_predictions(model, tokenizer, rows, cancelled,
                                                                   self.progress(f"rank labels ({name})"))
        if PERPLEXITY in self.names:
            nll = gen.answer_nll(model, tokenizer, examples, self.spec.batch_size, cancelled,
                                 self.progress("perplexity"))
            out.nll_sums, out.token_counts = nll.nll_sums, nll.token_counts
        if any(n in TEXT_METRICS for n in self.names):
            nll = gen.text_nll(model, tokenizer, self.examples, self.spec.batch_size, cancelled,
                               self.progress("perplexity (text)"))
            out.nll_sums, out.token_counts = nll.nll_sums, nll.token_counts
            out.word_counts = [count_words(e.reference) for e in self.examples]
            out.byte_counts = [count_bytes(e.reference) for e in self.examples]
        return out

    def _generate(self, model: Any, tokenizer: Any, rows: list[EvalExample], stage: str) -> list[str]:
        if self._llama is not None:
            return llama_generation.generate(
                self._llama, [gen.render_prompt(self._llama.tokenizer, e) for e in rows],
                max_new_tokens=self.spec.max_new_tokens, json_schema=self.json_schema,
                cancelled=self.job.control.cancelled, on_rows=self.progress(stage))
        prompts = [gen.render_prompt(tokenizer, e) for e in rows]
        return gen.generate_batched(model, tokenizer, prompts, max_new_tokens=self.spec.max_new_tokens,
                                    batch_size=self.spec.batch_size, cancelled=self.job.control.cancelled,
                                    on_rows=self.progress(stage), json_schema=self.json_schema)


def with_system(examples: list[EvalExample], system: str) -> list[EvalExample]:
    """``examples`` with ``system`` as the first turn of every chat row that has no system turn."""
    if not system:
        return examples
    turn = {"role": "system", "content": system}
    return [replace(e, messages=(turn, *e.messages))
            if e.messages and not any(m["role"] == "system" for m in e.messages) else e for e in examples]


def system_prompts(spec: specs.EvalSpec, refs: Sequence[gen.ModelRef]) -> dict[str, str]:
    """The system turn each model's rows without one get: the spec's when it sets one, else the
    one each adapter's run trained with, so a tuned model is asked the way it was taught. The base
    model gets the first adapter's, so base and tuned answer the same prompts."""
    if spec.system_prompt:
        return {ref.label: spec.system_prompt for ref in refs}
    first = next((ref.trained_system_prompt for ref in refs if ref.trained_system_prompt), "")
    return {ref.label: ref.trained_system_prompt if ref.adapter or ref.model_dir else first for ref in refs}


def evaluate(spec: specs.EvalSpec, job: Job, with_base: bool = True) -> tuple[Path, dict[str, Any]]:
    """Runs the evaluation; returns the finished folder and its summary. ``with_base=False``
    scores only the adapters (a sweep scores each trial's adapter; the base is the same every
    time)."""

    started = time.monotonic()
    version, split, shape, examples = load_examples(spec)
    check_slice_column(spec, version.ref, examples)
    names = choose_metrics(spec, shape)
    base_spec, refs = gen.resolve_models(spec.model, spec.adapters, with_base)
    device_name = device.pick(spec.device)
    pool = llama_generation.pool_for(spec.backend, base_spec, device_name) if generation_metrics(names) else None
    # Only generation through llama.cpp: the GGUF file is never converted for transformers.
    llama_only = pool is not None and set(names) <= set(generation_metrics(names))
    needs_transformers = not llama_only or not all(llama_generation.runs_here(pool, r, spec.backend) for r in refs)
    base_dir = gen.prepare_base(base_spec) if needs_transformers else None
    tokenizer = gen.load_tokenizer(base_dir) if base_dir is not None else None
    log.info("Evaluating %d models on %s (%s, %d rows) on %s: %s", len(refs), version.ref, split,
             len(examples), device_name, ", ".join(names))
    runner = Runner(spec, names, examples, len(refs), job)
    systems = system_prompts(spec, refs)
    outputs: dict[str, ModelOutputs] = {}
    backends = {}
    for step, ref in enumerate(refs):
        llama = llama_generation.target_for(pool, base_spec, ref, spec.backend)
        model = None if llama is not None and llama_only else gen.load_model(base_dir, ref, device_name)
        outputs[ref.label] = runner.run(model, tokenizer, ref.label, systems[ref.label], llama)
        if generation_metrics(names):  # perplexity alone generates nothing
            backends[ref.label] = "llama.cpp" if llama is not None else "transformers"
        del model
        _send_metrics(job, step, ref.label, names, outputs[ref.label], examples, spec)
    references = [e.reference for e in examples]
    slice_values = [slice_value(e, spec.slice_column) for e in examples] if spec.slice_column else None
    pinned = replace(spec, dataset=version.ref, split=split, model=base_spec)
    summary = {"dataset": version.ref, "split": split, "shape": shape, "examples": len(examples),
               "base_model": base_spec, "device": device_name,
               "models": [{"label": r.label, "adapter": str(r.adapter or r.model_dir or "")} for r in refs],
               "generation": {"max_new_tokens": spec.max_new_tokens, "decoding": "greedy",
                              "batch_size": spec.batch_size, "json_schema": runner.json_schema,
                              "system_prompts": systems, "backends": backends},
               **summarize(names, outputs, references, slice_values, spec)}
    folder = _write(pinned, summary, examples, outputs, names, slice_values, started)
    return folder, read_summary(folder) or {}


def _send_metrics(job: Job, step: int, label: str, names: Sequence[str], out: ModelOutputs,
                  examples: list[EvalExample], spec: specs.EvalSpec) -> None:

    rows = list(range(len(examples)))
    refs = [e.reference for e in examples]
    values = {n: subset_value(n, out.texts, out.picks, out, refs, rows, spec) for n in names}
    job.channel.send(protocol.metrics(step, finite(values), model=label))


def _write(spec: specs.EvalSpec, summary: dict[str, Any], examples: list[EvalExample],
           outputs: dict[str, ModelOutputs], names: Sequence[str], slice_values: Sequence[str] | None,
           started: float) -> Path:
    eval_id = workspace.new_run_id(spec.name or spec.dataset.replace("@", "-"))
    target = paths.evals_dir() / eval_id
    summary = finite({"id": eval_id, "status": "finished", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "seconds": round(time.monotonic() - started, 2), **summary})
    with workspace.atomic_folder(target) as tmp:
        workspace.atomic_write_text(tmp / SPEC, specs.to_toml(spec, f"Evaluation {eval_id}"))
        write_examples(tmp / EXAMPLES, _rows(examples, outputs, names, slice_values, spec))
        workspace.atomic_write_json(tmp / SUMMARY, summary)
    return target


def _rows(examples: list[EvalExample], outputs: dict[str, ModelOutputs], names: Sequence[str],
          slice_values: Sequence[str] | None, spec: specs.EvalSpec) -> list[dict[str, Any]]:
    rows = []
    for i, example in enumerate(examples):
        row: dict[str, Any] = {"index": example.index, "input": example.input, "reference": example.reference,
                               "outputs": {label: _shown_output(out, i) for label, out in outputs.items()},
                               "metrics": {label: {n: row_score(n, out, i, example.reference, spec) for n in names}
                                           for label, out in outputs.items()}}
        if any(out.picks for out in outputs.values()):  # the label each model ranked most likely
            row["picks"] = {label: out.picks[i] for label, out in outputs.items() if out.picks}
        if slice_values is not None:
            row["slice"] = slice_values[i]
        rows.append(row)
    return rows


def _shown_output(out: ModelOutputs, i: int) -> str:
    if out.texts:
        return out.texts[i]
    return out.picks[i] if out.picks else ""


# -- command handlers ------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, job: Job) -> int:
    spec = resolve_spec(args)
    folder, summary = evaluate(spec, job)
    labels = [m["label"] for m in summary["models"]]
    values = {name: {label: entry["values"][label]["estimate"] for label in labels}
              for name, entry in summary["metrics"].items()}
    for line in summary_table(labels, values):
        log.info("%s", line)
    job.channel.send(protocol.artifact("evaluation", str(folder)))
    # The full summary is in the folder; the result carries what a caller needs to find it.
    job.channel.send(protocol.result({"id": folder.name, "path": str(folder), "dataset": summary["dataset"],
                                      "split": summary["split"], "examples": summary["examples"],
                                      "models": labels, "values": values}))
    return protocol.ExitCode.OK


def summary_table(labels: Sequence[str], values: dict[str, dict[str, Any]]) -> list[str]:
    """A plain-text table, one metric per line, one column per model (for the terminal)."""
    width = max([len(name) for name in values] + [6])
    lines = [" " * width + "".join(f"  {label[:24]:>24}" for label in labels)]
    for name, per_model in values.items():
        cells = "".join(
            f"  {'-' if per_model[label] is None else format(per_model[label], '.4f'):>24}" for label in labels
        )
        lines.append(f"{name:<{width}}{cells}")
    return lines


def cmd_list(args: argparse.Namespace, job: Job) -> int:
    job.channel.send(protocol.result({"evaluations": list_evaluations()}))
    return protocol.ExitCode.OK
