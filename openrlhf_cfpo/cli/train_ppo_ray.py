"""OpenRLHF's ``openrlhf.cli.train_ppo_ray`` run as ``__main__``, with CFPO in every process.

    python -m openrlhf_cfpo.cli.train_ppo_ray [--dry-run] <OpenRLHF 0.11.2 arguments>

OpenRLHF builds its parser under ``if __name__ == "__main__"``, so the module is executed with
``runpy`` (no copy of the parser). While it runs, four boundaries it looks up at call time are
hooked, and restored afterwards:

- ``argparse.ArgumentParser.add_argument``: ``--actor.policy_loss_type`` gains the choice "cfpo"
  and the alias ``--policy_loss``;
- ``argparse.ArgumentParser.error``: a usage error becomes one line instead of the 150-flag usage;
- ``openrlhf.utils.config.hierarchize``: the launch line is validated right after parsing
  (``validate_launch_arguments``: CFPO's settings, and what a run needs that OpenRLHF checks only
  once GPUs are allocated, or with an AttributeError), and the resolved namespace is kept;
- ``ray.init``: ``ray_runtime_env()`` (the worker setup hook) is merged into OpenRLHF's own
  runtime_env, and the run record (resolved arguments, package versions, git SHA; ``RUN_RECORD``)
  is written into ``--ckpt.output_dir`` and, with tensorboard logging, into the run's tensorboard
  folder, where ``openrlhf-cfpo report`` reads it.

``--check-layouts FOLDER`` (the grids' check before they start any run, ``examples/grid.sh``) runs
OpenRLHF's parser alone on every launch line recorded in FOLDER and applies the dry run's layout checks
(``check_sizes``, ``check_gpu_layout``), in one process that imports neither torch nor any OpenRLHF
module beyond its packages' (empty) ``__init__`` files.

``--dry-run`` executes only the module's ``__main__`` block (OpenRLHF's parser and all of its
post-parse checks) with its standard-library imports, and stops where it calls ``train(args)``:
it imports neither Ray, DeepSpeed, vLLM nor flash-attn, so it validates a launch line fully on a
login node without the GPU stack (``--help`` takes the same path). Every failure before training
starts is one line on stderr naming the problem and the fix (exit 2 for the command line, 1 for
the installation).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import logging
import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List

logger = logging.getLogger(__name__)

UPSTREAM_MODULE = "openrlhf.cli.train_ppo_ray"
RUN_RECORD = "openrlhf_cfpo_run.json"
POLICY_LOSS_FLAG = "--actor.policy_loss_type"
POLICY_LOSS_ALIAS = "--policy_loss"


class CommandLineError(Exception):
    """A bad command line; the message names the flag and the fix."""


class _DryRunComplete(Exception):
    """Raised where OpenRLHF's driver calls ``train(args)`` in a dry run: arguments are validated."""


