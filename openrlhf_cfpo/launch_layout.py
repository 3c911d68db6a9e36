"""Launch-layout rules: plain arithmetic on a run's settings, no framework import, so a grid can check all
its runs on a login node and verl's dry run can apply the same rule.
"""

from __future__ import annotations


def check_verl_mini_batch(ppo_mini_batch_size: int, rollout_n: int, nnodes: int, n_gpus_per_node: int,
                          ulysses_sequence_parallel_size: int = 1) -> None:
    """Raise ValueError unless verl 0.9.1 can split each actor mini-batch over its data-parallel ranks.

    verl counts ``actor_rollout_ref.actor.ppo_mini_batch_size`` in prompts; each optimizer step takes
    ``ppo_mini_batch_size × rollout.n`` samples, which its actor worker (``train_mini_batch`` in
    ``verl/workers/engine_workers.py``) asserts to be divisible by the data-parallel size
    ``nnodes × n_gpus_per_node / ulysses_sequence_parallel_size`` at the first update. With
    ``use_dynamic_bsz=true`` verl's ``validate_config`` checks no batch against the GPUs, so nothing
    before that update catches it.
    """
    gpus = nnodes * n_gpus_per_node
    if ulysses_sequence_parallel_size < 1 or gpus % ulysses_sequence_parallel_size:
        raise ValueError(
            f"trainer.nnodes {nnodes} x trainer.n_gpus_per_node {n_gpus_per_node} = {gpus} GPUs do not split into "
            f"groups of actor_rollout_ref.actor.ulysses_sequence_parallel_size={ulysses_sequence_parallel_size}")
    data_parallel = gpus // ulysses_sequence_parallel_size
    samples = ppo_mini_batch_size * rollout_n
    if samples % data_parallel:
        raise ValueError(
            f"actor_rollout_ref.actor.ppo_mini_batch_size={ppo_mini_batch_size} x actor_rollout_ref.rollout.n="
            f"{rollout_n} = {samples} samples per optimizer step are not divisible by the data-parallel size "
            f"{data_parallel} ({nnodes} x {n_gpus_per_node} GPUs / sequence parallel {ulysses_sequence_parallel_size}); "
            "verl fails at the first update: use a node and GPU count whose data-parallel size divides it")
