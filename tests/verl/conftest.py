"""verl 0.9.1 tests: they run in .venv-verl (`make test` runs them after the main suite; pytest.ini
keeps them out of the main run, whose environment cannot hold verl). Each module starts with
``pytest.importorskip("verl.trainer.ppo.core_algos")`` (not plain "verl": from tests/ that name is this
folder), so an explicit run elsewhere skips; nothing here imports verl at module level."""

from importlib.resources import files

import pytest


def verl_trainer_yaml():
    """verl's own full trainer config (what its Hydra entry point composes by default), as OmegaConf."""
    from omegaconf import OmegaConf  # verl's dependency

    return OmegaConf.load(str(files("verl.trainer.config") / "_generated_ppo_trainer.yaml"))


@pytest.fixture
def verl_defaults():
    """verl's full default trainer config."""
    return verl_trainer_yaml()


@pytest.fixture
def actor_config():
    """Build the actor config the way verl's workers do (``omega_conf_to_dataclass`` of the trainer
    YAML's ``actor_rollout_ref.actor``), with ``overrides`` (dotted keys under the actor) applied."""

    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    def build(**overrides):
        config = verl_trainer_yaml()
        OmegaConf.update(config, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", 2)
        for key, value in overrides.items():
            OmegaConf.update(config, f"actor_rollout_ref.actor.{key}", value)
        return omega_conf_to_dataclass(config.actor_rollout_ref.actor)

    return build