def flatten_namespace(namespace: SimpleNamespace, prefix: str = "") -> Dict[str, Any]:
    """OpenRLHF's hierarchical arguments as ``{"actor.policy_loss_type": ..., ...}``."""
    flat: Dict[str, Any] = {}
    for key, value in vars(namespace).items():
        if isinstance(value, SimpleNamespace):
            flat.update(flatten_namespace(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def unflatten_namespace(flat: Dict[str, Any]) -> SimpleNamespace:
    """``flatten_namespace``'s inverse: dotted keys ``{"actor.num_nodes": 2}`` as ``args.actor.num_nodes``."""
    tree: Dict[str, Any] = {}
    for key, value in flat.items():
        *groups, leaf = key.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value

    def build(node):
        return SimpleNamespace(**{k: build(v) for k, v in node.items()}) if isinstance(node, dict) else node

    return build(tree)


# Sizes OpenRLHF divides by (its last post-parse check) or multiplies into actor counts.
POSITIVE_SIZES = ("rollout.batch_size", "rollout.micro_batch_size", "train.batch_size", "train.micro_batch_size",
                  "ds.ring_attn_size", "ds.tensor_parallel_size", "actor.num_nodes", "actor.num_gpus_per_node",
                  "vllm.tensor_parallel_size")


def check_sizes(args: SimpleNamespace) -> None:
    """Raise CommandLineError for a size in ``POSITIVE_SIZES`` below 1."""
    for name in POSITIVE_SIZES:
        group, key = name.split(".")
        value = getattr(getattr(args, group), key)
        if value < 1:
            raise CommandLineError(f"--{name} must be at least 1; got {value}")


def check_gpu_layout(args: SimpleNamespace) -> None:
    """Raise CommandLineError for a GPU layout OpenRLHF 0.11.2 rejects only once Ray has allocated the
    GPUs (its ``train``), or never (DeepSpeed fails later): the multi-node line of a recipe is checked
    on a login node.

    - the actor's ``num_nodes × num_gpus_per_node`` GPUs are split into groups of
      ``ds.ring_attn_size × ds.tensor_parallel_size``; the number of groups is the data-parallel size,
      which must divide ``train.batch_size``;
    - with ``--train.colocate_all`` (the hybrid engine) the vLLM engines fill exactly the actor's GPUs:
      ``vllm.num_engines × vllm.tensor_parallel_size`` = actor GPUs, and the reference model (when
      the KL coefficient is > 0) and a reward model share the actor's placement group, so they need
      the actor's GPUs (the reference model exactly the actor's layout, a reward model at most as many).
    """
    actor_gpus = args.actor.num_nodes * args.actor.num_gpus_per_node
    layout = f"--actor.num_nodes {args.actor.num_nodes} x --actor.num_gpus_per_node {args.actor.num_gpus_per_node}"
    group = args.ds.ring_attn_size * args.ds.tensor_parallel_size
    if actor_gpus % group:
        raise CommandLineError(f"{layout} = {actor_gpus} GPUs do not split into groups of --ds.ring_attn_size x "
                               f"--ds.tensor_parallel_size = {group}; choose nodes and GPUs per node whose product "
                               f"{group} divides")
    data_parallel = actor_gpus // group
    if args.train.batch_size % data_parallel:
        raise CommandLineError(f"--train.batch_size {args.train.batch_size} is not divisible by the data-parallel size "
                               f"{data_parallel} ({layout} GPUs / {group}); use a node and GPU count whose data-parallel "
                               f"size divides it (the recipes keep the paper's batch: change NUM_NODES or GPUS_PER_NODE)")
    colocated = args.train.colocate_all and not args.train.async_enable
    engines, vllm_tp = args.vllm.num_engines or 0, args.vllm.tensor_parallel_size
    if colocated and engines > 0:
        if actor_gpus % vllm_tp:
            raise CommandLineError(f"{layout} = {actor_gpus} GPUs are not divisible by --vllm.tensor_parallel_size "
                                   f"{vllm_tp}; with --train.colocate_all every GPU hosts one vLLM shard: choose a GPU "
                                   f"count divisible by {vllm_tp} or another tensor-parallel size")
        if engines * vllm_tp != actor_gpus:
            raise CommandLineError(f"--vllm.num_engines {engines} x --vllm.tensor_parallel_size {vllm_tp} != {layout} "
                                   f"= {actor_gpus} GPUs; with --train.colocate_all pass --vllm.num_engines "
                                   f"{actor_gpus // vllm_tp}")
    ref, reward = args.ref, args.reward
    if ((args.train.colocate_all or args.train.colocate_actor_ref) and args.algo.kl.init_coef > 0
            and (ref.num_nodes, ref.num_gpus_per_node) != (args.actor.num_nodes, args.actor.num_gpus_per_node)):
        raise CommandLineError(f"--ref.num_nodes {ref.num_nodes} x --ref.num_gpus_per_node {ref.num_gpus_per_node} "
                               f"differs from {layout}; the colocated reference model shares the actor's GPUs: pass "
                               f"the actor's values")
    if (args.train.colocate_all and reward.model_name_or_path and not reward.remote_url
            and reward.num_nodes * reward.num_gpus_per_node > actor_gpus):
        raise CommandLineError(f"--reward.num_nodes {reward.num_nodes} x --reward.num_gpus_per_node "
                               f"{reward.num_gpus_per_node} is more than {layout} = {actor_gpus} GPUs; the colocated "
                               f"reward model is placed on the actor's GPUs: pass the actor's values")


# The one value of --logger.wandb.key the driver accepts: "the key is WANDB_API_KEY of each process's
# environment". OpenRLHF 0.11.2 enables wandb only when the flag is set, and its logger logs in with the
# flag's value only when wandb finds no key of its own, which it reads from WANDB_API_KEY; it uploads its
# whole argument namespace as the run's config. So the key itself never enters the arguments.
WANDB_KEY_FROM_ENV = "env:WANDB_API_KEY"


def check_wandb_key(key: str | None) -> None:
    """Raise CommandLineError unless ``--logger.wandb.key`` is unset or ``WANDB_KEY_FROM_ENV`` with
    WANDB_API_KEY set here. A key given on the command line would be shown by the recipes' ``set -x``,
    stored in the run record and uploaded in the wandb run's config; the message never repeats it."""
    if key is None:
        return
    if key != WANDB_KEY_FROM_ENV:
        raise CommandLineError(
            f"--logger.wandb.key takes no key on the command line (the job output, the run record and the wandb "
            f"run's config would show it): export WANDB_API_KEY and pass --logger.wandb.key {WANDB_KEY_FROM_ENV} "
            "(the recipes do when WANDB_API_KEY is set)")
    if not os.environ.get("WANDB_API_KEY"):
        raise CommandLineError(
            f"--logger.wandb.key {WANDB_KEY_FROM_ENV}: WANDB_API_KEY is not set in the driver's environment; export "
            "it where the driver and the Ray nodes start (docs/cluster.md: wandb on a cluster)")


def validate_launch_arguments(args: SimpleNamespace) -> None:
    """Raise CommandLineError for a launch line that cannot train, naming the flag and the fix.

    Runs before OpenRLHF's own post-parse checks. Beyond CFPO's settings (dual-clip, ε ≤ 0) it
    checks what OpenRLHF 0.11.2 leaves to the GPU phase or fails on with an AttributeError or a
    ZeroDivisionError: a policy, a reward source and prompts are given, sizes are ≥ 1, and the GPU
    layout is one OpenRLHF can place (``check_gpu_layout``); and that a wandb key comes from the
    environment (``check_wandb_key``).
    """
    from openrlhf_cfpo.openrlhf_patch import check_cfpo_settings

    if not args.actor.model_name_or_path:
        raise CommandLineError("--actor.model_name_or_path is missing: pass the policy to train (HF name or path)")
    if not (args.reward.model_name_or_path or args.reward.remote_url or args.train.agent_func_path):
        raise CommandLineError(
            "no reward: pass --reward.model_name_or_path (a reward model) or --reward.remote_url (a reward "
            "server URL or reward-function file, e.g. openrlhf_cfpo/rewards/math_reward.py)"
        )
    if not args.data.prompt_dataset:
        raise CommandLineError("--data.prompt_dataset is missing: pass the prompts (HF dataset name or local file)")
    check_wandb_key(args.logger.wandb.key)
    check_sizes(args)
    check_gpu_layout(args)
    if args.actor.policy_loss_type != "cfpo":
        return
    eps_low, eps_high = args.actor.eps_clip_low_high or (args.actor.eps_clip, args.actor.eps_clip)
    try:
        check_cfpo_settings(args.actor.dual_clip, eps_low, eps_high)
    except ValueError as err:
        raise CommandLineError(str(err)) from None


# Modules of OpenRLHF's GPU stack: the fix for a missing one is the gpu extra or the Docker image.
GPU_STACK_MODULES = ("flash_attn", "vllm", "deepspeed", "ray", "openrlhf")


def launch_error_message(err: Exception, dry_run: bool) -> str:
    """One line for a failure before training starts: the problem and the fix."""
    gpu_stack = "on a GPU node pip install 'openrlhf-cfpo[gpu]', or use the Docker image (dockerfile/Dockerfile)"
    dry_run_hint = "" if dry_run else "; `openrlhf-cfpo train --dry-run` validates a launch line without it"
    if isinstance(err, ModuleNotFoundError) and err.name:
        if err.name.split(".")[0] in GPU_STACK_MODULES:
            return f"{err.name} is not installed, and OpenRLHF's PPO driver imports it: {gpu_stack}{dry_run_hint}"
        return f"{err.name} is not installed, and OpenRLHF imports it for the flags given: pip install it"
    if isinstance(err, ImportError):  # e.g. a flash-attn built against another torch
        return f"importing OpenRLHF's PPO driver failed ({err}): reinstall the GPU stack: {gpu_stack}"
    if isinstance(err, (CommandLineError, AssertionError, RuntimeError)):
        return str(err)
    return (f"OpenRLHF's argument checks failed with {type(err).__name__}: {err}; fix the flag it names "
            "(`openrlhf-cfpo train --help` lists them)")


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
def upstream_driver_hooks(resolved: Dict[str, Any], parse_only: bool) -> Iterator[None]:
    """Hook the boundaries listed in the module docstring (``ray.init`` only for a real run).
    ``resolved["args"]`` receives the parsed namespace; ``resolved["validated"]`` is set once
    OpenRLHF's own checks have passed and training is about to start."""
    import openrlhf.utils.config

    from openrlhf_cfpo.openrlhf_patch import ADDED_POLICY_LOSS_TYPES

    upstream_add_argument = argparse.ArgumentParser.add_argument
    upstream_hierarchize = openrlhf.utils.config.hierarchize

    def add_argument(self, *flags, **kwargs):
        if POLICY_LOSS_FLAG in flags:
            kwargs["choices"] = [*kwargs["choices"], *ADDED_POLICY_LOSS_TYPES]
            flags = (*flags, POLICY_LOSS_ALIAS)
        return upstream_add_argument(self, *flags, **kwargs)

    def error(self, message):
        raise CommandLineError(message)

    def hierarchize(namespace):
        args = upstream_hierarchize(namespace)
        validate_launch_arguments(args)
        resolved["args"] = args
        return args

    with contextlib.ExitStack() as stack:
        stack.enter_context(_replaced(argparse.ArgumentParser, "add_argument", add_argument))
        stack.enter_context(_replaced(argparse.ArgumentParser, "error", error))
        stack.enter_context(_replaced(openrlhf.utils.config, "hierarchize", hierarchize))
        if not parse_only:
            import ray

            upstream_ray_init = ray.init

            def ray_init(*args, runtime_env=None, **kwargs):
                runtime_env = with_cfpo_runtime_env(runtime_env, job_runtime_env())
                resolved["validated"] = True
                write_run_records(resolved["args"])
                return upstream_ray_init(*args, runtime_env=runtime_env, **kwargs)

            stack.enter_context(_replaced(ray, "init", ray_init))
        yield


def _is_main_guard(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                   for c in test.comparators))


def upstream_main_block():
    """The installed ``UPSTREAM_MODULE``'s ``__main__`` block and its standard-library imports, compiled.

    That block is OpenRLHF's whole command line: parser, ``hierarchize``, post-parse checks and the
    final ``train(args)``. Its other top-level imports (Ray, vLLM, DeepSpeed, the trainer) serve
    ``train`` only, which a dry run replaces.
    """
    spec = importlib.util.find_spec(UPSTREAM_MODULE)
    tree = ast.parse(spec.loader.get_source(UPSTREAM_MODULE), filename=spec.origin)

    def stdlib(name):
        return bool(name) and name.split(".")[0] in sys.stdlib_module_names

    body: List[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Import) and all(stdlib(alias.name) for alias in node.names):
            body.append(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and stdlib(node.module):
            body.append(node)
        elif _is_main_guard(node):
            body.extend(node.body)
    return compile(ast.Module(body=body, type_ignores=[]), spec.origin, "exec")


class _Parsed(Exception):
    """Raised where OpenRLHF's ``__main__`` block has parsed its command line (the layout check stops there)."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__()
        self.namespace = namespace


def parse_launch_layout(argv: List[str], main_block=None) -> SimpleNamespace:
    """``argv`` through OpenRLHF's own parser alone, as hierarchical arguments: no post-parse checks and
    no import beyond the standard library. ``--actor.policy_loss_type`` takes any value here (a loss type
    is no part of a layout; the dry run checks it). ``main_block``: ``upstream_main_block()``, compiled once."""
    upstream_add_argument = argparse.ArgumentParser.add_argument
    upstream_parse_args = argparse.ArgumentParser.parse_args

    def add_argument(self, *flags, **kwargs):
        if POLICY_LOSS_FLAG in flags:
            kwargs.pop("choices", None)
            flags = (*flags, POLICY_LOSS_ALIAS)
        return upstream_add_argument(self, *flags, **kwargs)

    def error(self, message):
        raise CommandLineError(message)

    def parse_args(self, *args, **kwargs):
        raise _Parsed(upstream_parse_args(self, *args, **kwargs))

    with contextlib.ExitStack() as stack:
        stack.enter_context(_replaced(argparse.ArgumentParser, "add_argument", add_argument))
        stack.enter_context(_replaced(argparse.ArgumentParser, "error", error))
        stack.enter_context(_replaced(argparse.ArgumentParser, "parse_args", parse_args))
        stack.enter_context(_replaced(sys, "argv", [UPSTREAM_MODULE, *argv]))
        try:
            exec(main_block or upstream_main_block(), {"__name__": "__main__"})
        except _Parsed as parsed:
            return unflatten_namespace(vars(parsed.namespace))
    raise RuntimeError(f"{UPSTREAM_MODULE}'s __main__ block did not parse its command line")


def check_launch_layouts(folder: str) -> int:
    """``--check-layouts FOLDER``: one line per launch line recorded in FOLDER whose layout OpenRLHF
    cannot place (``check_sizes``, ``check_gpu_layout``), in the grids' format (``launch_layout``)."""
    from openrlhf_cfpo.launch_layout import report

    if importlib.util.find_spec("openrlhf") is None:
        print(f"openrlhf-cfpo train: error: OpenRLHF is not installed for {sys.executable}, and the layout check "
              "runs its parser: run the grid with PYTHON set to the Python that has openrlhf-cfpo and OpenRLHF",
              file=sys.stderr)
        return 1
    main_block = upstream_main_block()

    def check(argv: List[str]) -> None:
        args = parse_launch_layout(argv, main_block)
        check_sizes(args)
        check_gpu_layout(args)

    return report(Path(folder), check)


def run_driver(argv: List[str], dry_run: bool = False) -> int:
    """Run OpenRLHF's PPO driver on ``argv`` with CFPO registered; returns the exit code."""
    from openrlhf_cfpo.openrlhf_patch import check_openrlhf_version, patch_openrlhf

    resolved: Dict[str, Any] = {}

    def stop_before_training(args):
        with_cfpo_runtime_env(None, job_runtime_env())  # a conflicting hook in the Ray job fails here too
        resolved["validated"] = True
        raise _DryRunComplete()

    # A dry run keeps stdout for the JSON; OpenRLHF prints its warnings there, so they go to stderr.
    stdout_guard = contextlib.redirect_stdout(sys.stderr) if dry_run else contextlib.nullcontext()
    # --help needs no GPU stack either: the parser prints it and exits before training.
    parse_only = dry_run or "-h" in argv or "--help" in argv
    try:
        with stdout_guard:
            check_openrlhf_version()
            if not parse_only:
                patch_openrlhf()
            with upstream_driver_hooks(resolved, parse_only), _replaced(sys, "argv", [UPSTREAM_MODULE, *argv]):
                if parse_only:
                    exec(upstream_main_block(), {"__name__": "__main__", "train": stop_before_training})
                else:
                    runpy.run_module(UPSTREAM_MODULE, run_name="__main__", alter_sys=True)
    except _DryRunComplete:
        print(json.dumps(flatten_namespace(resolved["args"]), indent=2, sort_keys=True, default=str))
        return 0
    except Exception as err:
        if resolved.get("validated"):
            raise  # raised by training, not by the launch line or the installation
        logger.debug("launch failed before training", exc_info=True)
        print(f"openrlhf-cfpo train: error: {launch_error_message(err, dry_run)}", file=sys.stderr)
        return 1 if isinstance(err, (ImportError, RuntimeError)) else 2
    return 0


if __name__ == "__main__":
    from openrlhf_cfpo.cli.main import main

    sys.exit(main(["train", *sys.argv[1:]]))
