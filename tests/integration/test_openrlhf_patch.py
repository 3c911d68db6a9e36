"""The patched ``openrlhf.models.loss.PolicyLoss`` against OpenRLHF 0.11.2's own code."""

import importlib.metadata
import itertools
import subprocess
import sys

import pytest
import torch

from openrlhf_cfpo import patch_openrlhf
from openrlhf_cfpo.objectives import cfpo_loss, ppo_clip_loss, trust_region_stats
from openrlhf_cfpo.openrlhf_patch import SUPPORTED_OPENRLHF_VERSION, check_openrlhf_version, surrogate_policy_loss

patch_openrlhf()
from openrlhf.models import PolicyLoss as PolicyLossFromModels  # noqa: E402
from openrlhf.models.loss import PolicyLoss  # noqa: E402
from openrlhf.trainer.ray import ppo_actor  # noqa: E402

UPSTREAM_FORWARD = PolicyLoss.forward.__wrapped__  # OpenRLHF's own forward, kept by functools.wraps


def make_batch(seed=0, batch=4, seq=12, spread=0.4, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, seq, generator=gen, dtype=dtype) * 3
    log_probs = (old + torch.randn(batch, seq, generator=gen, dtype=dtype) * spread).requires_grad_(True)
    rollout = old + torch.randn(batch, seq, generator=gen, dtype=dtype) * 0.3
    advantages = torch.randn(batch, 1, generator=gen, dtype=dtype).expand(batch, seq).contiguous()
    mask = torch.ones(batch, seq, dtype=dtype)
    for row in range(batch):  # ragged responses
        mask[row, seq - 1 - 2 * row :] = 0
    return dict(log_probs=log_probs, old_log_probs=old, advantages=advantages, action_mask=mask,
                rollout_log_probs=rollout)


def run(forward, loss_fn, batch, **reduction):
    inputs = {k: v.detach().clone().requires_grad_(k == "log_probs") for k, v in batch.items()}
    out = forward(loss_fn, **inputs, **reduction)
    out[0].backward()
    return out, inputs["log_probs"].grad


IS_SETTINGS = [
    dict(is_correction_level="off"),
    *[
        dict(is_correction_level=level, is_correction_mode=mode, is_correction_gating="ratio")
        for level, mode in itertools.product(["token", "seq"], ["mask", "clip"])
        if not (mode == "clip" and level == "seq")
    ],
    *[
        dict(is_correction_level=level, is_correction_mode="mask", is_correction_gating=gating,
             is_correction_threshold=[0.0, 0.05])
        for level, gating in itertools.product(["token", "seq"], ["binary_kl", "tv"])
    ],
]
REDUCTIONS = [
    dict(),
    dict(dp_size=2, batch_num_tokens=80.0, global_batch_size=8.0),
]


def assert_same_outputs(got, expected):
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            assert torch.equal(g, e), (g, e)


@pytest.mark.parametrize("token_level_loss", [True, False])
@pytest.mark.parametrize("is_settings", IS_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=["local", "global"])
def test_generic_surrogate_path_reproduces_upstream_ppo_exactly(token_level_loss, is_settings, reduction):
    """Our forward (IS correction, reduction, metrics) run with the PPO surrogate is bit-for-bit
    upstream's "ppo": so CFPO gets exactly upstream's treatment around the surrogate."""
    loss_fn = PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28, token_level_loss=token_level_loss, **is_settings)
    batch = make_batch(seed=1)
    expected, expected_grad = run(UPSTREAM_FORWARD, loss_fn, batch, **reduction)
    got, got_grad = run(lambda m, **kw: surrogate_policy_loss(m, "ppo", **kw), loss_fn, batch, **reduction)
    assert_same_outputs(got, expected)
    assert torch.equal(got_grad, expected_grad)


@pytest.mark.parametrize("policy_loss_type,kwargs", [
    ("ppo", dict()),
    ("ppo", dict(dual_clip=3.0)),
    ("ppo", dict(token_level_loss=False, is_correction_level="token")),
    ("gspo", dict()),
    ("gspo", dict(is_correction_level="token")),
])
def test_ppo_and_gspo_unchanged_by_patch(policy_loss_type, kwargs):
    loss_fn = PolicyLoss(policy_loss_type=policy_loss_type, **kwargs)
    batch = make_batch(seed=2)
    expected, expected_grad = run(UPSTREAM_FORWARD, loss_fn, batch)
    got, got_grad = run(lambda m, **kw: m(**kw), loss_fn, batch)
    assert_same_outputs(got, expected)
    assert torch.equal(got_grad, expected_grad)


def test_every_imported_name_is_the_patched_class():
    assert PolicyLossFromModels is PolicyLoss and ppo_actor.PolicyLoss is PolicyLoss
    patch_openrlhf()  # idempotent: the wrapper is not wrapped again
    assert PolicyLoss.forward.__wrapped__ is UPSTREAM_FORWARD


