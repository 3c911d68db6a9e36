"""`openrlhf-cfpo report` end to end on logs written the way OpenRLHF 0.11.2 writes them.

Tensorboard logs: torch's SummaryWriter with OpenRLHF's tags (TensorboardLogger writes each status
key as ``train/<key>`` and each eval key as ``eval/<key>``). wandb logs: a real offline run whose
config holds SimpleNamespace groups, as OpenRLHF's WandbLogger passes ``args.__dict__``.
"""

import csv
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.reporting.training_logs import OPENRLHF_METRICS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OPENLLM_TASKS = ("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k")
STEPS = range(1, 25)
BENCH_GROUPS = {
    "alpaca_eval": ("lc_win_rate", "win_rate", "avg_length"),
    "arena_hard": ("score", "ci_low", "ci_high"),
    "mt_bench": ("score", "turn1", "turn2"),
    "ifeval": ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose"),
    "openllm": (*OPENLLM_TASKS, "average"),
    "reasoning": ("math500", "gsm8k", "aime24", "gpqa_diamond"),
}


def f32(x):
    """What a tensorboard scalar holds for x (event files store float32)."""
    return float(np.float32(x))


def status(step, iterations, collapse=False, entropy=True):
    """One global step's status dict, with the keys OpenRLHF 0.11.2's trainer logs."""
    reward = 0.0 if collapse and step > 12 else step / 32
    logs = {
        "policy_loss": -0.01,
        "ppo_clip_ratio": iterations * step / 1024,
        "ppo_kl": step / 4096,
        "actor_grad_norm": 1.5,
        "actor_lr": 1e-6,
        "reward": -9.0,  # train/reward (the fit average) must lose to rollout/reward_mean
        "response_length": -9.0,
        "kl": 0.0,
        "timing/generation": 3.0,
        "rollout/reward_mean": reward,
        "rollout/reward_std": 0.1,
        "rollout/response_length_mean": 200 + 4 * step,
        "rollout/truncated_rate": 0.0,
        "rollout/num_samples": 64.0,
    }
    if entropy:
        logs["entropy_loss"] = 2.0 * math.exp(-step / 50)
    return logs


def write_openrlhf_tensorboard(log_dir, iterations, objective, collapse=False, entropy=True):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for step in STEPS:
        for key, value in status(step, iterations, collapse, entropy).items():
            writer.add_scalar(f"train/{key}", value, step)
        if step % 8 == 0:
            evals = {"eval_math_pass1": step / 64, "eval_gsm8k_pass1": step / 32, "eval_num_samples": 8.0}
            for key, value in evals.items():
                writer.add_scalar(f"eval/{key}", value, step)
    writer.close()
    args = {  # as `openrlhf-cfpo train --dry-run` prints them, saved beside the log
        "actor.policy_loss_type": objective,
        "actor.model_name_or_path": "Qwen/Qwen2.5-1.5B",
        "algo.kl.init_coef": 0.0,
        "train.max_epochs": iterations,
        "rollout.batch_size": 32,
        "rollout.n_samples_per_prompt": 4,
        "train.batch_size": 64,
    }
    (Path(log_dir) / "args.json").write_text(json.dumps(args))


def eval_results(seed):
    rng = np.random.default_rng(seed)
    return {group: {key: float(rng.uniform(0.1, 0.9)) for key in keys} for group, keys in BENCH_GROUPS.items()}


