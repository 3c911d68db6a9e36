"""The launch scripts in examples/scripts/ carry the paper's settings (Tables 3 and 4) and its two
RLVR grids (Tables 5–10, Figures 4–8).

Every script runs for real with LAUNCHER set to a recorder that stores the argv it would hand to
``openrlhf-cfpo train``; the grids run in full, so every one of their runs is checked. Table 3's and
Table 4's hyper-parameters, the grid of Tables 5–10 and the grids' sizes are read off the paper's text,
quoted verbatim in PAPER_TEXT (section and tables cited), not restated as expected values. One recorded RLHF run and one recorded RLVR run
then go through ``openrlhf-cfpo train --dry-run`` (OpenRLHF's own parser and checks): every flag must
resolve to the value the script passed, and OpenRLHF's own TensorboardLogger must write into the
folder named after the run. The verl recipe's overrides are checked here too, as recorded arguments
(verl itself is tested in tests/verl/, in its own environment).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import pytest

from openrlhf_cfpo.cli.train_ppo_ray import WANDB_KEY_FROM_ENV
from openrlhf_cfpo.learning_rate import RLVR_LEARNING_RATES
from openrlhf_cfpo.prompts import RLVR_SYSTEM_PROMPTS

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "examples" / "scripts"
RLHF_RUN = SCRIPTS / "train_rlhf_llama3_8b.sh"
RLVR_RUN = SCRIPTS / "train_rlvr_math_qwen2.5.sh"
VERL_RUN = REPO / "examples" / "verl" / "train_rlvr_math.sh"
TRL_RECIPE = REPO / "examples" / "trl" / "train_grpo_cfpo.py"
MATH_REWARD = REPO / "openrlhf_cfpo" / "rewards" / "math_reward.py"
# Model -> the size whose appendix B.1 system prompt it trains with (same for base and -Instruct).
QWEN_SIZES = {f"Qwen/Qwen2.5-{size}{kind}": size for size in ("1.5B", "3B", "7B") for kind in ("", "-Instruct")}
LOSS_NAMES = {"GRPO": "ppo", "CFPO": "cfpo"}  # the paper's GRPO is OpenRLHF's PPO-clip with group_norm
# Appended to every grid: each recorded run must end with it (the scripts pass "$@" through).
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


# --- the paper's text -------------------------------------------------------------------------

# The paper's text these checks read (arXiv 2601.22801v1, "Clipping-Free Policy Optimization for Large
# Language Models"), quoted verbatim: §4.1's grid sizes, Table 3 (B.1), Table 4 (B.2), Tables 5-10 (C); long
# captions are cut at "[...]".
PAPER_TEXT = """\
§4.1 Reasoning:
[...] For TRL-based models, we vary iterations as powers of 2 up to 16, across 3 model sizes, 2 policy loss types (GRPO and CFPO), and 2 model bases (base and instruct), yielding 48 models. For `verl`, we vary iterations up to 8, with 4 different batch ratios (batch size divided by mini-batch size, corresponding to the number of local updates), and 2 policy loss types, yielding 32 models. In total, we train 80 models across both frameworks.

Appendix B:
Table 3. Training hyperparameters for Qwen2.5 reasoning experiments. [...]

Parameter\t1.5B/3B\t7B
Learning Rate\t3×10^{-6}\t1×10^{-6}
Batch Size\t128\t128
Group Size\t3\t3
KL Penalty (β)\t0\t0
Max Prompt Length\t512\t512
Max Completion Length\t3072\t3072
Temperature\t0.9\t0.9
Clip Ratio\t0.2\t0.2
Lr Scheduler Type\tCosine\tCosine
Warmup Ratio\t0.1\t0.1
Optimizer\tAdamW ($\\beta_1=0.9$, $\\beta_2=0.999$, $\\varepsilon=10^{-8}$)\t

Table 4. RLHF training hyperparameters for Llama-3-8B experiments.

Parameter\tValue
Actor Learning Rate\t5×10^{-7}
Train Batch Size\t64
Rollout Batch Size\t512
Samples per Prompt\t2
Max Prompt Length\t1024
Max Generation Length\t1024
KL Penalty (β)\t$1 \\times 10^{-4} / 0 \\times 10^{-4}$
Advantage Estimator\tRLOO

