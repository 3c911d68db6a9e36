"""reporting.training_logs without event files: tag mapping, lab metrics.jsonl, labels, bad wandb files."""

from pathlib import Path

from openrlhf_cfpo.reporting.metrics import MetricsWriter
from openrlhf_cfpo.reporting.training_logs import (
    OPENRLHF_METRICS,
    VERL_METRICS,
    discover_training_runs,
    map_openrlhf_scalars,
    missing_metric_note,
)


def test_mapping_prefers_rollout_stats_and_averages_eval_datasources():
    scalars = {
        "train/reward": {1: -1.0, 2: -1.0},
        "train/rollout/reward_mean": {2: 0.5, 1: 0.25},
        "train/response_length": {1: 10.0},  # used: rollout/response_length_mean is absent
        "eval/eval_math_pass1": {4: 0.25, 8: 0.5},
        "eval/eval_gsm8k_pass1": {4: 0.75, 8: 1.0, 12: 1.0},
        "eval/eval_math_pass4": {4: 1.0},
        "train/timing/generation": {1: 3.0},
    }
    mapped = map_openrlhf_scalars(scalars)
    assert mapped["reward_mean"] == ([1, 2], [0.25, 0.5])
    assert mapped["response_length_mean"] == ([1], [10.0])
    assert mapped["accuracy"] == ([4, 8], [0.5, 0.75])  # steps where every datasource was evaluated
    assert set(mapped) == {"reward_mean", "response_length_mean", "accuracy"}


def write_lab(path, cells, steps=3):
    with MetricsWriter(path) as writer:
        for objective, iterations in cells:
            for step in range(steps):
                writer.write({"objective": objective, "iterations": iterations, "batch_ratio": 1, "seed": 0,
                              "step": step, "reward_mean": step / 4 + iterations, "clip_ratio": 0.5,
                              "accuracy": None if step % 2 else step / 8})


def test_lab_metrics_give_one_run_per_cell(tmp_path):
    write_lab(tmp_path / "sweep" / "metrics.jsonl", [("ppo", 1), ("cfpo", 4)])
    write_lab(tmp_path / "single" / "metrics.jsonl", [("cfpo", 2)])
    notes = []
    runs = {run.label: run for run in discover_training_runs([str(tmp_path)], notes)}
    assert set(runs) == {"sweep/ppo_it1", "sweep/cfpo_it4", "single"} and notes == []
    assert runs["sweep/cfpo_it4"].settings.objective == "cfpo" and runs["sweep/cfpo_it4"].settings.iterations == 4
    assert runs["sweep/cfpo_it4"].series["reward_mean"] == ([0, 1, 2], [4.0, 4.25, 4.5])
    assert runs["single"].series["accuracy"] == ([0, 2], [0.0, 0.25])  # null steps left out
    # a lab run's missing metric is named without OpenRLHF's tags and flags
    assert missing_metric_note(runs["single"], "entropy") == f"run single: no entropy in {runs['single'].source}"


def test_rlhf_lab_cells_of_different_beta_stay_apart(tmp_path):
    with MetricsWriter(tmp_path / "rlhf" / "metrics.jsonl") as writer:
        for beta in (0.02, 0.0):
            for step in (1, 2):
                writer.write({"objective": "ppo", "iterations": 1, "batch_ratio": 16, "kl_coef": beta, "seed": 0,
                              "step": step, "reward_mean": beta + step, "response_length_mean": 4.0})
    notes = []
    runs = {run.label: run for run in discover_training_runs([str(tmp_path)], notes)}
    assert set(runs) == {"rlhf/ppo_it1_kl0.02", "rlhf/ppo_it1_kl0"} and notes == []
    assert runs["rlhf/ppo_it1_kl0.02"].settings.kl_beta == 0.02
    assert runs["rlhf/ppo_it1_kl0"].series["reward_mean"] == ([1, 2], [1.0, 2.0])


def test_same_folder_name_twice_is_labelled_by_path(tmp_path):
    write_lab(tmp_path / "a" / "run" / "metrics.jsonl", [("ppo", 1)])
    write_lab(tmp_path / "b" / "run" / "metrics.jsonl", [("cfpo", 1)])
    labels = sorted(run.label for run in discover_training_runs([str(tmp_path)], []))
    root = tmp_path.name
    assert labels == [f"{root}/a/run", f"{root}/b/run"]


def test_unreadable_inputs_become_notes(tmp_path):
    bad_wandb = tmp_path / "offline-run-1" / "run-abc.wandb"
    bad_wandb.parent.mkdir()
    bad_wandb.write_bytes(b"not a wandb file")
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    notes = []
    assert discover_training_runs([str(tmp_path)], notes) == []
    assert any("run-abc.wandb: skipped, unreadable wandb run (not a wandb datastore" in n for n in notes)
    assert any("metrics.jsonl: skipped, unreadable lab metrics" in n for n in notes)
    assert any("no training logs found" in n for n in notes)


def test_docs_print_the_mapping_table():
    """docs/reports.md carries OPENRLHF_METRICS and VERL_METRICS row for row, so the documented mapping
    is the used one."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text(encoding="utf-8")
    rows = {" ".join(line.split()) for line in docs.splitlines()}
    for source in OPENRLHF_METRICS + VERL_METRICS:
        tags = ", ".join(f"`{tag}`" for tag in source.tags)
        row = f"| `{source.name}` | {tags} | {source.meaning} | {source.missing_hint} |"
        assert " ".join(row.split()) in rows
