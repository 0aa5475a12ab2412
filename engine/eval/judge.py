"""`evaluate judge`: an LLM judges an evaluation's generations, pairwise or one answer at a time.

The judge is a local model (loaded as `evaluate run` loads models, engine/eval/generation.py,
and run greedily by the playground's decoder with the verdict's JSON Schema enforced) or any
OpenAI-compatible server (the official ``openai`` client; `tunebench-engine serve` is one).
Prompts are the presets in ``resources/judge/`` or the spec's own ``prompt``.

- **pairwise**: every row is judged twice, once with model A's answer shown first and once with
  model B's first, to cancel position bias. The two verdicts, mapped back to the models, combine
  by this rule: both prefer B = B wins, both prefer A = A wins, anything else (a verdict that
  flips with the order, or one tie) = tie. A row where either verdict cannot be parsed counts as
  unparseable and is left out of the rates.
- **single**: every answer of both models gets a 1-10 score; the report has each model's mean
  score.
- ``with_reference``: the row's reference answer goes into the prompt (reference-guided).

Verdicts are asked for as JSON (``{"verdict": "A"|"B"|"tie", "reason": ...}`` or ``{"score": n,
"reason": ...}``); a server is first asked with a JSON-schema ``response_format``. Parsing is
strict: a reply that is not such an object is counted as unparseable and shown, never guessed.

Writes into the evaluation folder, atomically: ``judge.jsonl`` (per row: both verdicts, the
judge's reasons, the combined outcome) and ``judge.json`` (the summary: rates or mean scores
with bootstrap intervals, unparseable count). A new judging pass replaces the previous one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.core import errors, paths, protocol, schema, untrusted, workspace
from engine.core.job import Job
from engine.eval import generation as gen
from engine.eval import judge_spec as specs
from engine.eval.metrics import bootstrap_mean_ci
from engine.eval.store import (
    EXAMPLES,
    JUDGE_REPORT,
    JUDGE_VERDICTS,
    SUMMARY,
    evaluation_folder,
    read_examples,
    read_summary,
    write_examples,
)
from engine.infer import ratings
from engine.infer.decode import Decoder
from engine.infer.params import SamplingParams
from engine.runtime import device

log = logging.getLogger("engine.eval.judge")

PLACEHOLDERS = ("question", "answer_a", "answer_b", "answer", "reference")

VERDICT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["verdict", "reason"],
                  "properties": {"verdict": {"type": "string", "enum": ["A", "B", "tie"]},
                                 "reason": {"type": "string"}}}
SCORE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["score", "reason"],
                "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                               "reason": {"type": "string"}}}

# A reason as plain characters: no quote, backslash or control character, so that each character
# is one JSON character and the reply's length in characters bounds its length in tokens.
PLAIN_TEXT = r'^[^"\\\x00-\x1f]*$'

Ask = Callable[[list[str]], list[str]]  # prompts in, the judge's raw replies out (same order)


# -- prompts and verdicts ----------------------------------------------------------------------

def preset_name(mode: str, with_reference: bool) -> str:
    return mode + ("_reference" if with_reference else "")


def preset_text(mode: str, with_reference: bool) -> str:
    """The bundled prompt template of a mode."""
    path = paths.resources_dir() / "judge" / f"{preset_name(mode, with_reference)}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.not_found(f"prompt: cannot read the preset {path}: {exc.strerror or exc}; give the "
                               f"prompt yourself") from None


def fill(template: str, **values: str) -> str:
    """The template with each ``{name}`` placeholder replaced (other braces stay as written)."""
    return re.sub(r"\{(" + "|".join(PLACEHOLDERS) + r")\}", lambda m: values.get(m.group(1), m.group(0)), template)


def parse_verdict(text: str, mode: str) -> dict[str, Any] | None:
    """``{"verdict": "A"|"B"|"tie", "reason": str}`` (pairwise) or ``{"score": 1..10, "reason":
    str}`` (single) from a reply that is exactly one JSON object (a ```json fence around it is
    allowed); None for anything else."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = untrusted.json_loads(body)  # the judge's reply is untrusted text (InputError is a ValueError)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return None
    if mode == "pairwise":
        verdict = data.get("verdict")
        if not isinstance(verdict, str) or verdict.strip().lower() not in ("a", "b", "tie"):
            return None
        value = verdict.strip()
        return {"verdict": "tie" if value.lower() == "tie" else value.upper(), "reason": reason}
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != int(score) or not 1 <= score <= 10:
        return None
    return {"score": int(score), "reason": reason}


def combine(first: str | None, second: str | None) -> str | None:
    """The outcome for model B of one row from the two orders' verdicts: ``first`` shows A's
    answer as "A", ``second`` shows B's answer as "A". "win" (B better in both orders), "loss"
    (A better in both), "tie" (otherwise: a flip with the order, or a tie); None if either is
    unparseable."""
    if first is None or second is None:
        return None
    b_first = {"B": 1, "A": -1, "tie": 0}[first]
    b_second = {"A": 1, "B": -1, "tie": 0}[second]
    if b_first == b_second == 1:
        return "win"
    if b_first == b_second == -1:
        return "loss"
    return "tie"


def _prompt_key(prompt: Any) -> str:
    """A prompt as text for matching: the last user turn of chat messages, or the raw text."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        prompt = users[-1] if users else ""
    return str(prompt or "").strip()


def human_agreement(rows: Sequence[dict[str, Any]], outcomes: Sequence[str | None], label_a: str, label_b: str,
                    ratings: Sequence[Any]) -> dict[str, Any]:
    """Agreement of the judge with the Prompt page's A/B ratings (engine/infer/ratings.py) on the
    rows whose prompt and two answers a person compared: Cohen's kappa over win/tie/loss and the
    share of equal labels. Rows without a matching rating, or judged unparseable, are left out."""
    picks: dict[tuple[str, str, str], str] = {}
    for rating in ratings:
        if rating.kind == "ab":
            key = _prompt_key(rating.prompt)
            picks[(key, rating.answer, rating.other_answer)] = "chosen"
    human, judged = [], []
    for row, outcome in zip(rows, outcomes):
        if outcome is None:
            continue
        key, a, b = _prompt_key(row.get("input")), row["outputs"][label_a], row["outputs"][label_b]
        if a == b:
            continue
        if (key, b, a) in picks:
            human.append("win")
        elif (key, a, b) in picks:
            human.append("loss")
        else:
            continue
        judged.append(outcome)
    result: dict[str, Any] = {"rows": len(human), "kappa": None, "agreement": None}
    if human:
        result["agreement"] = sum(h == j for h, j in zip(human, judged)) / len(human)
    if len(human) >= 2 and len(set(human) | set(judged)) > 1:
        from sklearn.metrics import cohen_kappa_score

        kappa = float(cohen_kappa_score(human, judged, labels=["win", "tie", "loss"]))
        result["kappa"] = kappa if kappa == kappa else None  # nan when one side has one label only
    return result


def rate_intervals(outcomes: Sequence[str], n_resamples: int, seed: int) -> dict[str, dict[str, float]]:
    """Win, tie and loss rates (of model B) with 95% percentile-bootstrap intervals; the rows are
    resampled, the same resamples for the three rates."""
    out = {}
    for name in ("win", "tie", "loss"):
        ci = bootstrap_mean_ci([float(o == name) for o in outcomes], n_resamples=n_resamples, seed=seed)
        out[name] = {"estimate": ci.estimate, "low": ci.low, "high": ci.high}
    return out


# -- the judges --------------------------------------------------------------------------------

def server_judge(spec: specs.JudgeSpec, mode: str, job: Job) -> Ask:
    """Asks an OpenAI-compatible server, one request per prompt, temperature 0."""
    try:
        import openai  # heavy: only the server path needs it
    except ImportError:
        raise errors.missing_dependency("base_url: judging with a server needs the openai package "
                                        "(pip install openai)") from None
    key = spec.api_key or os.environ.get("OPENAI_API_KEY") or "none"
    # The client's retry notices are not the user's: the one-line error says what failed.
    logging.getLogger("openai").setLevel(logging.WARNING)
    client = openai.OpenAI(base_url=spec.base_url, api_key=key, timeout=600, max_retries=1)
    try:
        model = spec.server_model or client.models.list().data[0].id
    except (openai.OpenAIError, IndexError) as exc:
        raise errors.not_found(f"base_url: no model from {spec.base_url}/models: {errors.one_line(exc)}") from None
    schema_fmt = {"type": "json_schema", "json_schema": {
        "name": "verdict", "strict": True, "schema": VERDICT_SCHEMA if mode == "pairwise" else SCORE_SCHEMA}}
    constrained = [True]

    def one(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        options: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0,
                                   "max_tokens": spec.max_new_tokens}
        try:
            if constrained[0]:
                try:
                    reply = client.chat.completions.create(response_format=schema_fmt, **options)
                except openai.BadRequestError as exc:  # the server has no structured output
                    log.info("the judge server refused a JSON-schema response_format (%s); asking in the "
                             "prompt only", errors.one_line(exc))
                    constrained[0] = False
                    reply = client.chat.completions.create(**options)
            else:
                reply = client.chat.completions.create(**options)
        except openai.APIConnectionError as exc:
            raise errors.not_found(f"base_url: cannot reach {spec.base_url}: {errors.one_line(exc)}") from None
        except openai.OpenAIError as exc:
            raise errors.invalid_input(f"base_url: the judge server failed: {errors.one_line(exc)}") from None
        return reply.choices[0].message.content or "" if reply.choices else ""

    def ask(prompts: list[str]) -> list[str]:
        out = []
        for prompt in prompts:
            if job.control.cancelled.is_set():
                raise errors.EngineError(errors.ExitCode.CANCELLED, "judging cancelled; nothing was written")
            out.append(one(prompt))
        return out

    log.info("Judge: %s at %s", model, spec.base_url)
    ask.name = f"{model} at {spec.base_url}"  # type: ignore[attr-defined]
    return ask


def local_judge(spec: specs.JudgeSpec, mode: str, job: Job) -> Ask:
    """A local model, run greedily through the playground's decoder with the verdict's JSON
    Schema enforced token by token (engine/infer/structured.py): its reply is always the verdict
    object, or, when max_new_tokens cuts it short, an incomplete one that is counted unparseable."""
    base_dir = gen.prepare_base(spec.judge_model or "default")
    device_name = device.pick(spec.device)
    tokenizer = gen.load_tokenizer(base_dir)
    model = gen.load_model(base_dir, gen.ModelRef("judge", None), device_name)
    decoder = Decoder(model, tokenizer, device_name)
    schema = json.dumps(bounded_schema(mode, spec.max_new_tokens))
    params = SamplingParams(temperature=0.0, max_new_tokens=spec.max_new_tokens, seed=0, json_schema=schema)
    log.info("Judge: %s on %s, its verdicts constrained to the JSON Schema", base_dir.name, device_name)

    def ask(prompts: list[str]) -> list[str]:
        out = []
        for prompt in prompts:
            if job.control.cancelled.is_set():
                raise errors.EngineError(errors.ExitCode.CANCELLED, "judging cancelled; nothing was written")
            ids = tokenizer(_chat_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
            out.append(decoder.run(ids, params, cancelled=job.control.cancelled).text)
        return out

    ask.name = base_dir.name  # type: ignore[attr-defined]
    return ask


def bounded_schema(mode: str, max_new_tokens: int) -> dict[str, Any]:
    """The verdict schema with a reason short enough that the whole object fits in
    ``max_new_tokens``: every token is at least one character, and the reason's characters are
    plain (``PLAIN_TEXT``), so a reply of at most ``max_new_tokens`` characters always closes.
    A local judge would otherwise be cut off mid-reason by a small budget and its verdict lost."""
    base = VERDICT_SCHEMA if mode == "pairwise" else SCORE_SCHEMA
    longest = {"verdict": "tie", "reason": ""} if mode == "pairwise" else {"score": 10, "reason": ""}
    room = max(0, max_new_tokens - len(json.dumps(longest)))
    reason = {"type": "string", "maxLength": room, "pattern": PLAIN_TEXT}
    return {**base, "properties": {**base["properties"], "reason": reason}}


def _chat_prompt(tokenizer: Any, prompt: str) -> str:
    if not tokenizer.chat_template:
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


# -- the pass ----------------------------------------------------------------------------------

def resolve_spec(args: argparse.Namespace) -> specs.JudgeSpec:
    """defaults < --config TOML ([judge] table) < flags; a bad value raises USAGE naming the field."""
    try:
        spec = specs.load_toml(Path(args.config).expanduser()) if args.config else specs.JudgeSpec()
        spec = specs.from_mapping(schema.given(specs.JudgeSpec, args), spec, source="flags")
        specs.check(spec)
    except specs.ConfigError as exc:
        raise errors.usage(str(exc)) from None
    return spec


def import_pairs(spec: specs.JudgeSpec) -> specs.JudgeSpec:
    """Turns a ``pairs`` JSONL file into an evaluation folder of its own (``summary.json`` with
    ``kind: "judge"`` and the two models, ``examples.jsonl``) and returns the spec pointing at it.
    A bad line raises INVALID_INPUT naming ``file:line`` and the field."""
    path = Path(spec.pairs).expanduser()
    try:
        text = untrusted.read_text(path, limit=256 << 20)
    except FileNotFoundError:
        raise errors.not_found(f"pairs: file not found: {path}") from None
    except (OSError, untrusted.InputError) as exc:
        raise errors.invalid_input(f"pairs: cannot read {path}: {exc}") from None
    label_a, label_b = spec.model_a or "base", spec.model_b or "tuned"
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = untrusted.json_loads(line)
        except ValueError as exc:
            raise errors.invalid_input(f"{path}:{n}: not a JSON object: {exc}") from None
        if not isinstance(item, dict):
            raise errors.invalid_input(f"{path}:{n}: not a JSON object")
        prompt = item.get("prompt", item.get("input"))
        if not (isinstance(prompt, str) and prompt.strip()) and not _is_messages(prompt):
            raise errors.invalid_input(f"{path}:{n}: prompt: must be text or a list of chat messages")
        for field in ("a", "b"):
            if not isinstance(item.get(field), str):
                raise errors.invalid_input(f"{path}:{n}: {field}: must be the answer's text")
        if not isinstance(item.get("reference", ""), str):
            raise errors.invalid_input(f"{path}:{n}: reference: must be text")
        rows.append({"index": len(rows), "input": prompt, "reference": item.get("reference", ""),
                     "outputs": {label_a: item["a"], label_b: item["b"]}, "metrics": {}})
    if not rows:
        raise errors.invalid_input(f"pairs: {path} has no rows")
    eval_id = workspace.new_run_id("judge-" + path.stem)
    target = paths.evals_dir() / eval_id
    summary = {"id": eval_id, "kind": "judge", "status": "finished", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "dataset": path.name, "split": "", "examples": len(rows), "source": str(path),
               "models": [{"label": label_a, "adapter": ""}, {"label": label_b, "adapter": ""}], "metrics": {}}
    with workspace.atomic_folder(target) as tmp:
        write_examples(tmp / EXAMPLES, rows)
        workspace.atomic_write_json(tmp / SUMMARY, summary)
    log.info("Pairs of %s stored as evaluation %s", path.name, eval_id)
    return replace(spec, evaluation=str(target), pairs="", model_a=label_a, model_b=label_b)


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value))


def load_pairs(spec: specs.JudgeSpec) -> tuple[Path, str, str, list[dict[str, Any]]]:
    """(evaluation folder, label A, label B, rows that have both models' outputs)."""
    folder = evaluation_folder(spec.evaluation)
    if folder is None:
        raise errors.not_found(f"evaluation: no evaluation {spec.evaluation!r} (see evaluate list)")
    summary = read_summary(folder) or {}
    labels = [m.get("label", "") for m in summary.get("models", []) if isinstance(m, dict)]
    label_a = spec.model_a or (labels[0] if labels else "")
    label_b = spec.model_b or next((x for x in labels if x != label_a), "")
    for field, label in (("model_a", label_a), ("model_b", label_b)):
        if label not in labels:
            raise errors.usage(f"{field}: {folder / SUMMARY} has no model {label!r}; models: {', '.join(labels)}")
    rows = read_examples(folder)
    if not rows:
        raise errors.invalid_input(f"evaluation: {folder / EXAMPLES} has no rows")
    usable = []
    for n, row in enumerate(rows, 1):
        outputs = row.get("outputs")
        if not isinstance(outputs, dict) or not all(isinstance(outputs.get(x), str) for x in (label_a, label_b)):
            raise errors.invalid_input(f"evaluation: {folder / EXAMPLES}:{n}: outputs has no answer of "
                                       f"{label_a!r} and {label_b!r}")
        usable.append(row)
    if spec.max_examples:
        usable = usable[:spec.max_examples]
    return folder, label_a, label_b, usable


def question_text(row: dict[str, Any]) -> str:
    value = row.get("input", "")
    if isinstance(value, list):  # chat messages
        return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value if isinstance(m, dict))
    return str(value)


def judge(spec: specs.JudgeSpec, job: Job, ask: Ask | None = None) -> tuple[Path, dict[str, Any]]:
    """Runs one judging pass; returns the evaluation folder and the report written into it."""
    started = time.monotonic()
    if spec.pairs:
        spec = import_pairs(spec)
    folder, label_a, label_b, rows = load_pairs(spec)
    template = spec.prompt or preset_text(spec.mode, spec.with_reference)
    if ask is None:
        ask = server_judge(spec, spec.mode, job) if spec.base_url else local_judge(spec, spec.mode, job)
    prompts: list[str] = []
    for row in rows:
        q, ref = question_text(row), str(row.get("reference", ""))
        a, b = row["outputs"][label_a], row["outputs"][label_b]
        if spec.mode == "pairwise":  # A's answer first, then B's answer first
            prompts += [fill(template, question=q, reference=ref, answer_a=a, answer_b=b),
                        fill(template, question=q, reference=ref, answer_a=b, answer_b=a)]
        else:
            prompts += [fill(template, question=q, reference=ref, answer=a),
                        fill(template, question=q, reference=ref, answer=b)]
    replies: list[str] = []
    step, eta = 8, gen.Eta(len(prompts))
    for start in range(0, len(prompts), step):
        part = ask(prompts[start:start + step])
        replies += part
        job.channel.send(protocol.progress(len(replies), len(prompts), stage="judge", eta_s=eta.advance(len(part))))
    parsed = [parse_verdict(r, spec.mode) for r in replies]
    verdicts, report = _tally(spec, rows, replies, parsed, label_a, label_b)
    report.update({"evaluation": folder.name, "mode": spec.mode, "with_reference": spec.with_reference,
                   "model_a": label_a, "model_b": label_b,
                   "judge": getattr(ask, "name", "") or spec.base_url or spec.judge_model or "default",
                   "prompt": spec.prompt and "custom" or preset_name(spec.mode, spec.with_reference),
                   "rows": len(rows), "requests": len(prompts), "bootstrap": spec.bootstrap, "seed": spec.seed,
                   "seconds": round(time.monotonic() - started, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   "spec": asdict(spec) | {"api_key": "***" if spec.api_key else ""}})
    text = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts)
    workspace.atomic_write_text(folder / JUDGE_VERDICTS, text)
    workspace.atomic_write_json(folder / JUDGE_REPORT, report)
    return folder, report


def _tally(spec: specs.JudgeSpec, rows: list[dict[str, Any]], replies: list[str],
           parsed: list[dict[str, Any] | None], label_a: str, label_b: str) -> tuple[list[dict], dict]:
    verdicts: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    if spec.mode == "pairwise":
        outcomes, per_row = [], []
        for i, row in enumerate(rows):
            first, second = parsed[2 * i], parsed[2 * i + 1]
            outcome = combine(first and first["verdict"], second and second["verdict"])
            per_row.append(outcome)
            if outcome is not None:
                outcomes.append(outcome)
            verdicts.append({"index": row.get("index", i), "outcome": outcome or "unparseable",
                             "orders": [_order(f"{label_a} first", first, replies[2 * i]),
                                        _order(f"{label_b} first", second, replies[2 * i + 1])]})
        report["unparseable"] = len(rows) - len(outcomes)
        report["judged"] = len(outcomes)
        report["counts"] = {name: outcomes.count(name) for name in ("win", "tie", "loss")}
        report["rates"] = rate_intervals(outcomes, spec.bootstrap, spec.seed) if outcomes else {}
        report["human"] = human_agreement(rows, per_row, label_a, label_b, ratings.load())
    else:
        scores: dict[str, list[float]] = {label_a: [], label_b: []}
        unparseable = 0
        for i, row in enumerate(rows):
            entry: dict[str, Any] = {"index": row.get("index", i), "scores": {}}
            for j, label in enumerate((label_a, label_b)):
                p, raw = parsed[2 * i + j], replies[2 * i + j]
                if p is None:
                    unparseable += 1
                    entry["scores"][label] = {"score": None, "reason": "", "raw": raw}
                else:
                    scores[label].append(float(p["score"]))
                    entry["scores"][label] = {"score": p["score"], "reason": p["reason"]}
            verdicts.append(entry)
        report["unparseable"] = unparseable
        report["mean_score"] = {}
        for label, values in scores.items():
            if values:
                ci = bootstrap_mean_ci(values, n_resamples=spec.bootstrap, seed=spec.seed)
                report["mean_score"][label] = {"estimate": ci.estimate, "low": ci.low, "high": ci.high,
                                               "n": len(values)}
    return verdicts, report


def _order(order: str, parsed: dict[str, Any] | None, raw: str) -> dict[str, Any]:
    if parsed is None:
        return {"order": order, "verdict": None, "reason": "", "raw": raw}
    return {"order": order, "verdict": parsed["verdict"], "reason": parsed["reason"]}


# -- the command -------------------------------------------------------------------------------

def cmd_judge(args: argparse.Namespace, job: Job) -> int:
    spec = resolve_spec(args)
    folder, report = judge(spec, job)
    if spec.mode == "pairwise":
        for name, ci in report["rates"].items():
            log.info("%-5s %5.1f%%  [%5.1f, %5.1f]", name, 100 * ci["estimate"], 100 * ci["low"], 100 * ci["high"])
    else:
        for label, ci in report["mean_score"].items():
            log.info("%s: mean score %.2f [%.2f, %.2f]", label, ci["estimate"], ci["low"], ci["high"])
    log.info("unparseable verdicts: %d", report["unparseable"])
    job.channel.send(protocol.artifact("judge", str(folder / JUDGE_REPORT)))
    job.channel.send(protocol.result({k: v for k, v in report.items() if k != "spec"} | {"path": str(folder)}))
    return protocol.ExitCode.OK
