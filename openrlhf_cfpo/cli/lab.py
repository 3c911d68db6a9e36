"""The CPU lab: PPO-clip vs CFPO under sample reuse, at toy scale, in minutes.

A tiny Llama learns 2-digit addition by RL with a verifiable reward (after a short supervised
warm-up per seed, cached), once per (objective, iterations, batch ratio, seed) cell with everything
else shared, in --workers processes. Writes metrics.jsonl, summary.json (with means and t-intervals
over seeds, and CFPO-minus-PPO differences paired by seed), report.md and figures/ to --out;
rerunning with the same settings and --out resumes a killed sweep. See docs/lab.md.
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
    add("--setting", choices=("rlvr", "rlhf"), default="rlvr",
        help="rlvr: PPO-clip vs CFPO under sample reuse (Tables 5-10, Figures 4-8); rlhf: RLOO vs CFPO against a "
             "learned, length-biased reward model (Tables 1-2, Figure 3) [rlvr]")
    add("--objectives", help="comma-separated objectives from openrlhf_cfpo.objectives [ppo,cfpo]")
    add("--iterations", help="comma-separated sample-reuse counts, passes over each rollout batch "
                             "[rlvr 1,2,4,8,16; rlhf 1]")
    add("--batch-ratio", help="comma-separated mini-batch updates per pass: rollout batch / mini-batch size "
                              "[rlvr 1; rlhf 16]")
    add("--seeds", help="comma-separated seeds, a run per cell each (init, data, order; rlhf: the whole world) "
                        "[0,1,2,3,4,5,6,7,8,9]")
    add("--workers", help="processes running cells, one torch thread each [the CPU count]")
    add("--advantage", help="rlvr only: group_norm (eq. 9) or rloo (eq. 10) [group_norm]")
    add("--steps", type=int, help="RL steps per cell [rlvr 100, rlhf 60; 3 with --quick]")
    add("--eps", type=float, help="trust-region half-width for both sides [0.2]")
    add("--kl-coef", help="beta: rlvr, one value, the k3 KL penalty in the loss to the warm-up policy [0]; rlhf, a "
                          "comma-separated list of cell values, k1 KL to the SFT policy in the reward [0.02,0]")
    add("--lr", type=float, help="RL learning rate [3e-4]")
    add("--quick", action="store_true", help="tiny model and few steps: a smoke run in well under a minute")
    add("--device", help="rlvr only: cpu or cuda [cpu]")
    add("--threads", type=int, help="torch CPU threads per worker; with 1, a cell's numbers depend only on its "
        "settings and seed on one kind of CPU and torch build (another processor picks other float kernels: docs/lab.md) [1]")
    add("--out", type=Path,
        help="output folder; rerun with the same settings to resume [runs/lab/<timestamp>-<setting>]")
    add("--cache-dir", type=Path,
        help="warm-up checkpoint cache [$XDG_CACHE_HOME/openrlhf-cfpo/lab or ~/.cache/openrlhf-cfpo/lab]")
    add("--no-progress", action="store_true",
        help="one log line per finished cell instead of the progress bar (the bar shows on a terminal only)")


def _names(text: str):
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _number_list(flag: str, number=int):
    """A converter of a comma-separated list of ``number`` (int or float) for ``flag``, erring in one line."""
    kind, example = ("integers", "1,4") if number is int else ("numbers", "0.05,0")

    def convert(text: str):
        try:
            return tuple(number(part) for part in _names(text))
        except ValueError:
            raise ValueError(f"{flag} takes comma-separated {kind}, e.g. {flag} {example}; got {text!r}") from None

    return convert


# Flags that only one setting reads: given with the other, they are refused in one line.
SETTING_ONLY = {"advantage": "rlvr", "device": "rlvr"}


def build_config(args):
    """The setting's config for parsed arguments: its defaults, then --quick's presets, then the flags given."""
    from dataclasses import replace

    for name, setting in SETTING_ONLY.items():
        if getattr(args, name) is not None and args.setting != setting:
            raise ValueError(f"--{name.replace('_', '-')} applies to --setting {setting} only; leave it out with "
                             f"--setting {args.setting}")
    flags = {
        "objectives": (args.objectives, _names),
        "iterations_list": (args.iterations, _number_list("--iterations")),
        "batch_ratios": (args.batch_ratio, _number_list("--batch-ratio")),
        "seeds": (args.seeds, _number_list("--seeds")),
        "steps": (args.steps, None), "lr": (args.lr, None), "threads": (args.threads, None),
        "eps_low": (args.eps, None), "eps_high": (args.eps, None),
    }
    if args.setting == "rlhf":
        from openrlhf_cfpo.lab.rlhf_config import RLHFConfig, quick, validate

        flags["kl_coefs"] = (args.kl_coef, _number_list("--kl-coef", float))
        config = quick(RLHFConfig()) if args.quick else RLHFConfig()
    else:
        from openrlhf_cfpo.lab.config import LabConfig, quick, validate

        def one_value(text):
            values = _number_list("--kl-coef", float)(text)
            if len(values) != 1:
                raise ValueError(f"--kl-coef takes one value with --setting rlvr (a list is for --setting rlhf); "
                                 f"got {text!r}")
            return values[0]

        flags.update({"kl_coef": (args.kl_coef, one_value), "advantage": (args.advantage, None),
                      "device": (args.device, None)})
        config = quick(LabConfig()) if args.quick else LabConfig()
    overrides = {field: convert(value) if convert else value
                 for field, (value, convert) in flags.items() if value is not None}
    config = replace(config, **overrides)
    validate(config)
    if getattr(config, "device", "cpu").startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible; use --device cpu")
    return config


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"--workers takes a number of processes >= 1, e.g. --workers 2; got {text!r}")
    return workers


def _error(err: Exception) -> int:
    print(f"openrlhf-cfpo lab: error: {err}", file=sys.stderr)
    return 2


def run(args, passthrough) -> int:
    from openrlhf_cfpo.lab.sweep import LabOutputError, default_workers

    out = args.out or Path("runs") / "lab" / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.setting}"
    try:
        workers = default_workers() if args.workers is None else _workers(args.workers)
        config = build_config(args)
    except ValueError as err:
        return _error(err)
    started = time.perf_counter()
    cache_dir = args.cache_dir or _default_cache_dir()
    show_progress = False if args.no_progress else None
    try:
        if args.setting == "rlhf":
            from openrlhf_cfpo.lab.rlhf_report import results_markdown
            from openrlhf_cfpo.lab.rlhf_sweep import run_rlhf_sweep

            summary = run_rlhf_sweep(config, out, cache_dir, workers=workers, show_progress=show_progress)
            print(results_markdown(summary, config.kl_coefs))
        else:
            from openrlhf_cfpo.lab.report import results_markdown
            from openrlhf_cfpo.lab.sweep import run_sweep

            summary = run_sweep(config, out, cache_dir, workers=workers, show_progress=show_progress)
            print(results_markdown(summary, config.batch_ratios))
    except LabOutputError as err:  # raised before any training starts
        return _error(err)
    print(f"\n{len(summary['cells'])} cells, {workers} worker(s), {time.perf_counter() - started:.0f} s; "
          f"report: {out / 'report.md'}")
    return 0
