"""The surrogates' mathematics: values, gradients, optimum, equivalences (float64 for calculus)."""

import math

import pytest
import torch

from openrlhf_cfpo.objectives import (
    LOG_RATIO_BOUND,
    OBJECTIVES,
    bounded_ratio,
    cfpo_loss,
    check_trust_region,
    clip_ratio,
    get_objective,
    ppo_clip_loss,
    trust_region_stats,
)

EXACT = dict(rtol=1e-12, atol=1e-12)  # float64 against closed forms


def reference_ppo(r: float, a: float, eps_low: float, eps_high: float) -> float:
    """Scalar PPO-clip loss, written independently of the tensor code."""
    clipped = min(max(r, 1 - eps_low), 1 + eps_high)
    return -min(r * a, clipped * a)


def reference_cfpo(r: float, a: float, eps_low: float, eps_high: float) -> float:
    eps = eps_high if a > 0 else eps_low
    return -(r * a - abs(a) / (2 * eps) * (r - 1) ** 2)


def reference_cfpo_grad(r: float, a: float, eps_low: float, eps_high: float) -> float:
    """d/dr of the CFPO loss: −A + |A|(r−1)/ε."""
    eps = eps_high if a > 0 else eps_low
    return -a + abs(a) * (r - 1) / eps


def grad_wrt_ratio(loss_fn, ratio, advantages, **eps):
    ratio = ratio.clone().requires_grad_(True)
    loss_fn(ratio, advantages, **eps).sum().backward()
    return ratio.grad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 6)])
@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28), (0.1, 0.3)])
def test_losses_match_scalar_reference(seed, shape, eps_low, eps_high):
    gen = torch.Generator().manual_seed(seed)
    ratio = torch.rand(shape, generator=gen, dtype=torch.float64) * 2  # spans both sides of the region
    advantages = torch.randn(shape, generator=gen, dtype=torch.float64)
    for loss_fn, reference in ((ppo_clip_loss, reference_ppo), (cfpo_loss, reference_cfpo)):
        expected = torch.tensor(
            [reference(r, a, eps_low, eps_high) for r, a in zip(ratio.flatten().tolist(), advantages.flatten().tolist())],
            dtype=torch.float64,
        ).reshape(shape)
        torch.testing.assert_close(loss_fn(ratio, advantages, eps_low, eps_high), expected, **EXACT)
    expected_grad = torch.tensor(
        [
            reference_cfpo_grad(r, a, eps_low, eps_high)
            for r, a in zip(ratio.flatten().tolist(), advantages.flatten().tolist())
        ],
        dtype=torch.float64,
    ).reshape(shape)
    got = grad_wrt_ratio(cfpo_loss, ratio, advantages, eps_low=eps_low, eps_high=eps_high)
    torch.testing.assert_close(got, expected_grad, **EXACT)


def plain_cfpo(ratio, advantages, eps_low, eps_high):
    """The CFPO formula as plain tensor ops (what autograd differentiates without the fused function)."""
    eps = torch.where(advantages > 0, torch.full_like(advantages, eps_high), torch.full_like(advantages, eps_low))
    return -(ratio * advantages - advantages.abs() / (2 * eps) * (ratio - 1) ** 2)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28)])
@pytest.mark.parametrize("adv_shape", [(6, 9), (6, 1)], ids=["per-token", "broadcast"])
def test_fused_cfpo_matches_autograd_of_the_plain_formula(seed, eps_low, eps_high, adv_shape):
    """cfpo_loss's closed-form backward equals autograd of the formula, for r and A (float64),
    including A of shape (batch, 1) broadcast over tokens; and torch's gradcheck agrees."""
    gen = torch.Generator().manual_seed(seed)
    ratio = (torch.randn(6, 9, generator=gen, dtype=torch.float64) * 0.4).exp()
    advantages = torch.randn(adv_shape, generator=gen, dtype=torch.float64)
    weights = torch.randn(6, 9, generator=gen, dtype=torch.float64)  # a non-uniform upstream gradient
    grads = []
    for loss_fn in (cfpo_loss, plain_cfpo):
        r, a = ratio.clone().requires_grad_(True), advantages.clone().requires_grad_(True)
        value = loss_fn(r, a, eps_low, eps_high)
        (value * weights).sum().backward()
        grads.append((value.detach(), r.grad, a.grad))
    for fused, plain in zip(*grads):
        torch.testing.assert_close(fused, plain, **EXACT)
    inputs = (ratio.clone().requires_grad_(True), advantages.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda r, a: cfpo_loss(r, a, eps_low, eps_high), inputs)


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28)])
def test_fused_cfpo_saves_only_ratio_and_advantages_for_backward(eps_low, eps_high):
    """The memory claim: nothing but the caller's own r and A is kept for the backward pass
    (autograd of the plain formula keeps several (batch, seq) intermediates)."""
    ratio = torch.rand(4, 16, requires_grad=True)
    advantages = torch.randn(4, 16)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        cfpo_loss(ratio, advantages, eps_low, eps_high)
    assert sorted(t.data_ptr() for t in saved) == sorted([ratio.data_ptr(), advantages.data_ptr()])
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        plain_cfpo(ratio, advantages, eps_low, eps_high)
    assert len(saved) > 2


