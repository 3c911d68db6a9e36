"""Multi-node recipes: NUM_NODES spreads the colocated hybrid engine over NUM_NODES x GPUS_PER_NODE GPUs,
the dry run rejects layouts OpenRLHF cannot place, every model and dataset may be a local path, and
every grid checks all its runs' layouts before it starts any.

The recipes run for real with LAUNCHER = ``openrlhf-cfpo train --dry-run`` (OpenRLHF's own parser and
checks, no Ray), on tiny local folders and files standing for the models and the data.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict

import pytest

from openrlhf_cfpo.cli.train_ppo_ray import check_gpu_layout, check_sizes, parse_launch_layout, run_driver
from openrlhf_cfpo.launch_layout import check_verl_mini_batch

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


# --- grids: every run's layout is checked before any run starts (examples/grid.sh) -------------------

GRIDS = {  # grid -> (the script, its runs as (run name, train batch in samples or verl mini-batch in samples))
    "rlvr_batch_ratio_grid": (SCRIPTS / "rlvr_batch_ratio_grid.sh",
                              [(f"rlvr_math_Qwen2.5-3B_{loss}_it{it}_br{br}", 384 // br)
                               for loss in ("ppo", "cfpo") for it in (1, 2, 4, 8) for br in (1, 2, 4, 8)]),
    "rlvr_iterations_grid": (SCRIPTS / "rlvr_iterations_grid.sh",
                             [(f"rlvr_math_Qwen2.5-7B_{loss}_it{it}_br1", 384) for loss in ("ppo", "cfpo")
                              for it in (2, 4, 8, 16)]),
    "table4_rlhf": (SCRIPTS / "table4_rlhf.sh",
                    [(f"rlhf_llama3_8b_{loss}_kl{kl}", 64) for loss in ("ppo", "cfpo") for kl in ("1e-4", "0")]),
    "verl_batch_ratio_grid": (REPO / "examples" / "verl" / "batch_ratio_grid.sh",  # mini-batch x rollout.n
                              [(f"verl_math_Qwen2.5-3B_{loss}_it{it}_br{br}", 128 // br * 3)
                               for loss in ("vanilla", "cfpo") for it in (1, 2, 4, 8) for br in (1, 2, 4, 8)]),
}


def run_grid(script: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The grid with a recorder as LAUNCHER (each launched run's argv: a file in tmp_path/launched)."""
    recorder = tmp_path / "record_argv"
    recorder.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$(mktemp "$RECORD_DIR/argv.XXXXXX")"\n')
    recorder.chmod(0o755)
    (tmp_path / "launched").mkdir(exist_ok=True)
    unset = ("NUM_NODES", "GPUS_PER_NODE", "MODEL", "MODELS", "RUN_NAME", "SKIP_INVALID", "LAYOUT_ONLY", "DRY_RUN")
    environment = {key: val for key, val in os.environ.items() if key not in unset}
    environment.update(LAUNCHER=str(recorder), RECORD_DIR=str(tmp_path / "launched"), PYTHON=sys.executable,
                       OUTPUT_ROOT=str(tmp_path / "runs"), DATA_DIR=str(tmp_path / "data"), MATH_EVAL="",
                       TRAIN_FILE="train.parquet", VAL_FILE="", **env)
    return subprocess.run(["bash", str(script), *args], env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("grid, nodes", [("rlvr_batch_ratio_grid", 4), ("rlvr_iterations_grid", 5),
                                         ("table4_rlhf", 3), ("verl_batch_ratio_grid", 4)])
def test_a_grid_with_runs_that_cannot_work_stops_before_any_starts_and_lists_them(grid, nodes, tmp_path):
    """Issue 23: on 4 nodes x 8 GPUs the batch-ratio grid used to die at BATCH_RATIO=8 after three
    finished trainings. Now every run's layout is checked first, in one process, and the grid stops
    with one message naming each run that cannot work (data-parallel size = nodes x 8) and why."""
    script, runs = GRIDS[grid]
    done = run_grid(script, tmp_path, MODELS="Qwen/Qwen2.5-7B", NUM_NODES=str(nodes), GPUS_PER_NODE="8")
    invalid = [name for name, batch in runs if batch % (nodes * 8)]
    assert 0 < len(invalid) and done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"{script.name}: {len(invalid)} of {len(runs)} runs cannot work as set up; nothing was started:"
    listed = lines[1:1 + len(invalid)]
    assert [line.split(": ", 1)[0].strip() for line in listed] == invalid
    assert all(f"not divisible by the data-parallel size {nodes * 8}" in line for line in listed)
    assert "SKIP_INVALID=1" in lines[-1] and len(lines) == len(invalid) + 2
    assert list((tmp_path / "launched").iterdir()) == [] and not (tmp_path / "data").exists()  # nothing started


def test_skip_invalid_runs_the_others_and_names_each_skipped_run(tmp_path):
    """Table 4 with the reference model on 4 GPUs of each node (a flag every run gets): only the runs
    with a KL term load the colocated reference model, so only they cannot work."""
    script, runs = GRIDS["table4_rlhf"]
    flags = ["--ref.num_gpus_per_node", "4"]
    stopped = run_grid(script, tmp_path, *flags)
    assert stopped.returncode == 2 and "2 of 4 runs cannot work" in stopped.stderr
    done = run_grid(script, tmp_path, *flags, SKIP_INVALID="1")
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if "SKIP_INVALID=1: skipping" in line]
    assert [line.split("skipping ")[1].split(":")[0] for line in skipped] == [
        name for name, _ in runs if not name.endswith("_kl0")]
    assert all("differs from --actor.num_nodes 1 x --actor.num_gpus_per_node 8" in line for line in skipped)
    launched = [path.read_text().split("\0") for path in (tmp_path / "launched").iterdir()]
    kl = sorted(argv[argv.index("--algo.kl.init_coef") + 1] for argv in launched)
    assert kl == ["0", "0"]


