"""Launch-layout rules, and the check every grid runs on all its runs before it starts any.

A grid (``examples/grid.sh``, sourced by every grid script) first runs each of its runs' recipes
with ``LAYOUT_ONLY=1``: the recipe writes the run's name and its layout (the flags or overrides that
decide how its GPUs are split and its batches divide) and exits, preparing and launching nothing. The
grid then calls one checker for all the runs, in one process; the checker prints one line per run
that cannot work, ``INDEX<TAB>RUN: REASON``, and nothing for the others:

- OpenRLHF recipes: ``openrlhf-cfpo train --check-layouts FOLDER`` (``check_gpu_layout``, the dry
  run's own rules, on OpenRLHF's parsed arguments);
- verl: ``python -m openrlhf_cfpo.launch_layout verl FOLDER`` (``check_verl_mini_batch``);
- TRL: ``train_grpo_cfpo.py --check_layouts FOLDER`` (the recipe's own argument checks).

``FOLDER`` holds, for run ``i`` (1, 2, … in the grid's order), ``i.layout`` (the recipe's output:
the run's name, then its layout arguments, each ending in a NUL byte), ``i.status`` (the exit status
of the ``LAYOUT_ONLY`` step) and ``i.err`` (its standard error). A run whose recipe skipped it (it
has finished) wrote nothing and is not checked. This module imports nothing beyond the standard
library, so any environment with openrlhf-cfpo installed (verl's included) runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence


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


def hydra_overrides(overrides: Sequence[str]) -> Dict[str, str]:
    """``key=value`` overrides as {key: value}, the last one winning (``+``/``++`` prefixes dropped)."""
    values: Dict[str, str] = {}
    for override in overrides:
        key, _, value = override.partition("=")
        values[key.lstrip("+")] = value
    return values


def check_verl_layout(overrides: Sequence[str]) -> None:
    """``check_verl_mini_batch`` on a verl run's Hydra overrides (verl's default sequence parallel size 1)."""
    values = hydra_overrides(overrides)
    prefix = "actor_rollout_ref."
    try:
        check_verl_mini_batch(
            int(values[prefix + "actor.ppo_mini_batch_size"]), int(values[prefix + "rollout.n"]),
            int(values["trainer.nnodes"]), int(values["trainer.n_gpus_per_node"]),
            int(values.get(prefix + "actor.ulysses_sequence_parallel_size", 1)))
    except KeyError as err:
        raise ValueError(f"the run sets no {err.args[0]}") from None


def check_grid_records(folder: Path, check_run: Callable[[List[str]], None]) -> List[str]:
    """One line ``INDEX<TAB>RUN: REASON`` per run recorded in ``folder`` that cannot work: its
    ``LAYOUT_ONLY`` step failed (the reason is its last line of standard error), or ``check_run`` on
    its layout arguments raised (the reason is the exception's message)."""
    folder = Path(folder)
    indices = sorted(int(path.stem) for path in folder.glob("*.status"))
    problems = []
    for index in indices:
        status = int((folder / f"{index}.status").read_text().strip() or 1)
        fields = (folder / f"{index}.layout").read_text(encoding="utf-8").split("\0")[:-1]
        if status != 0:
            errors = [line for line in (folder / f"{index}.err").read_text(encoding="utf-8").splitlines() if line]
            label = fields[0] if fields else f"run {index} of {len(indices)}"
            problems.append(f"{index}\t{label}: {errors[-1] if errors else f'its recipe exited with {status}'}")
            continue
        if not fields:  # the recipe skipped a finished run
            continue
        label, arguments = fields[0], fields[1:]
        try:
            check_run(arguments)
        except Exception as err:  # noqa: BLE001  (each framework's checks raise their own kinds)
            reason = str(err).replace("\n", " ") or type(err).__name__
            problems.append(f"{index}\t{label}: {reason}")
    return problems


def report(folder: Path, check_run: Callable[[List[str]], None]) -> int:
    """Print ``check_grid_records``'s lines (the grid reads them) and return 0."""
    for line in check_grid_records(folder, check_run):
        print(line)
    return 0


CHECKERS = {"verl": check_verl_layout}


def main(argv: List[str] | None = None) -> int:
    """``python -m openrlhf_cfpo.launch_layout verl FOLDER``: the verl grid's check of all its runs."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in CHECKERS:
        print(f"usage: python -m openrlhf_cfpo.launch_layout {{{','.join(CHECKERS)}}} FOLDER", file=sys.stderr)
        return 2
    return report(Path(argv[1]), CHECKERS[argv[0]])


if __name__ == "__main__":
    sys.exit(main())