Appendix C:
Table 5. RLVR performance of Qwen2.5-1.5B-Instruct on MATH500, GSM8K, GPQA-Diamond, and AIME24 under GRPO and CFPO across increasing iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-1.5B-Instruct\t0.528\t0.648\t0.272\t0.033
<i>GRPO Training</i>\t\t\t\t
+ GRPO-iteration 2\t0.580\t0.745\t0.222\t0.033
+ GRPO-iteration 4\t0.544\t0.682\t0.277\t0.033
+ GRPO-iteration 8\t0.370\t0.604\t0.248\t0.033
+ GRPO-iteration 16\t0.100\t0.349\t0.262\t0.000
<i>CFPO Training</i>\t\t\t\t
+ CFPO-iteration 2\t0.544\t0.726\t0.242\t0.033
+ CFPO-iteration 4\t0.534\t0.692\t0.333\t0.033
+ CFPO-iteration 8\t0.524\t0.714\t0.282\t0.000
+ CFPO-iteration 16\t0.500\t0.689\t0.248\t0.000

Table 6. RLVR results for Qwen2.5-3B-Instruct across multiple reasoning benchmarks and iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-3B-Instruct\t0.645\t0.764\t0.328\t0.03
<i>GRPO Training</i>\t\t\t\t
+ GRPO-iteration 2\t0.656\t0.793\t0.292\t0.067
+ GRPO-iteration 4\t0.612\t0.785\t0.323\t0.000
+ GRPO-iteration 8\t0.450\t0.759\t0.262\t0.033
+ GRPO-iteration 16\t0.080\t0.205\t0.258\t0.067
<i>CFPO Training</i>\t\t\t\t
+ CFPO-iteration 2\t0.658\t0.762\t0.333\t0.033
+ CFPO-iteration 4\t0.674\t0.796\t0.288\t0.067
+ CFPO-iteration 8\t0.660\t0.769\t0.343\t0.100
+ CFPO-iteration 16\t0.558\t0.752\t0.328\t0.100

Table 7. RLVR performance of Qwen2.5-7B-Instruct under GRPO and CFPO across iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-7B-Instruct\t0.756\t0.816\t0.363\t0.100
<i>GRPO Training</i>\t\t\t\t
+ GRPO-iteration 2\t0.750\t0.893\t0.369\t0.067
+ GRPO-iteration 4\t0.774\t0.906\t0.354\t0.133
+ GRPO-iteration 8\t0.764\t0.879\t0.394\t0.133
+ GRPO-iteration 16\t0.080\t0.316\t0.277\t0.000
<i>CFPO Training</i>\t\t\t\t
+ CFPO-iteration 2\t0.758\t0.845\t0.348\t0.100
+ CFPO-iteration 4\t0.772\t0.839\t0.338\t0.167
+ CFPO-iteration 8\t0.768\t0.835\t0.318\t0.100
+ CFPO-iteration 16\t0.758\t0.869\t0.318\t0.130

Table 8. Cold-start RL performance of Qwen2.5-1.5B on reasoning benchmarks under GRPO and CFPO across iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-1.5B\t0.002\t0.090\t0.171\t0
<i>GRPO Training</i>\t\t\t\t
GRPO-Iteration2\t0.506\t0.672\t0.242\t0.00
GRPO-Iteration4\t0.558\t0.729\t0.293\t0.00
GRPO-Iteration8\t0.120\t0.030\t0.278\t0.00
GRPO-Iteration16\t0.074\t0.039\t0.197\t0.00
<i>CFPO Training</i>\t\t\t\t
CFPO-Iteration2\t0.514\t0.548\t0.288\t0.067
CFPO-Iteration4\t0.574\t0.570\t0.253\t0.033
CFPO-Iteration8\t0.530\t0.280\t0.253\t0.033
CFPO-Iteration16\t0.380\t0.020\t0.308\t0.033

Table 9. Cold-start RL results for Qwen2.5-3B across reasoning benchmarks and iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-3B\t0.673\t0.544\t0.262\t0.06
<i>GRPO Training</i>\t\t\t\t
GRPO-Iteration2\t0.642\t0.825\t0.318\t0.067
GRPO-Iteration4\t0.648\t0.796\t0.303\t0.033
GRPO-Iteration8\t0.462\t0.669\t0.248\t0.033
GRPO-Iteration16\t0.220\t0.673\t0.252\t0.033
<i>CFPO Training</i>\t\t\t\t
CFPO-Iteration2\t0.634\t0.766\t0.313\t0.100
CFPO-Iteration4\t0.616\t0.767\t0.328\t0.067
CFPO-Iteration8\t0.594\t0.779\t0.268\t0.067
CFPO-Iteration16\t0.604\t0.798\t0.313\t0.067

