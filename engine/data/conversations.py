"""Conversations as training sees them: the prompt/completion split and the shared system prompt.

Standard library only; both the data tools (token statistics, the preview) and the trainers
use it, so it lives below both.
"""

from __future__ import annotations


def to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def common_system_prompt(conversations: list[list[dict]]) -> str | None:
    """The system prompt shared by at least 90% of the rows, if there is one: the run records
    it so that `generate` with this run's adapter asks the way training did."""
    counts: dict[str, int] = {}
    for messages in conversations:
        if messages and messages[0]["role"] == "system":
            counts[messages[0]["content"]] = counts.get(messages[0]["content"], 0) + 1
    if not counts:
        return None
    prompt, count = max(counts.items(), key=lambda item: item[1])
    return prompt if count >= 0.9 * len(conversations) else None
