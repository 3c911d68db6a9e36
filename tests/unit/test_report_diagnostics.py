"""reporting.diagnostics: collapse rule, entropy decay, clip-ratio trend, response-length growth."""

import math

import pytest
import torch

from openrlhf_cfpo.reporting.diagnostics import (
    collapse_step,
    diagnose,
    diagnostics_table,
    edge_ratio,
    entropy_decay_per_100_steps,
    trailing_mean,
)
from openrlhf_cfpo.reporting.training_logs import TrainingRun


def test_trailing_mean_uses_fewer_points_at_the_start():
    assert trailing_mean([1, 2, 3, 4, 5, 6, 7], window=5) == [1, 1.5, 2, 2.5, 3, 4, 5]


def test_collapse_step_follows_the_stated_rule():
    # Reward climbs 0.02/step to 0.30 at step 15, then drops to 0.05. By hand: start 0.02, best
    # 5-point mean 0.26 (steps 11–15), midpoint 0.14; the 5-point means after step 15 are
    # 0.226, 0.188, 0.146, 0.100, … so step 19 is the first from which it stays below 0.14.
    steps = list(range(1, 31))
    rewards = [0.02 * s if s <= 15 else 0.05 for s in steps]
    assert collapse_step(steps, rewards) == 19


def test_no_collapse_for_rising_recovering_or_flat_rewards():
    steps = list(range(1, 31))
    assert collapse_step(steps, [0.01 * s for s in steps]) is None
    dip_and_recover = [0.02 * s if not 12 <= s <= 20 else 0.0 for s in steps]
    assert collapse_step(steps, dip_and_recover) is None
    assert collapse_step(steps, [0.5] * 30) is None  # never rose above its start
    assert collapse_step([], []) is None


def test_collapse_works_on_negative_reward_scales():
    rewards = [-2.0, -1.0, 0.0, 1.0, 2.0, 2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0]
    # By hand, 5-point means: -2, -1.5, -1, -0.5, 0, 0.8, 0.6, 0.2, -0.4, -1.2, -2, -2.
    # Start -2, best 0.8, midpoint -0.6: below it from index 9 to the end.
    assert collapse_step(list(range(12)), rewards) == 9
    assert collapse_step(list(range(9)), rewards[:9]) is None  # -0.4 is not below -0.6


def test_entropy_decay_recovers_the_exponential_rate():
    steps = list(range(0, 200, 5))
    entropy = [1.7 * math.exp(-0.02 * s) for s in steps]  # k = 0.02 × 100 = 2
    got = entropy_decay_per_100_steps(steps, entropy)
    expected = torch.tensor(2.0, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected, rtol=0, atol=1e-9)
    assert entropy_decay_per_100_steps(steps, [0.0] * len(steps)) is None
    assert entropy_decay_per_100_steps([3], [1.0]) is None


def test_edge_ratio_compares_last_and_first_tenth():
    lengths = [100.0 + 10 * i for i in range(20)]  # 10% = 2 points: first mean 105, last mean 285
    assert edge_ratio(lengths) == pytest.approx(285 / 105, rel=1e-12)
    assert edge_ratio([50.0, 80.0]) == pytest.approx(80 / 50, rel=1e-12)  # at least one point each


def test_diagnose_reads_each_metric_and_leaves_missing_ones_empty():
    steps = list(range(1, 21))
    run = TrainingRun(
        label="r",
        source="memory",
        kind="lab",
        series={
            "reward_mean": (steps, [0.1] * 20),
            "clip_ratio": (steps, [0.01 + 0.002 * s for s in steps]),  # slope 0.002/step = 0.2 per 100
        },
    )
    found = diagnose(run)
    assert found.last_step == 20 and found.final_reward == pytest.approx(0.1)
    assert found.clip_ratio_slope_per_100_steps == pytest.approx(0.2, abs=1e-12)
    assert found.clip_ratio_max == pytest.approx(0.05) and found.clip_ratio_mean == pytest.approx(0.031)
    assert found.entropy_decay_per_100_steps is None and found.response_length_growth is None
    table = diagnostics_table([run])
    assert table.rows[0]["model"] == "r" and "Collapse rule" in table.notes[0]
