"""Builds reviews_heldout.jsonl, the data of the shipped lm-eval tasks, from the bundled sample
data (resources/sample_data/heldout_reviews.jsonl, written by Tunebench itself, so it ships
under Tunebench's licence). Run it again if the sample data changes:

    python resources/harness_tasks/make_data.py
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "sample_data" / "heldout_reviews.jsonl"
SENTIMENTS = ("positive", "negative", "mixed")


def main() -> None:
    rows = []
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        answer = json.loads(messages[-1]["content"])
        rows.append({"review": messages[1]["content"], "sentiment": answer["sentiment"],
                     "label": SENTIMENTS.index(answer["sentiment"]), "product": answer["product"]})
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    (HERE / "reviews_heldout.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