def test_hand_computed_values():
    # r = 1.3, A = +1, ε = 0.2: PPO clips to 1.2 → −1.2; CFPO: −(1.3 − 1/0.4 · 0.09) = −1.075.
    r = torch.tensor([1.3], dtype=torch.float64)
    a = torch.tensor([1.0], dtype=torch.float64)
    torch.testing.assert_close(ppo_clip_loss(r, a), torch.tensor([-1.2], dtype=torch.float64), **EXACT)
    torch.testing.assert_close(cfpo_loss(r, a), torch.tensor([-1.075], dtype=torch.float64), **EXACT)
    # r = 0.5, A = −2, ε = 0.2: PPO: −min(−1, −1.6) = 1.6; CFPO: −(−1 − 2/0.4 · 0.25) = 2.25.
    r = torch.tensor([0.5], dtype=torch.float64)
    a = torch.tensor([-2.0], dtype=torch.float64)
    torch.testing.assert_close(ppo_clip_loss(r, a), torch.tensor([1.6], dtype=torch.float64), **EXACT)
    torch.testing.assert_close(cfpo_loss(r, a), torch.tensor([2.25], dtype=torch.float64), **EXACT)


@pytest.mark.parametrize("a", [-3.0, -1.0, -0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28)])
def test_cfpo_optimum_is_trust_region_boundary(a, eps_low, eps_high):
    r_star = 1 + (eps_high if a > 0 else -eps_low)
    advantages = torch.tensor([a], dtype=torch.float64)
    grad = grad_wrt_ratio(cfpo_loss, torch.tensor([r_star], dtype=torch.float64), advantages,
                          eps_low=eps_low, eps_high=eps_high)
    torch.testing.assert_close(grad, torch.zeros(1, dtype=torch.float64), **EXACT)
    # Convex with minimum at r*: every grid point is at least the value at r*.
    grid = torch.linspace(0.0, 2.5, 2001, dtype=torch.float64)
    values = cfpo_loss(grid, advantages.expand_as(grid), eps_low, eps_high)
    at_optimum = cfpo_loss(torch.tensor([r_star], dtype=torch.float64), advantages, eps_low, eps_high)
    assert bool((values >= at_optimum - 1e-12).all())
    second_differences = values[2:] - 2 * values[1:-1] + values[:-2]
    assert bool((second_differences >= -1e-12).all()), "CFPO must be convex in r"


def test_gradients_equal_at_ratio_one():
    gen = torch.Generator().manual_seed(0)
    advantages = torch.randn(64, generator=gen, dtype=torch.float64)
    ones = torch.ones(64, dtype=torch.float64)
    ppo_grad = grad_wrt_ratio(ppo_clip_loss, ones, advantages)
    cfpo_grad = grad_wrt_ratio(cfpo_loss, ones, advantages)
    torch.testing.assert_close(cfpo_grad, ppo_grad, **EXACT)
    torch.testing.assert_close(cfpo_grad, -advantages, **EXACT)


@pytest.mark.parametrize("r,a", [(1.5, 1.0), (2.0, 0.3), (0.5, -1.0), (0.1, -2.0)])
def test_outside_trust_region_ppo_is_flat_cfpo_restores(r, a):
    ratio = torch.tensor([r], dtype=torch.float64)
    advantages = torch.tensor([a], dtype=torch.float64)
    ppo_grad = grad_wrt_ratio(ppo_clip_loss, ratio, advantages)
    cfpo_grad = grad_wrt_ratio(cfpo_loss, ratio, advantages)
    assert ppo_grad.item() == 0.0
    r_star = 1 + math.copysign(0.2, a)
    # Gradient descent moves r by −grad: toward r*, i.e. −grad has the sign of (r* − r).
    assert cfpo_grad.item() != 0.0
    assert math.copysign(1.0, -cfpo_grad.item()) == math.copysign(1.0, r_star - r)