def read_csv(path):
    with open(path, newline="") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_inputs")
    tensorboard_dir = root / "tensorboard"
    for objective in ("ppo", "cfpo"):
        for iterations in (1, 4):
            collapse = objective == "ppo" and iterations == 4
            write_openrlhf_tensorboard(tensorboard_dir / f"{objective}_it{iterations}", iterations, objective, collapse)
    evals = root / "evals"
    results = {label: eval_results(i) for i, label in enumerate(("sft", "ppo_it1", "cfpo_it1"))}
    for label, content in results.items():
        (evals / label).mkdir(parents=True)
        (evals / label / "results.json").write_text(json.dumps(content))
    labels = root / "labels.yaml"
    labels.write_text("sft: {model: Qwen/Qwen2.5-1.5B}\n")
    return SimpleNamespace(root=root, tensorboard=tensorboard_dir, evals=evals, results=results, labels=labels)


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out")
    argv = ["report", "--runs", str(inputs.tensorboard), "--evals", str(inputs.evals), "--labels", str(inputs.labels),
            "--baseline", "sft", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_writes_every_table_figure_and_page(report):
    for name in ("table1", "table2", "reasoning", "diagnostics"):
        assert (report / f"{name}.csv").read_text().startswith("model,")
        assert (report / f"{name}.md").read_text().startswith("### ")
    figures = sorted(p.name for p in (report / "figures").iterdir())
    assert figures == sorted(f"{n}.png" for n in ("training_dynamics", "reward", "validation_reward", "clip_ratio",
                                                  "policy_kl", "entropy", "response_length"))
    assert all((report / "figures" / f).read_bytes().startswith(PNG_MAGIC) for f in figures)
    page = (report / "report.md").read_text()
    assert "Table 1" in page and "Table 2" in page and "Tables 5–10" in page and "](figures/clip_ratio.png)" in page
    config = json.loads((report / "report_config.json").read_text())
    assert config["config"]["inputs"]["baseline"] == "sft" and config["versions"]["tensorboard"]


def test_table_numbers_equal_the_inputs(report, inputs):
    table1, table2, reasoning = (read_csv(report / f"{n}.csv") for n in ("table1", "table2", "reasoning"))
    for label, content in inputs.results.items():
        a = content["alpaca_eval"]
        assert float(table1[label]["alpaca_eval_lc"]) == a["lc_win_rate"]
        assert float(table1[label]["alpaca_eval_wr"]) == a["win_rate"]
        assert float(table1[label]["lc_wr_gap"]) == a["lc_win_rate"] - a["win_rate"]
        assert float(table1[label]["avg_length"]) == a["avg_length"]
        assert float(table1[label]["arena_hard_ci_high"]) == content["arena_hard"]["ci_high"]
        assert float(table1[label]["ifeval_inst_loose"]) == content["ifeval"]["inst_loose"]
        tasks = [content["openllm"][t] for t in OPENLLM_TASKS]
        assert [float(table2[label][t]) for t in OPENLLM_TASKS] == tasks
        assert float(table2[label]["average"]) == pytest.approx(sum(tasks) / 6, abs=1e-15)
        assert float(reasoning[label]["math500"]) == content["reasoning"]["math500"]
    base = sum(float(table2["sft"][t]) for t in OPENLLM_TASKS) / 6
    assert table2["sft"]["alignment_tax_pct"] == ""
    own = float(table2["ppo_it1"]["average"])
    assert float(table2["ppo_it1"]["alignment_tax_pct"]) == pytest.approx((base - own) / base * 100, abs=1e-12)
    # settings of an evaluation label come from the training run with the same label (args.json)
    assert reasoning["cfpo_it1"]["objective"] == "cfpo" and reasoning["cfpo_it1"]["iterations"] == "1"
    assert reasoning["cfpo_it1"]["batch_ratio"] == "2.0"  # 32 prompts × 4 samples / 64
    assert reasoning["sft"]["base_model"] == "Qwen/Qwen2.5-1.5B"  # from --labels


def test_diagnostics_equal_the_logged_series(report):
    rows = read_csv(report / "diagnostics.csv")
    assert set(rows) == {"ppo_it1", "ppo_it4", "cfpo_it1", "cfpo_it4"}
    for label, iterations in (("ppo_it1", 1), ("cfpo_it4", 4)):
        assert float(rows[label]["clip_ratio_max"]) == f32(iterations * 24 / 1024)
        assert rows[label]["iterations"] == str(iterations) and rows[label]["last_step"] == "24"
    # ppo_it4's reward is step/32 up to step 12, then 0. By hand: start 1/32, best 5-point mean
    # 10/32 (steps 8–12), midpoint 0.171875; the means at steps 13, 14, 15 are 0.2625, 0.20625,
    # 0.14375, so it collapses at step 15. cfpo's steadily rising reward does not collapse.
    assert rows["ppo_it4"]["collapse_step"] == "15" and rows["cfpo_it4"]["collapse_step"] == ""
    # entropy = 2·exp(−step/50) → k = 100/50 = 2 per 100 steps (float32 logging: 1e-5 tolerance)
    assert float(rows["cfpo_it1"]["entropy_decay_per_100_steps"]) == pytest.approx(2.0, abs=1e-5)
    # length 200 + 4·step over 24 steps: first 10% = steps 1–2 (206), last = 23–24 (294)
    assert float(rows["cfpo_it1"]["response_length_growth"]) == pytest.approx(294 / 206, rel=1e-7)
    # final reward is the 5-point trailing mean of rollout/reward_mean (not train/reward = −9)
    assert float(rows["cfpo_it1"]["final_reward"]) == pytest.approx(sum(s / 32 for s in range(20, 25)) / 5, rel=1e-6)


def test_broken_logs_become_notes_and_the_rest_is_still_reported(inputs, tmp_path):
    runs = tmp_path / "runs"
    write_openrlhf_tensorboard(runs / "good", 2, "cfpo")
    write_openrlhf_tensorboard(runs / "no_entropy", 2, "ppo", entropy=False)
    write_openrlhf_tensorboard(runs / "truncated", 2, "ppo")
    event_file = next((runs / "truncated").glob("events.out.tfevents.*"))
    event_file.write_bytes(event_file.read_bytes()[:-7])  # a run killed mid-write
    from torch.utils.tensorboard import SummaryWriter

    SummaryWriter(log_dir=str(runs / "empty")).close()  # OpenRLHF's logger before the first step
    (tmp_path / "empty_folder").mkdir()
    out = tmp_path / "out"
    assert main(["report", "--runs", str(runs), str(tmp_path / "empty_folder"), "--evals", str(inputs.evals),
                 "--out", str(out)]) == 0
    notes = (out / "report.md").read_text().split("## Notes", 1)[1]
    assert re.search(r"empty: no OpenRLHF training metrics in its event files \(empty log", notes)
    assert "run no_entropy: no entropy logged (looked for train/entropy_loss) (OpenRLHF logs entropy only" in notes
    assert re.search(r"truncated/events\.out\.tfevents\.\S+: truncated or corrupt event file; read \d+ records", notes)
    assert "empty_folder: no training logs found" in notes
    assert "alignment tax left empty: no --baseline given" in (out / "table2.md").read_text()
    rows = read_csv(out / "diagnostics.csv")
    assert set(rows) == {"good", "no_entropy", "truncated"}
    assert rows["no_entropy"]["entropy_decay_per_100_steps"] == "" and rows["no_entropy"]["clip_ratio_max"] != ""
    assert rows["truncated"]["last_step"] == "24"  # records before the damage are kept
    assert (out / "figures" / "entropy.png").read_bytes().startswith(PNG_MAGIC)
    assert len(read_csv(out / "table1.csv")) == 3


def test_wandb_offline_run_gives_series_and_settings(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = SimpleNamespace(
        actor=SimpleNamespace(policy_loss_type="cfpo", model_name_or_path="tiny-llama"),
        algo=SimpleNamespace(kl=SimpleNamespace(init_coef=0.001)),
        train=SimpleNamespace(max_epochs=8, batch_size=16),
        rollout=SimpleNamespace(batch_size=8, n_samples_per_prompt=4),
    )
    run = wandb.init(project="p", name="cfpo_it8", config=args.__dict__, dir=str(tmp_path), mode="offline")
    run.define_metric("train/global_step")
    run.define_metric("train/*", step_metric="train/global_step", step_sync=True)
    for step in range(1, 6):  # as WandbLogger.log_train: train/<key> plus train/global_step
        run.log({"train/ppo_clip_ratio": step / 100, "train/rollout/reward_mean": step / 10, "train/global_step": step})
    run.finish()
    out = tmp_path / "out"
    assert main(["report", "--runs", str(tmp_path / "wandb"), "--out", str(out)]) == 0
    runs = json.loads((out / "report_config.json").read_text())["config"]["runs"]
    assert runs["cfpo_it8"]["objective"] == "cfpo" and runs["cfpo_it8"]["iterations"] == 8
    assert runs["cfpo_it8"]["kl_beta"] == 0.001 and runs["cfpo_it8"]["batch_ratio"] == 2.0
    row = read_csv(out / "diagnostics.csv")["cfpo_it8"]
    assert float(row["clip_ratio_max"]) == 0.05 and row["last_step"] == "5"


def test_bad_input_is_one_error_line(inputs, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["report", "--evals", str(inputs.evals), "--baseline", "nope", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["openrlhf-cfpo report: error: --baseline 'nope' is not among the evaluation labels "
                   "(cfpo_it1, ppo_it1, sft); pass the folder name of the baseline's results.json"]
    bad_labels = tmp_path / "labels.yaml"
    bad_labels.write_text("sft: {objectve: cfpo}\n")
    assert main(["report", "--evals", str(inputs.evals), "--labels", str(bad_labels), "--out", out]) == 2
    assert "unknown setting 'objectve'" in capsys.readouterr().err
    assert main(["report", "--out", out]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert main(["report", "--runs", str(tmp_path / "typo"), "--out", out]) == 2
    assert capsys.readouterr().err.strip().endswith("typo: no such folder; pass folders that hold training logs")


def test_mapped_tags_are_the_ones_openrlhf_writes():
    """Guards the mapping table against OpenRLHF drift: each tag's key is a status key in 0.11.2's
    trainer source, and its logger prefixes train/ and eval/."""
    import importlib.util

    package = Path(importlib.util.find_spec("openrlhf").origin).parent
    logger_source = (package / "utils" / "logging_utils.py").read_text()
    assert 'f"train/{k}"' in logger_source and 'f"eval/{k}"' in logger_source
    trainer_source = "".join(
        (package / p).read_text()
        for p in ("trainer/ppo_trainer.py", "trainer/ray/ppo_actor.py", "trainer/ppo_utils/experience.py")
    )
    for source in OPENRLHF_METRICS:
        for tag in source.tags:
            if source.name == "accuracy":
                assert 'f"eval_{ds}_pass1"' in trainer_source
                continue
            key = tag.split("/", 1)[1]
            assert f'"{key}"' in trainer_source or f"{key}:" in trainer_source, tag


def test_lab_sweep_counts_each_cell_once_and_draws_its_seeds_as_one_curve(quick_lab, tmp_path):
    """A lab folder holds every cell's lines twice (OUT/metrics.jsonl and OUT/cells/*/metrics.jsonl)."""
    from openrlhf_cfpo.reporting.intervals import BAND_METHOD
    from openrlhf_cfpo.reporting.report import panel_dimension, seed_curves
    from openrlhf_cfpo.reporting.training_logs import discover_training_runs

    out = tmp_path / "report"
    assert main(["report", "--runs", str(quick_lab.out.parent), "--out", str(out)]) == 0
    runs = json.loads((out / "report_config.json").read_text())["config"]["runs"]
    cells = json.loads((quick_lab.out / "summary.json").read_text())["cells"]
    assert len(runs) == len(cells) == 30
    assert {run["source"] for run in runs.values()} == {str(quick_lab.out / "metrics.jsonl")}
    assert "out/cfpo_it16_seed2" in runs and len(read_csv(out / "diagnostics.csv")) == 30
    assert BAND_METHOD in (out / "report.md").read_text()

    found = discover_training_runs([str(quick_lab.out.parent)], [])
    curves = seed_curves(found, ["accuracy"], panel_dimension(found))
    assert len(curves) == 10 and all(c.label.endswith("(mean of 3 seeds)") for c in curves)
    (curve,) = [c for c in curves if c.label == "out/ppo_it16 (mean of 3 seeds)"]
    per_seed = [run.series["accuracy"][1] for run in found if run.group == "out/ppo_it16"]
    assert len(per_seed) == 3
    for i, values in enumerate(zip(*per_seed)):
        assert (curve.low[i], curve.high[i]) == (min(values), max(values))
        assert curve.values[i] == pytest.approx(sum(values) / 3, abs=1e-15)
