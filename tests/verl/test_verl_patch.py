"""openrlhf_cfpo.verl_patch against the real verl 0.9.1: CFPO fetched back through verl's registry,
called as verl's ppo_loss calls it, compared with verl's own ``vanilla`` and with the closed form."""

import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("verl.trainer.ppo.core_algos", reason="the verl tests run in .venv-verl (make test builds it)")

from verl.trainer.ppo.core_algos import get_policy_loss_fn  # noqa: E402

from openrlhf_cfpo import verl_patch  # noqa: E402

LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def rollout_batch(seed, batch=6, length=9, log_ratio_scale=0.0):
    """Log-probs (new = old + noise · scale), group-normalised-like advantages (constant per sequence,
    some zero), and a right-padded response mask, float64."""
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3
    new = old + log_ratio_scale * torch.randn(batch, length, generator=gen, dtype=torch.float64)
    advantages = torch.randn(batch, 1, generator=gen, dtype=torch.float64).expand(batch, length).clone()
    advantages[0] = 0.0
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return old, new, advantages, mask


def global_batch_info(mask, dp_size=1):
    """What verl's ppo_loss puts in ``config.global_batch_info`` before each call (one rank's share
    of a ``dp_size``-rank batch that has ``dp_size`` times this micro-batch's tokens and sequences)."""
    return {"dp_size": dp_size, "batch_num_tokens": int(mask.sum()) * dp_size,
            "global_batch_size": mask.shape[0] * dp_size, "loss_scale_factor": None}


def loss_and_grad(mode, old, new, advantages, mask, config, agg, weights=None):
    log_prob = new.clone().requires_grad_(True)
    loss, metrics = get_policy_loss_fn(mode)(
        old_log_prob=old, log_prob=log_prob, advantages=advantages, response_mask=mask,
        loss_agg_mode=agg, config=config, rollout_is_weights=weights,
    )
    loss.backward()
    return loss.detach(), log_prob.grad, metrics


def test_registry_returns_the_adapter():
    assert get_policy_loss_fn("cfpo") is verl_patch.compute_policy_loss_cfpo


