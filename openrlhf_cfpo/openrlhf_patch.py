"""The one module that touches OpenRLHF internals: CFPO as a ``PolicyLoss`` type, and Ray setup.

``patch_openrlhf()`` wraps ``openrlhf.models.loss.PolicyLoss.__init__`` and ``.forward`` on the
class object itself, so every name bound to that class (``openrlhf.models.PolicyLoss``, the one
``openrlhf.trainer.ray.ppo_actor`` imported, …) accepts ``policy_loss_type="cfpo"``. Other loss
types go straight to upstream's code, unchanged. Ray actors import OpenRLHF afresh in their own
processes, so ``ray_runtime_env()`` names ``setup_ray_worker`` as Ray's worker_process_setup_hook;
that hook imports nothing that probes CUDA and leaves the patch to an import hook that fires when
the actor's own code imports ``openrlhf.models.loss``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import inspect
import logging
import sys
from typing import Any, Dict, Optional

import torch

from openrlhf_cfpo.objectives import bounded_ratio, check_trust_region, clip_ratio, get_objective
from openrlhf_cfpo.runinfo import require_version

logger = logging.getLogger(__name__)

SUPPORTED_OPENRLHF_VERSION = "0.11.2"
# The loss types this package adds to OpenRLHF's own ("ppo", "gspo").
ADDED_POLICY_LOSS_TYPES = ("cfpo",)
_PATCHED_MARKER = "_openrlhf_cfpo_patched"
LOSS_MODULE = "openrlhf.models.loss"


def check_openrlhf_version() -> str:
    """Return the installed OpenRLHF version; raise unless it is the one this patch was written for."""
    return require_version(
        "openrlhf",
        "OpenRLHF",
        SUPPORTED_OPENRLHF_VERSION,
        f"openrlhf-cfpo needs openrlhf=={SUPPORTED_OPENRLHF_VERSION} (GPU: pip install 'openrlhf-cfpo[gpu]'; "
        "CPU: make venv)",
    )


def check_cfpo_settings(dual_clip: Optional[float], eps_low: float, eps_high: float) -> None:
    """Raise ValueError for settings CFPO cannot honour, naming the flag and the fix."""
    if dual_clip is not None:
        raise ValueError(
            "--actor.dual_clip cannot be used with --actor.policy_loss_type cfpo: CFPO has no clipped "
            "branch to bound; drop --actor.dual_clip"
        )
    try:
        check_trust_region(eps_low, eps_high)
    except ValueError as err:
        raise ValueError(f"--actor.eps_clip / --actor.eps_clip_low_high: {err}") from None


def _train_rollout_is_correction(policy_loss, loss, old_log_probs, rollout_log_probs, action_mask):
    """OpenRLHF 0.11.2's train/rollout importance-sampling correction, as ``PolicyLoss.forward``
    applies it to "ppo": returns (corrected per-token loss, vllm_kl, is_filter_ratio).

    Upstream computes it inline in ``forward``; tests/unit/test_openrlhf_patch.py runs this with the
    PPO surrogate against upstream's "ppo" for every level × mode × gating, so the copy stays exact.
    """
    from openrlhf.models.utils import masked_mean

    low, high = policy_loss.is_correction_threshold
    seq_level = policy_loss.is_correction_level == "seq"
    is_log_ratio = (old_log_probs - rollout_log_probs).detach()
    token_is = is_log_ratio.exp()
    if policy_loss.is_correction_gating == "ratio":
        stat = masked_mean(is_log_ratio, action_mask, dim=-1).unsqueeze(-1) if seq_level else is_log_ratio
        stat = stat.exp()
    else:
        p = rollout_log_probs.exp().clamp(1e-6, 1 - 1e-6)
        q = old_log_probs.exp().clamp(1e-6, 1 - 1e-6)
        if policy_loss.is_correction_gating == "binary_kl":
            stat = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
        else:  # tv
            stat = (p - q).abs()
        if seq_level:
            stat = masked_mean(stat, action_mask, dim=-1).unsqueeze(-1)
    if policy_loss.is_correction_mode == "clip":
        coef = stat.clamp(min=low, max=high)
        filtered = (stat < low) | (stat > high)
    else:
        keep = (stat >= low) & (stat <= high)
        coef = torch.where(keep, token_is, 0.0)
        filtered = ~keep
    if seq_level:
        is_filter_ratio = filtered.float().mean()
    else:
        is_filter_ratio = masked_mean(filtered.float(), action_mask, dim=None)
    vllm_kl = masked_mean(rollout_log_probs - old_log_probs, action_mask, dim=None)
    return coef * loss, vllm_kl, is_filter_ratio


def surrogate_policy_loss(
    policy_loss,
    objective: str,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    action_mask: Optional[torch.Tensor] = None,
    rollout_log_probs: Optional[torch.Tensor] = None,
    dp_size: int = 1,
    batch_num_tokens: Optional[float] = None,
    global_batch_size: Optional[float] = None,
):
    """``PolicyLoss.forward`` for a surrogate from ``openrlhf_cfpo.objectives``, in upstream's terms.

    Same bounded log-ratio, train/rollout IS correction, ``aggregate_loss`` reduction and returned
    5-tuple (loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio) as upstream's "ppo"; clip_ratio is
    ``objectives.clip_ratio`` (for PPO-clip it equals upstream's). ``policy_loss`` supplies ε, the
    aggregation mode and the IS-correction settings.
    """
    from openrlhf.models.loss import aggregate_loss
    from openrlhf.models.utils import masked_mean

    eps_low, eps_high = policy_loss.clip_eps_low, policy_loss.clip_eps_high
    ratio = bounded_ratio(log_probs, old_log_probs)
    loss = get_objective(objective)(ratio, advantages, eps_low, eps_high)
    vllm_kl = is_filter_ratio = None
    if policy_loss.is_correction_level != "off":
        loss, vllm_kl, is_filter_ratio = _train_rollout_is_correction(
            policy_loss, loss, old_log_probs, rollout_log_probs, action_mask
        )
    loss = aggregate_loss(
        loss,
        action_mask,
        token_level_loss=policy_loss.token_level_loss,
        dp_size=dp_size,
        batch_num_tokens=batch_num_tokens,
        global_batch_size=global_batch_size,
    )
    trust_region_clip_ratio = clip_ratio(ratio.detach(), advantages, action_mask, eps_low, eps_high)
    ppo_kl = masked_mean(-(log_probs - old_log_probs).detach(), action_mask, dim=None)
    return loss, trust_region_clip_ratio, ppo_kl, vllm_kl, is_filter_ratio


def _register_cfpo(policy_loss_cls) -> None:
    """Wrap ``PolicyLoss.__init__`` and ``.forward`` on the class object so that it accepts "cfpo".
    Idempotent (a marker on the class)."""
    if getattr(policy_loss_cls, _PATCHED_MARKER, False):
        return
    upstream_init, upstream_forward = policy_loss_cls.__init__, policy_loss_cls.forward
    forward_signature = inspect.signature(upstream_forward)

    @functools.wraps(upstream_init)
    def __init__(self, *args, **kwargs):
        upstream_init(self, *args, **kwargs)
        if self.policy_loss_type == "cfpo":
            check_cfpo_settings(self.dual_clip, self.clip_eps_low, self.clip_eps_high)

    @functools.wraps(upstream_forward)
    def forward(self, *args, **kwargs):
        if self.policy_loss_type not in ADDED_POLICY_LOSS_TYPES:
            return upstream_forward(self, *args, **kwargs)
        bound = forward_signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        call = dict(bound.arguments)
        del call["self"]
        return surrogate_policy_loss(self, self.policy_loss_type, **call)

    policy_loss_cls.__init__ = __init__
    policy_loss_cls.forward = forward
    setattr(policy_loss_cls, _PATCHED_MARKER, True)
    logger.info("openrlhf-cfpo: PolicyLoss accepts policy_loss_type in %s", ADDED_POLICY_LOSS_TYPES)


def patch_openrlhf() -> None:
    """Register "cfpo" as an OpenRLHF ``PolicyLoss`` type, in this process, now. Idempotent.

    Imports ``openrlhf.models`` (and with it deepspeed and peft, which probe CUDA): for the driver
    and for scripts, never for a Ray worker before its GPUs are assigned (``setup_ray_worker``).
    Raises RuntimeError unless openrlhf 0.11.2 is installed, and (from ``PolicyLoss(...)``)
    ValueError for CFPO with dual-clip or ε ≤ 0.
    """
    check_openrlhf_version()
    loss_module = importlib.import_module(LOSS_MODULE)
    _register_cfpo(loss_module.PolicyLoss)


class _RegisterCfpoAfterExec(importlib.abc.Loader):
    """The loss module's own loader, plus ``_register_cfpo`` right after the module body has run."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_cfpo(module.PolicyLoss)
        _remove_import_hook()

    def __getattr__(self, name):  # get_source, get_code, … for tracebacks and inspect
        return getattr(self._loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds ``LOSS_MODULE`` through the other finders and wraps its loader in ``_RegisterCfpoAfterExec``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != LOSS_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterCfpoAfterExec(spec.loader)
                return spec
        return None


def _remove_import_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _PatchOnImport)]


def setup_ray_worker() -> None:
    """Ray ``worker_process_setup_hook``: CFPO in the worker's ``PolicyLoss`` once its code imports it.

    Ray runs the hook when the worker process starts, before it sets CUDA_VISIBLE_DEVICES for the
    actor placed there; importing OpenRLHF now would initialise CUDA with every GPU visible. So the
    hook only checks the OpenRLHF version (package metadata) and installs an import hook: when the
    actor's own code imports ``openrlhf.models.loss``, "cfpo" is registered right after the module
    has run, before any other module binds ``PolicyLoss``. If the module is already imported, the
    class is patched at once. Idempotent; the import hook leaves ``sys.meta_path`` once it has fired.
    """
    check_openrlhf_version()
    if LOSS_MODULE in sys.modules:
        _register_cfpo(sys.modules[LOSS_MODULE].PolicyLoss)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def ray_runtime_env() -> Dict[str, Any]:
    """The Ray runtime_env that makes CFPO available in every Ray worker process."""
    return {"worker_process_setup_hook": f"{__name__}.{setup_ray_worker.__name__}"}
