"""`openrlhf-cfpo lab --quick` end to end: every output file, the statistics over seeds, the same
bytes whatever the number of workers or the other seeds, resume, progress, bad input."""

import json
import logging
import shutil
from dataclasses import replace

import pytest

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.lab import sweep
from openrlhf_cfpo.lab.config import LabConfig, quick
from openrlhf_cfpo.lab.loop import METRIC_KEYS
from openrlhf_cfpo.lab.warmup import START_TOLERANCE
from openrlhf_cfpo.reporting.intervals import INTERVAL_METHOD, t_interval
from openrlhf_cfpo.reporting.metrics import read_metrics_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("objective_vs_ratio.png", "dynamics.png")
ISSUE_METRIC_KEYS = {
    "objective", "iterations", "batch_ratio", "seed", "step", "reward_mean", "accuracy", "clip_ratio", "ratio_mean",
    "ratio_max", "ratio_min", "policy_kl", "entropy", "response_length_mean", "grad_norm",
}
SUMMARY_CELL_KEYS = {"objective", "iterations", "batch_ratio", "seed", "final_accuracy", "peak_accuracy",
                     "final_reward", "collapsed", "final_entropy", "max_clip_ratio", "initial_accuracy"}
SEEDS = (0, 1, 2)
CELLS = [f"{o}-it{k}-br1-seed{s}" for k in (1, 2, 4, 8, 16) for s in SEEDS for o in ("ppo", "cfpo")]


def _lab(*args):
    return main(["lab", "--quick", "--no-progress", *map(str, args)])


@pytest.fixture(scope="module")
def quick_run(quick_lab):
    return quick_lab.out


