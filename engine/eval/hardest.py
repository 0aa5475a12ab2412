"""`evaluate hardest RUN`: the training examples the tuned model still finds hardest.

After a run, every row of the run's training split is scored with the run's adapter (mean NLL of
the answer tokens, forward passes only) and the ``--top`` rows with the highest loss are written
for review: mislabelled rows, outliers and under-represented cases collect at the top. It is
the cheapest form of active learning: fix or add data where the model struggles.

The result is an evaluation folder like `evaluate run`'s (summary.json with ``kind: hardest``,
examples.jsonl sorted by loss, highest first), so it is listed and opened the same way.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Any

from engine.core import errors, paths, protocol, workspace
from engine.core.job import Job
from engine.data import importer as data_import
from engine.data import split as data_split
from engine.eval import generation as gen
from engine.eval import spec as specs
from engine.eval.examples import to_examples
from engine.eval.store import (
    EXAMPLES,
    SPEC,
    SUMMARY,
    finite,
    read_examples,
    write_examples,
)
from engine.runtime import device

log = logging.getLogger("engine.eval.run")

LOSS = "loss"


def _run_and_data(run_ref: str, split: str) -> tuple[workspace.RunFolder, Any, Any]:

    run = workspace.open_run(run_ref)
    if run is None:
        raise errors.not_found(f"run: {run_ref!r} is not a run id or run folder")
    info = run.info()
    if not info.get("dataset"):
        raise errors.invalid_input(f"run: {run.id} does not record its dataset")
    version = data_import.resolve(str(info["dataset"]))
    return run, version, data_split.load_split(version, split)


def hardest(run_ref: str, top: int, split: str, batch_size: int, device_spec: str, job: Job) -> tuple[Any, dict]:
    """Scores every row of the run's split; writes the ``top`` highest-loss rows."""

    started = time.monotonic()
    run, version, data = _run_and_data(run_ref, split)
    examples = [e for e in to_examples(list(data), version.manifest.get("shape", "")) if e.messages]
    if not examples:
        raise errors.invalid_input(f"dataset: {version.ref} has no prompt/answer rows to score")
    base_spec, refs = gen.resolve_models("", [run.id])
    base_dir = gen.prepare_base(str(run.info().get("model_dir") or base_spec))
    device_name = device.pick(device_spec)
    tokenizer = gen.load_tokenizer(base_dir)
    model = gen.load_model(base_dir, refs[1], device_name)
    eta = gen.Eta(len(examples))

    def on_rows(rows: int) -> None:
        left = eta.advance(rows)
        job.channel.send(protocol.progress(eta.done, eta.total, stage="loss", model=refs[1].label, eta_s=left))

    nll = gen.answer_nll(model, tokenizer, examples, batch_size, job.control.cancelled, on_rows)
    losses = [nll.example_mean_nll(i) for i in range(len(examples))]
    order = sorted(range(len(examples)), key=lambda i: -losses[i] if losses[i] == losses[i] else math.inf)
    label = refs[1].label
    rows = [{"index": examples[i].index, "input": examples[i].input, "reference": examples[i].reference,
             "outputs": {label: ""}, "metrics": {label: {LOSS: losses[i]}}} for i in order[:top]]
    summary = finite({"kind": "hardest", "status": "finished", "run": run.id, "dataset": version.ref,
                      "split": split, "examples": len(rows), "scored": len(examples),
                      "models": [{"label": label, "adapter": str(refs[1].adapter or refs[1].model_dir)}],
                      "metrics": {LOSS: {"title": "Training loss (answer NLL)", "better": "lower", "unit": "nats",
                                         "definition": "Mean negative log-likelihood per answer token under the "
                                         "tuned model; the highest are listed first.",
                                         "values": {label: {"estimate": nll.mean_nll, "low": None, "high": None}}}},
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - started, 2)})
    eval_id = workspace.new_run_id(f"hardest-{run.id}")
    target = paths.evals_dir() / eval_id
    summary["id"] = eval_id
    spec = specs.EvalSpec(dataset=version.ref, split=split, model=base_spec, adapters=[run.id],
                          max_examples=top, batch_size=batch_size, device=device_spec, name=f"hardest-{run.id}")
    with workspace.atomic_folder(target) as tmp:
        workspace.atomic_write_text(tmp / SPEC, specs.to_toml(spec, f"Hardest training examples of run {run.id}"))
        write_examples(tmp / EXAMPLES, rows)
        workspace.atomic_write_json(tmp / SUMMARY, summary)
    return target, summary


def cmd_hardest(args: argparse.Namespace, job: Job) -> int:
    if args.top < 1:
        raise errors.usage(f"top: must be at least 1, not {args.top}")
    if args.batch_size < 1:
        raise errors.usage(f"batch_size: must be at least 1, not {args.batch_size}")
    folder, summary = hardest(args.run, args.top, args.split, args.batch_size, args.device, job)
    for row in _top_lines(folder):
        log.info("%s", row)
    job.channel.send(protocol.artifact("evaluation", str(folder)))
    job.channel.send(protocol.result({"id": folder.name, "path": str(folder), "run": summary["run"],
                                      "dataset": summary["dataset"], "examples": summary["examples"]}))
    return protocol.ExitCode.OK


def _top_lines(folder: Any) -> list[str]:

    lines = []
    for row in read_examples(folder)[:10]:
        loss = next(iter(row["metrics"].values()))[LOSS]
        lines.append(f"loss {loss:.3f}  row {row['index']}: {row['input'][:70]!r}")
    return lines
