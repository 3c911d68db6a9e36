"""The lab's copies of OpenRLHF 0.11.2's RLHF formulas (openrlhf_cfpo.lab.rlhf_formulas) on hand-worked
cases; tests/integration/test_rlhf_formulas_vs_openrlhf.py checks them against OpenRLHF's own code."""

import math

import pytest
import torch

from openrlhf_cfpo.lab.rlhf_formulas import (
    RewardNormalizer, cumulative_returns, k1_kl, pairwise_loss, rloo_advantages, rloo_baseline_subtracted,
    token_rewards,
)


def test_pairwise_loss_is_bradley_terry():
    chosen, rejected = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0])
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    torch.testing.assert_close(pairwise_loss(chosen, rejected), torch.tensor(expected))


def test_rloo_by_hand_with_the_kl_penalty_in_the_reward():
    """Two prompts, two responses each; response lengths 3, 1, 2, 3 of T = 3."""
    scores = torch.tensor([1.0, 0.0, 5.0, 25.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 9.0, 9.0], [-0.1, 0.1, 9.0], [0.0, 0.0, 0.0]])
    assert rloo_baseline_subtracted(scores, 2).tolist() == [1.0, -1.0, -20.0, 20.0]
    beta = 0.5
    rewards = token_rewards(rloo_baseline_subtracted(scores, 2), kl, mask, kl_coef=beta)
    # the clipped RLOO value at the last action token, −β·kl everywhere (masked out by the returns)
    expected_rewards = torch.tensor([[-0.05, -0.1, 1 - 0.15], [-1 - 0.25, -4.5, -4.5], [0.05, -10 - 0.05, -4.5],
                                     [0.0, 0.0, 10.0]])
    torch.testing.assert_close(rewards, expected_rewards)
    expected_returns = torch.tensor([[0.7, 0.75, 0.85], [-1.25, 0.0, 0.0], [-10.0, -10.05, 0.0], [10.0, 10.0, 10.0]])
    torch.testing.assert_close(cumulative_returns(rewards, mask), expected_returns)
    torch.testing.assert_close(rloo_advantages(scores, kl, mask, beta, 2), expected_returns)
    # β ≤ 0: no penalty
    no_penalty = rloo_advantages(scores, 0 * kl, mask, 0.0, 2)
    torch.testing.assert_close(rloo_advantages(scores, kl, mask, -1.0, 2), no_penalty)


def test_rloo_needs_groups_of_at_least_two():
    with pytest.raises(ValueError, match="n_samples_per_prompt >= 2"):
        rloo_baseline_subtracted(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="dividing the batch"):
        rloo_baseline_subtracted(torch.zeros(5), 2)


def test_k1_kl_is_the_clamped_log_ratio():
    log_probs = torch.tensor([[-1.0, -30.0, -0.5]], dtype=torch.float64)
    ref = torch.tensor([[-2.0, -0.1, -40.0]], dtype=torch.float64)
    assert k1_kl(log_probs, ref).tolist() == [[1.0, -10.0, 10.0]]
    assert k1_kl(log_probs, ref).dtype == torch.float32


def test_reward_normalizer_standardizes_its_fit_scores():
    scores = torch.tensor([1.0, 2.0, 4.0, 9.0])
    normalizer = RewardNormalizer.fit(scores)
    assert normalizer.mean == 4.0 and normalizer.std == pytest.approx(scores.std().item())
    normalized = normalizer(scores)
    assert abs(normalized.mean().item()) < 1e-6 and normalized.std().item() == pytest.approx(1.0)
    assert RewardNormalizer.fit(torch.ones(3)).std == pytest.approx(1e-8)
    with pytest.raises(ValueError, match="at least 2 scores"):
        RewardNormalizer.fit(torch.ones(1))
