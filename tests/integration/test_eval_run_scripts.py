"""evaluation/run_*.sh pass flags that `openrlhf-cfpo eval` accepts, for the suite each one names."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_cfpo.cli import eval as eval_cli
from openrlhf_cfpo.cli.main import build_parser

EVALUATION = Path(__file__).resolve().parents[2] / "evaluation"


@pytest.mark.parametrize("suite", ["alignment", "capability", "reasoning"])
def test_run_script_calls_eval_with_valid_flags(tmp_path, suite):
    fake = tmp_path / "bin" / "openrlhf-cfpo"
    fake.parent.mkdir()
    fake.write_text(f'#!{sys.executable}\nimport shlex, sys\nprint(shlex.join(sys.argv[1:]))\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "JUDGE_MODEL": "gpt-4.1"}
    checkpoint = tmp_path / "ckpt" / "qwen2.5-3b-cfpo"  # --model must exist
    checkpoint.mkdir(parents=True)
    done = subprocess.run(
        ["bash", str(EVALUATION / f"run_{suite}.sh"), str(checkpoint), str(tmp_path / "out"), "--limit", "5"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    argv = shlex.split(done.stdout)
    assert argv[0] == "eval"
    args, unknown = build_parser().parse_known_args(argv)
    assert not unknown
    config = eval_cli.resolve_config(args)
    assert (config["suite"], config["model"], config["backend"], config["limit"]) == (
        suite, str(checkpoint), "vllm", 5)
    assert config["model_size"] == ("3B" if suite == "reasoning" else None)
    assert config["judge_model"] == ("gpt-4.1" if suite == "alignment" else None)


def test_run_script_without_arguments_prints_usage():
    done = subprocess.run(["bash", str(EVALUATION / "run_reasoning.sh")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage:" in done.stderr