@pytest.mark.parametrize("token_level_loss", [True, False])
def test_cfpo_with_default_dual_clip_computes_cfpo(token_level_loss):
    """Regression: the authors' first OpenRLHF patch silently ran PPO when dual_clip was None."""
    loss_fn = ppo_actor.PolicyLoss(
        clip_eps_low=0.2, clip_eps_high=0.28, policy_loss_type="cfpo", token_level_loss=token_level_loss
    )
    assert loss_fn.dual_clip is None
    batch = make_batch(seed=4, dtype=torch.float64, spread=0.6)
    (loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio), grad = run(lambda m, **kw: m(**kw), loss_fn, batch)
    ratio = (batch["log_probs"] - batch["old_log_probs"]).detach().exp()
    mask, adv = batch["action_mask"], batch["advantages"]
    per_token = cfpo_loss(ratio, adv, 0.2, 0.28)
    if token_level_loss:
        expected = (per_token * mask).sum() / mask.sum()
    else:
        expected = ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    # aggregate_loss adds 1e-8 to each sequence's token count (seq-mean-token-mean): rtol 1e-8.
    torch.testing.assert_close(loss, expected, rtol=1e-8, atol=0)
    ppo_value = (ppo_clip_loss(ratio, adv, 0.2, 0.28) * mask).sum() / mask.sum()
    assert token_level_loss is False or abs(loss.item() - ppo_value.item()) > 1e-3
    stats = trust_region_stats(ratio, adv, mask, 0.2, 0.28)
    assert stats["clip_ratio"] > 0  # the batch really leaves the trust region
    torch.testing.assert_close(clip_ratio, stats["clip_ratio"], rtol=0, atol=0)
    torch.testing.assert_close(ppo_kl, ((-(batch["log_probs"] - batch["old_log_probs"]) * mask).sum() / mask.sum()).detach())
    assert vllm_kl is None and is_filter_ratio is None
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_cfpo_clip_ratio_equals_upstream_ppo_clip_ratio():
    batch = make_batch(seed=5, spread=0.5)
    upstream, _ = run(UPSTREAM_FORWARD, PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28), batch)
    cfpo, _ = run(lambda m, **kw: m(**kw), PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28, policy_loss_type="cfpo"), batch)
    assert upstream[1] > 0
    torch.testing.assert_close(cfpo[1], upstream[1], rtol=0, atol=1e-7)


def test_cfpo_applies_train_rollout_is_correction():
    threshold = [0.8, 1.25]
    loss_fn = PolicyLoss(policy_loss_type="cfpo", is_correction_level="token", is_correction_mode="clip",
                         is_correction_threshold=threshold)
    batch = make_batch(seed=6, dtype=torch.float64)
    (loss, _, _, vllm_kl, filtered), _ = run(lambda m, **kw: m(**kw), loss_fn, batch)
    ratio = (batch["log_probs"] - batch["old_log_probs"]).detach().exp()
    coef = (batch["old_log_probs"] - batch["rollout_log_probs"]).exp().clamp(*threshold)
    mask = batch["action_mask"]
    expected = (coef * cfpo_loss(ratio, batch["advantages"]) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert vllm_kl is not None and 0 < filtered < 1


@pytest.mark.parametrize("token_level_loss", [True, False])
def test_cfpo_finite_for_extreme_log_ratios_and_all_masked_rows(token_level_loss):
    loss_fn = PolicyLoss(policy_loss_type="cfpo", token_level_loss=token_level_loss)
    batch = make_batch(seed=7)
    with torch.no_grad():
        batch["log_probs"][0, :3] = batch["old_log_probs"][0, :3] + torch.tensor([50.0, -50.0, 49.0])
    batch["action_mask"][1] = 0  # a fully masked row
    for reduction in REDUCTIONS:
        out, grad = run(lambda m, **kw: m(**kw), loss_fn, batch, **reduction)
        assert torch.isfinite(out[0]) and torch.isfinite(grad).all()
        assert grad[1].abs().sum() == 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(dual_clip=3.0), "dual_clip"),
    (dict(clip_eps_low=0.0), "eps_low must be > 0"),
    (dict(clip_eps_high=-0.1), "eps_high must be > 0"),
])
def test_cfpo_rejects_settings_it_cannot_honour(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolicyLoss(policy_loss_type="cfpo", **kwargs)


def test_other_openrlhf_versions_are_refused(monkeypatch):
    assert check_openrlhf_version() == SUPPORTED_OPENRLHF_VERSION
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.11.3")
    with pytest.raises(RuntimeError, match="OpenRLHF 0.11.2 only, found openrlhf 0.11.3"):
        patch_openrlhf()


def test_without_the_patch_openrlhf_has_no_cfpo():
    """Control for the Ray test: a fresh interpreter that imports OpenRLHF alone cannot run CFPO."""
    code = (
        "import torch\n"
        "from openrlhf.models.loss import PolicyLoss\n"
        "x = torch.zeros(1, 2)\n"
        "try:\n"
        "    PolicyLoss(policy_loss_type='cfpo')(x, x, x, action_mask=torch.ones(1, 2))\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused: Invalid policy loss type: cfpo" in out.stdout