class _Reads:
    """A namespace that records the dotted name of every value read from it (into ``seen``)."""

    def __init__(self, namespace, seen, prefix=""):
        self.__dict__.update(_namespace=namespace, _seen=seen, _prefix=prefix)

    def __getattr__(self, name):
        value = getattr(self._namespace, name)
        if isinstance(value, SimpleNamespace):
            return _Reads(value, self._seen, f"{self._prefix}{name}.")
        self._seen.add(f"{self._prefix}{name}")
        return value


@pytest.mark.parametrize("script, env", [("train_rlhf_llama3_8b.sh", {"KL_COEF": "0"}),
                                         ("train_rlvr_math_qwen2.5.sh", {"BATCH_RATIO": "4"})])
def test_layout_only_carries_every_flag_the_layout_check_reads(script, env, local_files, tmp_path):
    """What LAYOUT_ONLY=1 writes for a run (its name, its layout flags, the extra flags) gives the layout
    checks the values of the run's real launch line, for every value they read."""
    extra = ["--ds.ring_attn_size", "2"]
    common = dict(env, NUM_NODES="2", GPUS_PER_NODE="4", MODEL=str(local_files["Qwen2.5-3B"]),
                  MATH_TRAIN=str(local_files["math"]), RUN_NAME="checked")
    done = run_grid(SCRIPTS / script, tmp_path, *extra, **common)
    assert done.returncode == 0, done.stderr
    (launched,) = [path.read_text().split("\0")[:-1] for path in (tmp_path / "launched").iterdir()]
    layout = run_grid(SCRIPTS / script, tmp_path, *extra, LAYOUT_ONLY="1", **common)
    name, *layout_flags = layout.stdout.split("\0")[:-1]
    assert name == "checked" and layout_flags[-2:] == extra
    read = set()
    full = parse_launch_layout(launched)
    check_sizes(_Reads(full, read))
    check_gpu_layout(_Reads(full, read))
    from_layout = parse_launch_layout(layout_flags)
    assert {"actor.num_nodes", "train.batch_size", "ds.ring_attn_size", "vllm.num_engines"} <= read

    def get(namespace, key):
        return functools.reduce(getattr, key.split("."), namespace)

    assert {key: get(from_layout, key) for key in read} == {key: get(full, key) for key in read}


@pytest.mark.parametrize("sizes, message", [
    ((16, 3, 4, 8, 1), "= 48 samples per optimizer step are not divisible by the data-parallel size 32"),
    ((32, 3, 4, 8, 1), None),  # 96 samples over 32 ranks
    ((16, 3, 4, 8, 2), None),  # sequence parallel 2: 16 data-parallel ranks
    ((16, 3, 4, 8, 3), "32 GPUs do not split into groups of actor_rollout_ref.actor.ulysses_sequence_parallel_size=3"),
])
def test_verls_mini_batch_rule(sizes, message):
    """verl 0.9.1's actor asserts mini-batch samples % data-parallel size == 0 at its first update."""
    if message is None:
        check_verl_mini_batch(*sizes)
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_verl_mini_batch(*sizes)
