"""`openrlhf-cfpo train`: OpenRLHF's own parser with CFPO, --dry-run, validation, Ray hook."""

import json
import subprocess
import sys

import pytest
import ray

from openrlhf_cfpo.cli.train_ppo_ray import RUN_RECORD, CommandLineError, job_runtime_env, run_driver, with_cfpo_runtime_env
from openrlhf_cfpo.openrlhf_patch import ray_runtime_env

BASE = [
    "--actor.model_name_or_path", "OpenRLHF/Llama-3-8b-sft-mixture",
    "--algo.advantage.estimator", "rloo",
    "--rollout.n_samples_per_prompt", "2",
]


def dry_run(capsys, *args):
    code = run_driver([*BASE, *args], dry_run=True)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_prints_resolved_arguments_without_starting_ray(capsys):
    upstream_ray_init = ray.init
    code, out, _ = dry_run(capsys, "--actor.policy_loss_type", "cfpo", "--actor.eps_clip_low_high", "0.2", "0.28",
                           "--algo.kl.init_coef", "0")
    assert code == 0
    resolved = json.loads(out)  # stdout holds the JSON alone (OpenRLHF's warnings go to stderr)
    assert resolved["actor.policy_loss_type"] == "cfpo"
    assert resolved["actor.eps_clip_low_high"] == [0.2, 0.28]
    assert resolved["algo.kl.init_coef"] == 0.0
    assert resolved["actor.model_name_or_path"] == "OpenRLHF/Llama-3-8b-sft-mixture"
    # OpenRLHF's own post-parse resolution ran: the critic is dropped for rloo.
    assert resolved["critic.model_name_or_path"] is None
    assert not ray.is_initialized()
    assert ray.init is upstream_ray_init  # hooks are restored


def test_policy_loss_alias_and_upstream_types(capsys):
    code, out, _ = dry_run(capsys, "--policy_loss", "cfpo")
    assert code == 0 and json.loads(out)["actor.policy_loss_type"] == "cfpo"
    for loss_type in ("ppo", "gspo"):
        code, out, _ = dry_run(capsys, "--actor.policy_loss_type", loss_type)
        assert code == 0 and json.loads(out)["actor.policy_loss_type"] == loss_type
    # Dual-clip stays an upstream PPO feature.
    code, out, _ = dry_run(capsys, "--actor.policy_loss_type", "ppo", "--actor.dual_clip", "3")
    assert code == 0 and json.loads(out)["actor.dual_clip"] == 3.0


@pytest.mark.parametrize("args,message", [
    (["--policy_loss", "cfpo", "--actor.dual_clip", "3"], "--actor.dual_clip cannot be used with --actor.policy_loss_type cfpo"),
    (["--policy_loss", "cfpo", "--actor.eps_clip", "0"], "eps_low must be > 0"),
    (["--policy_loss", "cfpo", "--actor.eps_clip_low_high", "0.2", "-0.1"], "eps_high must be > 0"),
    (["--policy_loss", "clipfree"], "invalid choice: 'clipfree'"),
    (["--policy_loss", "cfpo", "--rollout.n_samples_per_prompt", "1"], "rloo requires n_samples_per_prompt > 1"),
])
def test_bad_combinations_fail_with_one_clear_line(capsys, args, message):
    code, out, err = dry_run(capsys, *args)
    assert code == 2 and out == ""
    error_lines = [line for line in err.splitlines() if line.startswith("openrlhf-cfpo train: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "usage:" not in err
    if "invalid choice" in message:  # the valid names are listed, cfpo among them
        assert "cfpo" in error_lines[0].split("choose from")[1]


def test_real_run_passes_the_cfpo_runtime_env_to_ray_init(capsys, monkeypatch, tmp_path):
    """Without --dry-run the driver writes its run record, then calls ray.init with OpenRLHF's
    runtime_env plus our setup hook."""
    seen = {}

    class Stop(Exception):
        pass

    def fake_ray_init(*args, runtime_env=None, **kwargs):
        seen["runtime_env"] = runtime_env
        raise Stop

    monkeypatch.setattr(ray, "init", fake_ray_init)
    with pytest.raises(Stop):
        run_driver([*BASE, "--policy_loss", "cfpo", "--ckpt.output_dir", str(tmp_path / "ckpt"),
                    "--logger.tensorboard_dir", str(tmp_path / "tb"), "--logger.wandb.run_name", "cfpo-run"])
    assert seen["runtime_env"]["worker_process_setup_hook"] == "openrlhf_cfpo.openrlhf_patch.setup_ray_worker"
    assert "NCCL_DEBUG" in seen["runtime_env"]["env_vars"]  # OpenRLHF's own entries are kept
    for folder in (tmp_path / "ckpt", tmp_path / "tb" / "cfpo-run"):
        record = json.loads((folder / RUN_RECORD).read_text())
        assert record["config"]["actor.policy_loss_type"] == "cfpo"
        assert record["versions"]["openrlhf"] == "0.11.2" and "git_sha" in record


def test_runtime_env_merge():
    hook = ray_runtime_env()
    assert with_cfpo_runtime_env(None) == hook
    merged = with_cfpo_runtime_env({"env_vars": {"A": "1"}, **hook})
    assert merged == {"env_vars": {"A": "1"}, **hook}
    with pytest.raises(CommandLineError, match="worker_process_setup_hook"):
        with_cfpo_runtime_env({"worker_process_setup_hook": "somebody.else"})


def test_hook_already_in_the_ray_job_runtime_env_is_not_repeated(monkeypatch):
    """Ray 2.55 refuses a key set both by `ray job submit --runtime-env-json` and by the driver's
    ray.init, even with the same value: the driver then leaves the hook to the job."""
    hook = ray_runtime_env()
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {**hook, "pip": ["x"]}}))
    assert job_runtime_env() == {**hook, "pip": ["x"]}
    assert with_cfpo_runtime_env({"env_vars": {"A": "1"}}, job_runtime_env()) == {"env_vars": {"A": "1"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"worker_process_setup_hook": "x.y"}}))
    with pytest.raises(CommandLineError, match="--runtime-env-json sets worker_process_setup_hook='x.y'"):
        with_cfpo_runtime_env({}, job_runtime_env())
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert job_runtime_env() == {}


def test_console_entry_points(tmp_path):
    """`openrlhf-cfpo train` and `python -m openrlhf_cfpo.cli.train_ppo_ray` reach the same driver."""
    for command in (
        [sys.executable, "-m", "openrlhf_cfpo.cli", "train", "--dry-run", *BASE, "--policy_loss", "cfpo"],
        [sys.executable, "-m", "openrlhf_cfpo.cli.train_ppo_ray", "--dry-run", *BASE, "--policy_loss", "cfpo"],
    ):
        out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["actor.policy_loss_type"] == "cfpo"
    help_out = subprocess.run([sys.executable, "-m", "openrlhf_cfpo.cli", "--help"], capture_output=True, text=True)
    assert help_out.returncode == 0 and "train" in help_out.stdout
