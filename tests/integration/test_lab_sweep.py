"""`openrlhf-cfpo lab --quick` end to end: every output file, determinism, resume, bad input."""

import json
import shutil

import pytest

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.lab import sweep
from openrlhf_cfpo.lab.loop import METRIC_KEYS
from openrlhf_cfpo.reporting.metrics import read_metrics_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("objective_vs_ratio.png", "dynamics.png", "entropy.png", "policy_kl.png")
ISSUE_METRIC_KEYS = {
    "objective", "iterations", "batch_ratio", "seed", "step", "reward_mean", "accuracy", "clip_ratio", "ratio_mean",
    "ratio_max", "ratio_min", "policy_kl", "entropy", "response_length_mean", "grad_norm",
}
SUMMARY_CELL_KEYS = {"objective", "iterations", "final_accuracy", "peak_accuracy", "final_reward", "collapsed",
                     "wall_time_s", "final_entropy", "max_clip_ratio"}
CELLS = [f"{o}-it{k}" for k in (1, 2, 4, 8, 16) for o in ("ppo", "cfpo")]


def _lab(*args):
    return main(["lab", "--quick", "--no-progress", *map(str, args)])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("lab-cache")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("quick") / "out"
    assert _lab("--out", out, "--cache-dir", cache) == 0
    return out


def test_quick_sweep_writes_every_output(quick_run):
    lines = read_metrics_jsonl(quick_run / "metrics.jsonl")
    steps = json.loads((quick_run / "config.json").read_text())["config"]["steps"]
    assert len(lines) == len(CELLS) * steps
    for line in lines:
        assert ISSUE_METRIC_KEYS <= set(line) and set(line) == set(METRIC_KEYS)
        assert all(value is not None for value in line.values())
    assert [f"{l['objective']}-it{l['iterations']}" for l in lines[::steps]] == CELLS

    summary = json.loads((quick_run / "summary.json").read_text())
    assert "collapse_rule" in summary and "final held-out accuracy" in summary["collapse_rule"]
    assert [f"{c['objective']}-it{c['iterations']}" for c in summary["cells"]] == CELLS
    for cell in summary["cells"]:
        assert SUMMARY_CELL_KEYS <= set(cell)
        assert cell["peak_accuracy"] >= cell["final_accuracy"]

    config = json.loads((quick_run / "config.json").read_text())
    assert {"config", "versions", "git_sha"} <= set(config) and config["versions"]["torch"]

    report = (quick_run / "report.md").read_text()
    assert "| objective | iterations | held-out acc. (final) | held-out acc. (peak, step) | final entropy" in report
    assert sum(line.startswith(("| ppo |", "| cfpo |")) for line in report.splitlines()) == len(CELLS)
    for name in FIGURES:
        assert (quick_run / "figures" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"figures/{name}" in report


def test_same_seed_gives_the_same_metrics(quick_run, cache, tmp_path):
    # the first run trained the warm-up policy, this one loads it from the cache
    assert _lab("--out", tmp_path / "again", "--cache-dir", cache) == 0
    assert (tmp_path / "again" / "metrics.jsonl").read_bytes() == (quick_run / "metrics.jsonl").read_bytes()


def test_killed_sweep_resumes_without_recomputing_finished_cells(quick_run, cache, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    shutil.copytree(quick_run, out)
    # as if killed inside the last cell: no result.json, a metrics file cut mid-line
    killed = out / "cells" / "cfpo-it16"
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
    assert _lab("--out", out, "--cache-dir", cache) == 0
    assert trained == ["cfpo-it16"]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert (out / "metrics.jsonl").read_bytes() == (quick_run / "metrics.jsonl").read_bytes()


def test_out_holding_another_experiment_is_refused(quick_run, cache, capsys):
    before = (quick_run / "metrics.jsonl").read_bytes()
    assert _lab("--out", quick_run, "--cache-dir", cache, "--seed", "1", "--lr", "0.01") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openrlhf-cfpo lab: error: --out")
    assert "holds another experiment" in err[0] and "lr, seed" in err[0]
    assert (quick_run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--iterations", "1,0"], "--iterations must all be >= 1"),
        (["--iterations", "1,x"], "--iterations takes comma-separated integers"),
        (["--objectives", "ppo,dpo"], "unknown objective 'dpo'"),
        (["--eps", "0"], "eps_low must be > 0"),
        (["--batch-ratio", "3"], "--batch-ratio must be >= 1 and divide"),
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
