"""Hyper-parameters of the lab, one dataclass with one line of documentation per field.

``LabConfig`` describes one sweep, a grid of cells (objective x iterations x batch ratio x seed):
every other field is shared by all its cells, and a seed fixes the warm-up policy, the problems and
the random draws, so PPO and CFPO with the same seed differ in their objective only.
``WARMUP_FIELDS`` are the fields that, with the seed, determine a warm-up checkpoint (its cache key).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, List, Tuple

from openrlhf_cfpo.lab.task import check_task_size
from openrlhf_cfpo.objectives import OBJECTIVES, check_trust_region

ADVANTAGE_ESTIMATORS = ("group_norm", "rloo")


@dataclass(frozen=True)
class LabConfig:
    objectives: Tuple[str, ...] = ("ppo", "cfpo")
    """surrogates from openrlhf_cfpo.objectives: "ppo" = PPO-clip/GRPO eq. (6), "cfpo" = eqs. (7)-(8)"""
    iterations_list: Tuple[int, ...] = (1, 2, 4, 8, 16)
    """sample reuse: optimisation passes over each rollout batch (TRL num_iterations, OpenRLHF max_epochs)"""
    batch_ratios: Tuple[int, ...] = (1,)
    """mini-batches per pass = rollout batch / mini-batch size; policy updates per rollout = iterations x this"""
    seeds: Tuple[int, ...] = tuple(range(10))
    """one run per seed; a seed fixes model init, warm-up data, rollout prompts, sampling and mini-batch order.
    Ten: the fewest that kept every paired interval of the default sweep within ±5 points (the spread
    of the differences reaches about 6.5 points at 16 iterations; docs/lab.md, Precision)"""
    advantage: str = "group_norm"
    """advantage estimator: "group_norm" (eq. 9, GRPO) or "rloo" (eq. 10, leave-one-out baseline)"""
    steps: int = 100
    """RL steps per cell; each samples one rollout batch and then optimises on it"""
    prompts_per_step: int = 16
    """prompts per rollout batch"""
    group_size: int = 8
    """sampled responses per prompt (G); the rollout batch holds prompts_per_step x group_size responses"""
    eps_low: float = 0.2
    """trust region lower half-width: r >= 1 - eps_low for tokens with A < 0"""
    eps_high: float = 0.2
    """trust region upper half-width: r <= 1 + eps_high for tokens with A > 0"""
    kl_coef: float = 0.0
    """beta: weight of the k3 KL penalty to the warm-up (reference) policy; 0 = no reference model"""
    lr: float = 3e-4
    """RL learning rate (AdamW, betas 0.9/0.95, no weight decay, constant)"""
    max_grad_norm: float = 1.0
    """gradient clipping by global norm before every policy update (OpenRLHF's default)"""
    eval_size: int = 256
    """held-out problems (never seen in warm-up or RL), answered greedily after every RL step"""
    digits: int = 2
    """operand width of the addition task: prompts 'ab+cd=' with a sum written in full"""
    hidden_size: int = 64
    """width of the tiny Llama policy"""
    num_layers: int = 2
    """transformer blocks of the tiny Llama policy"""
    num_heads: int = 4
    """attention heads of the tiny Llama policy"""
    warmup_steps: int = 3000
    """most supervised warm-up steps before RL (it stops earlier at warmup_target_accuracy)"""
    warmup_target_accuracy: float = 0.3
    """warm-up stops where greedy accuracy on training problems crosses this, so rewards start mixed"""
    warmup_batch_size: int = 64
    """problems per supervised warm-up step"""
    warmup_lr: float = 3e-3
    """supervised warm-up learning rate (AdamW, constant)"""
    device: str = "cpu"
    """torch device: "cpu" (deterministic for a seed) or "cuda\""""
    threads: int = 1
    """torch CPU threads; with 1 a cell's numbers depend only on its settings and seed on one kind of CPU and torch
    build (not across processors: docs/lab.md, Behaviour), and it stays fast on busy shared cores"""

    def cells(self) -> List["CellConfig"]:
        """Every cell in sweep order: batch ratio, then iterations, then seed, then objective."""
        return [
            CellConfig(objective=o, iterations=k, batch_ratio=b, seed=s)
            for b in self.batch_ratios for k in self.iterations_list for s in self.seeds for o in self.objectives
        ]

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in LIST_FIELDS:
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "LabConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown lab config keys: {', '.join(unknown)}")
        data = dict(data)
        for key in LIST_FIELDS:
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class CellConfig:
    """The settings that differ between the cells of one sweep, plus what identifies a cell's metrics."""

    objective: str
    iterations: int
    batch_ratio: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.objective}-it{self.iterations}-br{self.batch_ratio}-seed{self.seed}"

    @property
    def cost(self) -> int:
        """Relative cost of one RL step: sampling and evaluation (about one full-batch update) plus
        ``iterations`` passes over the rollout batch."""
        return 1 + self.iterations


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one random stream of run ``seed`` ("init", "warmup_data", "rl", "prompts",
    "sampling", "shuffle"): a hash, so that no stream of one seed replays a stream of another."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


