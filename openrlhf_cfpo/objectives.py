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


def _per_token_eps(advantages: torch.Tensor, eps_low: float, eps_high: float):
    """ε = ε_high where A > 0 and ε_low elsewhere: a tensor like ``advantages``, or the float itself
    when both sides are equal (no per-token tensor to allocate)."""
    if eps_low == eps_high:
        return eps_low
    return torch.where(
        advantages > 0,
        torch.as_tensor(eps_high, dtype=advantages.dtype, device=advantages.device),
        torch.as_tensor(eps_low, dtype=advantages.dtype, device=advantages.device),
    )


class _CFPOSurrogate(torch.autograd.Function):
    """CFPO's per-token loss with its closed-form gradients, fused.

    Autograd of the plain formula keeps every intermediate of the quadratic for the backward pass;
    this keeps only r and A, which the caller holds anyway, and recomputes the gradients
    ∂ℓ/∂r = −A + |A|(r−1)/ε and ∂ℓ/∂A = −r + sign(A)(r−1)²/(2ε) from them.
    tests/unit/test_objectives.py checks both against autograd of the plain formula (float64).
    """

    @staticmethod
    def forward(ctx, ratio, advantages, eps_low, eps_high):
        ctx.save_for_backward(ratio, advantages)
        ctx.eps = (eps_low, eps_high)
        eps = _per_token_eps(advantages, eps_low, eps_high)
        penalty = advantages.abs().div_(2 * eps) * (ratio - 1).square_()
        return (ratio * advantages).sub_(penalty).neg_()

    @staticmethod
    def backward(ctx, grad_loss):
        ratio, advantages = ctx.saved_tensors
        eps = _per_token_eps(advantages, *ctx.eps)
        grad_ratio = grad_advantages = None
        if ctx.needs_input_grad[0]:
            grad = ((ratio - 1) * advantages.abs()).div_(eps).sub_(advantages).mul_(grad_loss)
            grad_ratio = grad.sum_to_size(ratio.shape)
        if ctx.needs_input_grad[1]:
            grad = ((ratio - 1).square_() * advantages.sign()).div_(2 * eps).sub_(ratio).mul_(grad_loss)
            grad_advantages = grad.sum_to_size(advantages.shape)
        return grad_ratio, grad_advantages, None, None


def cfpo_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float = 0.2, eps_high: float = 0.2
) -> torch.Tensor:
    """Per-token CFPO loss −(r·A − |A|/(2ε)·(r−1)²), paper eqs. (7)–(8).

    ε = ε_high where A > 0 and ε_low where A < 0 (A = 0 gives 0 whatever ε). The loss is convex in
    r with minimum at r* = 1 + sign(A)·ε, its gradient at r = 1 equals PPO-clip's (−A), and outside
    the trust region it is a restoring force −A + |A|(r−1)/ε toward r* instead of PPO's zero.
    Computed by a fused autograd function (closed-form gradient, only r and A saved).
    """
    check_trust_region(eps_low, eps_high)
    return _CFPOSurrogate.apply(ratio, advantages, eps_low, eps_high)


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
    if mask.dtype == torch.bool and values.dtype == torch.bool:
        return (values & mask).sum(), mask.sum()
    mask = mask.to(values.dtype)
    return (values * mask).sum(), mask.sum()


@torch.no_grad()
def clip_ratio(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> torch.Tensor:
    """Fraction of the masked action tokens outside the trust region in the direction their advantage
    pushes (A>0 and r>1+ε_high, or A<0 and r<1−ε_low), as a scalar of ``ratio``'s dtype.

    For PPO-clip it is the fraction clipped (zero gradient); for CFPO the fraction being pulled
    back toward r*. One definition for both (ARCHITECTURE.md, "clip ratio").
    """
    outside = ((advantages > 0) & (ratio > 1 + eps_high)) | ((advantages < 0) & (ratio < 1 - eps_low))
    outside = outside.expand_as(ratio)
    if mask is not None and mask.dtype != torch.bool:
        outside = outside.to(ratio.dtype)
    n_outside, n_tokens = _masked_sum_and_count(outside, mask)
    return torch.as_tensor(n_outside, dtype=ratio.dtype) / torch.as_tensor(n_tokens, dtype=ratio.dtype)


@torch.no_grad()
def trust_region_stats(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> Dict[str, torch.Tensor]:
    """Trust-region statistics over the masked action tokens (scalar tensors).

    - ``clip_ratio``: ``clip_ratio(...)``, the fraction of tokens outside the trust region in the
      direction their advantage pushes.
    - ``ratio_mean``, ``ratio_min``, ``ratio_max``: of r over the same tokens.

    With no action token at all every statistic is NaN (there is nothing to measure).
    """
    ratio_sum, n_tokens = _masked_sum_and_count(ratio, mask)
    selected = ratio if mask is None else ratio[mask.expand_as(ratio).bool()]
    empty = selected.numel() == 0
    nan = torch.tensor(float("nan"), dtype=ratio.dtype, device=ratio.device)
    return {
        "clip_ratio": clip_ratio(ratio, advantages, mask, eps_low, eps_high),
        "ratio_mean": ratio_sum / n_tokens,
        "ratio_min": nan if empty else selected.min(),
        "ratio_max": nan if empty else selected.max(),
    }
