"""reporting.run_settings and the saved-argument parsers: what a run label stands for."""

import json

import pytest

from openrlhf_cfpo.reporting.run_settings import (
    LabelsFileError,
    RunSettings,
    read_labels_yaml,
    settings_from_openrlhf_args,
)
from openrlhf_cfpo.cli.train_ppo_ray import RUN_RECORD
from openrlhf_cfpo.reporting.training_logs import openrlhf_args_from_wandb_config, saved_args_in_folder
from openrlhf_cfpo.runinfo import write_run_record

ARGS = {
    "actor.policy_loss_type": "cfpo",
    "actor.model_name_or_path": "Qwen/Qwen2.5-3B",
    "algo.kl.init_coef": 0.0,
    "train.max_epochs": 4,
    "rollout.batch_size": 128,
    "rollout.n_samples_per_prompt": 3,
    "train.batch_size": 96,
}


def test_settings_from_openrlhf_args():
    settings = settings_from_openrlhf_args(ARGS)
    # batch ratio = 128 prompts × 3 samples / 96 per optimizer step = 4 steps per rollout batch
    expected = RunSettings(objective="cfpo", kl_beta=0.0, iterations=4, batch_ratio=4.0, model="Qwen/Qwen2.5-3B")
    assert settings == expected
    assert settings_from_openrlhf_args({"actor.policy_loss_type": "ppo"}) == RunSettings(objective="ppo")


def test_wandb_config_namespaces_become_dotted_arguments():
    # As OpenRLHF 0.11.2 hands args.__dict__ to wandb.init and wandb stores each group's repr.
    config = {
        "_wandb": {},
        "actor": "namespace(policy_loss_type='cfpo', model_name_or_path='m', eps_clip_low_high=[0.2, 0.28])",
        "algo": "namespace(kl=namespace(init_coef=0.001, estimator='k1'))",
        "train": "namespace(max_epochs=2, batch_size=8, started=datetime(2026, 1, 1))",
        "seed": 42,
    }
    args = openrlhf_args_from_wandb_config(config)
    assert args["actor.policy_loss_type"] == "cfpo" and args["actor.eps_clip_low_high"] == [0.2, 0.28]
    assert args["algo.kl.init_coef"] == 0.001 and args["train.max_epochs"] == 2 and args["seed"] == 42
    assert args["train.started"] is None  # not a literal: dropped, never evaluated
    assert "_wandb" not in args


def test_saved_args_json_flat_or_nested(tmp_path):
    (tmp_path / "notes.json").write_text(json.dumps({"unrelated": 1}))
    assert saved_args_in_folder(str(tmp_path)) is None
    (tmp_path / "args.json").write_text(json.dumps({"actor": {"policy_loss_type": "cfpo"}, "train": {"max_epochs": 8}}))
    assert saved_args_in_folder(str(tmp_path)) == {"actor.policy_loss_type": "cfpo", "train.max_epochs": 8}
    (tmp_path / "args.json").write_text(json.dumps(ARGS))  # flat, as `openrlhf-cfpo train --dry-run` prints
    assert saved_args_in_folder(str(tmp_path)) == ARGS
    (tmp_path / "args.json").unlink()
    write_run_record(tmp_path / RUN_RECORD, ARGS)  # the record `openrlhf-cfpo train` writes
    assert saved_args_in_folder(str(tmp_path)) == ARGS


def test_labels_yaml_overrides_saved_settings(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text("cfpo_kl0:\n  kl_beta: 0\n  model: Llama-3-8B-SFT\nsft: {model: Llama-3-8B-SFT}\n")
    labels = read_labels_yaml(str(path))
    assert labels["sft"] == RunSettings(model="Llama-3-8B-SFT")
    saved = RunSettings(objective="cfpo", kl_beta=0.0001, iterations=1, model="other")
    merged = saved.overridden_by(labels["cfpo_kl0"])
    assert merged == RunSettings(objective="cfpo", kl_beta=0.0, iterations=1, model="Llama-3-8B-SFT")
    assert isinstance(merged.kl_beta, float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("run: {objectve: cfpo}\n", "run has unknown setting 'objectve'; valid settings: objective"),
        ("run: {iterations: 2.5}\n", "run.iterations must be a whole number"),
        ("run: {kl_beta: small}\n", "run.kl_beta must be a number"),
        ("- run\n", "expected a mapping of run label -> settings"),
        ("run: [1]\n", "run must map to settings"),
        ("run: {a: [\n", "not valid YAML"),
    ],
)
def test_bad_labels_yaml_names_the_entry(tmp_path, text, message):
    path = tmp_path / "labels.yaml"
    path.write_text(text)
    with pytest.raises(LabelsFileError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_labels_yaml(str(path))


def test_settings_from_verl_overrides():
    """examples/verl/train_rlvr_math.sh's saved overrides: vanilla reads ppo, batch ratio = batch / mini-batch."""
    from openrlhf_cfpo.reporting.run_settings import settings_from_verl_overrides

    actor = "actor_rollout_ref.actor."
    overrides = [f"{actor}policy_loss.loss_mode=vanilla", f"{actor}ppo_epochs=8", "data.train_batch_size=128",
                 f"{actor}ppo_mini_batch_size=32", f"{actor}use_kl_loss=false", "actor_rollout_ref.model.path=Qwen/Qwen2.5-3B"]
    assert settings_from_verl_overrides(overrides) == RunSettings(
        objective="ppo", kl_beta=0.0, iterations=8, batch_ratio=4.0, model="Qwen/Qwen2.5-3B")
    with_kl = [f"{actor}policy_loss.loss_mode=cfpo", f"{actor}use_kl_loss=true", f"{actor}kl_loss_coef=0.01"]
    assert settings_from_verl_overrides(with_kl) == RunSettings(objective="cfpo", kl_beta=0.01)
