"""What each run label stands for: objective, KL β, iterations, batch ratio, model.

Read from the run's saved OpenRLHF arguments where they exist, else from a ``--labels`` YAML:

    cfpo_kl0:                 # run label (folder name / run_name)
      objective: cfpo         # the policy loss: ppo | cfpo | ...
      kl_beta: 0.0
      iterations: 1           # passes over each rollout batch (OpenRLHF --train.max_epochs)
      batch_ratio: 4          # optimizer steps per rollout batch
      model: Llama-3-8B-SFT-Mixture

A field given in the YAML replaces the saved one (the YAML is how a user corrects a label).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Dict, Mapping, Optional

SETTING_TYPES = {"objective": str, "kl_beta": float, "iterations": int, "batch_ratio": float, "model": str}


class LabelsFileError(ValueError):
    """A --labels YAML that cannot be used; the message names the entry and the fix."""


@dataclass(frozen=True)
class RunSettings:
    """The settings a run label stands for; None where unknown."""

    objective: Optional[str] = None
    kl_beta: Optional[float] = None
    iterations: Optional[int] = None
    batch_ratio: Optional[float] = None
    model: Optional[str] = None

    def filled_from(self, other: "RunSettings") -> "RunSettings":
        """These settings, with fields still unknown taken from ``other``."""
        return replace(
            self, **{f.name: getattr(other, f.name) for f in fields(self) if getattr(self, f.name) is None}
        )

    def overridden_by(self, other: "RunSettings") -> "RunSettings":
        """These settings, with every field ``other`` knows replaced by ``other``'s."""
        return other.filled_from(self)


def settings_from_openrlhf_args(args: Mapping[str, object]) -> RunSettings:
    """OpenRLHF 0.11.2 arguments (flat dotted keys) → RunSettings.

    iterations = ``train.max_epochs``; batch ratio = ``rollout.batch_size`` ×
    ``rollout.n_samples_per_prompt`` / ``train.batch_size`` (optimizer steps per rollout batch);
    KL β = ``algo.kl.init_coef``; model = ``actor.model_name_or_path``.
    """
    batch_ratio = None
    keys = ("rollout.batch_size", "rollout.n_samples_per_prompt", "train.batch_size")
    rollout, samples, train = (args.get(key) for key in keys)
    if all(isinstance(v, (int, float)) for v in (rollout, samples, train)) and train:
        batch_ratio = rollout * samples / train
    iterations = args.get("train.max_epochs")
    kl_beta = args.get("algo.kl.init_coef")
    return RunSettings(
        objective=args.get("actor.policy_loss_type"),
        kl_beta=float(kl_beta) if isinstance(kl_beta, (int, float)) else None,
        iterations=int(iterations) if isinstance(iterations, int) else None,
        batch_ratio=batch_ratio,
        model=args.get("actor.model_name_or_path"),
    )


VERL_LOSS_MODES_AS_OBJECTIVES = {"vanilla": "ppo"}  # verl's PPO-clip surrogate is the reports' "ppo"


def settings_from_verl_overrides(overrides) -> RunSettings:
    """A verl run's Hydra overrides (``key=value`` strings, as examples/verl/train_rlvr_math.sh saves
    them) → RunSettings. objective = ``actor.policy_loss.loss_mode`` ("vanilla" reads "ppo");
    iterations = ``actor.ppo_epochs``; batch ratio = ``data.train_batch_size`` /
    ``actor.ppo_mini_batch_size``; KL β = ``actor.kl_loss_coef`` with ``actor.use_kl_loss``, else 0;
    model = ``actor_rollout_ref.model.path``. Keys not given stay unknown."""
    values = dict(item.split("=", 1) for item in overrides if "=" in item)
    actor = "actor_rollout_ref.actor."

    def number(key, kind):
        try:
            return kind(values[key])
        except (KeyError, ValueError):
            return None

    batch, mini_batch = number("data.train_batch_size", int), number(actor + "ppo_mini_batch_size", int)
    loss_mode = values.get(actor + "policy_loss.loss_mode")
    use_kl = values.get(actor + "use_kl_loss")
    return RunSettings(
        objective=VERL_LOSS_MODES_AS_OBJECTIVES.get(loss_mode, loss_mode),
        kl_beta=None if use_kl is None else (number(actor + "kl_loss_coef", float) if use_kl == "true" else 0.0),
        iterations=number(actor + "ppo_epochs", int),
        batch_ratio=batch / mini_batch if batch and mini_batch else None,
        model=values.get("actor_rollout_ref.model.path"),
    )


def _coerce(path: str, label: str, key: str, value: object):
    kind = SETTING_TYPES[key]
    if value is None:
        return None
    if kind is str:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LabelsFileError(f"{path}: {label}.{key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise LabelsFileError(f"{path}: {label}.{key} must be a whole number, got {value!r}")
    return kind(value)


def read_labels_yaml(path: str) -> Dict[str, RunSettings]:
    """``--labels`` YAML → {label: RunSettings}. Raises LabelsFileError naming the bad entry."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except OSError as err:
        raise LabelsFileError(f"{path}: cannot read the labels file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise LabelsFileError(f"{path}: not valid YAML ({err})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise LabelsFileError(f"{path}: expected a mapping of run label -> settings, got {type(content).__name__}")
    labels: Dict[str, RunSettings] = {}
    for label, entry in content.items():
        if not isinstance(entry, dict):
            raise LabelsFileError(f"{path}: {label} must map to settings ({', '.join(SETTING_TYPES)})")
        unknown = sorted(set(entry) - set(SETTING_TYPES))
        if unknown:
            raise LabelsFileError(
                f"{path}: {label} has unknown setting {unknown[0]!r}; valid settings: {', '.join(SETTING_TYPES)}"
            )
        labels[str(label)] = RunSettings(**{k: _coerce(path, label, k, v) for k, v in entry.items()})
    return labels
