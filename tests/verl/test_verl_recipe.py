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


@pytest.fixture(scope="module")
def registered_here():
    """verl's policy losses in this process (cfpo is registered: dry_run imports verl_patch), for the
    checks other than the registry's (those start a fresh interpreter: WorkerPolicyLosses)."""
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY

    from openrlhf_cfpo import verl_patch

    assert verl_patch.LOSS_MODE in POLICY_LOSS_REGISTRY
    return frozenset(POLICY_LOSS_REGISTRY)


def run_script(script, tmp_path, *args, cwd=None, **env):
    environment = {**os.environ, "PYTHON": sys.executable, "OUTPUT_ROOT": str(tmp_path / "runs"),
                   "DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(["bash", str(RECIPES / script), *args], env=environment, capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def recorded_runs(record):
    return [dict(o.split("=", 1) for o in overrides) for overrides in map(json.loads, record.read_text().splitlines())]


@pytest.mark.slow
def test_grid_is_the_papers_32_runs_valid_in_verl(tmp_path, math_file, verl_configs, registered_here):
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
        assert dry_run.check_run(verl_configs, overrides, registered_here) == run["trainer.experiment_name"]

    again = run_script("batch_ratio_grid.sh", tmp_path, **env)
    assert again.returncode == 0 and len(recorded_runs(record)) == 32  # all finished: none relaunched
    assert again.stderr.count("skipping") == 32

    unfinished = tmp_path / "runs" / "verl_batch_ratio_grid" / "seed1_verl_math_Qwen2.5-3B_cfpo_it8_br8" / "finished"
    unfinished.unlink()
    dry = run_script("batch_ratio_grid.sh", tmp_path, **{**env, "DRY_RUN": "1"})
    assert dry.returncode == 0, dry.stderr
    assert "dry run: ok seed1_verl_math_Qwen2.5-3B_cfpo_it8_br8" in dry.stdout and "all 1 runs valid" in dry.stdout
    assert not unfinished.exists() and len(recorded_runs(record)) == 32  # the dry run launched nothing


def one_run(tmp_path, env=None, **overrides):
    """The overrides train_rlvr_math.sh (DRY_RUN=1, environment ``env``) hands verl for one run, plus ``overrides``."""
    record = tmp_path / "one.jsonl"
    record.unlink(missing_ok=True)
    env = dict(LAUNCHER=f"{sys.executable} {RECIPES / 'dry_run.py'} record {record}", TRAIN_FILE="t.parquet",
               VAL_FILE="v.parquet", SYSTEM_PROMPT="s", DRY_RUN="1", **(env or {}))
    assert run_script("train_rlvr_math.sh", tmp_path, *[f"{k}={v}" for k, v in overrides.items()], **env).returncode == 0
    return json.loads(record.read_text())


@pytest.mark.parametrize("override, message", [
    ({"actor_rollout_ref.actor.no_such_key": 1}, "Could not override 'actor_rollout_ref.actor.no_such_key'"),
    ({"data.train_batch_size": 100}, "data.train_batch_size=100 is not a multiple of"),
    ({"actor_rollout_ref.actor.clip_ratio_low": 0}, "eps_low must be > 0"),
    ({"actor_rollout_ref.actor.policy_loss.loss_mode": "cfpo2"}, "loss_mode=cfpo2 is not in verl's policy-loss registry"),
    ({"algorithm.rollout_correction.bypass_mode": "true"}, "bypass_mode=true with loss_mode=cfpo: verl's bypass mode sets"),
])
def test_dry_run_refuses_what_verl_would_fail_on(tmp_path, verl_configs, registered_here, override, message):
    overrides = one_run(tmp_path, **override)
    with pytest.raises(Exception, match=message):
        dry_run.check_run(verl_configs, overrides, registered_here)


def test_bypass_mode_is_refused_only_with_cfpo(tmp_path, verl_configs, registered_here):
    """verl's bypass mode replaces loss_mode with its own loss: harmless for vanilla, fatal for CFPO."""
    vanilla = one_run(tmp_path, env={"POLICY_LOSS": "vanilla"}, **{"algorithm.rollout_correction.bypass_mode": "true"})
    assert dry_run.check_run(verl_configs, vanilla, registered_here) == "verl_math_Qwen2.5-3B_vanilla_it1_br1"


@pytest.mark.parametrize("nodes, gpus, batch_ratio, valid", [(4, 8, 8, False), (4, 8, 4, True), (1, 8, 8, True),
                                                             (5, 8, 1, False)])
def test_dry_run_checks_that_a_mini_batch_divides_over_the_gpus(tmp_path, verl_configs, registered_here, nodes, gpus,
                                                                 batch_ratio, valid):
    """use_dynamic_bsz=true makes verl's validate_config skip its batch-versus-GPU check, but its actor update
    still splits each mini-batch (ppo_mini_batch_size x rollout.n samples) evenly over the data-parallel ranks."""
    overrides = one_run(tmp_path, env={"NUM_NODES": str(nodes), "GPUS_PER_NODE": str(gpus), "BATCH_RATIO": str(batch_ratio)})
    if valid:
        assert dry_run.check_run(verl_configs, overrides, registered_here)
        return
    samples = 128 // batch_ratio * 3
    with pytest.raises(ValueError, match=f"= {samples} samples per optimizer step are not divisible by the data-parallel size {nodes * gpus} "):
        dry_run.check_run(verl_configs, overrides, registered_here)


def test_dry_run_checks_the_registry_of_a_fresh_import_verl(tmp_path, monkeypatch, verl_configs):
    """The dry run itself imports openrlhf_cfpo.verl_patch (registering cfpo there); what counts is what a
    verl worker gets from `import verl`: with VERL_USE_EXTERNAL_PLUGINS=none, no cfpo."""
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    probe = dry_run.WorkerPolicyLosses()  # as `dry_run.py check` starts it, in this environment
    overrides = one_run(tmp_path)
    worker_losses = probe.names()
    assert "vanilla" in worker_losses
    with pytest.raises(ValueError) as err:
        dry_run.check_run(verl_configs, overrides, worker_losses)
    assert "loss_mode=cfpo is not in verl's policy-loss registry after `import verl`" in str(err.value)
    assert "VERL_USE_EXTERNAL_PLUGINS unset, 'auto' or a list naming cfpo (here none)" in str(err.value)


def test_tensorboard_logs_reach_the_run_folder_from_verls_task_runner(tmp_path, monkeypatch, verl_configs):
    """verl's Tracking runs in its TaskRunner, a Ray actor whose environment is its Ray node's plus the runtime
    env verl's run_ppo gives ray.init (verl's fixed list and ray_kwargs.ray_init.runtime_env), in another
    directory: not the launching shell's environment (on a cluster started before the job, or under ray job
    submit). The recipe passes TENSORBOARD_DIR, an absolute path, through that runtime env."""
    from verl.trainer import main_ppo
    from verl.utils.tracking import Tracking

    from openrlhf_cfpo.reporting.training_logs import discover_training_runs

    record = tmp_path / "one.jsonl"
    env = dict(LAUNCHER=f"{sys.executable} {RECIPES / 'dry_run.py'} record {record}", TRAIN_FILE="t.parquet",
               VAL_FILE="v.parquet", SYSTEM_PROMPT="s", OUTPUT_ROOT="runs", TENSORBOARD_DIR="")
    done = run_script("train_rlvr_math.sh", tmp_path, cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    (overrides,) = map(json.loads, record.read_text().splitlines())
    config = verl_configs.compose(overrides)

    class RayInitCalled(Exception):
        pass

    def ray_init(**kwargs):
        raise RayInitCalled(kwargs)

    monkeypatch.setattr(main_ppo.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(main_ppo.ray, "init", ray_init)
    with pytest.raises(RayInitCalled) as called:
        main_ppo.run_ppo(config, task_runner_class=None)
    task_runner_env = called.value.args[0]["runtime_env"]["env_vars"]

    monkeypatch.delenv("TENSORBOARD_DIR", raising=False)
    for key, value in task_runner_env.items():
        monkeypatch.setenv(key, str(value))
    task_runner_dir = tmp_path / "task_runner"
    task_runner_dir.mkdir()
    monkeypatch.chdir(task_runner_dir)
    tracker = Tracking(config.trainer.project_name, config.trainer.experiment_name, default_backend=["tensorboard"])
    tracker.log({"critic/rewards/mean": 0.25}, step=1)
    tracker.finish()

    notes = []
    (run,) = discover_training_runs([str(tmp_path / "runs")], notes)
    assert run.label == "verl_math_Qwen2.5-3B_cfpo_it1_br1" and run.settings.objective == "cfpo", notes
    assert run.series["reward_mean"] == ([1], [0.25])
    assert not (task_runner_dir / "tensorboard_log").exists()


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
