"""`evaluate harness`: run lm-evaluation-harness tasks on the base model and each adapter,
offline, and write an evaluation folder the Evaluate page reads like any other.

    evals/<id>/
        tasks/           the task configs as run (shipped ones with their data path resolved)
        harness.json     lm-eval's version, the tasks' configs and lm-eval's own results per model
        examples.jsonl   one line per scored document: input, target, each model's answer and scores
        summary.json     ``metrics`` keyed ``task:metric`` (acc, acc_norm, ...) per model, with a
                         95% interval from lm-eval's standard error

Scoring is lm-eval's (``lm_eval.simple_evaluate`` with ``HFLM`` wrapping the model Tunebench
loaded, the adapter on top), so the numbers are the ones lm-eval itself reports.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.core import errors, paths, protocol, schema, workspace
from engine.core.job import Job
from engine.eval import generation as gen
from engine.eval import harness_data
from engine.eval.options import HarnessOptions
from engine.eval.store import EXAMPLES, SUMMARY, finite, read_summary, write_examples
from engine.runtime import device

log = logging.getLogger("engine.eval.harness")

HARNESS = "harness.json"
DATA_TOKEN = "@DATA@"
DEFAULT_TASK = "tunebench_review_sentiment"
SCRATCH = "tunebench-harness-"
SHIPPED = "shipped"


def shipped_tasks() -> list[str]:
    """The task names shipped with Tunebench (the YAML files' stems)."""
    return sorted(p.stem for p in paths.harness_tasks_dir().glob("*.yaml"))


def resolve_shipped(target: Path) -> None:
    """Copies the shipped task YAMLs into ``target`` with ``@DATA@`` replaced by the shipped
    folder's absolute path. lm-eval hands ``data_files`` to datasets, which reads a relative
    path against the working directory, not the YAML's folder; an absolute path written into
    the copy works from any working directory and wherever Tunebench is installed."""
    source = paths.harness_tasks_dir()
    for yaml_file in sorted(source.glob("*.yaml")):
        text = yaml_file.read_text(encoding="utf-8").replace(DATA_TOKEN, source.resolve().as_posix())
        workspace.atomic_write_text(target / yaml_file.name, text)


def check_yaml(path: Path, need_task: bool = True) -> list[str]:
    """The task names a user's task YAML defines; a file lm-eval cannot read raises one line
    naming the file (and the line, where YAML says which)."""
    import yaml  # a dependency of lm_eval; only this command reads YAML

    try:
        config = _load_task_yaml(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise errors.usage(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except (OSError, yaml.YAMLError, ValueError, ImportError, AttributeError) as exc:
        raise errors.usage(f"{path}: cannot read the task config: {errors.one_line(exc)}") from None
    if not isinstance(config, dict):
        raise errors.usage(f"{path}: a task config is a YAML mapping with a 'task' field")
    task = config.get("task")
    if not need_task:  # a folder may hold templates that other task files include
        return [task] if isinstance(task, str) and task else []
    if isinstance(task, str) and task:
        return [task]
    if "group" in config or isinstance(task, list):
        return [str(config.get("group") or "")] if config.get("group") else []
    raise errors.usage(f"{path}: task: missing (every task config names its task)")


def _load_task_yaml(path: Path) -> Any:
    """The task config as lm-eval's own loader reads it (its ``!function`` tags and ``include``),
    without importing the functions it names: this is a check, not the run."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval 0.4.10 and later
    except ImportError:
        from lm_eval.utils import load_yaml_config  # older lm-eval

        return load_yaml_config(yaml_path=str(path), mode="simple")
    return load_yaml(path, resolve_func=False)


def _include(options: HarnessOptions, scratch: Path) -> tuple[Path | None, list[str], dict[str, str]]:
    """(the folder to include, the tasks a YAML file defines, the workspace datasets it reads)."""
    if not options.include:
        return None, [], {}
    path = Path(options.include).expanduser()
    if path.is_file():
        tasks = check_yaml(path)
    elif path.is_dir():
        for yaml_file in sorted(path.rglob("*.yaml")):
            check_yaml(yaml_file, need_task=False)
        tasks = []
    else:
        raise errors.not_found(f"include: {path} does not exist")
    datasets: dict[str, str] = {}
    if harness_data.uses_datasets(path):
        path, datasets = harness_data.materialize(path, scratch)
    return (path.parent if path.is_file() else path), tasks, datasets


def build_tasks(options: HarnessOptions, scratch: Path) -> tuple[Any, list[str], dict[str, Path], dict[str, str]]:
    """(lm-eval's TaskManager, the task names to run, each task's YAML file, the workspace
    datasets the included tasks read)."""
    from lm_eval.tasks import TaskManager

    include_dir, file_tasks, datasets = _include(options, scratch)
    resolved = scratch / SHIPPED  # apart from the include copy: lm-eval searches include paths recursively
    resolve_shipped(resolved)
    include = [str(resolved)] + ([str(include_dir)] if include_dir else [])
    manager = TaskManager(include_path=include, include_defaults=False)
    # --include FILE without --tasks runs that file's task rather than the default shipped one.
    default = list(options.tasks) == [DEFAULT_TASK]
    names = file_tasks if file_tasks and default else list(options.tasks) or [DEFAULT_TASK]
    index = getattr(manager, "task_index", {})
    missing = [n for n in names if n not in index]
    if missing:
        # Not shipped nor included: one of lm-eval's own tasks (MMLU, HellaSwag, ARC, ...), whose
        # data the user fetched once when online. Indexing lm-eval's ~15,000 task files takes
        # about 10 s, so it happens only when a name needs it.
        manager = TaskManager(include_path=include, include_defaults=True)
        index = getattr(manager, "task_index", {})
        missing = [n for n in names if n not in index]
    if missing:
        known = sorted(shipped_tasks())
        raise errors.usage(f"tasks: unknown task {', '.join(missing)}: not shipped with Tunebench "
                           f"({', '.join(known)}), not in --include, and not one of lm-eval's own tasks")
    # lm-eval 0.4.13 indexes tasks as Entry objects, older versions as dicts.
    files = {n: Path(str(_yaml_path(index[n]) or "")) for n in names}
    return manager, names, files, datasets


def _yaml_path(entry: Any) -> Any:
    return entry.get("yaml_path") if isinstance(entry, dict) else getattr(entry, "yaml_path", None)


def run_harness(options: HarnessOptions, job: Job) -> tuple[Path, dict[str, Any]]:
    """Runs the tasks on every model; returns the evaluation folder and its summary."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=SCRATCH) as scratch:
        manager, names, files, datasets = build_tasks(options, Path(scratch))
        base_spec, refs = gen.resolve_models(options.model, options.adapters)
        base_dir = gen.prepare_base(base_spec)
        device_name = device.pick(options.device)
        tokenizer = gen.load_tokenizer(base_dir)
        log.info("lm-eval %s: %s on %d models (%s)", lm_eval.__version__, ", ".join(names), len(refs), device_name)
        results: dict[str, Any] = {}
        for step, ref in enumerate(refs):
            if job.control.cancelled.is_set():
                raise errors.EngineError(protocol.ExitCode.CANCELLED, "cancelled; nothing was written")
            job.channel.send(protocol.progress(step, len(refs), stage="lm-eval", model=ref.label))
            model = gen.load_model(base_dir, ref, device_name)
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=options.batch_size)
            try:
                out = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager,
                                              limit=options.limit or None, log_samples=True,
                                              bootstrap_iters=1000)
            except Exception as exc:  # lm-eval raises plain exceptions for a bad task or data file
                if isinstance(exc, errors.EngineError):
                    raise
                log.debug("lm-eval failed", exc_info=True)
                raise errors.invalid_input(f"{_files_text(files, options.include)}: lm-eval could not run the task: "
                                           f"{errors.one_line(exc)}{_offline_hint(exc)}") from None
            del model, lm
            results[ref.label] = out
            values = {f"{t}:{m}": v for t, per in _metrics(out).items() for m, (v, _) in per.items()}
            job.channel.send(protocol.metrics(step, finite(values), model=ref.label))
            job.channel.send(protocol.progress(step + 1, len(refs), stage="lm-eval", model=ref.label))
        summary = _summary(options, names, base_spec, device_name, refs, results, lm_eval.__version__)
        summary["harness"]["datasets"] = datasets
        folder = _write(options, summary, names, results, files, started)
    return folder, read_summary(folder) or {}


def _offline_hint(exc: BaseException) -> str:
    """What to do when a task's data is on the Hub and this machine is offline (always, by design)."""
    if "OfflineModeIsEnabled" not in f"{type(exc).__name__} {exc}":
        return ""
    return ("; its data is not in this machine's Hugging Face cache: run the task once with network "
            "(HF_HUB_OFFLINE=0), or point --include at a task YAML over local files")


def _files_text(files: dict[str, Path], include: str | None) -> str:
    """The task files as the user knows them: a shipped one where it ships, an included one that
    read a workspace dataset where the user keeps it, not by the scratch copy that ran."""
    return ", ".join(sorted(str(_shown(p, include)) for p in files.values())) or "tasks"


def _shown(path: Path, include: str | None) -> Path:
    if path.parent.name == SHIPPED:
        return paths.harness_tasks_dir() / path.name
    if include and harness_data.COPY in path.parts and any(p.startswith(SCRATCH) for p in path.parts):
        source = Path(include).expanduser()
        inside = Path(*path.parts[path.parts.index(harness_data.COPY) + 1:])
        return source if source.is_file() else source / inside
    return path


def _metrics(out: dict[str, Any]) -> dict[str, dict[str, tuple[float, float | None]]]:
    """``{task: {metric: (value, stderr)}}`` from lm-eval's results (the ``none`` filter, or the
    first filter a task names)."""
    found: dict[str, dict[str, tuple[float, float | None]]] = {}
    for task, entries in out.get("results", {}).items():
        per: dict[str, tuple[float, float | None]] = {}
        for key, value in entries.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = entries.get(f"{metric}_stderr,{filt}")
            per.setdefault(metric, (float(value), float(stderr) if isinstance(stderr, (int, float)) else None))
        found[task] = per
    return found


def _summary(options: HarnessOptions, names: list[str], base_spec: str, device_name: str, refs: list[Any],
             results: dict[str, Any], version: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for label, out in results.items():
        higher = out.get("higher_is_better", {})
        for task, per in _metrics(out).items():
            for metric, (value, stderr) in per.items():
                entry = metrics.setdefault(f"{task}:{metric}", {
                    "title": f"{task} {metric}",
                    "better": "higher" if higher.get(task, {}).get(metric, True) else "lower",
                    "unit": "0–1" if metric in ("acc", "acc_norm", "exact_match") else "",
                    "definition": f"lm-eval's {metric} on the task {task}; the interval is the value ± 1.96 "
                                  f"standard errors as lm-eval reports them.",
                    "values": {}})
                low = high = None
                if stderr is not None:
                    low, high = value - 1.96 * stderr, value + 1.96 * stderr
                entry["values"][label] = {"estimate": value, "low": low, "high": high, "stderr": stderr}
    first = next(iter(results.values()), {})
    examples = sum(len(first.get("samples", {}).get(t, [])) for t in names)
    return {"kind": "harness", "dataset": ",".join(names), "split": "lm-eval", "examples": examples,
            "base_model": base_spec, "device": device_name,
            "models": [{"label": r.label, "adapter": str(r.adapter or r.model_dir or "")} for r in refs],
            "harness": {"lm_eval_version": version, "tasks": names, "limit": options.limit,
                        "batch_size": options.batch_size},
            "metrics": metrics}


def _rows(names: list[str], results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-document rows in the shape of `evaluate run`'s examples.jsonl."""
    rows: list[dict[str, Any]] = []
    labels = list(results)
    if not labels:
        return rows
    for task in names:
        per_model = {label: results[label].get("samples", {}).get(task, []) for label in labels}
        for i, sample in enumerate(per_model[labels[0]]):
            arguments = sample.get("arguments") or [[""]]
            first = arguments[0] if isinstance(arguments, list) and arguments else [""]
            text = first[0] if isinstance(first, (list, tuple)) and first else str(first)
            choices = _choices(arguments)
            row = {"index": len(rows), "task": task, "doc_id": sample.get("doc_id", i), "input": str(text),
                   "reference": _choice(choices, sample.get("target", "")), "outputs": {}, "metrics": {}}
            for label in labels:
                other = per_model[label][i] if i < len(per_model[label]) else {}
                row["outputs"][label] = _choice(choices, _answer(other))
                row["metrics"][label] = {f"{task}:{m}": other.get(m) for m in sample.get("metrics", [])
                                         if isinstance(other.get(m), (int, float))}
            rows.append(row)
    return rows


def _choices(arguments: Any) -> list[str]:
    """A multiple-choice document's choices: each request is (context, continuation)."""
    if isinstance(arguments, list) and len(arguments) > 1 and all(
            isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[1], str) for a in arguments):
        return [a[1].strip() for a in arguments]
    return []


def _choice(choices: list[str], value: Any) -> str:
    """The choice a target or answer index names, or the value itself as text."""
    text = str(value)
    return choices[int(text)] if choices and text.isdigit() and int(text) < len(choices) else text


def _answer(sample: dict[str, Any]) -> str:
    """What the model answered: the generated text, or the index of the choice it ranked first."""
    filtered = sample.get("filtered_resps") or []
    if filtered and isinstance(filtered[0], str):
        return filtered[0]
    scores = [r[0] if isinstance(r, (list, tuple)) else r for r in filtered]
    if scores and all(isinstance(s, (int, float)) for s in scores):
        return str(max(range(len(scores)), key=lambda k: scores[k]))
    return ""


def _write(options: HarnessOptions, summary: dict[str, Any], names: list[str], results: dict[str, Any],
           files: dict[str, Path], started: float) -> Path:
    eval_id = workspace.new_run_id(options.name or "harness")
    target = paths.evals_dir() / eval_id
    summary = finite({"id": eval_id, "status": "finished", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "seconds": round(time.monotonic() - started, 2), **summary})
    record = {label: {"results": out.get("results", {}), "configs": out.get("configs", {}),
                      "versions": out.get("versions", {}), "n-samples": out.get("n-samples", {})}
              for label, out in results.items()}
    with workspace.atomic_folder(target) as tmp:
        (tmp / "tasks").mkdir()
        for task, source in files.items():
            if source.is_file():
                shutil.copyfile(source, tmp / "tasks" / f"{task}.yaml")
        workspace.atomic_write_json(tmp / HARNESS, finite({
            "lm_eval_version": summary["harness"]["lm_eval_version"], "tasks": names,
            "task_files": _files_text(files, options.include).split(", "), "models": record}))
        write_examples(tmp / EXAMPLES, _rows(names, results))
        workspace.atomic_write_json(tmp / SUMMARY, summary)
    return target


def cmd_harness(args: argparse.Namespace, job: Job) -> int:
    options = schema.from_namespace(HarnessOptions, args)
    folder, summary = run_harness(options, job)
    values = {name: {label: v.get("estimate") for label, v in entry["values"].items()}
              for name, entry in summary.get("metrics", {}).items()}
    for name, per in values.items():
        log.info("%s  %s", name, "  ".join(f"{label}={v:.4f}" for label, v in per.items() if v is not None))
    job.channel.send(protocol.artifact("evaluation", str(folder)))
    job.channel.send(protocol.result({"id": folder.name, "path": str(folder), "tasks": summary["harness"]["tasks"],
                                      "lm_eval_version": summary["harness"]["lm_eval_version"],
                                      "models": [m["label"] for m in summary["models"]], "values": values}))
    return protocol.ExitCode.OK
