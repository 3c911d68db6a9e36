"""`openrlhf-cfpo report` on logs written by verl 0.9.1's own ``Tracking`` logger (tensorboard and file
backends), with the settings examples/verl/train_rlvr_math.sh saves beside them."""

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("verl.trainer.ppo.core_algos", reason="the verl tests run in .venv-verl (make test builds it)")

import verl  # noqa: E402
from verl.utils.tracking import Tracking  # noqa: E402

from openrlhf_cfpo.cli.main import main as cli_main  # noqa: E402
from openrlhf_cfpo.reporting.run_settings import RunSettings  # noqa: E402
from openrlhf_cfpo.reporting.training_logs import METRIC_NAMES, VERL_METRICS, discover_training_runs  # noqa: E402

VERL_SOURCE = Path(verl.__file__).parent


def step_metrics(step, loss_mode):
    """What verl's trainer logs at a step (a subset of its keys; values depend on run and step)."""
    offset = 0.1 if loss_mode == "cfpo" else 0.0
    metrics = {"critic/rewards/mean": 0.1 * step + offset, "critic/score/mean": 0.1 * step + offset,
               "actor/pg_clipfrac": 0.01 * step, "actor/ppo_kl": 0.001 * step, "actor/pg_clipfrac_lower": 0.0,
               "actor/entropy": 1.0 - 0.05 * step, "response_length/mean": 300.0 + step,
               "actor/grad_norm": 0.5, "actor/pg_loss": -0.1, "timing_s/step": 12.0}
    if step % 2 == 0:  # trainer.test_freq=2
        metrics["val-core/math/reward/mean@1"] = 0.2 + 0.05 * step + offset
        metrics["val-aux/math/has_boxed_answer/mean@1"] = 0.9
    return metrics


@pytest.fixture
def verl_runs(tmp_path, monkeypatch):
    """Two runs of the grid logged by verl's Tracking (tensorboard into each run's TENSORBOARD_DIR with
    its verl_overrides.json, and the file logger's JSONL), 4 steps each."""
    root = tmp_path / "runs"
    for loss_mode in ("vanilla", "cfpo"):
        name = f"verl_math_Qwen2.5-3B_{loss_mode}_it4_br2"
        tensorboard = root / name / "tensorboard" / name  # train_rlvr_math.sh's TENSORBOARD_DIR
        tensorboard.mkdir(parents=True)
        overrides = [f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}", "actor_rollout_ref.actor.ppo_epochs=4",
                     "data.train_batch_size=128", "actor_rollout_ref.actor.ppo_mini_batch_size=64",
                     "actor_rollout_ref.actor.use_kl_loss=false", "actor_rollout_ref.model.path=Qwen/Qwen2.5-3B",
                     f"trainer.experiment_name={name}"]
        (tensorboard / "verl_overrides.json").write_text(json.dumps(overrides))
        monkeypatch.setenv("TENSORBOARD_DIR", str(tensorboard))
        monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path / "file_logs"))
        tracker = Tracking("cfpo_verl_batch_ratio", name, default_backend=["tensorboard", "file"])
        for step in range(1, 5):
            tracker.log(step_metrics(step, loss_mode), step=step)
        tracker.finish()
    return tmp_path


def test_verl_tags_are_the_ones_verl_logs():
    source = "".join(p.read_text() for p in (VERL_SOURCE / "trainer/ppo/metric_utils.py",
                                              VERL_SOURCE / "trainer/ppo/v1/trainer_base.py",
                                              VERL_SOURCE / "trainer/ppo/core_algos.py"))
    assert tuple(s.name for s in VERL_METRICS) == METRIC_NAMES
    for metric in VERL_METRICS:
        for tag in metric.tags:
            if metric.name == "accuracy":
                assert 'metric_sec = "val-core"' in source and 'f"mean@{n_resps}"' in source
            else:
                assert f'"{tag}"' in source, tag


def test_tensorboard_logs_give_figures_4_to_8_series_and_settings(verl_runs):
    notes = []
    runs = {run.label: run for run in discover_training_runs([str(verl_runs / "runs")], notes)}
    assert set(runs) == {"verl_math_Qwen2.5-3B_vanilla_it4_br2", "verl_math_Qwen2.5-3B_cfpo_it4_br2"}, notes
    by_objective = {run.settings.objective: run for run in runs.values()}
    assert set(by_objective) == {"ppo", "cfpo"}
    for objective, run in by_objective.items():
        assert run.kind == "verl"
        assert run.settings == RunSettings(objective=objective, kl_beta=0.0, iterations=4, batch_ratio=2.0,
                                           model="Qwen/Qwen2.5-3B")
        offset = 0.1 if objective == "cfpo" else 0.0
        assert run.series["reward_mean"] == ([1, 2, 3, 4], pytest.approx([0.1 + offset, 0.2 + offset, 0.3 + offset, 0.4 + offset]))
        assert run.series["accuracy"] == ([2, 4], pytest.approx([0.3 + offset, 0.4 + offset]))
        assert run.series["clip_ratio"][1] == pytest.approx([0.01, 0.02, 0.03, 0.04])
        assert run.series["policy_kl"][1] == pytest.approx([0.001, 0.002, 0.003, 0.004])
        assert run.series["entropy"][1] == pytest.approx([0.95, 0.9, 0.85, 0.8])


def test_file_logger_jsonl_is_read(verl_runs):
    notes = []
    runs = discover_training_runs([str(verl_runs / "file_logs")], notes)
    assert sorted(run.label for run in runs) == ["verl_math_Qwen2.5-3B_cfpo_it4_br2", "verl_math_Qwen2.5-3B_vanilla_it4_br2"]
    assert all(run.kind == "verl" and run.series["accuracy"][0] == [2, 4] for run in runs)
    assert all(set(run.series) == set(METRIC_NAMES) for run in runs)


def test_report_cli_draws_the_verl_runs(verl_runs, tmp_path):
    out = tmp_path / "report"
    assert cli_main(["report", "--runs", str(verl_runs / "runs"), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "verl_math_Qwen2.5-3B_cfpo_it4_br2" in report and "verl_math_Qwen2.5-3B_vanilla_it4_br2" in report
    assert any(name.endswith(".png") for name in os.listdir(out / "figures"))
