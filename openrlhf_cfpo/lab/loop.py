"""One cell of the lab: on-policy RL of the warm-up policy with one objective and one reuse setting.

Each step samples G responses for each of a batch of prompts, scores them, computes advantages
(eq. 9 or 10), then makes ``iterations`` passes over that rollout batch in ``batch_ratio``
shuffled mini-batches, one AdamW update each, and measures held-out greedy accuracy. The
surrogate is looked up in ``openrlhf_cfpo.objectives`` by name; the lab only reduces its per-token
loss (token mean per mini-batch) and averages every metric over the step's updates weighted by
token count.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, List, Optional

import torch
from transformers import LlamaForCausalLM

from openrlhf_cfpo.lab.config import CellConfig, LabConfig, stream_seed
from openrlhf_cfpo.lab.model import greedy_accuracy, response_log_probs, sample
from openrlhf_cfpo.lab.rlhf_formulas import rloo_baseline_subtracted
from openrlhf_cfpo.lab.task import AdditionTask, response_mask
from openrlhf_cfpo.objectives import bounded_ratio, get_objective, trust_region_stats

# Metric keys of every metrics.jsonl line, in order (defined in docs/lab.md).
METRIC_KEYS = (
    "objective", "iterations", "batch_ratio", "seed", "step", "reward_mean", "accuracy", "clip_ratio",
    "ratio_mean", "ratio_max", "ratio_min", "policy_kl", "entropy", "response_length_mean", "grad_norm", "loss",
)


def compute_advantages(rewards: torch.Tensor, group_size: int, estimator: str) -> torch.Tensor:
    """Per-response advantages from rewards laid out prompt by prompt, ``group_size`` responses each.

    - ``group_norm`` (eq. 9): A_i = (R_i − mean(R)) / (std(R) + 1e-9) within the group (GRPO);
    - ``rloo`` (eq. 10): A_i = R_i − mean_{j≠i} R_j (leave-one-out baseline).
    Same formulas as OpenRLHF 0.11.2's estimators of those names.
    """
    if estimator == "rloo":
        return rloo_baseline_subtracted(rewards, group_size)
    if estimator != "group_norm":
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose group_norm or rloo")
    groups = rewards.reshape(-1, group_size)
    return ((groups - groups.mean(-1, keepdim=True)) / (groups.std(-1, keepdim=True) + 1e-9)).reshape(-1)


def k3_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ ‖ π_ref), as OpenRLHF: exp(−d) − 1 + d, d = log π_θ − log π_ref."""
    d = (log_probs - ref_log_probs).clamp(min=-10)
    return (-d).exp() - 1 + d


@torch.no_grad()
def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return ((values * mask).sum() / mask.sum()).item()


class TokenWeightedMeans:
    """Running means weighted by token count; ``ratio_max``/``ratio_min`` keep the extremes instead."""

    def __init__(self):
        self.sums: Dict[str, float] = defaultdict(float)
        self.weight = 0.0
        self.ratio_max = float("-inf")
        self.ratio_min = float("inf")

    def add(self, n_tokens: float, values: Dict[str, float], ratio_max: float, ratio_min: float) -> None:
        for key, value in values.items():
            self.sums[key] += n_tokens * value
        self.weight += n_tokens
        self.ratio_max = max(self.ratio_max, ratio_max)
        self.ratio_min = min(self.ratio_min, ratio_min)

    def result(self) -> Dict[str, float]:
        means = {key: total / self.weight for key, total in self.sums.items()}
        return {**means, "ratio_max": self.ratio_max, "ratio_min": self.ratio_min}


