"""The launch scripts in examples/scripts/ carry the paper's hyper-parameters (Tables 3 and 4).

Every script runs for real with LAUNCHER set to a recorder that stores the argv it would hand to
``openrlhf-cfpo train``; the sweeps run too, so their overrides are what gets checked. One dry run
per single-run script then sends its flags through ``openrlhf-cfpo train --dry-run`` (OpenRLHF's
own parser and checks) and every flag must resolve to the value the script passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from openrlhf_cfpo.prompts import rlvr_system_prompt_for_model

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "examples" / "scripts"
RLHF_RUN = SCRIPTS / "train_rlhf_llama3_8b.sh"
RLVR_RUN = SCRIPTS / "train_rlvr_math_qwen2.5.sh"
MATH_REWARD = REPO / "openrlhf_cfpo" / "rewards" / "math_reward.py"
QWEN_MODELS = [f"Qwen/Qwen2.5-{size}{kind}" for size in ("1.5B", "3B", "7B") for kind in ("", "-Instruct")]
# Appended to every sweep: each recorded run must end with it (the scripts pass "$@" through).
PASSTHROUGH = ["--logger.logging_steps", "3"]

Flags = Dict[str, List[str]]


def parse_flags(argv: List[str]) -> Flags:
    """``--flag v1 v2 --switch`` → {"--flag": ["v1", "v2"], "--switch": []}; a repeated flag keeps
    its last values, as argparse does."""
    flags: Flags = {}
    current = None
    for token in argv:
        if token.startswith("--"):
            current = token
            flags[current] = []
        else:
            flags[current].append(token)
    return flags


def value(flags: Flags, name: str) -> str:
    (only,) = flags[name]
    return only


def script_env(work: Path, **overrides: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable,
        OUTPUT_ROOT=str(work / "runs"),
        DATA_DIR=str(work / "data"),
        HF_DATASETS_CACHE=str(work / "hf_datasets"),
        **overrides,
    )
    return env


def run_script(script: Path, env: Dict[str, str], *args: str) -> None:
    result = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stderr[-3000:]}"


DRY_RUN_SETTINGS = {
    RLHF_RUN: {},
    RLVR_RUN: {"MODEL": "Qwen/Qwen2.5-7B-Instruct", "MAX_EPOCHS": "2", "BATCH_RATIO": "4"},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory, benchmarks_dir):
    """A scratch directory, and the script environment that uses it and the offline MATH train file."""
    work = tmp_path_factory.mktemp("recipes")
    math_train = str(benchmarks_dir / "math_train" / "train.jsonl")
    return work, lambda **settings: script_env(work, MATH_TRAIN=math_train, **settings)


@pytest.fixture(scope="module")
def recipes(work):
    """The flags of every run each script launches, recorded by a stand-in LAUNCHER."""
    work_dir, env = work
    recorder = work_dir / "record_argv"
    recorder.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$(mktemp "$RECORD_DIR/argv.XXXXXX")"\n')
    recorder.chmod(0o755)

    def record(name: str, script: Path, *args: str, **settings: str) -> List[Flags]:
        record_dir = work_dir / "records" / name
        record_dir.mkdir(parents=True)
        run_script(script, env(LAUNCHER=str(recorder), RECORD_DIR=str(record_dir), **settings), *args)
        return [parse_flags(path.read_text().split("\0")[:-1]) for path in sorted(record_dir.iterdir())]

    runs = {
        "table4": record("table4", SCRIPTS / "table4_rlhf.sh", *PASSTHROUGH),
        "table3": record("table3", SCRIPTS / "table3_rlvr_math.sh", *PASSTHROUGH),
        "sample_reuse": record("sample_reuse", SCRIPTS / "sweep_rlvr_sample_reuse.sh", *PASSTHROUGH),
        "batch_ratio": record("batch_ratio", SCRIPTS / "sweep_rlvr_batch_ratio.sh", *PASSTHROUGH),
    }
    for script, settings in DRY_RUN_SETTINGS.items():
        runs[script.stem] = record(script.stem, script, **settings)
    return runs


@pytest.fixture(scope="module")
def dry_runs(work, recipes):
    """OpenRLHF's resolved arguments for each single-run script (both dry runs at once).
    Runs after ``recipes``, which has written the RLVR prompt file they share."""
    _, env = work
    launcher = f"{sys.executable} -m openrlhf_cfpo.cli train --dry-run"
    processes = {
        script: subprocess.Popen(
            ["bash", str(script)],
            env=env(LAUNCHER=launcher, **settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script, settings in DRY_RUN_SETTINGS.items()
    }
    resolved = {}
    for script, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"dry run of {script.name} failed:\n{err[-3000:]}"
        resolved[script] = json.loads(out)  # stdout holds the JSON alone
    return resolved


def test_every_script_is_covered():
    covered = {
        "train_rlhf_llama3_8b.sh",
        "table4_rlhf.sh",
        "train_rlvr_math_qwen2.5.sh",
        "table3_rlvr_math.sh",
        "sweep_rlvr_sample_reuse.sh",
        "sweep_rlvr_batch_ratio.sh",
    }
    assert {path.name for path in SCRIPTS.glob("*.sh")} == covered


def test_sweeps_pass_extra_arguments_to_every_run(recipes):
    for name in ("table4", "table3", "sample_reuse", "batch_ratio"):
        for flags in recipes[name]:
            assert flags["--logger.logging_steps"] == PASSTHROUGH[1:], name


def test_table4_rlhf_runs(recipes):
    runs = recipes["table4"]
    assert sorted((value(f, "--actor.policy_loss_type"), float(value(f, "--algo.kl.init_coef"))) for f in runs) == [
        ("cfpo", 0.0),
        ("cfpo", 1e-4),
        ("ppo", 0.0),
        ("ppo", 1e-4),
    ]
    for flags in runs:
        assert value(flags, "--actor.model_name_or_path") == "OpenRLHF/Llama-3-8b-sft-mixture"
        assert value(flags, "--reward.model_name_or_path") == "OpenRLHF/Llama-3-8b-rm-700k"
        assert value(flags, "--data.prompt_dataset") == "OpenRLHF/prompt-collection-v0.1"
        assert value(flags, "--algo.advantage.estimator") == "rloo"
        assert float(value(flags, "--actor.adam.lr")) == 5e-7
        assert int(value(flags, "--train.batch_size")) == 64
        assert int(value(flags, "--rollout.batch_size")) == 512
        assert int(value(flags, "--rollout.n_samples_per_prompt")) == 2
        max_new = int(value(flags, "--rollout.max_new_tokens"))
        assert (int(value(flags, "--data.max_len")) - max_new, max_new) == (1024, 1024)  # prompt, generation
        assert int(value(flags, "--ds.zero_stage")) == 3
        assert float(value(flags, "--actor.entropy_coef")) == 0.0  # OpenRLHF then logs entropy
    assert len({value(f, "--logger.tensorboard_dir") for f in runs}) == 4


def check_rlvr_common(flags: Flags) -> None:
    model = value(flags, "--actor.model_name_or_path")
    assert float(value(flags, "--actor.adam.lr")) == (1e-6 if "7B" in model else 3e-6)
    group = int(value(flags, "--rollout.n_samples_per_prompt"))
    assert group == 3
    assert int(value(flags, "--train.batch_size")) == 128 * group  # 128 prompts per optimizer step
    assert float(value(flags, "--algo.kl.init_coef")) == 0.0
    max_new = int(value(flags, "--rollout.max_new_tokens"))
    assert (int(value(flags, "--data.max_len")) - max_new, max_new) == (512, 3072)  # prompt, completion
    assert float(value(flags, "--rollout.temperature")) == 0.9
    assert float(value(flags, "--actor.eps_clip")) == 0.2
    assert value(flags, "--actor.lr_scheduler") == "cosine"
    assert float(value(flags, "--actor.lr_warmup_ratio")) == 0.1
    assert value(flags, "--algo.advantage.estimator") == "group_norm"
    assert Path(value(flags, "--reward.remote_url")).samefile(MATH_REWARD)
    assert value(flags, "--data.label_key") == "solution"
    prompts = Path(value(flags, "--data.prompt_dataset"))
    first = json.loads(prompts.read_text(encoding="utf-8").splitlines()[0])
    assert first["prompt"][0] == {"role": "system", "content": rlvr_system_prompt_for_model(model)}


def batch_ratio(flags: Flags) -> float:
    rollout_samples = int(value(flags, "--rollout.batch_size")) * int(value(flags, "--rollout.n_samples_per_prompt"))
    return rollout_samples / int(value(flags, "--train.batch_size"))


def test_table3_rlvr_runs(recipes):
    runs = recipes["table3"]
    for flags in runs:
        check_rlvr_common(flags)
    pairs = sorted((value(f, "--actor.model_name_or_path"), value(f, "--actor.policy_loss_type")) for f in runs)
    assert pairs == sorted((model, loss) for model in QWEN_MODELS for loss in ("ppo", "cfpo"))
    assert len({value(f, "--logger.tensorboard_dir") for f in runs}) == len(runs)


def test_sample_reuse_sweep(recipes):
    runs = recipes["sample_reuse"]
    for flags in runs:
        check_rlvr_common(flags)
        assert batch_ratio(flags) == 1
    points = sorted((value(f, "--actor.policy_loss_type"), int(value(f, "--train.max_epochs"))) for f in runs)
    assert points == sorted((loss, epochs) for loss in ("ppo", "cfpo") for epochs in (1, 2, 4, 8, 16))
    assert len({value(f, "--logger.tensorboard_dir") for f in runs}) == len(runs)


def test_batch_ratio_sweep(recipes):
    runs = recipes["batch_ratio"]
    for flags in runs:
        check_rlvr_common(flags)
        assert int(value(flags, "--train.max_epochs")) == 1
    points = sorted((value(f, "--actor.policy_loss_type"), batch_ratio(f)) for f in runs)
    assert points == sorted((loss, ratio) for loss in ("ppo", "cfpo") for ratio in (1, 2, 4, 8))
    assert len({value(f, "--logger.tensorboard_dir") for f in runs}) == len(runs)


def assert_resolves_to(flags: Flags, resolved: Dict[str, object]) -> None:
    """Every flag the script passed shows up in OpenRLHF's resolved arguments with its value."""
    for flag, values in flags.items():
        got = resolved[flag[2:]]
        if not values:
            assert got is True, flag
        elif isinstance(got, list):  # nargs flags, and --reward.remote_url (OpenRLHF splits it on ",")
            assert [str(item) for item in got] == ",".join(values).split(","), flag
        elif isinstance(got, (int, float)):
            assert got == float(values[0]), flag
        else:
            assert got == values[0], flag


@pytest.mark.slow  # two dry runs: each imports OpenRLHF, DeepSpeed and Ray (~10 s of CPU)
@pytest.mark.parametrize("script", [RLHF_RUN, RLVR_RUN], ids=lambda path: path.stem)
def test_dry_run_round_trip(recipes, dry_runs, script):
    (flags,) = recipes[script.stem]
    resolved = dry_runs[script]
    assert resolved["actor.policy_loss_type"] == "cfpo"
    assert_resolves_to(flags, resolved)
    if script == RLVR_RUN:
        assert (resolved["actor.adam.lr"], resolved["train.max_epochs"], batch_ratio(flags)) == (1e-6, 2, 4)
    else:
        assert (resolved["algo.kl.init_coef"], resolved["algo.advantage.estimator"]) == (1e-4, "rloo")