Table 10. Cold-start RL performance of Qwen2.5-7B under GRPO and CFPO across increasing iteration counts. [...]

Model\tMath 500\tGSM8K\tGPQA-Diamond\tAIME 24
Qwen2.5-7B\t0.553\t0.636\t0.308\t0.100
<i>GRPO Training</i>\t\t\t\t
GRPO-Iteration2\t0.730\t0.699\t0.303\t0.100
GRPO-Iteration4\t0.722\t0.762\t0.323\t0.056
GRPO-Iteration8\t0.710\t0.645\t0.323\t0.067
GRPO-Iteration16\t0.002\t0.004\t0.298\t0.000
<i>CFPO Training</i>\t\t\t\t
CFPO-Iteration2\t0.704\t0.596\t0.313\t0.067
CFPO-Iteration4\t0.711\t0.661\t0.257\t0.100
CFPO-Iteration8\t0.722\t0.602\t0.323\t0.100
CFPO-Iteration16\t0.206\t0.059\t0.237\t0.000
"""


def paper_lines() -> List[str]:
    return PAPER_TEXT.splitlines()


def paper_table(caption_start: str) -> Dict[str, List[str]]:
    """{first cell: other cells} of the tab-separated rows after the caption starting ``caption_start``."""
    lines = paper_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith(caption_start))
    rows: Dict[str, List[str]] = {}
    for line in lines[start + 1 :]:
        if "\t" in line:
            name, *cells = line.split("\t")
            rows[name.strip()] = [cell.strip() for cell in cells]
        elif rows:
            break
    return rows


def paper_number(text: str) -> float:
    """"3×10^{-6}", "$1 \\times 10^{-4}$", "10^{-8}", "0.9" → float."""
    text = text.strip().strip("$").replace("\\times", "×").replace(" ", "")
    power = re.fullmatch(r"(?:([\d.]+)×)?10\^\{(-?\d+)\}", text)
    if power:
        return float(power.group(1) or 1) * 10 ** int(power.group(2))
    return float(text)


def paper_models_trained(grid: str) -> int:
    """The number of models §4.1 says a grid yields ("For TRL-based models … yielding 48 models")."""
    text = " ".join(paper_lines())
    sentence = re.search(rf"For `?{grid}`?(?:-based models)?, we vary [^.]*?yielding (\d+) models", text)
    return int(sentence.group(1))


def paper_iterations_grid() -> set:
    """{(model, loss, iterations)} of Tables 5–10: each table's model row and its GRPO/CFPO rows."""
    points = set()
    for number in range(5, 11):
        rows = paper_table(f"Table {number}.")
        names = list(rows)
        assert names[0] == "Model"
        model = names[1]  # the untrained model's row
        for name in names[2:]:
            match = re.fullmatch(r"\+?\s*(GRPO|CFPO)-[Ii]teration\s*(\d+)", name)
            if match:
                points.add((f"Qwen/{model}", LOSS_NAMES[match.group(1)], int(match.group(2))))
    return points


# --- recording the scripts --------------------------------------------------------------------

def script_env(work: Path, **overrides: str) -> Dict[str, str]:
    unset = ("MODEL", "MODELS", "MODEL_SIZE", "MATH_EVAL", "RUN_NAME", "WANDB_API_KEY", "SKIP_INVALID", "LAYOUT_ONLY")
    env = {key: val for key, val in os.environ.items() if key not in unset}
    env.update(
        PYTHON=sys.executable,
        OUTPUT_ROOT=str(work / "runs"),
        DATA_DIR=str(work / "data"),
        HF_DATASETS_CACHE=str(work / "hf_datasets"),
    )
    env.update(overrides)
    return env


