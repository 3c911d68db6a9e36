"""Validate verl runs without GPUs: compose verl's own Hydra config with each run's overrides and build
what verl's driver builds from it before any worker starts.

    python examples/verl/dry_run.py record FILE OVERRIDE...   # the grid's LAUNCHER under DRY_RUN=1
    python examples/verl/dry_run.py check FILE                # every recorded run, in one process

``record`` appends one run's Hydra overrides to FILE (a JSON list per line). ``check`` composes
``verl/trainer/config/ppo_trainer.yaml`` with each run's overrides (Hydra refuses an unknown key),
runs verl's own ``validate_config`` (which builds the actor config with ``omega_conf_to_dataclass``,
as ``verl.trainer.main_ppo`` does), fetches the policy loss from verl's registry (``cfpo`` is there
only if openrlhf-cfpo's plugin loaded), checks CFPO's ε, and checks that the batch ratio divides:
``data.train_batch_size`` a multiple of ``actor.ppo_mini_batch_size``. It prints one line per run
and exits 1 at the first run that fails, naming it and the problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List


def check_run(overrides: List[str]) -> str:
    """Compose and validate one run; return its experiment name, raise ValueError naming the problem."""
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from openrlhf_cfpo import verl_patch

    with initialize_config_module("verl.trainer.config", version_base=None):
        try:
            config = compose("ppo_trainer", overrides=overrides)
        except ConfigCompositionException as err:
            raise ValueError(f"{err} (cause: {err.__cause__})".replace("\n", " ")) from None
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    get_policy_loss_fn(actor.policy_loss.loss_mode)
    if actor.policy_loss.loss_mode == verl_patch.LOSS_MODE:
        verl_patch.check_verl_version()
        verl_patch.trust_region(actor)
    batch, mini_batch = config.data.train_batch_size, actor.ppo_mini_batch_size
    if batch % mini_batch:
        raise ValueError(
            f"data.train_batch_size={batch} is not a multiple of actor_rollout_ref.actor.ppo_mini_batch_size="
            f"{mini_batch}: the batch ratio must divide the batch"
        )
    return config.trainer.experiment_name


def main(argv: List[str]) -> int:
    if len(argv) >= 2 and argv[0] == "record":
        with open(argv[1], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(argv[2:]) + "\n")
        return 0
    if len(argv) != 2 or argv[0] != "check":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    runs = [json.loads(line) for line in Path(argv[1]).read_text(encoding="utf-8").splitlines() if line]
    for index, overrides in enumerate(runs, 1):
        try:
            name = check_run(overrides)
        except Exception as err:  # noqa: BLE001  (verl raises AssertionError / ValueError alike)
            label = next((o.split("=", 1)[1] for o in overrides if o.startswith("trainer.experiment_name=")), index)
            print(f"dry run: run {label} is invalid: {type(err).__name__}: {err}".replace("\n", " "), file=sys.stderr)
            return 1
        print(f"dry run: ok {name}")
    print(f"dry run: all {len(runs)} runs valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
