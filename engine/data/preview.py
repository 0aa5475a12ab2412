"""`data preview`: one row rendered exactly as training sees it, token by token, with whether
each token counts in the loss.

The tokens and the mask are TRL's own (:mod:`engine.data.tokens`): the row goes through the
model's chat template and ``SFTTrainer``'s dataset preparation, and a token counts in the loss
when its label is not -100. Tokens past ``--max-length`` are marked ``cut``: training never sees
them.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from engine.core import errors, protocol
from engine.core.job import Job
from engine.data.importer import resolve
from engine.data.split import load_rows
from engine.data.tokens import MASKED, load_tokenizer, tokenize, training_form

log = logging.getLogger("engine.data")

REPLACEMENT = "\ufffd"
MAX_MERGE = 4  # a UTF-8 character spans at most 4 byte-level tokens


def token_spans(tokenizer: Any, input_ids: list[int], labels: list[int], max_length: int = 0) -> list[dict[str, Any]]:
    """One span per token: ``{"text", "loss", "cut", "ids"}``.

    A character split across byte-level tokens (an emoji, an accented letter) decodes only as a
    whole, so such tokens are merged into one span whose ``ids`` says how many it covers; tokens
    are never merged across a change of mask or of the cutoff.
    """
    spans: list[dict[str, Any]] = []
    pending: list[int] = []
    for index, (token, label) in enumerate(zip(input_ids, labels)):
        pending.append(token)
        text = tokenizer.decode(pending)
        if text.endswith(REPLACEMENT) and len(pending) < MAX_MERGE and not _boundary_next(index, labels, max_length):
            continue  # half a character: wait for the rest of it
        spans.append({"text": text, "loss": label != MASKED, "cut": bool(max_length) and index >= max_length,
                      "ids": len(pending)})
        pending = []
    return spans


def _boundary_next(index: int, labels: list[int], max_length: int) -> bool:
    """True when the next token has another mask or falls on the other side of the cutoff."""
    if index + 1 >= len(labels):
        return True
    if (labels[index] != MASKED) != (labels[index + 1] != MASKED):
        return True
    return bool(max_length) and index + 1 == max_length


def preview_row(spec: str, row: int, model: str, max_length: int = 0, split: str = "",
                completion_only_loss: bool | None = None) -> dict[str, Any]:
    """Row ``row`` (1-based, as the table shows it) of ``spec`` as training tokenizes it.

    Raises:
        EngineError: USAGE for a row number out of range; NOT_FOUND for an unknown dataset.
    """
    version = resolve(spec)
    data = load_rows(version, split)
    if not 1 <= row <= len(data):
        raise errors.usage(f"--row {row}: {version.ref} has rows 1 to {len(data)}")
    tokenizer = load_tokenizer(model)
    shape = version.manifest.get("shape", "")
    tokenized = tokenize(training_form(data.select([row - 1]), shape), tokenizer, completion_only_loss)[0]
    ids, labels = tokenized["input_ids"], tokenized["labels"]
    spans = token_spans(tokenizer, ids, labels, max_length)
    loss = sum(1 for label in labels if label != MASKED)
    log.info("%s row %d: %d tokens, %d in the loss", version.ref, row, len(ids), loss)
    return {"dataset": version.ref, "row": row, "split": split, "model": model, "max_length": max_length,
            "tokens": len(ids), "loss_tokens": loss,
            "cut_tokens": max(0, len(ids) - max_length) if max_length else 0, "spans": spans}


def render_text(result: dict[str, Any]) -> str:
    """The preview for a terminal: runs of loss tokens in [[...]], a marker line at the cutoff."""
    parts, in_loss, was_cut = [], False, False
    for span in result["spans"]:
        if span["loss"] != in_loss or span["cut"] != was_cut:
            parts.append("]]" if in_loss else "")
            if span["cut"] and not was_cut:
                parts.append(f"\n--- cut at {result['max_length']} tokens ---\n")
            parts.append("[[" if span["loss"] else "")
            in_loss, was_cut = span["loss"], span["cut"]
        parts.append(span["text"])
    return "".join(parts) + ("]]" if in_loss else "")


# -- CLI handler ----------------------------------------------------------------------------------

def cmd_preview(args: argparse.Namespace, job: Job) -> int:
    result = preview_row(args.dataset, args.row, args.model, args.max_length, args.split,
                         args.completion_only_loss)
    if not job.channel.json_mode:
        log.info("Tokens in [[double brackets]] count in the loss; the rest are masked.\n%s", render_text(result))
    job.channel.send(protocol.result(result))
    return protocol.ExitCode.OK
