"""Multi-node recipes: NUM_NODES spreads the colocated hybrid engine over NUM_NODES x GPUS_PER_NODE GPUs,
the dry run rejects layouts OpenRLHF cannot place, and every model and dataset may be a local path.

The recipes run for real with LAUNCHER = ``openrlhf-cfpo train --dry-run`` (OpenRLHF's own parser and
checks, no Ray), on tiny local folders and files standing for the models and the data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from openrlhf_cfpo.cli.train_ppo_ray import run_driver

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "examples" / "scripts"
LAYOUT_KEYS = {f"{model}.{key}" for model in ("actor", "ref", "reward") for key in ("num_nodes", "num_gpus_per_node")}
LAYOUT_KEYS |= {"vllm.num_engines"}


@pytest.fixture(scope="module")
def local_files(tmp_path_factory) -> Dict[str, Path]:
    """Folders and files standing for what a compute node without internet reads from local disk."""
    root = tmp_path_factory.mktemp("offline")
    paths = {name: root / name for name in ("Llama-3-8b-sft-mixture", "Llama-3-8b-rm-700k", "Qwen2.5-3B")}
    for folder in paths.values():
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    paths["prompts"] = root / "prompt-collection.jsonl"
    paths["prompts"].write_text(json.dumps({"context_messages": [{"role": "user", "content": "hi"}]}) + "\n")
    paths["math"] = root / "math_train.jsonl"
    paths["math"].write_text(json.dumps({"problem": "1+1?", "solution": "\\boxed{2}"}) + "\n")
    paths["root"] = root
    return paths


def launch(script: str, local_files, *args: str, **env: str) -> subprocess.Popen:
    """The recipe with LAUNCHER = the dry run, started (stdout: OpenRLHF's resolved arguments as JSON)."""
    environment = {key: val for key, val in os.environ.items() if key not in ("NUM_NODES", "GPUS_PER_NODE", "MODEL")}
    environment.update(
        LAUNCHER=f"{sys.executable} -m openrlhf_cfpo.cli train --dry-run",
        PYTHON=sys.executable,
        OUTPUT_ROOT=str(local_files["root"] / "runs"),
        DATA_DIR=str(local_files["root"] / "data"),
        **env,
    )
    return subprocess.Popen(["bash", str(SCRIPTS / script), *args], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def resolved(process: subprocess.Popen) -> Dict[str, object]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.mark.slow  # four dry-run subprocesses (OpenRLHF's parser and checks), run two at a time
@pytest.mark.parametrize("recipe", ["rlhf", "rlvr"])
def test_two_nodes_double_the_gpus_and_keep_everything_else(recipe, local_files):
    if recipe == "rlhf":
        script, env, tp = "train_rlhf_llama3_8b.sh", {}, 2
        args = ["--actor.model_name_or_path", str(local_files["Llama-3-8b-sft-mixture"]),
                "--reward.model_name_or_path", str(local_files["Llama-3-8b-rm-700k"]),
                "--data.prompt_dataset", str(local_files["prompts"])]
    else:
        script, tp, args = "train_rlvr_math_qwen2.5.sh", 1, []
        env = {"MODEL": str(local_files["Qwen2.5-3B"]), "MATH_TRAIN": str(local_files["math"]), "BATCH_RATIO": "8"}
    one, two = (launch(script, local_files, *args, NUM_NODES=nodes, GPUS_PER_NODE="8", **env) for nodes in ("1", "2"))
    one, two = resolved(one), resolved(two)

    assert two["actor.num_nodes"] == 2 and two["actor.num_gpus_per_node"] == 8
    assert two["vllm.num_engines"] * two["vllm.tensor_parallel_size"] == 16 and two["vllm.tensor_parallel_size"] == tp
    if recipe == "rlhf":  # reference and reward model colocated with the actor
        assert (two["ref.num_nodes"], two["reward.num_nodes"]) == (2, 2)
    # Everything but the layout is the single-node run's: the paper's batch sizes, lr, paths.
    assert {k: v for k, v in two.items() if k not in LAYOUT_KEYS} == {k: v for k, v in one.items() if k not in LAYOUT_KEYS}
    assert one["actor.num_nodes"] == 1
    if recipe == "rlhf":
        assert two["actor.model_name_or_path"] == str(local_files["Llama-3-8b-sft-mixture"])
        assert two["reward.model_name_or_path"] == str(local_files["Llama-3-8b-rm-700k"])
        assert two["data.prompt_dataset"] == str(local_files["prompts"])
    else:
        assert two["actor.model_name_or_path"] == str(local_files["Qwen2.5-3B"])
        assert Path(two["data.prompt_dataset"]).read_text().count("1+1?") == 1  # prompts made from the local file


def test_an_impossible_recipe_layout_is_one_line_before_anything_starts(local_files):
    message = "--train.batch_size 64 is not divisible by the data-parallel size 24"
    process = launch("train_rlhf_llama3_8b.sh", local_files, NUM_NODES="3", GPUS_PER_NODE="8")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2 and out == ""
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert message in error and "NUM_NODES" in error


BASE = ["--actor.model_name_or_path", "policy", "--reward.model_name_or_path", "rm", "--data.prompt_dataset", "p",
        "--algo.advantage.estimator", "rloo", "--rollout.n_samples_per_prompt", "2", "--train.colocate_all",
        "--train.batch_size", "64"]
for _model in ("actor", "ref", "reward"):  # two nodes of four GPUs each
    BASE += [f"--{_model}.num_nodes", "2", f"--{_model}.num_gpus_per_node", "4"]


@pytest.mark.parametrize("args, message", [
    (["--vllm.num_engines", "3", "--vllm.tensor_parallel_size", "3"],
     "8 GPUs are not divisible by --vllm.tensor_parallel_size 3"),
    (["--vllm.num_engines", "2", "--vllm.tensor_parallel_size", "2"], "pass --vllm.num_engines 4"),
    (["--ds.tensor_parallel_size", "3"], "do not split into groups of --ds.ring_attn_size x --ds.tensor_parallel_size = 3"),
    (["--train.batch_size", "34", "--ds.tensor_parallel_size", "2"], "--train.batch_size 34 is not divisible by the data-parallel size 4"),
    (["--algo.kl.init_coef", "0.01", "--ref.num_nodes", "1", "--ref.num_gpus_per_node", "4"],
     "--ref.num_nodes 1 x --ref.num_gpus_per_node 4 differs from --actor.num_nodes 2"),
    (["--reward.num_nodes", "2", "--reward.num_gpus_per_node", "8"], "--reward.num_nodes 2 x --reward.num_gpus_per_node 8 is more"),
    (["--vllm.tensor_parallel_size", "0"], "--vllm.tensor_parallel_size must be at least 1"),
])
def test_gpu_layout_checks(capsys, args, message):
    assert run_driver([*BASE, *args], dry_run=True) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_layouts_openrlhf_can_place_pass(capsys):
    """Two nodes of four GPUs: 2 engines of TP 4, 4 of TP 2, a smaller reward model, ring attention 2."""
    for args in (["--vllm.num_engines", "2", "--vllm.tensor_parallel_size", "4"],
                 ["--vllm.num_engines", "4", "--vllm.tensor_parallel_size", "2", "--reward.num_gpus_per_node", "2"],
                 ["--ds.ring_attn_size", "2", "--ds.packing_samples", "--vllm.num_engines", "8"]):
        assert run_driver([*BASE, *args], dry_run=True) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["actor.num_nodes"] == 2
