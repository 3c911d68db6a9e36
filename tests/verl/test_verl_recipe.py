"""examples/verl/: the Figures 4-8 grid's 32 runs as verl Hydra overrides, validated against verl's own
config (dry_run.py), the MATH parquet, and math_reward through verl's custom reward function hook."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl.trainer.ppo.core_algos", reason="the verl tests run in .venv-verl (make test builds it)")

import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from openrlhf_cfpo.prompts import rlvr_system_prompt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "examples" / "verl"
sys.path.insert(0, str(RECIPES))
import dry_run  # noqa: E402

PROBLEMS = [
    {"problem": "What is $1+1$?", "solution": "Adding, $1+1=\\boxed{2}$."},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
]


@pytest.fixture
def math_file(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    return path


@pytest.fixture(scope="module")
def verl_configs():
    """One composed verl config for the module (composing costs about a second and a half)."""
    with dry_run.VerlConfigs() as configs:
        yield configs


def run_script(script, tmp_path, *args, **env):
    environment = {**os.environ, "PYTHON": sys.executable, "OUTPUT_ROOT": str(tmp_path / "runs"),
                   "DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(["bash", str(RECIPES / script), *args], env=environment, capture_output=True,
                          text=True, timeout=600)


def recorded_runs(record):
    return [dict(o.split("=", 1) for o in overrides) for overrides in map(json.loads, record.read_text().splitlines())]


@pytest.mark.slow
def test_grid_is_the_papers_32_runs_valid_in_verl(tmp_path, math_file, verl_configs):
    """The 32 cells with Table 3's values, each a distinct experiment; all compose with verl's config;
    finished runs are skipped; DRY_RUN=1 validates without writing anything."""
    record = tmp_path / "runs.jsonl"
    launcher = f"{sys.executable} {RECIPES / 'dry_run.py'} record {record}"
    env = dict(LAUNCHER=launcher, TRAIN_FILE=str(math_file), VAL_FILE=str(math_file), NUM_NODES="2",
               GPUS_PER_NODE="4", RUN_NAME="seed1_", SYSTEM_PROMPT="unused: the parquet files are given")
    done = run_script("batch_ratio_grid.sh", tmp_path, "trainer.save_freq=50", **env)
    assert done.returncode == 0, done.stderr
    runs = recorded_runs(record)
    cells = {(r["actor_rollout_ref.actor.policy_loss.loss_mode"], int(r["actor_rollout_ref.actor.ppo_epochs"]),
              128 // int(r["actor_rollout_ref.actor.ppo_mini_batch_size"])) for r in runs}
    assert len(runs) == 32 and cells == set(itertools.product(["vanilla", "cfpo"], [1, 2, 4, 8], [1, 2, 4, 8]))
    names = {r["trainer.experiment_name"] for r in runs}
    assert len(names) == 32 and all(name.startswith("seed1_verl_math_Qwen2.5-3B_") for name in names)
    table3 = {
        "actor_rollout_ref.model.path": "Qwen/Qwen2.5-3B", "algorithm.adv_estimator": "grpo",
        "data.train_batch_size": "128", "actor_rollout_ref.rollout.n": "3", "actor_rollout_ref.actor.optim.lr": "3e-06",
        "actor_rollout_ref.actor.use_kl_loss": "false", "algorithm.use_kl_in_reward": "false",
        "data.max_prompt_length": "512", "data.max_response_length": "3072",
        "actor_rollout_ref.rollout.temperature": "0.9", "actor_rollout_ref.actor.clip_ratio_low": "0.2",
        "actor_rollout_ref.actor.clip_ratio_high": "0.2", "actor_rollout_ref.actor.optim.lr_scheduler_type": "cosine",
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": "0.1", "actor_rollout_ref.actor.optim.betas": "[0.9,0.999]",
        # eq. (8): each response's token mean, then the mean over the group; TRL's weight decay 0 (Table 3's caption)
        "actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean", "actor_rollout_ref.actor.optim.weight_decay": "0.0",
        "reward.custom_reward_function.path": "pkg://openrlhf_cfpo.rewards.math_reward",
        "trainer.nnodes": "2", "trainer.n_gpus_per_node": "4", "trainer.save_freq": "50",
        "data.train_files": str(math_file), "data.val_files": str(math_file),
    }
    assert all({key: run[key] for key in table3} == table3 for run in runs)
    for overrides, run in zip(map(json.loads, record.read_text().splitlines()), runs):  # each validates in verl
        assert dry_run.check_run(verl_configs, overrides) == run["trainer.experiment_name"]

    again = run_script("batch_ratio_grid.sh", tmp_path, **env)
    assert again.returncode == 0 and len(recorded_runs(record)) == 32  # all finished: none relaunched
    assert again.stderr.count("skipping") == 32

    unfinished = tmp_path / "runs" / "verl_batch_ratio_grid" / "seed1_verl_math_Qwen2.5-3B_cfpo_it8_br8" / "finished"
    unfinished.unlink()
    dry = run_script("batch_ratio_grid.sh", tmp_path, **{**env, "DRY_RUN": "1"})
    assert dry.returncode == 0, dry.stderr
    assert "dry run: ok seed1_verl_math_Qwen2.5-3B_cfpo_it8_br8" in dry.stdout and "all 1 runs valid" in dry.stdout
    assert not unfinished.exists() and len(recorded_runs(record)) == 32  # the dry run launched nothing


def one_run(tmp_path, **overrides):
    record = tmp_path / "one.jsonl"
    record.unlink(missing_ok=True)
    env = dict(LAUNCHER=f"{sys.executable} {RECIPES / 'dry_run.py'} record {record}", TRAIN_FILE="t.parquet",
               VAL_FILE="v.parquet", SYSTEM_PROMPT="s", DRY_RUN="1")
    assert run_script("train_rlvr_math.sh", tmp_path, *[f"{k}={v}" for k, v in overrides.items()], **env).returncode == 0
    return json.loads(record.read_text())


@pytest.mark.parametrize("override, message", [
    ({"actor_rollout_ref.actor.no_such_key": 1}, "Could not override 'actor_rollout_ref.actor.no_such_key'"),
    ({"data.train_batch_size": 100}, "data.train_batch_size=100 is not a multiple of"),
    ({"actor_rollout_ref.actor.clip_ratio_low": 0}, "eps_low must be > 0"),
    ({"actor_rollout_ref.actor.policy_loss.loss_mode": "cfpo2"}, "Unsupported loss mode: cfpo2"),
])
def test_dry_run_refuses_what_verl_would_fail_on(tmp_path, verl_configs, override, message):
    overrides = one_run(tmp_path, **override)
    with pytest.raises(Exception, match=message):
        dry_run.check_run(verl_configs, overrides)


def test_batch_ratio_must_divide_the_step(tmp_path):
    done = run_script("train_rlvr_math.sh", tmp_path, BATCH_RATIO="3", LAUNCHER="false")
    assert done.returncode == 2 and "BATCH_RATIO=3 must divide the 128 prompts" in done.stderr


def test_run_prepares_math_parquet_with_the_3b_prompt_scored_by_verls_reward_hook(tmp_path, math_file):
    record = tmp_path / "one.jsonl"
    env = dict(LAUNCHER=f"{sys.executable} {RECIPES / 'dry_run.py'} record {record}",
               MATH_TRAIN=str(math_file), MATH_EVAL=str(math_file), HF_DATASETS_CACHE=str(tmp_path / "hf"))
    done = run_script("train_rlvr_math.sh", tmp_path, **env)
    assert done.returncode == 0, done.stderr
    (run,) = recorded_runs(record)
    rows = pd.read_parquet(run["data.train_files"])
    assert list(rows["data_source"]) == ["math", "math"]
    assert [list(p) for p in rows["prompt"]] == [
        [{"role": "system", "content": rlvr_system_prompt("3B")}, {"role": "user", "content": row["problem"]}]
        for row in PROBLEMS
    ]
    assert [r["ground_truth"] for r in rows["reward_model"]] == [row["solution"] for row in PROBLEMS]
    assert (tmp_path / "runs" / run["trainer.experiment_name"] / "finished").is_file()

    from verl.trainer.ppo.reward import get_custom_reward_fn

    reward_fn = get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": {
        "path": run["reward.custom_reward_function.path"], "name": run["reward.custom_reward_function.name"]}}}))
    scored = [reward_fn(data_source="math", solution_str=answer, ground_truth=rows["reward_model"][1]["ground_truth"],
                        extra_info={}) for answer in ("so it is \\boxed{0.5}", "so it is \\boxed{2}", "0.5")]
    assert scored == [{"score": 1.0, "has_boxed_answer": 1.0}, {"score": 0.0, "has_boxed_answer": 1.0},
                      {"score": 0.0, "has_boxed_answer": 0.0}]