def train_cell(
    config: LabConfig,
    cell: CellConfig,
    policy: LlamaForCausalLM,
    task: AdditionTask,
    reference: Optional[LlamaForCausalLM] = None,
    on_step: Optional[Callable[[Dict], None]] = None,
) -> List[Dict]:
    """Run ``config.steps`` RL steps on ``policy`` (updated in place); returns one metrics dict per step.

    ``reference`` (the frozen warm-up policy) is needed only when ``config.kl_coef > 0``.
    ``on_step`` is called with each step's metrics as soon as they exist (for writing and progress).
    """
    device = torch.device(config.device)
    objective = get_objective(cell.objective)
    if config.kl_coef > 0 and reference is None:
        raise ValueError("kl_coef > 0 needs the reference (warm-up) policy")

    # Seeding, in one place: prompts, sampling and mini-batch order depend only on the seed, so
    # every objective and reuse setting sees the same problems and the same random draws.
    torch.manual_seed(stream_seed(cell.seed, "rl"))
    prompt_rng = torch.Generator().manual_seed(stream_seed(cell.seed, "prompts"))
    sampling_rng = torch.Generator(device=device).manual_seed(stream_seed(cell.seed, "sampling"))
    shuffle_rng = torch.Generator().manual_seed(stream_seed(cell.seed, "shuffle"))

    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_responses = config.prompts_per_step * config.group_size
    history = []
    for step in range(1, config.steps + 1):
        # 1. Rollout: G responses per prompt from the current policy, scored by the verifier.
        problems = task.sample(config.prompts_per_step, prompt_rng)
        policy.eval()
        responses = sample(policy, problems.prompts.to(device), config.group_size, task.max_new_tokens, sampling_rng)
        problems = problems.repeat_each(config.group_size)
        prompts = problems.prompts.to(device)
        mask = response_mask(responses)
        rewards = task.rewards(problems, responses.cpu())
        advantages = compute_advantages(rewards, config.group_size, config.advantage).to(device)
        advantages = advantages[:, None].expand_as(mask).contiguous()

        # 2. Optimisation: `iterations` passes, each over `batch_ratio` shuffled mini-batches.
        passes = [torch.randperm(n_responses, generator=shuffle_rng).to(device).chunk(cell.batch_ratio)
                  for _ in range(cell.iterations)]
        batches = [batch for one_pass in passes for batch in one_pass]
        # log π_old: the first update's own forward pass gives its rows (the policy has not moved
        # yet); the first pass's other mini-batches are evaluated now, before any update.
        old_log_probs = torch.empty(mask.shape, device=device)
        with torch.no_grad():
            if cell.batch_ratio > 1:
                later = torch.cat(passes[0][1:])
                old_log_probs[later] = response_log_probs(policy, prompts[later], responses[later])[0]
            ref_log_probs = response_log_probs(reference, prompts, responses)[0] if config.kl_coef > 0 else None
        policy.train()
        means = TokenWeightedMeans()
        for index, batch in enumerate(batches):
            log_probs, entropy = response_log_probs(policy, prompts[batch], responses[batch])
            if index == 0:
                old_log_probs[batch] = log_probs.detach()
            ratio = bounded_ratio(log_probs, old_log_probs[batch])
            batch_mask, batch_adv = mask[batch], advantages[batch]
            token_loss = objective(ratio, batch_adv, config.eps_low, config.eps_high)
            if ref_log_probs is not None:
                token_loss = token_loss + config.kl_coef * k3_kl(log_probs, ref_log_probs[batch])
            n_tokens = batch_mask.sum()
            loss = (token_loss * batch_mask).sum() / n_tokens
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()

            stats = trust_region_stats(ratio.detach(), batch_adv, batch_mask, config.eps_low, config.eps_high)
            means.add(
                n_tokens.item(),
                {
                    "loss": loss.item(),
                    "clip_ratio": stats["clip_ratio"].item(),
                    "ratio_mean": stats["ratio_mean"].item(),
                    "policy_kl": _masked_mean(old_log_probs[batch] - log_probs, batch_mask),
                    "entropy": _masked_mean(entropy, batch_mask),
                    "grad_norm": grad_norm.item(),
                },
                ratio_max=stats["ratio_max"].item(),
                ratio_min=stats["ratio_min"].item(),
            )

        policy.eval()
        metrics = {
            "objective": cell.objective,
            "iterations": cell.iterations,
            "batch_ratio": cell.batch_ratio,
            "seed": cell.seed,
            "step": step,
            "reward_mean": rewards.mean().item(),
            "accuracy": greedy_accuracy(policy, task.heldout_batch, device),
            "response_length_mean": mask.sum(dim=1).mean().item(),
            **means.result(),
        }
        metrics = {key: metrics[key] for key in METRIC_KEYS}
        history.append(metrics)
        if on_step is not None:
            on_step(metrics)
    return history
