"""The one module that touches TRL internals: CFPO as ``GRPOTrainer`` loss types.

TRL's ``loss_type`` names a surrogate and a normalization together. ``patch_trl()`` makes TRL 1.16.0's
``GRPOTrainer`` train two more, each a TRL loss type (its host) with one expression changed:

- ``"cfpo"``: host ``"grpo"``, the paper's eq. (8): each response's token mean, then the mean over
  the responses, (1/G) Σᵢ (1/|oᵢ|) Σₜ;
- ``"cfpo_dapo"``: host ``"dapo"``: the token sum over the generation batch's token count (DAPO's).

The per-token PPO-clip loss ``−min(r·A, clip(r, 1−ε_low, 1+ε_high)·A)`` (paper eq. 6) becomes
``objectives.cfpo_loss`` (eq. 7) with TRL's ``epsilon`` / ``epsilon_high`` as ε_low / ε_high. Everything
around it is the host's own code, run as it is: log-probabilities, ``importance_sampling_level``,
entropy and off-policy masks, the vLLM importance-sampling correction, KL (``beta``), the
normalization, the entropy bonus, and every metric. TRL's ``clip_ratio/*`` for both hosts counts the
tokens outside the trust region in the direction their advantage pushes, which is
``objectives.trust_region_stats``'s definition, so CFPO logs it too.

TRL computes that expression inline in ``GRPOTrainer._compute_loss`` (there is no method to
override), so for a CFPO loss type ``surrogate_compute_loss`` calls upstream's own function with
``loss_type`` reading the host's and the global ``torch`` it sees replaced by ``_SurrogateTorch``: the real module
except for the two calls that form the clipped surrogate, ``torch.clamp(coef_1, 1−ε_low, 1+ε_high)``
(which hands over the ratio) and ``torch.min`` (which returns the negated CFPO loss, negated back by
TRL's caller). The substitution is checked on every call; a TRL whose function no longer makes these
calls fails the step with an error instead of training another objective.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import types
from typing import Optional

import torch

from openrlhf_cfpo.objectives import LOG_RATIO_BOUND, Objective, check_trust_region, get_objective
from openrlhf_cfpo.runinfo import require_version

logger = logging.getLogger(__name__)

SUPPORTED_TRL_VERSION = "1.16.0"
# The loss types this package adds to TRL's own -> the TRL loss type whose code path (and so whose
# normalization) each runs: eq. (8)'s per-response mean ("grpo"), or DAPO's token mean ("dapo").
HOST_LOSS_TYPES = {"cfpo": "grpo", "cfpo_dapo": "dapo"}
ADDED_LOSS_TYPES = tuple(HOST_LOSS_TYPES)
# Hosts that count a sequence-level loss once per completion token (TRL warns about them too).
_TOKEN_SUM_HOSTS = ("dapo",)
# TRL exponentiates the log-ratio unbounded; CFPO's (r−1)² needs the bound OpenRLHF puts on it.
MAX_RATIO = math.exp(LOG_RATIO_BOUND)
_PATCHED_MARKER = "_openrlhf_cfpo_patched"


def check_trl_version() -> str:
    """Return the installed TRL version; raise unless it is the one this patch was written for."""
    return require_version(
        "trl",
        "TRL",
        SUPPORTED_TRL_VERSION,
        f"CFPO in TRL needs trl=={SUPPORTED_TRL_VERSION} (pip install 'openrlhf-cfpo[trl]')",
    )


def check_cfpo_config(config) -> None:
    """Raise ValueError for GRPOConfig settings CFPO cannot honour, naming the field and the fix."""
    if config.delta is not None:
        raise ValueError(
            "GRPOConfig(delta=...) cannot be used with loss_type='cfpo': delta caps the unclipped branch of "
            "PPO-clip and CFPO has none (its penalty already pulls r back); leave delta=None"
        )
    eps_high = config.epsilon if config.epsilon_high is None else config.epsilon_high  # as GRPOTrainer
    try:
        check_trust_region(config.epsilon, eps_high)
    except ValueError as err:
        raise ValueError(f"GRPOConfig epsilon / epsilon_high: {err}") from None


class _SurrogateTorch:
    """``torch`` as the host's branch of TRL 1.16.0's ``_compute_loss`` sees it, surrogate replaced.

    Upstream computes ``coef_2 = torch.clamp(coef_1, 1 - ε_low, 1 + ε_high)`` and then
    ``per_token_loss = -torch.min(coef_1 * A, coef_2 * A)``. Here ``clamp`` with exactly those bounds
    records ``coef_1`` (the ratio r, per token or per sequence), and ``min`` returns
    ``−objective(r, A, ε_low, ε_high)`` with r bounded by ``MAX_RATIO``. Every other name is torch's.
    """

    def __init__(self, objective: Objective, advantages: torch.Tensor, eps_low: float, eps_high: float):
        self._objective = objective
        self._advantages = advantages
        self._eps_low, self._eps_high = eps_low, eps_high
        self._ratio: Optional[torch.Tensor] = None
        self.substitutions = 0

    def __getattr__(self, name):
        return getattr(torch, name)

    def clamp(self, input, *args, **kwargs):
        if not kwargs and args == (1 - self._eps_low, 1 + self._eps_high):
            self._ratio = input
        return torch.clamp(input, *args, **kwargs)

    def min(self, surrogate, clipped_surrogate):
        if self._ratio is None or self.substitutions:
            raise RuntimeError(
                "TRL's GRPOTrainer._compute_loss no longer computes the clipped surrogate as TRL "
                f"{SUPPORTED_TRL_VERSION} does; openrlhf-cfpo cannot substitute CFPO into it"
            )
        self.substitutions += 1
        ratio = self._ratio.clamp(max=MAX_RATIO)
        return -self._objective(ratio, self._advantages, self._eps_low, self._eps_high)


def _upstream_compute_loss():
    from trl.trainer.grpo_trainer import GRPOTrainer

    method = GRPOTrainer._compute_loss
    return getattr(method, "__wrapped__", method)


def surrogate_compute_loss(trainer, model, inputs, objective: str, host_loss_type: str) -> torch.Tensor:
    """TRL's ``GRPOTrainer._compute_loss`` for the loss type ``host_loss_type`` ("grpo" or "dapo"), with
    the per-token PPO-clip loss replaced by ``objectives``' per-token loss ``objective`` ("cfpo", or
    "ppo" to reproduce the host).

    ε_low / ε_high are the trainer's (TRL's ``epsilon`` / ``epsilon_high``); everything else,
    normalization and metrics included, is upstream's code.
    """
    upstream = _upstream_compute_loss()
    advantages = inputs["advantages"]
    if advantages.dim() == 1:  # TRL's own reshape of per-sequence advantages, (B,) -> (B, 1)
        advantages = advantages.unsqueeze(1)
    surrogate_torch = _SurrogateTorch(get_objective(objective), advantages, trainer.epsilon_low, trainer.epsilon_high)
    compute_loss = types.FunctionType(
        upstream.__code__,
        {**upstream.__globals__, "torch": surrogate_torch},
        upstream.__name__,
        upstream.__defaults__,
        upstream.__closure__,
    )
    loss_type = trainer.loss_type
    trainer.loss_type = host_loss_type
    try:
        loss = compute_loss(trainer, model, inputs)
    finally:
        trainer.loss_type = loss_type
    if surrogate_torch.substitutions != 1:
        raise RuntimeError(
            f"TRL's GRPOTrainer._compute_loss did not reach its clipped surrogate for loss_type "
            f"{host_loss_type!r}; openrlhf-cfpo supports TRL {SUPPORTED_TRL_VERSION} only"
        )
    return loss


def patch_trl() -> None:
    """Register "cfpo" and "cfpo_dapo" as TRL ``GRPOTrainer`` loss types, in this process. Idempotent.

    Raises RuntimeError unless trl 1.16.0 is installed, and (from ``GRPOTrainer(...)``) ValueError
    for CFPO with ``delta`` or ε ≤ 0.
    """
    check_trl_version()
    from trl.trainer.grpo_trainer import GRPOTrainer

    if getattr(GRPOTrainer, _PATCHED_MARKER, False):
        return
    upstream_init, upstream_compute_loss = GRPOTrainer.__init__, GRPOTrainer._compute_loss
    init_signature = inspect.signature(upstream_init)

    @functools.wraps(upstream_init)
    def __init__(self, *args, **kwargs):
        config = init_signature.bind(self, *args, **kwargs).arguments.get("args")
        if config is not None and config.loss_type in ADDED_LOSS_TYPES:
            check_cfpo_config(config)
            host = HOST_LOSS_TYPES[config.loss_type]
            if config.importance_sampling_level == "sequence" and host in _TOKEN_SUM_HOSTS:
                logger.warning(
                    "loss_type=%r with importance_sampling_level='sequence': each sequence's ratio "
                    "exp(mean log r) enters eq. (7) and, as with %r, its loss counts once per token "
                    "(sequences weighted by length); loss_type='cfpo' averages per sequence", config.loss_type, host
                )
        upstream_init(self, *args, **kwargs)

    @functools.wraps(upstream_compute_loss)
    def _compute_loss(self, model, inputs):
        if self.loss_type not in ADDED_LOSS_TYPES:
            return upstream_compute_loss(self, model, inputs)
        return surrogate_compute_loss(self, model, inputs, "cfpo", HOST_LOSS_TYPES[self.loss_type])

    GRPOTrainer.__init__ = __init__
    GRPOTrainer._compute_loss = _compute_loss
    setattr(GRPOTrainer, _PATCHED_MARKER, True)
    logger.info("openrlhf-cfpo: GRPOTrainer accepts loss_type in %s", ADDED_LOSS_TYPES)
