"""Hyper-parameters of the lab's RLHF setting (`openrlhf-cfpo lab --setting rlhf`), one line each.

The paper's RLHF experiments (§5.2, Table 4) run RLOO with 2 samples per prompt, rollout batch 512,
train batch 64 (16 policy updates per rollout, one pass), KL β ∈ {1e-4, 0} in the reward (k1),
token-mean loss and "default OpenRLHF hyperparameters" otherwise. This setting keeps that schedule
at toy scale: 2 samples per prompt, ``batch_ratio`` = 16 mini-batches per pass, one pass, the KL
penalty in the reward, token-mean; a cell is (objective, iterations, batch ratio, β, seed), and a
seed fixes its whole world (SFT policy, reward model, prompts, draws).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, List, Tuple

from openrlhf_cfpo.lab.config import check_cells, check_list

# β₁, chosen once by the rule in docs/lab.md ("β₁ by a rule fixed in advance") on on-policy runs.
KL_COEF_1 = 0.02


@dataclass(frozen=True)
class RLHFConfig:
    objectives: Tuple[str, ...] = ("ppo", "cfpo")
    """surrogates from openrlhf_cfpo.objectives: "ppo" = PPO-clip (OpenRLHF's RLOO loss), "cfpo" = eqs. (7)-(8)"""
    iterations_list: Tuple[int, ...] = (1,)
    """passes over each rollout batch (OpenRLHF max_epochs; Table 4: one)"""
    batch_ratios: Tuple[int, ...] = (16,)
    """mini-batches per pass = rollout batch / train batch (Table 4: 512 x 2 / 64 = 16 updates per rollout)"""
    kl_coefs: Tuple[float, ...] = (KL_COEF_1, 0.0)
    """β values, each a cell dimension: KL to the SFT policy in the reward (k1, as OpenRLHF 0.11.2 by default)"""
    seeds: Tuple[int, ...] = tuple(range(10))
    """one world per seed: SFT policy, reward model, prompts, sampling and mini-batch order"""
    steps: int = 60
    """RL steps per cell (one rollout batch each)"""
    prompts_per_step: int = 32
    """prompts per rollout batch"""
    samples_per_prompt: int = 2
    """responses per prompt (Table 4: 2; RLOO's baseline is the other sample)"""
    eps_low: float = 0.2
    """trust region lower half-width (OpenRLHF's default eps_clip 0.2)"""
    eps_high: float = 0.2
    """trust region upper half-width"""
    lr: float = 3e-4
    """RL learning rate (AdamW, betas 0.9/0.95, no weight decay, constant), as the RLVR lab"""
    max_grad_norm: float = 1.0
    """gradient clipping by global norm before every update (OpenRLHF's default)"""
    hidden_size: int = 32
    """width of the tiny Llama policy and reward model"""
    num_layers: int = 2
    """transformer blocks of policy and reward model"""
    num_heads: int = 4
    """attention heads"""
    sft_steps: int = 400
    """supervised steps of the SFT policy (instruction responses and the addition skill)"""
    sft_batch_size: int = 64
    """sequences per SFT step"""
    sft_skill_fraction: float = 0.25
    """share of each SFT batch taken from the second skill (1-digit addition)"""
    sft_lr: float = 3e-3
    """SFT learning rate (AdamW, constant)"""
    rm_pairs: int = 4096
    """annotator-labelled training pairs of the reward model"""
    rm_heldout_pairs: int = 1024
    """held-out labelled pairs (pair accuracy; the normalizer's mean and std, as OpenRLHF's last evaluation)"""
    rm_steps: int = 300
    """reward-model steps (Bradley-Terry pairwise loss)"""
    rm_batch_size: int = 64
    """pairs per reward-model step"""
    rm_lr: float = 3e-3
    """reward-model learning rate (AdamW, constant)"""
    eval_samples: int = 256
    """evaluation responses per model (the 16 prompts, repeated), each judged against the SFT policy's"""
    device: str = "cpu"
    """torch device (cpu)"""
    threads: int = 1
    """torch CPU threads per worker (see LabConfig.threads)"""

    def cells(self) -> List["RLHFCell"]:
        """Every cell in sweep order: batch ratio, iterations, β, seed, objective."""
        return [RLHFCell(o, k, b, beta, s) for b in self.batch_ratios for k in self.iterations_list
                for beta in self.kl_coefs for s in self.seeds for o in self.objectives]

    @property
    def rollout_size(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in LIST_FIELDS:
            data[key] = list(data[key])
        return {"setting": "rlhf", **data}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RLHFConfig":
        data = {k: v for k, v in data.items() if k != "setting"}
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown rlhf lab config keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if k in LIST_FIELDS else v for k, v in data.items()})


@dataclass(frozen=True)
class RLHFCell:
    objective: str
    iterations: int
    batch_ratio: int
    kl_coef: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.objective}-it{self.iterations}-br{self.batch_ratio}-kl{self.kl_coef:g}-seed{self.seed}"

    @property
    def schedule(self) -> Tuple[int, int]:
        """Cells of one seed with the same schedule train as one stack."""
        return self.iterations, self.batch_ratio

    @property
    def cost(self) -> int:
        """Relative cost of one RL step: rollout and scoring (about two updates) plus the updates."""
        return 2 + self.iterations * self.batch_ratio


LIST_FIELDS = ("objectives", "iterations_list", "batch_ratios", "kl_coefs", "seeds")
WORLD_FIELDS = ("hidden_size", "num_layers", "num_heads", "sft_steps", "sft_batch_size", "sft_skill_fraction",
                "sft_lr", "rm_pairs", "rm_heldout_pairs", "rm_steps", "rm_batch_size", "rm_lr", "device", "threads")

# `--quick`: a smoke run in well under a minute.
QUICK = dict(seeds=(0, 1, 2), steps=3, prompts_per_step=8, batch_ratios=(4,), hidden_size=16, num_layers=1,
             num_heads=2, sft_steps=60, sft_batch_size=32, rm_pairs=512, rm_heldout_pairs=256, rm_steps=40,
             rm_batch_size=32, eval_samples=32)


def quick(config: RLHFConfig) -> RLHFConfig:
    return replace(config, **QUICK)


def world_key(config: RLHFConfig, seed: int, fmt: int) -> str:
    """The cache key of a seed's world (SFT policy and reward model)."""
    blob = json.dumps({"format": fmt, "seed": seed, **{n: getattr(config, n) for n in WORLD_FIELDS}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validate(config: RLHFConfig) -> None:
    """Raise ValueError naming the flag and the fix for the first invalid setting."""
    check_cells(config, config.rollout_size, "prompts_per_step x samples_per_prompt")
    check_list("--kl-coef", config.kl_coefs, 0, "0.02,0")
    if config.samples_per_prompt < 2:
        raise ValueError("samples_per_prompt must be >= 2 (RLOO's baseline is the other samples of the prompt)")
    if config.hidden_size % config.num_heads:
        raise ValueError(f"hidden_size ({config.hidden_size}) must be a multiple of num_heads ({config.num_heads})")
    if not 0 < config.sft_skill_fraction < 1:
        raise ValueError(f"sft_skill_fraction must be in (0, 1); got {config.sft_skill_fraction}")
    for name in ("steps", "prompts_per_step", "sft_steps", "rm_steps", "rm_pairs", "rm_heldout_pairs", "eval_samples"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(config, name)}")
    if config.device != "cpu":
        raise ValueError("--setting rlhf runs on --device cpu")
