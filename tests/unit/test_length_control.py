"""AlpacaEval 2.0's length-controlled win rate (openrlhf_cfpo.reporting.length_control) without alpaca_eval:
the fit's optimality, what the length control removes, ties, and bad input.
tests/integration/test_length_control_vs_alpaca_eval.py compares it with alpaca_eval's own function."""

import numpy as np
import pytest

from openrlhf_cfpo.reporting import length_control
from openrlhf_cfpo.reporting.length_control import length_controlled_win_rate


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [0.05, 1.0, 1e4])
def test_fit_meets_the_l1_optimality_conditions(seed, c):
    """θ minimizes ‖θ‖₁ + C·Σ cross-entropy: C·∂_j L = −sign(θ_j) where θ_j ≠ 0, |C·∂_j L| ≤ 1 where θ_j = 0."""
    rng = np.random.default_rng(seed)
    x = np.stack([np.tanh(rng.normal(size=200)), np.ones(200)], axis=1)
    p = np.where(rng.random(200) < 0.2, 0.5, (rng.random(200) < 1 / (1 + np.exp(-(1.5 * x[:, 0] + 0.4)))) * 1.0)
    theta = length_control._fit(x, p, c)
    gradient = c * x.T @ (1 / (1 + np.exp(-(x @ theta))) - p)
    for g, t in zip(gradient, theta):
        if t != 0:
            assert g == pytest.approx(-np.sign(t), abs=1e-6)
        else:
            assert abs(g) <= 1 + 1e-9
    assert (theta == 0).all() == (c == 0.05 and (np.abs(c * x.T @ (0.5 - p)) <= 1).all())


def test_a_judge_that_only_likes_length_gives_an_even_length_controlled_win_rate():
    rng = np.random.default_rng(0)
    baseline = rng.integers(5, 40, 800)
    model = baseline + rng.integers(-5, 20, 800)  # mostly longer
    p_win = 1 / (1 + np.exp(-2.0 * np.tanh((model - baseline) / 8)))
    preferences = (rng.random(800) < p_win).astype(float)
    result = length_controlled_win_rate(preferences, model, baseline)
    assert result["win_rate"] > 0.65
    assert abs(result["length_controlled_win_rate"] - 0.5) < 0.05
    assert result["length_coefficient"] < 0  # δ = baseline − model: longer model responses win more


def test_ties_count_half_and_equal_lengths_leave_the_intercept_alone():
    preferences = np.random.default_rng(0).choice([1.0, 0.0, 0.5], size=200, p=[0.5, 0.2, 0.3])
    result = length_controlled_win_rate(preferences, [10] * 200, [10] * 200)
    assert result["win_rate"] == pytest.approx(np.mean(preferences == 1) + 0.5 * np.mean(preferences == 0.5))
    assert result["length_coefficient"] == 0.0
    assert result["length_controlled_win_rate"] == pytest.approx(result["win_rate"], abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (([1, 0, 1, 0], [1, 2, 3, 4], [4, 3, 2, 1]), "at least 5 pairs"),
    (([1, 0, 2, 0, 1], [1] * 5, [2] * 5), r"must lie in \[0, 1\]"),
    (([1, 0, 1, 0, 1], [1] * 5, [2] * 4), "of one length"),
])
def test_bad_input_is_refused_in_one_line(args, message):
    with pytest.raises(ValueError, match=message):
        length_controlled_win_rate(*args)
