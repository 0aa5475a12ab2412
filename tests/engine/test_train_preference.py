"""Preference tuning on the tiny model: DPO raises the chosen-minus-rejected reward margin,
ORPO trains its adapter, both through the same run machinery as SFT; bad combinations and
datasets of the wrong shape are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import config, protocol, workspace
from engine.core.config import ConfigError, TrainConfig

from .test_train import FakeJob, assert_adapter_changes_the_model, run_cli, snapshot

PAIRS = [
    ("Is the kettle good?", '{"sentiment": "positive"}', '{"sentiment": "negative"}'),
    ("The blender broke on day two.", '{"sentiment": "negative"}', '{"sentiment": "positive"}'),
    ("Lovely soft towels.", '{"sentiment": "positive"}', "I cannot help with that."),
    ("Battery died in an hour.", '{"sentiment": "negative"}', "Maybe."),
]
PREF = dict(max_steps=10, batch_size=4, learning_rate=5e-3, lr_scheduler="constant", lora_r=8, lora_alpha=16,
            lora_dropout=0.0, max_length=128, save_steps=5, device="cpu", beta=0.1)


def write_pairs(tmp_path: Path, copies: int = 4) -> Path:
    file = tmp_path / "pairs.jsonl"
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS] * copies
    file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return file


def build_preference(cfg: TrainConfig, tmp_path: Path):
    from engine.train import preference as train_preference

    job = FakeJob()
    run = workspace.create_run("p", root=tmp_path / "runs")
    data, _, _ = train_preference.load_preference_data(cfg)
    trainer, callback = train_preference.build_preference_trainer(cfg, run, job, Path(cfg.model), "lora", "cpu", data)
    return trainer, callback, job, run


def logged(job: FakeJob, key: str) -> list[float]:
    return [m["values"][key] for m in job.messages() if m["type"] == "metrics" and key in m["values"]]


def test_dpo_raises_the_margin_between_chosen_and_rejected(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(write_pairs(tmp_path)), objective="dpo", **PREF)
    trainer, _, job, _ = build_preference(cfg, tmp_path)
    before = snapshot(trainer.model, True)
    trainer.train()
    margins = logged(job, "rewards/margins")
    assert len(margins) == PREF["max_steps"] and len(logged(job, "rewards/accuracies")) == PREF["max_steps"]
    # Step 1 runs with the adapter at zero: the policy is the reference, so the margin is 0.
    assert margins[0] == pytest.approx(0.0, abs=1e-6)
    assert min(margins[-3:]) > 0.05 and margins[-1] > margins[1]
    after = snapshot(trainer.model, True)
    assert before and all("lora_" in n for n in before) and any(not before[n].equal(after[n]) for n in before)


def test_orpo_trains_the_adapter_and_reports_its_rewards(tiny_model_dir, workspace_home, tmp_path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(write_pairs(tmp_path)), objective="orpo",
                      **{**PREF, "max_steps": 6})
    trainer, _, job, _ = build_preference(cfg, tmp_path)
    assert trainer.args.beta == 0.1 and type(trainer).__name__ == "ORPOTrainer"
    trainer.train()
    losses, margins = logged(job, "loss"), logged(job, "rewards/margins")
    assert len(losses) == 6 and len(margins) == 6 and len(logged(job, "log_odds_ratio")) == 6
    assert losses[-1] < losses[0]
    assert sum(margins[-2:]) > sum(margins[:2])


def test_cli_dpo_run_writes_a_run_folder_with_reward_events_and_an_adapter(
        tiny_model_dir, engine_argv, engine_env, workspace_home, tmp_path) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**PREF, "max_steps": 4, "save_steps": 2}.items()]
    done = run_cli(engine_argv, engine_env, "--model", str(tiny_model_dir), "--dataset", str(write_pairs(tmp_path)),
                   "--objective", "dpo", *flags)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [protocol.decode(line) for line in done.stdout.splitlines()]
    result = next(m["data"] for m in messages if m["type"] == "result")
    run = workspace.RunFolder(Path(result["run_dir"]))
    assert run.info()["status"] == "finished" and result["steps"] == 4
    assert 'objective = "dpo"' in run.config_toml.read_text()
    recorded = [e for e in run.read_events() if e["type"] == "metrics"]
    assert [e["step"] for e in recorded] == [1, 2, 3, 4]
    assert all({"loss", "rewards/margins", "rewards/chosen", "rewards/rejected"} <= set(e["values"]) for e in recorded)
    assert (run.checkpoints / "checkpoint-4").is_dir()
    assert_adapter_changes_the_model(tiny_model_dir, run.adapter)


def test_sft_on_preference_pairs_names_the_objective_to_use(tiny_model_dir, workspace_home, tmp_path) -> None:
    from engine.core import errors
    from engine.train import sft

    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(write_pairs(tmp_path)))
    with pytest.raises(errors.EngineError, match="--objective dpo or orpo"):
        sft.load_training_data(cfg)


def test_dpo_on_conversations_is_refused_naming_the_shape(tiny_model_dir, workspace_home, tmp_path) -> None:
    from engine.core import errors
    from engine.train import preference as train_preference

    from .test_train import write_repeated_dataset

    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(write_repeated_dataset(tmp_path)), objective="dpo")
    with pytest.raises(errors.EngineError, match="has shape 'messages'; objective dpo needs preference pairs"):
        train_preference.load_preference_data(cfg)


@pytest.mark.parametrize("values, field", [
    ({"objective": "dpo", "packing": True}, "packing"),
    ({"objective": "orpo", "method": "prompt_tuning"}, "method"),
    ({"objective": "kto"}, "objective"),
    ({"beta": 0.0}, "beta"),
])
def test_bad_preference_settings_are_refused(values, field) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(values)
    assert caught.value.field == field


def test_dpo_continuing_an_sft_adapter_measures_against_that_adapter(tiny_model_dir, workspace_home,
                                                                     tmp_path) -> None:
    """SFT then DPO: the reference is the SFT-tuned model (TRL copies the loaded adapter as
    "ref"), so the first DPO step has no margin even though the SFT adapter moved the policy
    away from the base."""
    from .test_train import write_repeated_dataset
    from .test_train_resume import run_train

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**PREF, "max_steps": 3, "save_steps": 3}.items()
             if k != "beta"]
    code, sft = run_train(FakeJob(), "--model", str(tiny_model_dir), "--dataset",
                          str(write_repeated_dataset(tmp_path)), *flags)
    assert code == 0
    job = FakeJob()
    code, dpo = run_train(job, "--continue-from", str(sft.path), "--objective", "dpo", "--dataset",
                          str(write_pairs(tmp_path)), "--max-steps", "3")
    assert code == 0 and dpo.info()["continued_from"] == sft.id and dpo.info()["objective"] == "dpo"
    margins = logged(job, "rewards/margins")
    assert len(margins) == 3 and margins[0] == pytest.approx(0.0, abs=1e-6)
    assert_adapter_changes_the_model(tiny_model_dir, dpo.adapter)
    # The checkpoint keeps the frozen reference copy (a resume needs it); the result does not.
    assert (dpo.checkpoints / "checkpoint-3" / "ref" / "adapter_config.json").is_file()
    assert not (dpo.adapter / "ref").exists()


def test_dpo_keeps_the_checkpoint_with_the_best_validation_margin(tiny_model_dir, workspace_home, tmp_path) -> None:
    from .test_train_resume import run_train

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**PREF, "max_steps": 6, "save_steps": 2}.items()]
    job = FakeJob()
    code, run = run_train(job, "--model", str(tiny_model_dir), "--dataset", str(write_pairs(tmp_path)),
                          "--objective", "dpo", "--val-fraction", "0.25", "--best-metric", "rewards_margin",
                          "--sample-count", "0", *flags)
    assert code == 0
    evals = {
        m["step"]: m["values"] for m in job.messages() if m["type"] == "metrics" and m.get("split") == "validation"
    }
    assert sorted(evals) == [2, 4, 6] and all("eval_rewards/accuracies" in v for v in evals.values())
    best_step = max(evals, key=lambda step: evals[step]["eval_rewards/margins"])
    info = run.info()
    assert info["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert info["best_eval_rewards_margins"] == pytest.approx(evals[best_step]["eval_rewards/margins"])
    assert "best_eval_loss" not in info


def test_reward_metrics_are_refused_for_sft() -> None:
    with pytest.raises(ConfigError, match="dpo or orpo only") as caught:
        config.from_mapping({"best_metric": "rewards_margin", "val_fraction": 0.1})
    assert caught.value.field == "best_metric"
