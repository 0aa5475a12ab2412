"""`data preview`: the row's tokens and loss mask are exactly what TRL's SFTTrainer trains on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import
from engine.data import preview as data_preview
from engine.data import tokens as data_tokens

ROWS = [
    {"messages": [{"role": "system", "content": "Réponds brièvement 🙂"},
                  {"role": "user", "content": "Quel temps fait-il ? ☀️"},
                  {"role": "assistant", "content": "Il fait beau, 25 °C — parfait 👍"}]},
    {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
                  {"role": "user", "content": "second"}, {"role": "assistant", "content": "two words"}]},
]


def import_rows(tmp_path: Path) -> None:
    file = tmp_path / "p.jsonl"
    file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS), encoding="utf-8")
    data_import.import_file(file)


def per_token(spans: list[dict], key: str) -> list:
    return [span[key] for span in spans for _ in range(span["ids"])]


def trl_labels(tiny_model_dir: Path, tmp_path: Path, row: dict) -> tuple[list[int], list[int]]:
    """input_ids and labels of a real SFTTrainer built as `train` builds it (prompt/completion
    rows, completion-only loss, the model's tokenizer and chat template)."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from engine.data.conversations import to_prompt_completion

    tokenizer = data_tokens.load_tokenizer(str(tiny_model_dir))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
        args=SFTConfig(output_dir=str(tmp_path / "out"), max_length=512, completion_only_loss=True,
                       report_to="none", use_cpu=True, disable_tqdm=True, shuffle_dataset=False),
        train_dataset=datasets.Dataset.from_list([to_prompt_completion(row)]), processing_class=tokenizer)
    example = trainer.train_dataset[0]
    return example["input_ids"], example["labels"]


@pytest.mark.parametrize("row", [1, 2])
def test_preview_mask_is_the_one_trl_trains_on(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path,
                                               row: int) -> None:
    import_rows(tmp_path)
    preview = data_preview.preview_row("p", row, str(tiny_model_dir))
    input_ids, labels = trl_labels(tiny_model_dir, tmp_path, ROWS[row - 1])

    assert sum(span["ids"] for span in preview["spans"]) == preview["tokens"] == len(input_ids)
    assert per_token(preview["spans"], "loss") == [label != -100 for label in labels]
    assert preview["loss_tokens"] == sum(label != -100 for label in labels) > 0
    # The spans read back as the rendered conversation, multi-byte characters whole.
    tokenizer = data_tokens.load_tokenizer(str(tiny_model_dir))
    assert "".join(span["text"] for span in preview["spans"]) == tokenizer.decode(input_ids)
    assert not any("\ufffd" in span["text"] for span in preview["spans"])
    # Only the last answer is learned: every earlier turn is masked.
    learned = "".join(span["text"] for span in preview["spans"] if span["loss"])
    assert learned.startswith(ROWS[row - 1]["messages"][-1]["content"])


def test_tokens_past_the_cutoff_are_marked_cut(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    import_rows(tmp_path)
    full = data_preview.preview_row("p", 2, str(tiny_model_dir))
    cut = data_preview.preview_row("p", 2, str(tiny_model_dir), max_length=full["tokens"] - 3)
    assert per_token(cut["spans"], "cut") == [False] * (full["tokens"] - 3) + [True] * 3
    assert cut["cut_tokens"] == 3
    text = data_preview.render_text(cut)
    assert f"--- cut at {full['tokens'] - 3} tokens ---" in text and text.count("[[") == 2


def test_a_row_out_of_range_is_a_usage_error(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    import_rows(tmp_path)
    with pytest.raises(EngineError) as caught:
        data_preview.preview_row("p", 3, str(tiny_model_dir))
    assert caught.value.code == protocol.ExitCode.USAGE
    assert caught.value.message == "--row 3: p@v1 has rows 1 to 2"


def test_cli_preview_text_mode(workspace_home: Path, tmp_path: Path, tiny_model_dir: Path, engine_env,
                               engine_argv) -> None:
    import_rows(tmp_path)
    done = subprocess.run(engine_argv("data", "preview", "p", "--row", "2", "--model", str(tiny_model_dir)),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.OK, done.stderr
    assert "[[two words<|im_end|>" in done.stderr
    assert json.loads(done.stdout)["row"] == 2


def test_without_completion_only_loss_every_token_counts(workspace_home: Path, tmp_path: Path,
                                                         tiny_model_dir: Path) -> None:
    import_rows(tmp_path)
    preview = data_preview.preview_row("p", 2, str(tiny_model_dir), completion_only_loss=False)
    assert preview["loss_tokens"] == preview["tokens"] and all(per_token(preview["spans"], "loss"))