def test_quick_sweep_writes_every_output(quick_run):
    lines = read_metrics_jsonl(quick_run / "metrics.jsonl")
    steps = json.loads((quick_run / "config.json").read_text())["config"]["steps"]
    assert len(lines) == len(CELLS) * steps
    for line in lines:
        assert ISSUE_METRIC_KEYS <= set(line) and set(line) == set(METRIC_KEYS)
        assert all(value is not None for value in line.values())
    names = [f"{l['objective']}-it{l['iterations']}-br{l['batch_ratio']}-seed{l['seed']}" for l in lines[::steps]]
    assert names == CELLS
    assert sorted(p.name for p in (quick_run / "cells").iterdir()) == sorted(CELLS)

    summary = json.loads((quick_run / "summary.json").read_text())
    assert summary["interval_method"] == INTERVAL_METHOD and "t-interval" in INTERVAL_METHOD
    assert "final held-out accuracy" in summary["collapse_rule"]
    assert [f"{c['objective']}-it{c['iterations']}-br1-seed{c['seed']}" for c in summary["cells"]] == CELLS
    for cell in summary["cells"]:
        assert SUMMARY_CELL_KEYS <= set(cell) and cell["peak_accuracy"] >= cell["final_accuracy"]
        assert 0 <= cell["final_accuracy"] <= 1  # a fraction, not a percentage
    assert [(w["seed"], w["target_accuracy"]) for w in summary["warmup"]] == [(s, 0.3) for s in SEEDS]
    # every seed starts next to the target: the stopping rule is checked after every step
    for warmup in summary["warmup"]:
        assert abs(warmup["probe_accuracy"] - warmup["target_accuracy"]) <= START_TOLERANCE
    assert len(summary["aggregate"]) == 10 and len(summary["paired"]) == 5

    config = json.loads((quick_run / "config.json").read_text())
    assert {"config", "versions", "git_sha"} <= set(config) and config["versions"]["torch"]
    assert config["config"]["seeds"] == list(SEEDS) and config["config"]["batch_ratios"] == [1]

    report = (quick_run / "report.md").read_text()
    assert INTERVAL_METHOD in report and "Tables 5–10" in report
    starts = report.split("## Each seed's start", 1)[1].split("## Results", 1)[0]
    start_rows = [line for line in starts.splitlines() if line.startswith(tuple(f"| {s} | " for s in SEEDS))]
    assert len(start_rows) == len(SEEDS) and all("(30.0%)" in row for row in start_rows)  # each seed's start
    assert report.count("| + PPO-clip-iteration ") == 5 and report.count("| + CFPO-iteration ") == 5
    assert "| Warm-up policy (start) |" in report and "Verdict, paired over 3 seed(s)" in report
    for row in summary["paired"]:  # a precision line per iteration count, with the interval's half-width
        assert f"- iterations {row['iterations']}, batch ratio 1: 3 seed(s), half-width ±" \
               f"{100 * (row['diff_ci'][1] - row['diff_mean']):.1f} points" in report
    for name in FIGURES:
        assert (quick_run / "figures" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"figures/{name}" in report


def test_every_cell_has_a_tensorboard_file_of_its_finished_lines_under_lab_tags(quick_run):
    from openrlhf_cfpo.reporting.training_logs import discover_training_runs, read_tensorboard_scalars

    for cell in CELLS:
        folder = quick_run / "cells" / cell
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, cell
        notes = []
        scalars = read_tensorboard_scalars(str(folder), notes)
        lines = read_metrics_jsonl(folder / "metrics.jsonl")
        assert not notes and set(scalars) == {f"lab/{k}" for k in METRIC_KEYS[5:]}
        for key in ("accuracy", "clip_ratio", "policy_kl"):
            assert scalars[f"lab/{key}"] == pytest.approx({line["step"]: line[key] for line in lines}, rel=1e-6)
    # `report` reads the sweep's metrics.jsonl, not the cells' event files, and notes nothing about them
    notes = []
    runs = discover_training_runs([str(quick_run)], notes)
    assert {run.kind for run in runs} == {"lab"} and len(runs) == len(CELLS) and not notes
    notes = []
    (cell_run,) = discover_training_runs([str(quick_run / "cells" / CELLS[0])], notes)
    assert cell_run.kind == "lab" and not notes


def test_aggregates_and_paired_differences_follow_the_cells(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    final = {(c["objective"], c["iterations"], c["seed"]): c["final_accuracy"] for c in summary["cells"]}
    for row in summary["aggregate"]:
        values = [final[(row["objective"], row["iterations"], seed)] for seed in SEEDS]
        mean, interval = t_interval(values)
        assert (row["n_seeds"], row["final_accuracy_mean"], row["final_accuracy_ci"]) == (3, mean, list(interval))
    for row in summary["paired"]:
        diffs = [final[("cfpo", row["iterations"], s)] - final[("ppo", row["iterations"], s)] for s in SEEDS]
        mean, interval = t_interval(diffs)
        assert (row["diffs"], row["diff_mean"], row["diff_ci"]) == (diffs, mean, list(interval))
        assert row["cfpo_ahead"] == sum(d > 0 for d in diffs) and row["n_seeds"] == 3
    # iterations 1, batch ratio 1: every update is on-policy, where the objectives coincide
    (on_policy,) = [row for row in summary["paired"] if row["iterations"] == 1]
    assert on_policy["diffs"] == [0.0, 0.0, 0.0] and on_policy["diff_ci"] == [0.0, 0.0]
    assert on_policy["verdict"] == "identical"


def test_worker_count_does_not_change_a_byte(quick_run, tmp_path, capfd):
    import warnings

    import torch

    # two worker processes and a fresh warm-up cache, against one in-process worker
    out = tmp_path / "two_workers"
    with warnings.catch_warnings():
        # as after `import torch` in the command: a filter whose category lives in torch (which a
        # worker must not unpickle before it applies the filters: importing torch warns)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        assert _lab("--workers", "2", "--out", out, "--cache-dir", tmp_path / "cache") == 0
    # the workers import torch after taking this process's warning filters (no pynvml FutureWarning)
    assert "Warning" not in capfd.readouterr().err
    for name in ("metrics.jsonl", "summary.json", "warmup.json"):
        assert (out / name).read_bytes() == (quick_run / name).read_bytes(), name
    for cell in CELLS:
        assert (out / "cells" / cell / "metrics.jsonl").read_bytes() == (
            quick_run / "cells" / cell / "metrics.jsonl").read_bytes()


def test_a_seed_gives_the_same_bytes_whichever_seeds_run_beside_it(quick_run, tmp_path):
    # seed 1 alone, its warm-up trained afresh, against seed 1 of the three-seed sweep
    out = tmp_path / "seed1"
    assert _lab("--seeds", "1", "--iterations", "1,16", "--workers", "1", "--out", out,
                "--cache-dir", tmp_path / "cache") == 0
    alone = json.loads((out / "summary.json").read_text())["cells"]
    beside = [c for c in json.loads((quick_run / "summary.json").read_text())["cells"]
              if c["seed"] == 1 and c["iterations"] in (1, 16)]
    assert len(alone) == 4 and alone == beside
    for cell in [f"{o}-it{k}-br1-seed1" for k in (1, 16) for o in ("ppo", "cfpo")]:
        assert (out / "cells" / cell / "metrics.jsonl").read_bytes() == (
            quick_run / "cells" / cell / "metrics.jsonl").read_bytes(), cell


def test_killed_sweep_resumes_without_recomputing_finished_cells(quick_run, quick_lab, tmp_path, monkeypatch, caplog):
    out = tmp_path / "resumed"
    shutil.copytree(quick_run, out)
    # as if killed inside a cell: no result.json, a metrics file cut mid-line
    killed = out / "cells" / "cfpo-it16-br1-seed2"
    (killed / "result.json").unlink()
    first_line = (killed / "metrics.jsonl").read_text().splitlines()[0]
    (killed / "metrics.jsonl").write_text(first_line + "\n" + first_line[:20])
    finished = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*") if p.parent != killed}

    trained = []
    original = sweep.train_cell

    def counting(config, cell, *args, **kwargs):
        trained.append(cell.name)
        return original(config, cell, *args, **kwargs)

    monkeypatch.setattr(sweep, "train_cell", counting)
    with caplog.at_level(logging.INFO, logger="openrlhf_cfpo.lab.sweep"):
        assert _lab("--workers", "1", "--out", out, "--cache-dir", quick_lab.cache) == 0
    assert trained == ["cfpo-it16-br1-seed2"]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    # the rerun cell loaded its warm-up policy from the cache; the first run had just trained it
    assert (out / "metrics.jsonl").read_bytes() == (quick_run / "metrics.jsonl").read_bytes()
    # without a terminal: one log line per finished cell instead of a progress bar
    done = [r.getMessage() for r in caplog.records if " finished in " in r.getMessage()]
    assert len(done) == 1 and done[0].startswith("cell cfpo-it16-br1-seed2 finished in") and "(30/30 cells)" in done[0]


def test_progress_bar_shows_cells_and_time_left(quick_lab, tmp_path, capsys):
    config = replace(quick(LabConfig()), objectives=("cfpo",), iterations_list=(1, 2), seeds=(0,))
    sweep.run_sweep(config, tmp_path / "out", quick_lab.cache, show_progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("lab: 100%|") and "2/2 cells" in bar and "<00:00]" in bar


def test_batch_ratio_list_gives_a_grid_and_a_table_per_ratio(quick_lab, tmp_path):
    out = tmp_path / "ratios"
    assert _lab("--iterations", "1,2", "--seeds", "0,1", "--batch-ratio", "1,2", "--workers", "1",
                "--out", out, "--cache-dir", quick_lab.cache) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {(p["iterations"], p["batch_ratio"]) for p in summary["paired"]} == {(1, 1), (2, 1), (1, 2), (2, 2)}
    by_setting = {(p["iterations"], p["batch_ratio"]): p for p in summary["paired"]}
    assert by_setting[(1, 1)]["diff_ci"] == [0.0, 0.0]
    report = (out / "report.md").read_text()
    assert "Batch ratio 1:" in report and "Batch ratio 2:" in report
    for name in ("dynamics_br1.png", "dynamics_br2.png"):
        assert (out / "figures" / name).read_bytes().startswith(PNG_MAGIC) and f"figures/{name}" in report
    assert not (out / "figures" / "dynamics.png").exists()


def test_out_holding_another_experiment_is_refused(quick_run, quick_lab, capsys):
    before = (quick_run / "metrics.jsonl").read_bytes()
    assert _lab("--out", quick_run, "--cache-dir", quick_lab.cache, "--seeds", "1", "--lr", "0.01") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openrlhf-cfpo lab: error: --out")
    assert "holds another experiment" in err[0] and "lr, seeds" in err[0]
    assert (quick_run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--iterations", "1,0"], "--iterations must all be >= 1"),
        (["--iterations", "1,x"], "--iterations takes comma-separated integers"),
        (["--objectives", "ppo,dpo"], "unknown objective 'dpo'"),
        (["--eps", "0"], "eps_low must be > 0"),
        (["--batch-ratio", "1,3"], "--batch-ratio must divide the rollout batch"),
        (["--seeds", "0,1,0"], "--seeds lists a value twice ([0, 1, 0]); give each once"),
        (["--seeds", "0,a"], "--seeds takes comma-separated integers"),
        (["--workers", "0"], "--workers takes a number of processes >= 1, e.g. --workers 2; got '0'"),
        (["--workers", "two"], "--workers takes a number of processes >= 1"),
    ],
)
def test_bad_input_is_one_clear_error_line(args, message, tmp_path, capsys):
    assert _lab("--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openrlhf-cfpo lab: error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_non_lab_folder_is_refused(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert _lab("--out", tmp_path / "out", "--cache-dir", tmp_path / "cache") == 2
    assert "non-empty folder without a lab config.json" in capsys.readouterr().err




def test_third_party_deprecations_are_hidden_unless_verbose(monkeypatch, tmp_path):
    """main() hides them before a sub-command imports anything heavy; the lab's workers take the same
    filters (test_worker_count_does_not_change_a_byte sees no warning from their torch import)."""
    import warnings

    from openrlhf_cfpo.cli import main as cli_main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main.quiet_third_party_deprecations()
        warnings.warn_explicit("pynvml", FutureWarning, "x.py", 1, module="torch.cuda")  # as torch imports pynvml
        warnings.warn_explicit("old api", DeprecationWarning, "x.py", 1, module="transformers.utils")
        warnings.warn_explicit("ours", FutureWarning, "y.py", 1, module="openrlhf_cfpo.lab.sweep")
    assert [str(w.message) for w in caught] == ["ours"]
    calls = []
    monkeypatch.setattr(cli_main, "quiet_third_party_deprecations", lambda: calls.append("quiet"))
    assert _lab("--iterations", "0", "--out", tmp_path / "a") == 2 and calls == ["quiet"]
    assert _lab("--iterations", "0", "--out", tmp_path / "b", "--verbose") == 2 and calls == ["quiet"]