@pytest.mark.parametrize("dp_size", [1, 4])
@pytest.mark.parametrize("agg", LOSS_AGG_MODES)
def test_on_policy_equals_vanilla(actor_config, agg, dp_size):
    """At r = 1 both gradients are −A per token, so with verl's own reduction the losses and the
    gradients are vanilla's in every loss_agg_mode, whatever the global batch info."""
    old, _, advantages, mask = rollout_batch(seed=3)
    config = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.28, loss_agg_mode=agg)
    config.global_batch_info.update(global_batch_info(mask, dp_size))
    cfpo = loss_and_grad("cfpo", old, old, advantages, mask, config, agg)
    vanilla = loss_and_grad("vanilla", old, old, advantages, mask, config, agg)
    torch.testing.assert_close(cfpo[0], vanilla[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cfpo[1], vanilla[1], rtol=1e-12, atol=1e-12)
    assert cfpo[1].abs().sum() > 0
    assert cfpo[2] == pytest.approx(vanilla[2])


def closed_form_grad(old, new, advantages, mask, eps_low, eps_high, weights=1.0):
    """∂ℓ/∂log π_θ = r · ∂ℓ/∂r = r·(−A + |A|(r−1)/ε) per action token (token-sum reduction)."""
    ratio = (new - old).exp()
    eps = torch.where(advantages > 0, torch.tensor(eps_high, dtype=torch.float64), torch.tensor(eps_low, dtype=torch.float64))
    return weights * ratio * (-advantages + advantages.abs() * (ratio - 1) / eps) * mask


def test_off_policy_gradient_is_the_closed_form(actor_config):
    """Stale tokens on both sides of the asymmetric trust region [1−0.1, 1+0.3]: CFPO's gradient is
    the restoring force r·(−A + |A|(r−1)/ε), where vanilla's is zero for the clipped tokens."""
    old, new, advantages, mask = rollout_batch(seed=5, log_ratio_scale=0.4)
    config = actor_config(clip_ratio_low=0.1, clip_ratio_high=0.3, loss_agg_mode="token-sum")
    config.global_batch_info.update(global_batch_info(mask))
    _, grad, metrics = loss_and_grad("cfpo", old, new, advantages, mask, config, "token-sum")
    torch.testing.assert_close(grad, closed_form_grad(old, new, advantages, mask, 0.1, 0.3), rtol=1e-10, atol=1e-12)
    assert metrics["actor/pg_clipfrac"] > 0.1  # the batch does reach outside the trust region
    _, vanilla_grad, _ = loss_and_grad("vanilla", old, new, advantages, mask, config, "token-sum")
    assert not torch.allclose(grad, vanilla_grad)


def test_rollout_is_weights_multiply_the_per_token_loss(actor_config):
    old, new, advantages, mask = rollout_batch(seed=7, log_ratio_scale=0.3)
    weights = torch.rand(old.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    config = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.25, loss_agg_mode="token-sum")
    config.global_batch_info.update(global_batch_info(mask))
    _, grad, _ = loss_and_grad("cfpo", old, new, advantages, mask, config, "token-sum", weights)
    torch.testing.assert_close(grad, closed_form_grad(old, new, advantages, mask, 0.2, 0.25, weights),
                               rtol=1e-10, atol=1e-12)
    on_policy = [loss_and_grad(mode, old, old, advantages, mask, config, "token-sum", weights) for mode in ("cfpo", "vanilla")]
    torch.testing.assert_close(on_policy[0][0], on_policy[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(on_policy[0][1], on_policy[1][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_are_vanillas_statistics(actor_config, seed):
    """Off-policy, with tokens past the dual-clip bound: pg_clipfrac (vanilla's clipped fraction is the
    trust-region statistic objectives.clip_ratio), pg_clipfrac_lower and ppo_kl equal vanilla's."""
    old, new, advantages, mask = rollout_batch(seed=seed, batch=16, log_ratio_scale=1.0)
    config = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=1.5)
    config.global_batch_info.update(global_batch_info(mask))
    _, _, cfpo = loss_and_grad("cfpo", old, new, advantages, mask, config, "token-mean")
    _, _, vanilla = loss_and_grad("vanilla", old, new, advantages, mask, config, "token-mean")
    assert set(cfpo) == set(vanilla) == {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}
    assert cfpo == pytest.approx(vanilla, rel=1e-6)  # vanilla counts in float32 over (tokens + 1e-8)
    assert cfpo["actor/pg_clipfrac"] > 0 and cfpo["actor/pg_clipfrac_lower"] > 0 and cfpo["actor/ppo_kl"] != 0


@pytest.mark.parametrize("field", ["clip_ratio_low", "clip_ratio_high"])
def test_non_positive_eps_is_refused(actor_config, field):
    old, new, advantages, mask = rollout_batch(seed=0)
    config = actor_config(**{field: 0.0})
    with pytest.raises(ValueError, match=f"{field.replace('clip_ratio_', 'eps_')} must be > 0") as err:
        loss_and_grad("cfpo", old, new, advantages, mask, config, "token-mean")
    assert "clip_ratio_low / clip_ratio_high" in str(err.value) and "\n" not in str(err.value)


def test_other_verl_versions_are_refused(actor_config, monkeypatch):
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.9.2" if name == "verl" else real_version(name))
    verl_patch.check_verl_version.cache_clear()
    old, new, advantages, mask = rollout_batch(seed=0)
    try:
        with pytest.raises(RuntimeError) as err:
            loss_and_grad("cfpo", old, new, advantages, mask, actor_config(), "token-mean")
    finally:
        verl_patch.check_verl_version.cache_clear()
    assert str(err.value) == (
        "openrlhf-cfpo patches verl 0.9.1 only, found verl 0.9.2; install verl==0.9.1"
    )


REGISTERED_AFTER_IMPORT_VERL = (
    "import sys, verl\n"
    "from verl.trainer.ppo.core_algos import get_policy_loss_fn\n"
    "print(get_policy_loss_fn('cfpo').__module__, 'openrlhf_cfpo.verl_patch' in sys.modules)\n"
)


def test_import_verl_registers_cfpo_in_a_fresh_process():
    """What a verl Ray worker does: a new interpreter that only imports verl. Through the
    ``verl.plugins`` entry point (setup.py), and through VERL_USE_EXTERNAL_MODULES with entry points off."""
    assert "openrlhf_cfpo.verl_patch" in {ep.value for ep in importlib.metadata.entry_points(group="verl.plugins")}
    environments = {
        "entry point": {},
        "VERL_USE_EXTERNAL_MODULES": {"VERL_USE_EXTERNAL_PLUGINS": "none",
                                      "VERL_USE_EXTERNAL_MODULES": "openrlhf_cfpo.verl_patch"},
    }
    runs = {
        name: subprocess.Popen([sys.executable, "-c", REGISTERED_AFTER_IMPORT_VERL], env={**os.environ, **extra},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, extra in environments.items()
    }
    results = {name: run.communicate(timeout=300) + (run.returncode,) for name, run in runs.items()}
    for name, (out, err, code) in results.items():
        assert code == 0 and out.split() == ["openrlhf_cfpo.verl_patch", "True"], (name, out, err[-2000:])
