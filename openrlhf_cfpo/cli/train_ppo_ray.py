"""OpenRLHF's ``openrlhf.cli.train_ppo_ray`` run as ``__main__``, with CFPO in every process.

    python -m openrlhf_cfpo.cli.train_ppo_ray [--dry-run] <OpenRLHF 0.11.2 arguments>

OpenRLHF builds its parser under ``if __name__ == "__main__"``, so the module is executed with
``runpy`` (no copy of the parser). While it runs, four boundaries it looks up at call time are
hooked, and restored afterwards:

- ``argparse.ArgumentParser.add_argument``: ``--actor.policy_loss_type`` gains the choice "cfpo"
  and the alias ``--policy_loss``;
- ``argparse.ArgumentParser.error``: a usage error becomes one line instead of the 150-flag usage;
- ``openrlhf.utils.config.hierarchize``: CFPO's settings are validated right after parsing, and
  the resolved namespace is kept for ``--dry-run``;
- ``ray.init``: ``ray_runtime_env()`` (the worker setup hook) is merged into OpenRLHF's own
  runtime_env; with ``--dry-run`` the run stops here, after all of OpenRLHF's validation and
  before any Ray process starts. Otherwise the run record (resolved arguments, package versions,
  git SHA; ``RUN_RECORD``) is written into ``--ckpt.output_dir`` and, with tensorboard logging,
  into the run's tensorboard folder, where ``openrlhf-cfpo report`` reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List

UPSTREAM_MODULE = "openrlhf.cli.train_ppo_ray"
RUN_RECORD = "openrlhf_cfpo_run.json"
POLICY_LOSS_FLAG = "--actor.policy_loss_type"
POLICY_LOSS_ALIAS = "--policy_loss"


class CommandLineError(Exception):
    """A bad command line; the message names the flag and the fix."""


class _DryRunComplete(Exception):
    """Raised at ``ray.init`` in a dry run: arguments are parsed and validated."""


def flatten_namespace(namespace: SimpleNamespace, prefix: str = "") -> Dict[str, Any]:
    """OpenRLHF's hierarchical arguments as ``{"actor.policy_loss_type": ..., ...}``."""
    flat: Dict[str, Any] = {}
    for key, value in vars(namespace).items():
        if isinstance(value, SimpleNamespace):
            flat.update(flatten_namespace(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def validate_cfpo_arguments(args: SimpleNamespace) -> None:
    """Raise CommandLineError for CFPO settings that cannot work (dual-clip, ε ≤ 0)."""
    from openrlhf_cfpo.openrlhf_patch import check_cfpo_settings

    if args.actor.policy_loss_type != "cfpo":
        return
    eps_low, eps_high = args.actor.eps_clip_low_high or (args.actor.eps_clip, args.actor.eps_clip)
    try:
        check_cfpo_settings(args.actor.dual_clip, eps_low, eps_high)
    except ValueError as err:
        raise CommandLineError(str(err)) from None


def job_runtime_env() -> Dict[str, Any]:
    """The runtime_env of the Ray job this driver runs in (``ray job submit --runtime-env-json``).

    Ray passes the job's config to the driver in the environment variable RAY_JOB_CONFIG_JSON_ENV_VAR
    and merges it with the driver's ``ray.init(runtime_env=...)``; in Ray 2.55 a key present in both
    is a conflict (ValueError), even with the same value.
    """
    job_config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    return dict(json.loads(job_config).get("runtime_env") or {}) if job_config else {}


def with_cfpo_runtime_env(runtime_env: Dict[str, Any] | None, job_env: Dict[str, Any] | None = None) -> Dict[str, Any]:
    """``runtime_env`` plus ``ray_runtime_env()``, leaving out what the job's ``job_env`` already sets
    to the same value; a different setup hook in either is an error naming the fix."""
    from openrlhf_cfpo.openrlhf_patch import ray_runtime_env

    merged, job_env = dict(runtime_env or {}), job_env or {}
    for key, value in ray_runtime_env().items():
        for source, env in (("the Ray job's --runtime-env-json", job_env), ("runtime_env", merged)):
            if env.get(key, value) != value:
                raise CommandLineError(f"{source} sets {key}={env[key]!r}; openrlhf-cfpo needs {value!r} there")
        if key not in job_env:
            merged[key] = value
    return merged


def write_run_records(args: SimpleNamespace) -> List[Path]:
    """The run record next to the checkpoints and, with tensorboard logging, next to the events."""
    from openrlhf_cfpo.runinfo import write_run_record

    folders = [Path(args.ckpt.output_dir)]
    if args.logger.tensorboard_dir:  # OpenRLHF's TensorboardLogger writes to <dir>/<wandb run name>
        folders.append(Path(args.logger.tensorboard_dir) / args.logger.wandb.run_name)
    config = flatten_namespace(args)
    for folder in folders:
        write_run_record(folder / RUN_RECORD, config)
    return [folder / RUN_RECORD for folder in folders]


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def upstream_driver_hooks(dry_run: bool, resolved: Dict[str, Any]) -> Iterator[None]:
    """Hook the four boundaries listed in the module docstring. ``resolved["args"]`` receives the
    parsed namespace; ``resolved["validated"]`` is set once OpenRLHF's own checks have passed."""
    import openrlhf.utils.config
    import ray

    from openrlhf_cfpo.openrlhf_patch import ADDED_POLICY_LOSS_TYPES

    upstream_add_argument = argparse.ArgumentParser.add_argument
    upstream_hierarchize = openrlhf.utils.config.hierarchize
    upstream_ray_init = ray.init

    def add_argument(self, *flags, **kwargs):
        if POLICY_LOSS_FLAG in flags:
            kwargs["choices"] = [*kwargs["choices"], *ADDED_POLICY_LOSS_TYPES]
            flags = (*flags, POLICY_LOSS_ALIAS)
        return upstream_add_argument(self, *flags, **kwargs)

    def error(self, message):
        raise CommandLineError(message)

    def hierarchize(namespace):
        args = upstream_hierarchize(namespace)
        validate_cfpo_arguments(args)
        resolved["args"] = args
        return args

    def ray_init(*args, runtime_env=None, **kwargs):
        resolved["validated"] = True
        runtime_env = with_cfpo_runtime_env(runtime_env, job_runtime_env())
        if dry_run:
            raise _DryRunComplete()
        write_run_records(resolved["args"])
        return upstream_ray_init(*args, runtime_env=runtime_env, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.enter_context(_replaced(argparse.ArgumentParser, "add_argument", add_argument))
        stack.enter_context(_replaced(argparse.ArgumentParser, "error", error))
        stack.enter_context(_replaced(openrlhf.utils.config, "hierarchize", hierarchize))
        stack.enter_context(_replaced(ray, "init", ray_init))
        yield


def run_driver(argv: List[str], dry_run: bool = False) -> int:
    """Run OpenRLHF's PPO driver on ``argv`` with CFPO registered; returns the exit code."""
    from openrlhf_cfpo.openrlhf_patch import patch_openrlhf

    resolved: Dict[str, Any] = {}
    # A dry run keeps stdout for the JSON. OpenRLHF prints warnings there, and DeepSpeed's logger
    # binds its handler to sys.stdout when first imported (inside patch_openrlhf), so both go to stderr.
    stdout_guard = contextlib.redirect_stdout(sys.stderr) if dry_run else contextlib.nullcontext()
    try:
        with stdout_guard:
            patch_openrlhf()
            with upstream_driver_hooks(dry_run, resolved), _replaced(sys, "argv", [UPSTREAM_MODULE, *argv]):
                runpy.run_module(UPSTREAM_MODULE, run_name="__main__", alter_sys=True)
    except RuntimeError as err:
        if "args" in resolved:
            raise  # raised by training, not by the version check
        print(f"openrlhf-cfpo train: error: {err}", file=sys.stderr)
        return 1
    except CommandLineError as err:
        print(f"openrlhf-cfpo train: error: {err}", file=sys.stderr)
        return 2
    except AssertionError as err:
        if resolved.get("validated"):
            raise  # raised by training, not by OpenRLHF's argument checks
        print(f"openrlhf-cfpo train: error: {err}", file=sys.stderr)
        return 2
    except _DryRunComplete:
        print(json.dumps(flatten_namespace(resolved["args"]), indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    from openrlhf_cfpo.cli.main import main

    sys.exit(main(["train", *sys.argv[1:]]))
