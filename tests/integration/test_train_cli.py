"""`openrlhf-cfpo train`: OpenRLHF's own parser with CFPO, --dry-run, validation, Ray hook."""

import json
import os
import subprocess
import sys
from pathlib import Path

import openrlhf.utils.config
import pytest
import ray

from openrlhf_cfpo.cli.train_ppo_ray import (
    RUN_RECORD,
    WANDB_KEY_FROM_ENV,
    CommandLineError,
    job_runtime_env,
    run_driver,
    unflatten_namespace,
    with_cfpo_runtime_env,
)
from openrlhf_cfpo.openrlhf_patch import ray_runtime_env

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = [
    "--actor.model_name_or_path", "OpenRLHF/Llama-3-8b-sft-mixture",
    "--reward.model_name_or_path", "OpenRLHF/Llama-3-8b-rm-700k",
    "--data.prompt_dataset", "OpenRLHF/prompt-collection-v0.1",
    "--algo.advantage.estimator", "rloo",
    "--rollout.n_samples_per_prompt", "2",
]


def without(args, *flags):
    """``args`` minus each flag in ``flags`` and its value."""
    out = list(args)
    for flag in flags:
        index = out.index(flag)
        del out[index:index + 2]
    return out


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
    (["--rollout.micro_batch_size", "0"], "--rollout.micro_batch_size must be at least 1; got 0"),
    (["--ds.ring_attn_size", "0"], "--ds.ring_attn_size must be at least 1; got 0"),
    (["--algo.advantage.is_correction_threshold", "1", "2", "3"], "takes HIGH or LOW HIGH"),
])
def test_bad_combinations_fail_with_one_clear_line(capsys, args, message):
    code, out, err = dry_run(capsys, *args)
    assert_one_error_line(code, out, err, message)
    if "invalid choice" in message:  # the valid names are listed, cfpo among them
        assert "cfpo" in err.split("choose from")[1]


