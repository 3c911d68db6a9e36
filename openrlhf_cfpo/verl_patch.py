"""The one module that touches verl internals: CFPO in verl 0.9.1's policy-loss registry, ``"cfpo"``.

Importing this module registers ``compute_policy_loss_cfpo`` with
``verl.trainer.ppo.core_algos.register_policy_loss("cfpo")``; verl's actor then selects it with
``actor_rollout_ref.actor.policy_loss.loss_mode=cfpo``. setup.py names this module in the
``verl.plugins`` entry-point group, and ``import verl`` imports every module of that group, so the
driver and each of verl's Ray workers register it with nothing for the user to do
(``VERL_USE_EXTERNAL_MODULES=openrlhf_cfpo.verl_patch`` does the same where entry points are not
installed).

The loss is verl's ``vanilla`` with the per-token surrogate changed: PPO-clip (paper eq. 6) becomes
``objectives.cfpo_loss`` (eqs. 7–8) on the same bounded ratio, ε_low / ε_high = the actor's
``clip_ratio_low`` / ``clip_ratio_high``. The rollout-correction weights, the reduction (verl's
``agg_loss`` with the global batch info verl fills before each call, every ``loss_agg_mode``) and
the metric keys are vanilla's. ``clip_ratio_c`` (dual-clip PPO) bounds a branch CFPO does not have
and is not used by the loss.

verl swallows an exception raised while it loads a plugin (it logs it at debug level), so this
module does not refuse anything at import: the version and ε checks run when the loss is called and
fail the training step with one line naming the problem.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional

import torch

from openrlhf_cfpo.objectives import LOG_RATIO_BOUND, bounded_ratio, cfpo_loss, check_trust_region, clip_ratio
from openrlhf_cfpo.runinfo import require_version

SUPPORTED_VERL_VERSION = "0.9.1"
LOSS_MODE = "cfpo"


@functools.lru_cache(maxsize=1)
def check_verl_version() -> str:
    """Return the installed verl version; raise RuntimeError unless it is the one this module was written for."""
    return require_version(
        "verl",
        "verl",
        SUPPORTED_VERL_VERSION,
        f"CFPO in verl needs verl=={SUPPORTED_VERL_VERSION} (pip install 'openrlhf-cfpo[verl]')",
    )


def trust_region(config) -> tuple[float, float]:
    """(ε_low, ε_high) of a verl actor config, as vanilla reads them (``clip_ratio_low`` / ``_high``,
    each falling back to ``clip_ratio``); ValueError naming the fields unless both are > 0."""
    eps_low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    eps_high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    try:
        check_trust_region(eps_low, eps_high)
    except ValueError as err:
        raise ValueError(f"actor_rollout_ref.actor.clip_ratio_low / clip_ratio_high with loss_mode=cfpo: {err}") from None
    return eps_low, eps_high


def compute_policy_loss_cfpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Dict[str, Any]]:
    """CFPO's policy loss in verl's policy-loss signature (paper eqs. 7–8).

    Args (every tensor ``(batch, response_length)``): ``old_log_prob`` / ``log_prob`` — log π_old and
    log π_θ of the response tokens; ``advantages`` — A per token; ``response_mask`` — the action
    tokens; ``loss_agg_mode`` — verl's reduction; ``config`` — the actor config (``FSDPActorConfig``:
    ``clip_ratio_low`` / ``clip_ratio_high`` are ε_low / ε_high, ``global_batch_info`` the reduction's
    global counts); ``rollout_is_weights`` — rollout-correction weights multiplying the per-token
    loss, as vanilla applies them.

    Returns the loss and vanilla's metrics:
    - ``actor/pg_clipfrac``: fraction of action tokens outside the trust region in the direction their
      advantage pushes (``objectives.clip_ratio``; for vanilla the tokens clipped, here the tokens
      pulled back toward r* = 1 + sign(A)·ε);
    - ``actor/pg_clipfrac_lower``: vanilla's dual-clip statistic, the fraction of action tokens with
      A < 0 and max(r, clip(r)) > ``clip_ratio_c`` (tokens vanilla's dual clip would bound; CFPO's
      loss does not use ``clip_ratio_c``);
    - ``actor/ppo_kl``: mean over action tokens of log π_old − log π_θ (bounded like the ratio).
    """
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.utils.torch_functional import masked_mean

    check_verl_version()
    eps_low, eps_high = trust_region(config)
    ratio = bounded_ratio(log_prob, old_log_prob)
    pg_losses = cfpo_loss(ratio, advantages, eps_low, eps_high)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    pg_loss = agg_loss(
        loss_mat=pg_losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )
    with torch.no_grad():
        log_ratio = (log_prob - old_log_prob).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
        clip_ratio_c = config.get("clip_ratio_c", 3.0)
        clipped = torch.maximum(ratio, ratio.clamp(1 - eps_low, 1 + eps_high))
        dual_clipped = ((advantages < 0) & (clipped > clip_ratio_c)).float()
        metrics = {
            "actor/pg_clipfrac": clip_ratio(ratio, advantages, response_mask, eps_low, eps_high).item(),
            "actor/ppo_kl": masked_mean(-log_ratio, response_mask).item(),
            "actor/pg_clipfrac_lower": masked_mean(dual_clipped, response_mask).item(),
        }
    return pg_loss, metrics


def register() -> None:
    """Register ``compute_policy_loss_cfpo`` as verl's policy loss ``"cfpo"``, in this process. Idempotent."""
    from verl.trainer.ppo.core_algos import register_policy_loss

    register_policy_loss(LOSS_MODE)(compute_policy_loss_cfpo)


register()
