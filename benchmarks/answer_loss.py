"""The final loss "on the same tokens" for benchmarks/train_vs_plain_trl.py: a base model plus an
adapter, scored by one plain fp32 transformers forward on the answer tokens of the first ROWS
rows of a chat JSONL file. Both sides' adapters go through this same code, so their figures are
the same quantity whatever each trainer did inside.

    python benchmarks/answer_loss.py MODEL_DIR ADAPTER_DIR DATA.jsonl ROWS

Prints one JSON object: {"answer_loss": mean cross-entropy per answer token, "tokens": count}.
"""

from __future__ import annotations

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def answer_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], int]:
    """(token ids of the whole conversation, index where the last answer starts)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
    whole = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    return list(whole), len(prompt)


def main() -> None:
    model_dir, adapter_dir, data_file, rows = sys.argv[1:5]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    with open(data_file, encoding="utf-8") as file:
        conversations = [json.loads(line)["messages"] for line in file][: int(rows)]
    total, count = 0.0, 0
    with torch.no_grad():
        for messages in conversations:
            ids, start = answer_tokens(tokenizer, messages)
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            targets = torch.tensor(ids[1:])
            losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[start - 1:]
            total, count = total + losses.sum().item(), count + losses.numel()
    print(json.dumps({"answer_loss": total / count, "tokens": count}))


if __name__ == "__main__":
    main()
