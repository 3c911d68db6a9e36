"""The CPU lab: PPO-clip vs CFPO under sample reuse, at toy scale, in minutes.

A tiny Llama learns 2-digit addition by RL with a verifiable reward (after a short supervised
warm-up, cached), once per (objective, iterations) cell with everything else shared. Writes
metrics.jsonl, summary.json, report.md and figures/ to --out; rerunning with the same settings
and --out resumes a killed sweep. See docs/lab.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HELP = "the CPU lab: PPO-clip vs CFPO under sample reuse on a tiny model (what `make demo` runs)"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openrlhf-cfpo" / "lab"


def add_arguments(parser) -> None:
    # Defaults live in LabConfig (openrlhf_cfpo/lab/config.py); a flag left out keeps them. The
    # bracketed values below only document them, so that --help needs no torch import.
    add = parser.add_argument
    add("--objectives", help="comma-separated objectives from openrlhf_cfpo.objectives [ppo,cfpo]")
    add("--iterations", help="comma-separated sample-reuse counts, passes over each rollout batch [1,2,4,8,16]")
    add("--batch-ratio", type=int, help="mini-batch updates per pass: rollout batch / mini-batch size [1]")
    add("--advantage", help="group_norm (eq. 9) or rloo (eq. 10) [group_norm]")
    add("--seed", type=int, help="seed of model init, data, sampling and mini-batch order [0]")
    add("--steps", type=int, help="RL steps per cell [100; 3 with --quick]")
    add("--eps", type=float, help="trust-region half-width for both sides [0.2]")
    add("--kl-coef", type=float, help="beta: k3 KL penalty to the warm-up policy [0]")
    add("--lr", type=float, help="RL learning rate [3e-4]")
    add("--quick", action="store_true", help="tiny model and few steps: a smoke run in well under a minute")
    add("--device", help="cpu or cuda [cpu]")
    add("--threads", type=int, help="torch CPU threads; 1 gives the same numbers on any machine [1]")
    add("--out", type=Path, help="output folder; rerun with the same settings to resume [runs/lab/<timestamp>]")
    add("--cache-dir", type=Path,
        help="warm-up checkpoint cache [$XDG_CACHE_HOME/openrlhf-cfpo/lab or ~/.cache/openrlhf-cfpo/lab]")
    add("--no-progress", action="store_true", help="no progress bar (it shows on a terminal only)")


def _names(text: str):
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _int_list(text: str):
    try:
        return tuple(int(part) for part in _names(text))
    except ValueError:
        raise ValueError(f"--iterations takes comma-separated integers, e.g. --iterations 1,4; got {text!r}") from None


def build_config(args):
    """The LabConfig for parsed arguments: its defaults, then --quick's presets, then the flags given."""
    from dataclasses import replace

    from openrlhf_cfpo.lab.config import LabConfig, quick, validate

    config = quick(LabConfig()) if args.quick else LabConfig()
    flags = {
        "objectives": (args.objectives, _names), "iterations_list": (args.iterations, _int_list),
        "batch_ratio": (args.batch_ratio, None), "advantage": (args.advantage, None), "seed": (args.seed, None),
        "steps": (args.steps, None), "kl_coef": (args.kl_coef, None), "lr": (args.lr, None),
        "device": (args.device, None), "threads": (args.threads, None),
        "eps_low": (args.eps, None), "eps_high": (args.eps, None),
    }
    overrides = {field: convert(value) if convert else value
                 for field, (value, convert) in flags.items() if value is not None}
    config = replace(config, **overrides)
    validate(config)
    if config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible; use --device cpu")
    return config


def _error(err: Exception) -> int:
    print(f"openrlhf-cfpo lab: error: {err}", file=sys.stderr)
    return 2


def run(args, passthrough) -> int:
    from openrlhf_cfpo.lab.sweep import LabOutputError, run_sweep

    out = args.out or Path("runs") / "lab" / time.strftime("%Y%m%d-%H%M%S")
    try:
        config = build_config(args)
    except ValueError as err:
        return _error(err)
    try:
        summary = run_sweep(config, out, args.cache_dir or _default_cache_dir(),
                            show_progress=False if args.no_progress else None)
    except LabOutputError as err:  # raised before any training starts
        return _error(err)
    report = (out / "report.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in report.splitlines() if line.startswith("|"))
    print(table)
    print(f"\n{len(summary['cells'])} cells in {summary['wall_time_s']:.0f} s; report: {out / 'report.md'}")
    return 0