def assert_one_error_line(code, out, err, message, exit_code=2):
    assert code == exit_code and out == ""
    error_lines = [line for line in err.splitlines() if line.startswith("openrlhf-cfpo train: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "usage:" not in err and "Traceback" not in err


@pytest.mark.parametrize("missing,estimator,message", [
    # gae without a reward model: OpenRLHF 0.11.2 itself fails with AttributeError ('NoneType'.split)
    (("--reward.model_name_or_path",), "gae", "no reward: pass --reward.model_name_or_path"),
    # rloo without a reward model: OpenRLHF's checks pass and the run fails once GPUs are allocated
    (("--reward.model_name_or_path",), "rloo", "no reward: pass --reward.model_name_or_path"),
    (("--actor.model_name_or_path",), "rloo", "--actor.model_name_or_path is missing"),
    (("--data.prompt_dataset",), "rloo", "--data.prompt_dataset is missing"),
])
def test_what_a_run_needs_is_checked_before_openrlhf_fails_late(capsys, missing, estimator, message):
    args = without(BASE, *missing, "--algo.advantage.estimator")
    code = run_driver([*args, "--algo.advantage.estimator", estimator], dry_run=True)
    captured = capsys.readouterr()
    assert_one_error_line(code, captured.out, captured.err, message)


def test_reward_server_or_agent_instead_of_a_reward_model(capsys):
    for source in (["--reward.remote_url", "http://127.0.0.1:5000/get_reward"], ["--train.agent_func_path", "agent.py"]):
        code, out, _ = dry_run(capsys, *source)
        assert code == 0
    code = run_driver([*without(BASE, "--reward.model_name_or_path"), "--reward.remote_url", "rm.py"], dry_run=True)
    assert code == 0 and json.loads(capsys.readouterr().out)["reward.remote_url"] == ["rm.py"]


def test_an_unforeseen_failure_in_openrlhfs_checks_is_still_one_line(capsys, monkeypatch):
    def broken_hierarchize(namespace):
        raise TypeError("unsupported operand type(s) for //: 'int' and 'NoneType'")

    monkeypatch.setattr(openrlhf.utils.config, "hierarchize", broken_hierarchize)
    code, out, err = dry_run(capsys)
    assert_one_error_line(code, out, err, "OpenRLHF's argument checks failed with TypeError: unsupported operand")


def test_login_node_without_the_gpu_stack(tmp_path):
    """Without tests/gpu_stubs (flash_attn and vllm are not installed here): --dry-run and --help
    still validate with OpenRLHF's parser and import no GPU module; a real launch is one line
    naming the missing package and where to get it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    probe = (
        "import importlib.util, json, sys\n"
        "from openrlhf_cfpo.cli.main import main\n"
        "assert importlib.util.find_spec('flash_attn') is None and importlib.util.find_spec('vllm') is None\n"
        "code = main(sys.argv[1:])\n"
        "gpu = [m for m in ('flash_attn', 'vllm', 'deepspeed', 'ray', 'openrlhf.models') if m in sys.modules]\n"
        "print('IMPORTED', json.dumps(gpu), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )

    def launch(*args):
        return subprocess.run([sys.executable, "-c", probe, "train", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    dry = launch("--dry-run", *BASE, "--policy_loss", "cfpo")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert json.loads(dry.stdout)["actor.policy_loss_type"] == "cfpo"
    assert dry.stderr.splitlines()[-1] == "IMPORTED []"
    bad = launch("--dry-run", *without(BASE, "--reward.model_name_or_path"))
    assert_one_error_line(bad.returncode, bad.stdout, bad.stderr, "no reward")
    usage = launch("--help")
    assert usage.returncode == 0 and "--actor.policy_loss_type" in usage.stdout and "cfpo" in usage.stdout
    real = launch(*BASE, "--policy_loss", "cfpo")
    assert_one_error_line(real.returncode, real.stdout, real.stderr, "flash_attn is not installed", exit_code=1)
    for fix in ("pip install 'openrlhf-cfpo[gpu]'", "dockerfile/Dockerfile", "--dry-run"):
        assert fix in real.stderr


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


# --- wandb: the key stays in the environment ------------------------------------------------------------

SECRET = "0123456789abcdef0123456789abcdef01234567"  # stands for a wandb API key


def test_wandb_key_from_the_environment_resolves_without_showing_it(capsys, monkeypatch):
    """`--logger.wandb.key env:WANDB_API_KEY` (what the recipes pass when WANDB_API_KEY is set) enables
    OpenRLHF's wandb logger; the dry run shows that reference, never the key."""
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    code, out, err = dry_run(capsys, "--logger.wandb.key", WANDB_KEY_FROM_ENV)
    assert code == 0 and json.loads(out)["logger.wandb.key"] == WANDB_KEY_FROM_ENV
    assert SECRET not in out + err


@pytest.mark.parametrize("key, environment, message", [
    (SECRET, SECRET, "--logger.wandb.key takes no key on the command line"),
    (WANDB_KEY_FROM_ENV, None, "WANDB_API_KEY is not set in the driver's environment"),
])
def test_wandb_key_on_the_command_line_or_missing_is_one_line(capsys, monkeypatch, key, environment, message):
    if environment is None:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    else:
        monkeypatch.setenv("WANDB_API_KEY", environment)
    code, out, err = dry_run(capsys, "--logger.wandb.key", key)
    assert_one_error_line(code, out, err, message)
    assert SECRET not in err


def test_wandb_key_is_in_neither_the_run_record_nor_the_wandb_runs_config(capsys, monkeypatch, tmp_path):
    """The run record stores the arguments and the command line; OpenRLHF 0.11.2's WandbLogger uploads
    its whole argument namespace as the run's config and logs in with the flag's value only when wandb
    finds no key of its own (it reads WANDB_API_KEY). Both see the reference only."""
    import wandb
    from openrlhf.utils.logging_utils import WandbLogger

    class Stop(Exception):
        pass

    def fake_ray_init(*args, **kwargs):
        raise Stop  # right after the run record is written

    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setattr(ray, "init", fake_ray_init)
    argv = [*BASE, "--ckpt.output_dir", str(tmp_path), "--logger.wandb.key", WANDB_KEY_FROM_ENV]
    monkeypatch.setattr(sys, "argv", ["openrlhf-cfpo", "train", *argv])
    with pytest.raises(Stop):
        run_driver(argv)
    record = (tmp_path / RUN_RECORD).read_text()
    assert json.loads(record)["config"]["logger.wandb.key"] == WANDB_KEY_FROM_ENV and SECRET not in record

    capsys.readouterr()
    code, out, _ = dry_run(capsys, "--logger.wandb.key", WANDB_KEY_FROM_ENV)
    resolved = {}
    args = unflatten_namespace(json.loads(out))
    monkeypatch.setattr(wandb, "login", lambda **kwargs: resolved.setdefault("login", kwargs))
    monkeypatch.setattr(wandb, "init", lambda **kwargs: resolved.setdefault("init", kwargs))
    monkeypatch.setattr(wandb, "define_metric", lambda *args, **kwargs: None)
    monkeypatch.setattr(wandb, "Table", lambda **kwargs: None)
    WandbLogger(args)
    assert "login" not in resolved  # wandb found the key in the environment
    assert resolved["init"]["name"] == args.logger.wandb.run_name and SECRET not in repr(resolved["init"]["config"])