LIST_FIELDS = ("objectives", "iterations_list", "batch_ratios", "seeds")
WARMUP_FIELDS = (
    "digits", "hidden_size", "num_layers", "num_heads", "warmup_steps", "warmup_target_accuracy",
    "warmup_batch_size", "warmup_lr", "eval_size", "device", "threads",
)

# `--quick`: a tiny model, warm-up and RL run for tests and smoke checks (well under a minute).
QUICK = dict(
    seeds=(0, 1, 2), steps=3, prompts_per_step=4, group_size=4, eval_size=20, digits=1, hidden_size=32,
    num_layers=1, num_heads=2, warmup_steps=200, warmup_batch_size=32,
)


def quick(config: LabConfig) -> LabConfig:
    """``config`` with the tiny `--quick` settings (three seeds among them: they replace ``config.seeds``)."""
    return replace(config, **QUICK)


def check_list(flag: str, values: Tuple[float, ...], minimum: float, example: str) -> None:
    """Raise ValueError unless ``values`` is non-empty, each >= ``minimum`` and none listed twice."""
    if not values:
        raise ValueError(f"{flag} is empty; give at least one value, e.g. {flag} {example}")
    if any(v < minimum for v in values):
        raise ValueError(f"{flag} must all be >= {minimum}; got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} lists a value twice ({list(values)}); give each once")


def check_cells(config, rollout: int, rollout_formula: str) -> None:
    """The checks every lab setting shares: objectives, iteration counts, batch ratios (each dividing
    the ``rollout`` batch, named by ``rollout_formula``), seeds and the trust region."""
    if not config.objectives:
        raise ValueError("--objectives is empty; give at least one of: " + ", ".join(OBJECTIVES))
    for name in config.objectives:
        if name not in OBJECTIVES:
            raise ValueError(f"--objectives: unknown objective {name!r}; choose from: {', '.join(OBJECTIVES)}")
    if len(set(config.objectives)) != len(config.objectives):
        raise ValueError("--objectives lists an objective twice; give each once")
    check_list("--iterations", config.iterations_list, 1, "1,4")
    check_list("--batch-ratio", config.batch_ratios, 1, "1,4")
    check_list("--seeds", config.seeds, 0, "0,1,2")
    try:
        check_trust_region(config.eps_low, config.eps_high)
    except ValueError as err:
        raise ValueError(f"--eps: {err}") from None
    for ratio in config.batch_ratios:
        if rollout % ratio:
            raise ValueError(f"--batch-ratio must divide the rollout batch of {rollout} responses ({rollout_formula}); "
                             f"got {ratio}")


def validate(config: LabConfig) -> None:
    """Raise ValueError naming the flag and the fix for the first invalid setting."""
    check_cells(config, config.prompts_per_step * config.group_size, "prompts_per_step x group_size")
    if config.advantage not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"--advantage must be one of {', '.join(ADVANTAGE_ESTIMATORS)}; got {config.advantage!r}")
    if config.group_size < 2:
        raise ValueError(
            f"group_size must be >= 2 (advantages compare responses to one prompt); got {config.group_size}"
        )
    for name in ("steps", "prompts_per_step", "eval_size", "digits", "hidden_size", "num_layers",
                 "num_heads", "warmup_batch_size", "threads"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(config, name)}")
    if config.warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0; got {config.warmup_steps}")
    if not 0 < config.warmup_target_accuracy <= 1:
        raise ValueError(f"warmup_target_accuracy must be in (0, 1]; got {config.warmup_target_accuracy}")
    check_task_size(config.digits, config.eval_size)
    if config.hidden_size % config.num_heads:
        raise ValueError(f"hidden_size ({config.hidden_size}) must be a multiple of num_heads ({config.num_heads})")
    for name in ("lr", "warmup_lr", "max_grad_norm"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be > 0; got {getattr(config, name)}")
    if config.kl_coef < 0:
        raise ValueError(f"--kl-coef must be >= 0; got {config.kl_coef}")
    if config.device not in ("cpu", "cuda") and not config.device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda; got {config.device!r}")