def run_script(script: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def work(tmp_path_factory, fixtures_dir):
    """A scratch directory, and the script environment that uses it and the offline MATH files."""
    work = tmp_path_factory.mktemp("recipes")
    settings = {
        "MATH_TRAIN": str(fixtures_dir / "math_train" / "train.jsonl"),
        "MATH_EVAL": str(fixtures_dir / "math500" / "test.jsonl"),
    }
    return work, settings, lambda **more: script_env(work, **{**settings, **more})


@pytest.fixture(scope="module")
def recorder(work):
    """record(name, script, *args, **env) → the flags of every run the script launches."""
    work_dir, _, env = work
    stand_in = work_dir / "record_argv"
    stand_in.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$(mktemp "$RECORD_DIR/argv.XXXXXX")"\n')
    stand_in.chmod(0o755)

    def record(name: str, script: Path, *args: str, **settings: str) -> List[Flags]:
        record_dir = work_dir / "records" / name
        record_dir.mkdir(parents=True)
        result = run_script(script, env(LAUNCHER=str(stand_in), RECORD_DIR=str(record_dir), **settings), *args)
        assert result.returncode == 0, f"{script.name} failed:\n{result.stderr[-3000:]}"
        return [parse_flags(path.read_text().split("\0")[:-1]) for path in sorted(record_dir.iterdir())]

    return record


@pytest.fixture(scope="module")
def recipes(recorder):
    """The flags of every run of the table and grid scripts. The iterations grid gets no MATH_EVAL
    (validation is the batch-ratio grid's own default), the batch-ratio grid the offline MATH500."""
    return {
        "table4": recorder("table4", SCRIPTS / "table4_rlhf.sh", *PASSTHROUGH),
        "iterations": recorder("iterations", SCRIPTS / "rlvr_iterations_grid.sh", *PASSTHROUGH, MATH_EVAL=""),
        "batch_ratio": recorder("batch_ratio", SCRIPTS / "rlvr_batch_ratio_grid.sh", *PASSTHROUGH),
    }


def test_every_script_is_covered():
    covered = {
        "train_rlhf_llama3_8b.sh",
        "table4_rlhf.sh",
        "train_rlvr_math_qwen2.5.sh",
        "rlvr_iterations_grid.sh",
        "rlvr_batch_ratio_grid.sh",
    }
    assert {path.name for path in SCRIPTS.glob("*.sh")} == covered


def test_scripts_pass_extra_arguments_to_every_run(recipes):
    for name, runs in recipes.items():
        for flags in runs:
            assert flags["--logger.logging_steps"] == PASSTHROUGH[1:], name


def check_run_folders(flags: Flags, root: Path, expected_name: str) -> None:
    """The run is named ``expected_name``, which is also its wandb run name: OpenRLHF's tensorboard
    folder (``tensorboard_dir/wandb.run_name``) is then root/<name>/tensorboard/<name>, not ppo_<time>."""
    assert value(flags, "--logger.wandb.run_name") == expected_name
    assert Path(value(flags, "--logger.tensorboard_dir")) == root / expected_name / "tensorboard"
    assert Path(value(flags, "--ckpt.output_dir")) == root / expected_name / "model"
    assert Path(value(flags, "--ckpt.path")) == root / expected_name / "ckpt"


def tensorboard_folder(flags: Flags) -> Path:
    return Path(value(flags, "--logger.tensorboard_dir")) / value(flags, "--logger.wandb.run_name")


# --- Table 4 (RLHF) ---------------------------------------------------------------------------

def test_table4_rlhf_runs_have_the_papers_hyperparameters(recipes, work):
    table = paper_table("Table 4.")
    runs = recipes["table4"]
    betas = sorted(paper_number(part) for part in table["KL Penalty (β)"][0].split("/"))
    assert sorted((value(f, "--actor.policy_loss_type"), float(value(f, "--algo.kl.init_coef"))) for f in runs) == [
        (loss, beta) for loss in ("cfpo", "ppo") for beta in betas
    ]
    checked = {"Parameter", "KL Penalty (β)"}
    for flags in runs:
        max_new = int(value(flags, "--rollout.max_new_tokens"))
        from_flags = {
            "Actor Learning Rate": float(value(flags, "--actor.adam.lr")),
            "Train Batch Size": int(value(flags, "--train.batch_size")),
            "Rollout Batch Size": int(value(flags, "--rollout.batch_size")),
            "Samples per Prompt": int(value(flags, "--rollout.n_samples_per_prompt")),
            "Max Prompt Length": int(value(flags, "--data.max_len")) - max_new,  # OpenRLHF: prompt + generation
            "Max Generation Length": max_new,
        }
        for row, got in from_flags.items():
            assert got == paper_number(table[row][0]), row
        assert value(flags, "--algo.advantage.estimator") == table["Advantage Estimator"][0].lower() == "rloo"
        checked |= set(from_flags) | {"Advantage Estimator"}
        assert value(flags, "--actor.model_name_or_path") == "OpenRLHF/Llama-3-8b-sft-mixture"
        assert value(flags, "--reward.model_name_or_path") == "OpenRLHF/Llama-3-8b-rm-700k"
        assert value(flags, "--data.prompt_dataset") == "OpenRLHF/prompt-collection-v0.1"
        assert int(value(flags, "--ds.zero_stage")) == 3
        assert float(value(flags, "--actor.entropy_coef")) == 0.0  # OpenRLHF then logs entropy
        # "All RLHF experiments use default OpenRLHF hyperparameters": OpenRLHF's token-mean reduction.
        assert "--actor.loss_agg_mode" not in flags
        name = f"rlhf_llama3_8b_{value(flags, '--actor.policy_loss_type')}_kl{value(flags, '--algo.kl.init_coef')}"
        check_run_folders(flags, work[0] / "runs", name)
    assert checked == set(table)  # every row of the paper's table is checked
    assert len({tensorboard_folder(f) for f in runs}) == 4


# --- Table 3 (RLVR settings) and the two grids ------------------------------------------------

def check_table3(flags: Flags) -> None:
    """Every row of the paper's Table 3, for the run's model size (column "1.5B/3B" or "7B")."""
    table = paper_table("Table 3.")
    model = value(flags, "--actor.model_name_or_path")
    column = next(i for i, sizes in enumerate(table["Parameter"]) if QWEN_SIZES[model] in sizes.split("/"))
    paper = {row: cells[column] if cells[column] else cells[0] for row, cells in table.items() if row != "Parameter"}
    group = int(value(flags, "--rollout.n_samples_per_prompt"))
    max_new = int(value(flags, "--rollout.max_new_tokens"))
    from_flags = {
        "Learning Rate": float(value(flags, "--actor.adam.lr")),
        "Batch Size": int(value(flags, "--rollout.batch_size")),  # prompts per rollout ("128 problems")
        "Group Size": group,
        "KL Penalty (β)": float(value(flags, "--algo.kl.init_coef")),
        "Max Prompt Length": int(value(flags, "--data.max_len")) - max_new,  # OpenRLHF: prompt + completion
        "Max Completion Length": max_new,
        "Temperature": float(value(flags, "--rollout.temperature")),
        "Clip Ratio": float(value(flags, "--actor.eps_clip")),  # also CFPO's ε
        "Warmup Ratio": float(value(flags, "--actor.lr_warmup_ratio")),
    }
    for row, got in from_flags.items():
        assert got == paper_number(paper[row]), row
    assert value(flags, "--actor.lr_scheduler") == paper["Lr Scheduler Type"].lower() == "cosine"
    optimizer = re.fullmatch(
        r"AdamW \(\$\\beta_1=([\d.]+)\$, \$\\beta_2=([\d.]+)\$, \$\\varepsilon=(10\^\{-?\d+\})\$\)", paper["Optimizer"]
    )
    betas = [float(beta) for beta in flags["--actor.adam.betas"]]
    assert betas == [float(optimizer.group(1)), float(optimizer.group(2))]
    assert float(value(flags, "--actor.adam.eps")) == paper_number(optimizer.group(3))
    assert set(from_flags) | {"Lr Scheduler Type", "Optimizer"} == set(paper)  # every row is checked
    # "Unspecified fields inherit the TRL defaults": TRL trains num_train_epochs = 3 passes over the data.
    assert int(value(flags, "--train.num_episodes")) == 3
    assert value(flags, "--algo.advantage.estimator") == "group_norm"  # eq. (9), TRL's scale_rewards="group"
    # eq. (8): (1/G) Σᵢ (1/|oᵢ|) Σₜ, each response's token mean, then the mean over the responses.
    assert value(flags, "--actor.loss_agg_mode") == "seq-mean-token-mean"
    assert Path(value(flags, "--reward.remote_url")).samefile(MATH_REWARD)
    assert value(flags, "--data.label_key") == "solution"
    assert float(value(flags, "--actor.entropy_coef")) == 0.0  # OpenRLHF then logs entropy (Figure 8)


def batch_ratio(flags: Flags) -> float:
    """Optimizer steps per pass over a rollout: rollout samples / train batch (verl: batch / mini-batch)."""
    rollout_samples = int(value(flags, "--rollout.batch_size")) * int(value(flags, "--rollout.n_samples_per_prompt"))
    return rollout_samples / int(value(flags, "--train.batch_size"))


def rlvr_point(flags: Flags) -> tuple:
    return (
        value(flags, "--actor.model_name_or_path"),
        value(flags, "--actor.policy_loss_type"),
        int(value(flags, "--train.max_epochs")),
        batch_ratio(flags),
    )


def rlvr_run_name(point: tuple) -> str:
    model, loss, iterations, ratio = point
    return f"rlvr_math_{model.split('/')[-1]}_{loss}_it{iterations}_br{ratio:g}"


def read_jsonl(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_prompt_file(path: Path, source: Path, size: str) -> None:
    """Every source problem, in order, as [the size's appendix B.1 system prompt, the problem]."""
    records, problems = read_jsonl(path), read_jsonl(source)
    assert len(records) == len(problems)
    for record, problem in zip(records, problems):
        assert record["prompt"] == [
            {"role": "system", "content": RLVR_SYSTEM_PROMPTS[size]},
            {"role": "user", "content": problem["problem"]},
        ]
        assert record["solution"] == problem["solution"]


def check_prompts(runs: List[Flags], settings: Dict[str, str]) -> None:
    """Each run trains (and validates) with the system prompt of its model's size."""
    checked = set()
    for flags in runs:
        size = QWEN_SIZES[value(flags, "--actor.model_name_or_path")]
        files = [(Path(value(flags, "--data.prompt_dataset")), Path(settings["MATH_TRAIN"]))]
        if "--eval.dataset" in flags:
            files.append((Path(value(flags, "--eval.dataset")), Path(settings["MATH_EVAL"])))
        for path, source in files:
            if (path, size) not in checked:
                check_prompt_file(path, source, size)
                checked.add((path, size))


def test_iterations_grid_is_tables_5_to_10(recipes, work):
    work_dir, settings, _ = work
    runs = recipes["iterations"]
    points = [rlvr_point(flags) for flags in runs]
    # TRL has no mini-batches: every pass over a rollout is one optimizer step (batch ratio 1).
    assert sorted(points) == sorted((*point, 1.0) for point in paper_iterations_grid())
    assert len(runs) == paper_models_trained("TRL") == 48
    assert {model for model, *_ in points} == set(QWEN_SIZES)
    root = work_dir / "runs" / "rlvr_iterations_grid"
    for flags, point in zip(runs, points):
        check_table3(flags)
        check_run_folders(flags, root, rlvr_run_name(point))
        assert "--eval.dataset" not in flags
    assert len({tensorboard_folder(f) for f in runs}) == len(runs)
    check_prompts(runs, settings)


def test_batch_ratio_grid_is_figures_4_to_8(recipes, work):
    work_dir, settings, _ = work
    runs = recipes["batch_ratio"]
    points = [rlvr_point(flags) for flags in runs]
    # §4.1 and appendix D: Qwen2.5-3B (base), iterations up to 8, 4 batch ratios, GRPO and CFPO.
    assert sorted(points) == sorted(
        ("Qwen/Qwen2.5-3B", loss, iterations, float(ratio))
        for loss in ("ppo", "cfpo")
        for iterations in (1, 2, 4, 8)
        for ratio in (1, 2, 4, 8)
    )
    assert len(runs) == paper_models_trained("verl") == 32
    root = work_dir / "runs" / "rlvr_batch_ratio_grid"
    for flags, point in zip(runs, points):
        check_table3(flags)
        check_run_folders(flags, root, rlvr_run_name(point))
        # A rollout is the paper's batch of 128 problems; the ratio splits it into optimizer steps.
        assert int(value(flags, "--rollout.batch_size")) == 128
        # Figure 5's validation reward: greedy, one answer per MATH500 problem, every 10 rollouts.
        evaluation = {key: value(flags, key) for key in flags if key.startswith("--eval.")}
        assert evaluation.pop("--eval.dataset")
        assert evaluation == {"--eval.steps": "10", "--eval.temperature": "0", "--eval.n_samples_per_prompt": "1"}
        assert value(flags, "--ckpt.best_metric_key") == "none"  # no extra checkpoints per evaluation
    all_folders = {tensorboard_folder(f) for f in runs + recipes["iterations"]}
    assert len(all_folders) == len(runs) + len(recipes["iterations"])  # unique across both grids
    check_prompts(runs, settings)


def test_rlvr_run_name_and_bad_batch_ratio(recorder, work):
    """RUN_NAME names the run and its tensorboard folder; a BATCH_RATIO that does not divide the
    384 samples of a rollout is one line naming the fix, before anything is prepared or launched."""
    work_dir, _, env = work
    (flags,) = recorder("named", RLVR_RUN, RUN_NAME="my_run", MODEL="Qwen/Qwen2.5-7B", BATCH_RATIO="3", MATH_EVAL="")
    check_run_folders(flags, work_dir / "runs", "my_run")
    assert (int(value(flags, "--train.batch_size")), float(value(flags, "--actor.adam.lr"))) == (128, 1e-6)
    for bad in ("5", "0", "two"):
        result = run_script(RLVR_RUN, env(LAUNCHER="false", BATCH_RATIO=bad, DATA_DIR=str(work_dir / "unused")))
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"train_rlvr_math_qwen2.5.sh: BATCH_RATIO={bad} must divide the 384 samples of a rollout; use 1, 2, 4 "
            "or 8 (the paper's) or another divisor of 384"
        ]
    assert not (work_dir / "unused").exists()


@pytest.mark.parametrize("script", [RLHF_RUN, RLVR_RUN], ids=lambda path: path.stem)
def test_finished_runs_are_skipped(script, recorder, work):
    """A grid restarted after a failure must not retrain (and overwrite) the runs that finished."""
    work_dir, _, _ = work
    (flags,) = recorder(f"first_{script.stem}", script, RUN_NAME=f"done_{script.stem}", MATH_EVAL="")
    model_dir = Path(value(flags, "--ckpt.output_dir"))
    model_dir.mkdir(parents=True)
    (model_dir / "tokenizer_config.json").write_text("{}")  # OpenRLHF saves it after the weights
    assert recorder(f"again_{script.stem}", script, RUN_NAME=f"done_{script.stem}", MATH_EVAL="") == []


def test_learning_rate_comes_from_one_rule_the_model_size_picks(recorder, work):
    """Table 3's lr (7B: 1e-6, else 3e-6) is read from openrlhf_cfpo.learning_rate by every RLVR recipe;
    MODEL_SIZE names the size for a model path that does not (the system prompt follows it too)."""
    (flags,) = recorder("sized", RLVR_RUN, MODEL="/ckpt/policy", MODEL_SIZE="7B", RUN_NAME="sized", MATH_EVAL="")
    assert float(value(flags, "--actor.adam.lr")) == RLVR_LEARNING_RATES["7B"] == paper_number(
        paper_table("Table 3.")["Learning Rate"][1])
    check_prompt_file(Path(value(flags, "--data.prompt_dataset")), Path(work[1]["MATH_TRAIN"]), "7B")
    for recipe in (RLVR_RUN, VERL_RUN, TRL_RECIPE):  # none keeps a rule of its own
        assert not re.search(r"\b[13]e-0?6\b", recipe.read_text()), recipe


def test_wandb_key_reaches_the_launch_line_by_name_only(recorder, work):
    """With WANDB_API_KEY set, both recipes enable wandb with --logger.wandb.key env:WANDB_API_KEY
    (OpenRLHF 0.11.2 logs to wandb only with the flag): the key itself is in no flag and in none of the
    script's output (`set -x` prints the launch line into the job's output)."""
    _, _, env = work
    secret = "0123456789abcdef0123456789abcdef01234567"
    for script in (RLHF_RUN, RLVR_RUN):
        (flags,) = recorder(f"wandb_{script.stem}", script, RUN_NAME=f"wandb_{script.stem}", MATH_EVAL="",
                            WANDB_API_KEY=secret)
        assert flags["--logger.wandb.key"] == [WANDB_KEY_FROM_ENV]
        assert not any(secret in item for values in flags.values() for item in values)
        (plain,) = recorder(f"plain_{script.stem}", script, RUN_NAME=f"plain_{script.stem}", MATH_EVAL="")
        assert "--logger.wandb.key" not in plain
    shown = run_script(RLHF_RUN, env(LAUNCHER="true", WANDB_API_KEY=secret, RUN_NAME="shown"))
    assert shown.returncode == 0 and WANDB_KEY_FROM_ENV in shown.stderr  # the launch line was printed
    assert secret not in shown.stdout + shown.stderr


def test_verl_recipe_overrides_follow_table3_and_eq8(recorder, work, tmp_path):
    """The verl recipe's overrides as recorded arguments (DRY_RUN=1 prepares no data): eq. (8)'s
    normalization, TRL's weight decay 0 (Table 3: "Unspecified fields inherit the TRL defaults"; verl's
    own default is 0.01) and the size's lr from the one rule."""
    work_dir, _, env = work
    done = run_script(VERL_RUN, env(LAUNCHER=str(work_dir / "record_argv"), RECORD_DIR=str(tmp_path), DRY_RUN="1",
                                    MODEL="/ckpt/policy", MODEL_SIZE="7B", TRAIN_FILE="t", VAL_FILE="v"))
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.iterdir()
    overrides = dict(item.split("=", 1) for item in path.read_text().split("\0")[:-1])
    assert overrides["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-mean"
    assert float(overrides["actor_rollout_ref.actor.optim.weight_decay"]) == 0.0
    assert float(overrides["actor_rollout_ref.actor.optim.lr"]) == RLVR_LEARNING_RATES["7B"]


# --- through OpenRLHF's own parser --------------------------------------------------------------

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


def pick(runs: List[Flags], **wanted: str) -> Flags:
    (flags,) = [f for f in runs if all(value(f, f"--{key}") == want for key, want in wanted.items())]
    return flags


@pytest.fixture(scope="module")
def dry_runs(recipes, work):
    """OpenRLHF's resolved arguments for one recorded run of Table 4 and one of the batch-ratio grid
    (the RLVR run with every kind of flag: validation, several steps per pass, the smallest train
    batch), both dry runs at once."""
    _, _, env = work
    chosen = {
        "table4": pick(recipes["table4"], **{"actor.policy_loss_type": "cfpo", "algo.kl.init_coef": "1e-4"}),
        "batch_ratio": pick(
            recipes["batch_ratio"],
            **{"actor.policy_loss_type": "cfpo", "train.max_epochs": "4", "train.batch_size": "48"},
        ),
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "openrlhf_cfpo.cli", "train", "--dry-run"]
            + [item for flag, values in flags.items() for item in (flag, *values)],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, flags in chosen.items()
    }
    resolved = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"dry run of a {name} run failed:\n{err[-3000:]}"
        resolved[name] = (chosen[name], json.loads(out))  # stdout holds the JSON alone
    return resolved


def nested(flat: Dict[str, object]) -> SimpleNamespace:
    """OpenRLHF's hierarchical args from the dry run's flat dotted keys."""
    root: Dict[str, object] = {}
    for key, item in flat.items():
        *groups, leaf = key.split(".")
        node = root
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = item

    def to_namespace(node):
        return SimpleNamespace(**{k: to_namespace(v) for k, v in node.items()}) if isinstance(node, dict) else node

    return to_namespace(root)


@pytest.mark.slow  # two dry-run subprocesses: OpenRLHF's parser and checks (no Ray, DeepSpeed)
@pytest.mark.parametrize("name", ["table4", "batch_ratio"])
def test_dry_run_round_trip(dry_runs, name):
    flags, resolved = dry_runs[name]
    assert resolved["actor.policy_loss_type"] == "cfpo"
    assert_resolves_to(flags, resolved)
    if name == "batch_ratio":
        assert (resolved["train.max_epochs"], batch_ratio(flags), resolved["eval.temperature"]) == (4, 8, 0.0)
        # TRL defaults the recipe leaves to OpenRLHF's equal defaults (Table 3: "inherit the TRL defaults").
        trl_defaults = {"actor.max_norm": 1.0, "actor.adam.weight_decay": 0.0, "rollout.top_p": 1.0}
        assert {key: resolved[key] for key in trl_defaults} == trl_defaults
        assert resolved["actor.loss_agg_mode"] == "seq-mean-token-mean"  # eq. (8), TRL's "grpo"
    else:
        assert (resolved["algo.kl.init_coef"], resolved["algo.advantage.estimator"]) == (1e-4, "rloo")


@pytest.mark.slow  # imports OpenRLHF's logger and the report reader, after the dry runs
def test_tensorboard_folder_is_named_after_the_run(dry_runs, work):
    """OpenRLHF's own TensorboardLogger, given the resolved arguments, writes into
    tensorboard_dir/<run name>, where the driver puts its run record too; the report then labels
    the run with that name and reads its settings from the record."""
    from openrlhf.utils.logging_utils import TensorboardLogger

    from openrlhf_cfpo.cli.train_ppo_ray import write_run_records
    from openrlhf_cfpo.reporting.training_logs import discover_training_runs

    flags, resolved = dry_runs["batch_ratio"]
    name = value(flags, "--logger.wandb.run_name")
    run_folder = work[0] / "runs" / "rlvr_batch_ratio_grid" / name
    args = nested(resolved)
    logger = TensorboardLogger(args)
    logger.log_train(1, {"ppo_clip_ratio": 0.25})
    logger.close()
    events = list(run_folder.rglob("events.out.tfevents.*"))
    assert [path.parent for path in events] == [run_folder / "tensorboard" / name]
    assert run_folder / "tensorboard" / name / "openrlhf_cfpo_run.json" in write_run_records(args)

    notes: List[str] = []
    (run,) = discover_training_runs([str(run_folder / "tensorboard")], notes)
    assert run.label == name
    s = run.settings
    assert (s.objective, s.iterations, s.batch_ratio, s.model) == ("cfpo", 4, 8.0, "Qwen/Qwen2.5-3B")
    assert run.series["clip_ratio"] == ([1], [0.25])
