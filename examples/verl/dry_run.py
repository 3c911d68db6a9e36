"""Validate verl runs without GPUs: compose verl's own Hydra config with each run's overrides and build
what verl's driver builds from it before any worker starts.

    python examples/verl/dry_run.py record FILE OVERRIDE...   # the grid's LAUNCHER under DRY_RUN=1
    python examples/verl/dry_run.py check FILE                # every recorded run, in one process

``record`` appends one run's Hydra overrides to FILE (a JSON list per line). ``check`` composes
``verl/trainer/config/ppo_trainer.yaml`` with each run's overrides (``VerlConfigs``) (Hydra refuses an unknown key),
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


class VerlConfigs:
    """verl's trainer config composed by Hydra with a run's overrides.

    Hydra's ``compose`` re-reads every YAML of verl's config tree (about 1.5 s a run on a loaded CPU),
    so the base config is composed once and each run's overrides are applied by Hydra's own override
    step (``ConfigLoaderImpl._apply_overrides_to_config``: same parser, same refusal of an unknown
    key). The first run is also composed in full and must give the same config, else every run is.
    A context manager: Hydra's global state is held inside the ``with`` block."""

    def __enter__(self):
        from hydra import compose, initialize_config_module

        self._context = initialize_config_module("verl.trainer.config", version_base=None)
        self._context.__enter__()
        self._compose = compose
        self._base = compose("ppo_trainer")
        self._fast = None  # unknown until the first run compares both ways
        return self

    def __exit__(self, *exc_info):
        return self._context.__exit__(*exc_info)

    def compose(self, overrides: List[str]):
        import copy

        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        if self._fast is False:
            return self._compose("ppo_trainer", overrides=overrides)
        config = copy.deepcopy(self._base)
        ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(overrides), config)
        if self._fast is None:
            full = self._compose("ppo_trainer", overrides=overrides)
            self._fast = OmegaConf.to_container(full) == OmegaConf.to_container(config)
            return full
        return config


def check_run(configs: VerlConfigs, overrides: List[str]) -> str:
    """Compose and validate one run; return its experiment name, raise naming the problem."""
    from hydra.errors import ConfigCompositionException
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from openrlhf_cfpo import verl_patch

    try:
        config = configs.compose(overrides)
    except ConfigCompositionException as err:
        raise ValueError(f"{err} (cause: {err.__cause__})") from None
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
    with VerlConfigs() as configs:
        for index, overrides in enumerate(runs, 1):
            try:
                name = check_run(configs, overrides)
            except Exception as err:  # noqa: BLE001  (verl raises AssertionError / ValueError alike)
                label = next((o.split("=", 1)[1] for o in overrides if o.startswith("trainer.experiment_name=")), index)
                print(f"dry run: run {label} is invalid: {type(err).__name__}: {err}".replace("\n", " "), file=sys.stderr)
                return 1
            print(f"dry run: ok {name}")
    print(f"dry run: all {len(runs)} runs valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
