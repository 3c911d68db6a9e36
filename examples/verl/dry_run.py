"""Validate verl runs without GPUs: compose verl's own Hydra config with each run's overrides and build
what verl's driver builds from it before any worker starts.

    python examples/verl/dry_run.py record FILE OVERRIDE...   # the grid's LAUNCHER under DRY_RUN=1
    python examples/verl/dry_run.py check FILE                # every recorded run, in one process

``record`` appends one run's Hydra overrides to FILE (a JSON list per line). ``check`` composes
``verl/trainer/config/ppo_trainer.yaml`` with each run's overrides (``VerlConfigs``) (Hydra refuses an unknown key),
runs verl's own ``validate_config`` (which builds the actor config with ``omega_conf_to_dataclass``,
as ``verl.trainer.main_ppo`` does), checks that the policy loss is in the registry a verl worker has
(``WorkerPolicyLosses``: a fresh interpreter that only imports verl, in this environment, so a
missing plugin or a ``VERL_USE_EXTERNAL_PLUGINS`` without cfpo fails), checks CFPO's ε and that
``algorithm.rollout_correction.bypass_mode`` would not replace it, and checks the batch layout: the
batch ratio divides the batch, and a mini-batch's samples divide over the data-parallel GPUs
(``openrlhf_cfpo.launch_layout.check_verl_mini_batch``, the rule the grids check). It prints one line
per run and exits 1 at the first run that fails, naming it and the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional

# What a verl Ray worker does before it looks a loss up: `import verl` (which loads the verl.plugins
# entry points and VERL_USE_EXTERNAL_MODULES), then the registry.
WORKER_REGISTRY_PROBE = (
    "import json, verl\n"
    "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY\n"
    "print(json.dumps(sorted(POLICY_LOSS_REGISTRY)))\n"
)


class WorkerPolicyLosses:
    """The policy losses in verl's registry as a verl worker has them: a fresh interpreter that only
    imports verl, with this process's environment (or ``env``) and a working directory outside the
    checkout, so nothing this process imported or registered counts. Started at construction (it
    takes seconds) and read by ``names()``."""

    def __init__(self, env: Optional[Dict[str, str]] = None):
        self._process = subprocess.Popen(
            [sys.executable, "-c", WORKER_REGISTRY_PROBE], env=os.environ.copy() if env is None else env,
            cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._names: Optional[FrozenSet[str]] = None

    def names(self) -> FrozenSet[str]:
        if self._names is None:
            out, err = self._process.communicate(timeout=600)
            if self._process.returncode != 0:
                last = (err.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"`import verl` in a fresh interpreter failed ({last}); run the dry run with verl's Python")
            self._names = frozenset(json.loads(out.strip().splitlines()[-1]))
        return self._names


def check_registered(loss_mode: str, worker_losses: FrozenSet[str]) -> None:
    """ValueError naming the fix unless ``loss_mode`` is in the registry a verl worker has."""
    if loss_mode in worker_losses:
        return
    from openrlhf_cfpo import verl_patch

    fix = (
        "openrlhf-cfpo's verl.plugins entry point did not load: install it in verl's environment "
        "(pip install '.[verl]') and leave VERL_USE_EXTERNAL_PLUGINS unset, 'auto' or a list naming cfpo "
        f"(here {os.environ.get('VERL_USE_EXTERNAL_PLUGINS', 'unset')}), or set "
        "VERL_USE_EXTERNAL_MODULES=openrlhf_cfpo.verl_patch"
        if loss_mode == verl_patch.LOSS_MODE
        else f"use one of {sorted(worker_losses)}"
    )
    raise ValueError(
        f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode} is not in verl's policy-loss registry after "
        f"`import verl` in a fresh interpreter (what each verl worker does): {fix}"
    )


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


def check_run(configs: VerlConfigs, overrides: List[str], worker_losses: FrozenSet[str]) -> str:
    """Compose and validate one run against the registry ``worker_losses`` (``WorkerPolicyLosses.names()``);
    return its experiment name, raise naming the problem."""
    from hydra.errors import ConfigCompositionException
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from openrlhf_cfpo import verl_patch
    from openrlhf_cfpo.launch_layout import check_verl_mini_batch

    try:
        config = configs.compose(overrides)
    except ConfigCompositionException as err:
        raise ValueError(f"{err} (cause: {err.__cause__})") from None
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    check_registered(actor.policy_loss.loss_mode, worker_losses)
    if actor.policy_loss.loss_mode == verl_patch.LOSS_MODE:
        verl_patch.check_verl_version()
        verl_patch.trust_region(actor)
        if config.algorithm.rollout_correction.bypass_mode:
            raise ValueError(
                "algorithm.rollout_correction.bypass_mode=true with loss_mode=cfpo: verl's bypass mode sets "
                "loss_mode=bypass_mode (its PPO-clip or REINFORCE loss, rollout_corr_helper.apply_bypass_mode), so "
                "CFPO would not be trained; set algorithm.rollout_correction.bypass_mode=false"
            )
    batch, mini_batch = config.data.train_batch_size, actor.ppo_mini_batch_size
    if batch % mini_batch:
        raise ValueError(
            f"data.train_batch_size={batch} is not a multiple of actor_rollout_ref.actor.ppo_mini_batch_size="
            f"{mini_batch}: the batch ratio must divide the batch"
        )
    check_verl_mini_batch(mini_batch, config.actor_rollout_ref.rollout.n, config.trainer.nnodes,
                          config.trainer.n_gpus_per_node, actor.fsdp_config.ulysses_sequence_parallel_size)
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
    probe = WorkerPolicyLosses()  # runs while verl's base config is composed
    with VerlConfigs() as configs:
        try:
            worker_losses = probe.names()
        except RuntimeError as err:
            print(f"dry run: {err}", file=sys.stderr)
            return 1
        for index, overrides in enumerate(runs, 1):
            try:
                name = check_run(configs, overrides, worker_losses)
            except Exception as err:  # noqa: BLE001  (verl raises AssertionError / ValueError alike)
                label = next((o.split("=", 1)[1] for o in overrides if o.startswith("trainer.experiment_name=")), index)
                print(f"dry run: run {label} is invalid: {type(err).__name__}: {err}".replace("\n", " "), file=sys.stderr)
                return 1
            print(f"dry run: ok {name}")
    print(f"dry run: all {len(runs)} runs valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
