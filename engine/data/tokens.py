"""Rows tokenized exactly as `train` tokenizes them, for `data stats`, `data preview` and the
token-length filter of `data clean`.

Training turns each chat row into TRL's conversational prompt/completion form
(:func:`engine.data.conversations.to_prompt_completion`) and hands it to ``SFTTrainer``, which renders it
through the model's chat template and builds ``labels`` (-100 where the token is masked out of
the loss). Rather than re-implementing that, this module runs TRL's own dataset preparation
(``SFTTrainer._prepare_dataset``) without a model, with ``max_length=None`` so every token is
kept and the cutoff can be applied here the way TRL applies it (``keep_start``). The GUI's
highlighted preview and the histogram therefore show what training will see; a test compares the
result with a real ``SFTTrainer`` on the tiny model, so a TRL change that breaks this shows up.

Shapes training does not take yet are tokenized the nearest way TRL would: preference rows as the
prompt with the chosen answer as completion; text and classification rows as plain text (TRL's
language-modelling path, every token in the loss).
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path
from typing import Any, Iterator

from engine.core.config import TrainConfig
from engine.data.conversations import to_prompt_completion
from engine.data.shapes import CHAT_SHAPES
from engine.runtime import models

CHUNK_ROWS = 1_000  # rows tokenized per step: progress and cancel between chunks
MASKED = -100  # the label TRL gives a token that does not count in the loss


def load_tokenizer(model: str) -> Any:
    """The tokenizer `train` would load for ``model`` (same spec: 'default', folder, .gguf)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models.prepare(model)))
    if tokenizer.pad_token is None:  # as engine.train.sft.build_trainer does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _preference_form(row: dict) -> dict:
    return {"prompt": row["prompt"], "completion": row["chosen"]}


def training_form(data: Any, shape: str) -> Any:
    """The rows as training hands them to TRL (the train module's own conversion for chats)."""

    if shape in CHAT_SHAPES or "messages" in data.column_names:
        return data.map(to_prompt_completion, remove_columns=data.column_names)
    if shape == "preference":
        return data.map(_preference_form, remove_columns=data.column_names)
    return data.select_columns(["text"])


def _sft_args(scratch: str, completion_only_loss: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(output_dir=str(Path(scratch) / "unused"), max_length=None, packing=False,
                     completion_only_loss=completion_only_loss, report_to="none", use_cpu=True,
                     disable_tqdm=True, activation_checkpointing=False)


def _prepare(data: Any, tokenizer: Any, args: Any) -> Any:
    from trl import SFTTrainer

    # The attributes _prepare_dataset reads from the trainer; SFTTrainer sets them the same way
    # when assistant_only_loss is off (train never turns it on).
    trainer_view = types.SimpleNamespace(_tokenizer=tokenizer, chat_template=None,
                                         completion_only_loss=args.completion_only_loss)
    return SFTTrainer._prepare_dataset(trainer_view, data, tokenizer, args, False, None, "data")


def _loss_default(completion_only_loss: bool | None) -> bool:
    return TrainConfig().completion_only_loss if completion_only_loss is None else completion_only_loss


def tokenize(data: Any, tokenizer: Any, completion_only_loss: bool | None = None) -> Any:
    """``data`` (in :func:`training_form`) with TRL's ``input_ids`` and ``labels`` columns.

    Args:
        data: rows in training form.
        tokenizer: from :func:`load_tokenizer`.
        completion_only_loss: the train knob of that name (default: its default).
    """
    with tempfile.TemporaryDirectory() as scratch:
        return _prepare(data, tokenizer, _sft_args(scratch, _loss_default(completion_only_loss)))


def tokenized_chunks(data: Any, shape: str, tokenizer: Any,
                     completion_only_loss: bool | None = None) -> Iterator[tuple[int, Any]]:
    """(first row index, tokenized chunk) for every CHUNK_ROWS rows of ``data``, in order."""
    with tempfile.TemporaryDirectory() as scratch:
        args = _sft_args(scratch, _loss_default(completion_only_loss))  # built once: it is not cheap
        for start in range(0, len(data), CHUNK_ROWS):
            chunk = data.select(range(start, min(start + CHUNK_ROWS, len(data))))
            yield start, _prepare(training_form(chunk, shape), tokenizer, args)


def loss_tokens_beyond(labels: list[int], max_length: int) -> int:
    """Answer tokens a ``keep_start`` cutoff at ``max_length`` removes (TRL's truncation)."""
    return sum(1 for label in labels[max_length:] if label != MASKED)
