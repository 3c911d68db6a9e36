"""Policy surrogates of PPO-clip and Clipping-Free Policy Optimization (CFPO), in pure torch.

Every function takes per-token tensors of shape ``(batch, seq)`` (any broadcastable shape works):
``ratio`` r = π_θ / π_old, ``advantages`` A, and where needed a 0/1 ``mask`` of action tokens.
Losses are returned per token, to be minimised and reduced by the caller (OpenRLHF's
``aggregate_loss`` inside OpenRLHF, a token-weighted mean in the lab).

    PPO-clip (eq. 6):  ℓ = −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A)
    CFPO (eqs. 7–8):   ℓ = −(r·A − |A| / (2ε) · (r − 1)²),  ε = ε_high if A > 0 else ε_low

With ε_low = ε_high this is exactly the paper's eq. (7)/(8); the sign-dependent ε gives CFPO the
same trust region as clip-higher (DAPO) settings. This module imports no training framework.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

# OpenRLHF bounds the log-ratio to ±20 before exp (models/loss.py, "ppo"); we use the same bound.
LOG_RATIO_BOUND = 20.0

Objective = Callable[..., torch.Tensor]


def check_trust_region(eps_low: float, eps_high: float) -> None:
    """Raise ValueError unless both trust-region half-widths are positive."""
    for name, eps in (("eps_low", eps_low), ("eps_high", eps_high)):
        if not eps > 0:
            raise ValueError(f"{name} must be > 0 (the trust region is [1-eps_low, 1+eps_high]); got {eps}")


def bounded_ratio(log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> torch.Tensor:
    """r = exp(clamp(log π_θ − log π_old, ±LOG_RATIO_BOUND)): finite for any stale token."""
    return (log_probs - old_log_probs).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp()


def ppo_clip_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float = 0.2, eps_high: float = 0.2
) -> torch.Tensor:
    """Per-token PPO-clip loss −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A), paper eq. (6).

    Outside the trust region in the direction A pushes, the gradient w.r.t. r is exactly 0.
    """
    check_trust_region(eps_low, eps_high)
    return -torch.min(ratio * advantages, ratio.clamp(1 - eps_low, 1 + eps_high) * advantages)


def cfpo_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float = 0.2, eps_high: float = 0.2
) -> torch.Tensor:
    """Per-token CFPO loss −(r·A − |A|/(2ε)·(r−1)²), paper eqs. (7)–(8).

    ε = ε_high where A > 0 and ε_low where A < 0 (A = 0 gives 0 whatever ε). The loss is convex in
    r with minimum at r* = 1 + sign(A)·ε, its gradient at r = 1 equals PPO-clip's (−A), and outside
    the trust region it is a restoring force −A + |A|(r−1)/ε toward r* instead of PPO's zero.
    """
    check_trust_region(eps_low, eps_high)
    eps = torch.where(
        advantages > 0,
        torch.as_tensor(eps_high, dtype=advantages.dtype, device=advantages.device),
        torch.as_tensor(eps_low, dtype=advantages.dtype, device=advantages.device),
    )
    return -(ratio * advantages - advantages.abs() / (2 * eps) * (ratio - 1).square())


OBJECTIVES: Dict[str, Objective] = {"ppo": ppo_clip_loss, "cfpo": cfpo_loss}


def get_objective(name: str) -> Objective:
    """The per-token loss registered as ``name``; an unknown name's error lists the valid ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}") from None


def _masked_sum_and_count(values: torch.Tensor, mask: Optional[torch.Tensor]):
    if mask is None:
        return values.sum(), values.numel()
    mask = mask.to(values.dtype)
    return (values * mask).sum(), mask.sum()


@torch.no_grad()
def trust_region_stats(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> Dict[str, torch.Tensor]:
    """Trust-region statistics over the masked action tokens (scalar tensors).

    - ``clip_ratio``: fraction of tokens outside the trust region in the direction their advantage
      pushes (A>0 and r>1+ε_high, or A<0 and r<1−ε_low). For PPO-clip it is the fraction clipped
      (zero gradient); for CFPO the fraction being pulled back toward r*. One definition for both.
    - ``ratio_mean``, ``ratio_min``, ``ratio_max``: of r over the same tokens.

    With no action token at all every statistic is NaN (there is nothing to measure).
    """
    outside = ((advantages > 0) & (ratio > 1 + eps_high)) | ((advantages < 0) & (ratio < 1 - eps_low))
    outside = outside.expand_as(ratio).to(ratio.dtype)
    n_outside, n_tokens = _masked_sum_and_count(outside, mask)
    ratio_sum, _ = _masked_sum_and_count(ratio, mask)
    selected = ratio if mask is None else ratio[mask.expand_as(ratio).bool()]
    empty = selected.numel() == 0
    nan = torch.tensor(float("nan"), dtype=ratio.dtype, device=ratio.device)
    return {
        "clip_ratio": n_outside / n_tokens,
        "ratio_mean": ratio_sum / n_tokens,
        "ratio_min": nan if empty else selected.min(),
        "ratio_max": nan if empty else selected.max(),
    }
