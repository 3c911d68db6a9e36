"""OpenRLHF 0.11.2's RLHF formulas, for the lab's RLHF setting (the paper's §5.2 and Table 4: "RLOO",
"default OpenRLHF hyperparameters"). The lab does not import OpenRLHF; tests/integration/
test_rlhf_formulas.py checks each function here against the OpenRLHF code it mirrors.

Reward model (``openrlhf/models/loss.py``, ``trainer/rm_trainer.py``, ``models/model.py``):

- ``pairwise_loss``: ``PairWiseLoss`` without a margin, the Bradley–Terry loss
  mean(−log σ(r_chosen − r_rejected)).
- ``RewardNormalizer``: what ``--reward.normalize_enable`` does. The reward-model trainer's
  evaluation scores every chosen and rejected response of its eval set and stores their mean and
  standard deviation (``torch.std``, unbiased, clamped at 1e-8) in the model's config as
  ``mean``/``std``; with ``normalize_reward`` the reward model in eval mode returns
  (r − mean) / std. The lab fits them on the reward model's held-out pairs, as the trainer's last
  evaluation does.

RLOO with the KL penalty in the reward (``trainer/ppo_utils/experience_maker.py``,
``models/utils.py``), OpenRLHF's defaults: ``--algo.kl.estimator k1``, ``--algo.kl.use_loss`` off,
a fixed ``--algo.kl.init_coef`` β (no ``--algo.kl.target``), ``--reward.clip_range -10 10``, γ = 1,
no length penalties. For ``rloo`` OpenRLHF does not whiten advantages (it does so only for gae,
reinforce and reinforce_baseline). Responses are laid out prompt by prompt, ``n_samples_per_prompt``
in a row; per-token tensors are (batch, response_length) with an action mask that is 1 up to and
including the response's last token (its <eos>):

1. ``k1_kl``: kl_t = clamp(log π_old(a_t) − log π_ref(a_t), −10, 10), from the rollout's log-probs
   (``compute_approx_kl`` with k1);
2. ``rloo_baseline_subtracted``: s_i − mean of the other scores of its prompt's group;
3. ``token_rewards``: that value, clamped to the clip range, at the last action token, plus
   −β·kl_t at every token (``compute_reward``; β ≤ 0 means no penalty);
4. ``cumulative_returns``: returns_t = Σ_{u ≥ t} mask_u · reward_u (``get_cumulative_returns``, γ = 1);
   the advantages are the returns.

``rloo_advantages`` chains 2-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

KL_CLAMP = 10.0  # compute_approx_kl clamps every estimator's value to [−10, 10]
REWARD_CLIP_RANGE = (-10.0, 10.0)  # --reward.clip_range default
NORMALIZER_MIN_STD = 1e-8  # rm_trainer.evaluate clamps the std at 1e-8


def pairwise_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry loss mean(−log σ(r_chosen − r_rejected)) over pairs, as OpenRLHF's ``PairWiseLoss``."""
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


@dataclass(frozen=True)
class RewardNormalizer:
    """Reward-model score normalization of ``--reward.normalize_enable``: (r − mean) / std."""

    mean: float
    std: float

    @classmethod
    def fit(cls, scores: torch.Tensor) -> "RewardNormalizer":
        """Mean and unbiased std (clamped at 1e-8) of ``scores``: every chosen and rejected score of the eval pairs."""
        scores = scores.detach().flatten().float()
        if scores.numel() < 2:
            raise ValueError(
                f"RewardNormalizer.fit needs at least 2 scores for a standard deviation; got {scores.numel()}"
            )
        return cls(mean=scores.mean().item(), std=scores.std().clamp(min=NORMALIZER_MIN_STD).item())

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.mean) / self.std


def k1_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(π ‖ π_ref): log π − log π_ref in float32, clamped to [−10, 10]."""
    return (log_probs.float() - ref_log_probs.float()).clamp(min=-KL_CLAMP, max=KL_CLAMP)


def rloo_baseline_subtracted(scores: torch.Tensor, n_samples_per_prompt: int) -> torch.Tensor:
    """s_i − (sum of its group − s_i) / (n − 1) for scores (batch,) laid out ``n_samples_per_prompt`` per prompt."""
    if n_samples_per_prompt < 2 or scores.numel() % n_samples_per_prompt:
        raise ValueError(
            f"RLOO needs n_samples_per_prompt >= 2 dividing the batch; got {n_samples_per_prompt} for {scores.numel()}"
        )
    groups = scores.to(torch.promote_types(scores.dtype, torch.float32)).reshape(-1, n_samples_per_prompt)
    baseline = (groups.sum(-1, keepdim=True) - groups) / (n_samples_per_prompt - 1)
    return (groups - baseline).reshape(-1)


def token_rewards(
    rewards: torch.Tensor,
    kl: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
    reward_clip_range: Tuple[float, float] = REWARD_CLIP_RANGE,
) -> torch.Tensor:
    """Per-token rewards (batch, T): each sequence's reward (batch,), clamped to ``reward_clip_range``, at its
    last action token, plus −kl_coef·kl at every token (kl_coef ≤ 0: none)."""
    kl_coef = max(kl_coef, 0.0)
    rewards = rewards.clamp(min=reward_clip_range[0], max=reward_clip_range[1])
    last = action_mask.size(1) - 1 - action_mask.long().fliplr().argmax(dim=1, keepdim=True)
    at_last = torch.zeros_like(kl).scatter_(1, last, rewards.unsqueeze(1).to(kl.dtype))
    return at_last - kl_coef * kl


def cumulative_returns(rewards: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """returns_t = Σ_{u ≥ t} mask_u · reward_u per sequence (γ = 1), summed from the end as OpenRLHF does."""
    masked = action_mask * rewards
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.size(0), dtype=rewards.dtype)
    for t in reversed(range(rewards.size(1))):
        running = masked[:, t] + running
        returns[:, t] = running
    return returns


def rloo_advantages(
    scores: torch.Tensor,
    kl: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
    n_samples_per_prompt: int,
    reward_clip_range: Tuple[float, float] = REWARD_CLIP_RANGE,
) -> torch.Tensor:
    """Per-token RLOO advantages (batch, T) as OpenRLHF 0.11.2 computes them with the KL penalty in the
    reward: ``cumulative_returns(token_rewards(rloo_baseline_subtracted(scores), kl, ...))``.

    scores (batch,): the reward model's (normalized) score per response, ``n_samples_per_prompt`` per prompt
    in a row; kl (batch, T): ``k1_kl`` of the rollout policy to the reference; action_mask (batch, T)."""
    shaped = rloo_baseline_subtracted(scores, n_samples_per_prompt)
    return cumulative_returns(token_rewards(shaped, kl, action_mask, kl_coef, reward_clip_range), action_mask)