def test_asymmetric_eps_uses_high_for_positive_and_low_for_negative_advantages():
    ratio = torch.tensor([1.25, 0.75], dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    got = cfpo_loss(ratio, advantages, eps_low=0.1, eps_high=0.3)
    expected = torch.tensor(
        [-(1.25 - 1 / 0.6 * 0.0625), -(-0.75 - 1 / 0.2 * 0.0625)], dtype=torch.float64
    )
    torch.testing.assert_close(got, expected, **EXACT)
    # Swapping the two ε values changes both tokens' losses.
    assert not torch.allclose(got, cfpo_loss(ratio, advantages, eps_low=0.3, eps_high=0.1))


def test_zero_advantage_gives_zero_loss_and_gradient():
    ratio = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(cfpo_loss(ratio, zeros), zeros, **EXACT)
    torch.testing.assert_close(grad_wrt_ratio(cfpo_loss, ratio, zeros), zeros, **EXACT)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_finite_under_extreme_log_ratios(name, dtype):
    log_probs = torch.tensor([[50.0, -50.0, 0.0, 19.0, -19.0]], dtype=dtype, requires_grad=True)
    old_log_probs = torch.zeros_like(log_probs)
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]], dtype=dtype)
    ratio = bounded_ratio(log_probs, old_log_probs)
    assert float(ratio.detach().max()) <= math.exp(LOG_RATIO_BOUND) * 1.01
    loss = get_objective(name)(ratio, advantages).sum()
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(log_probs.grad).all()
    # Beyond the bound the log-ratio is clamped, so the stale token contributes no gradient.
    assert log_probs.grad[0, 0].item() == 0.0 and log_probs.grad[0, 1].item() == 0.0


def test_trust_region_stats_definition_and_ppo_zero_gradient_fraction():
    gen = torch.Generator().manual_seed(3)
    ratio = (torch.randn(4, 50, generator=gen, dtype=torch.float64) * 0.3).exp()
    advantages = torch.randn(4, 50, generator=gen, dtype=torch.float64)
    mask = (torch.rand(4, 50, generator=gen) > 0.3).to(torch.float64)
    stats = trust_region_stats(ratio, advantages, mask, eps_low=0.2, eps_high=0.28)
    # Independent count: PPO-clip's gradient is exactly zero on those tokens (A ≠ 0 a.s.).
    ppo_grad = grad_wrt_ratio(ppo_clip_loss, ratio, advantages, eps_low=0.2, eps_high=0.28)
    flat = (ppo_grad == 0).to(torch.float64)
    torch.testing.assert_close(stats["clip_ratio"], (flat * mask).sum() / mask.sum(), **EXACT)
    selected = ratio[mask.bool()]
    torch.testing.assert_close(stats["ratio_mean"], selected.mean(), **EXACT)
    assert stats["ratio_min"] == selected.min() and stats["ratio_max"] == selected.max()
    # Without a mask every token counts.
    unmasked = trust_region_stats(ratio, advantages, None, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(unmasked["clip_ratio"], flat.mean(), **EXACT)


def test_trust_region_stats_direction_matters():
    # r above the region with A < 0 is being pulled *into* it by the advantage: not counted.
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5])
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    stats = trust_region_stats(ratio, advantages, torch.ones(4))
    assert stats["clip_ratio"].item() == pytest.approx(0.5)


def test_clip_ratio_with_a_bool_mask_equals_the_float_mask():
    """OpenRLHF's action_mask is a BoolTensor: same fraction as with a 0/1 float mask, in r's dtype."""
    gen = torch.Generator().manual_seed(4)
    ratio = (torch.randn(3, 40, generator=gen) * 0.3).exp()
    advantages = torch.randn(3, 1, generator=gen)
    mask = torch.rand(3, 40, generator=gen) > 0.3
    got = clip_ratio(ratio, advantages, mask, 0.2, 0.28)
    assert got.dtype == torch.float32 and 0 < got < 1
    torch.testing.assert_close(got, clip_ratio(ratio, advantages, mask.float(), 0.2, 0.28), rtol=0, atol=1e-7)


def test_trust_region_stats_without_tokens_is_nan():
    stats = trust_region_stats(torch.ones(2, 3), torch.ones(2, 3), torch.zeros(2, 3))
    assert all(torch.isnan(value) for value in stats.values())


def test_registry_and_validation_errors():
    assert get_objective("cfpo") is cfpo_loss and get_objective("ppo") is ppo_clip_loss
    with pytest.raises(ValueError, match="choose one of: ppo, cfpo"):
        get_objective("grpo")
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="eps_low must be > 0"):
            check_trust_region(bad, 0.2)
        with pytest.raises(ValueError, match="eps_high must be > 0"):
            cfpo_loss(torch.ones(1), torch.ones(1), eps_low=0.2, eps_high=bad)
