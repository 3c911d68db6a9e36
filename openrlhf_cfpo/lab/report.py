"""What a lab sweep leaves behind: summary.json, report.md and figures/ (via openrlhf_cfpo.reporting).

Per cell: final and peak held-out accuracy, final reward and entropy (means over the last tenth of
the steps), max clip ratio, wall time and a collapse flag (``COLLAPSE_RULE``). The report's
paragraph is composed from those numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import torch

from openrlhf_cfpo.lab.config import CellConfig, LabConfig
from openrlhf_cfpo.objectives import get_objective
from openrlhf_cfpo.reporting.figures import Curve, plot_lines, plot_metric_grid
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

COLLAPSE_FRACTION = 0.5
COLLAPSE_RULE = (
    f"collapsed = final held-out accuracy < {COLLAPSE_FRACTION} x the best held-out accuracy of the run "
    "(warm-up policy included)"
)
# Accuracy differences smaller than this are reported as "about the same" in the paragraph.
SAME_ACCURACY = 0.03
FIGURE1_EPS = 0.2


def _last_window_mean(history: List[Dict], key: str) -> float:
    window = history[-max(1, len(history) // 10):]
    return sum(line[key] for line in window) / len(window)


def summarize_cell(history: List[Dict], initial_accuracy: float, wall_time_s: float) -> Dict:
    """The summary numbers of one finished cell."""
    accuracies = [line["accuracy"] for line in history]
    peak_index = max(range(len(accuracies)), key=accuracies.__getitem__)
    best = max(initial_accuracy, accuracies[peak_index])
    first = history[0]
    return {
        "objective": first["objective"],
        "iterations": first["iterations"],
        "batch_ratio": first["batch_ratio"],
        "seed": first["seed"],
        "steps": len(history),
        "initial_accuracy": initial_accuracy,
        "final_accuracy": accuracies[-1],
        "peak_accuracy": accuracies[peak_index],
        "peak_step": history[peak_index]["step"],
        "final_reward": _last_window_mean(history, "reward_mean"),
        "final_entropy": _last_window_mean(history, "entropy"),
        "max_clip_ratio": max(line["clip_ratio"] for line in history),
        "max_ratio": max(line["ratio_max"] for line in history),
        "collapsed": accuracies[-1] < COLLAPSE_FRACTION * best,
        "wall_time_s": wall_time_s,
    }


def objective_vs_ratio_series(eps: float = FIGURE1_EPS, points: int = 201) -> tuple:
    """Paper Figure 1 from ``objectives``: surrogate J = −loss and dJ/dr vs r ∈ [0.5, 1.5] for A = ±1.

    Returns the r values and a dict of named series ("PPO-clip J, A=+1", "CFPO dJ/dr, A=-1", ...).
    """
    ratio = torch.linspace(0.5, 1.5, points, dtype=torch.float64)
    series = {}
    for name, label in (("ppo", "PPO-clip"), ("cfpo", "CFPO")):
        objective = get_objective(name)
        for advantage in (1.0, -1.0):
            r = ratio.clone().requires_grad_(True)
            surrogate = -objective(r, torch.full_like(r, advantage), eps, eps)
            (gradient,) = torch.autograd.grad(surrogate.sum(), r)
            sign = "+" if advantage > 0 else "-"
            series[f"{label} J, A={sign}1"] = surrogate.detach().tolist()
            series[f"{label} dJ/dr, A={sign}1"] = gradient.tolist()
    return ratio.tolist(), series


def _curves(cells: Sequence[CellConfig], histories: Dict[str, List[Dict]], metrics: Sequence[str]) -> List[Curve]:
    return [
        Curve(
            label=cell.name, objective=cell.objective, panel=f"iterations={cell.iterations}", metric=metric,
            steps=[line["step"] for line in histories[cell.name]],
            values=[line[metric] for line in histories[cell.name]],
        )
        for cell in cells
        for metric in metrics
    ]


def write_figures(out: Path, cells: Sequence[CellConfig], histories: Dict[str, List[Dict]]) -> List[str]:
    """figures/*.png; returns the notes of empty figure cells."""
    folder = out / "figures"
    ratio, series = objective_vs_ratio_series()
    plot_lines(
        ratio, series, folder / "objective_vs_ratio.png",
        xlabel="ratio r = π_θ / π_old", ylabel="surrogate J and dJ/dr",
        title=f"Per-token surrogate J = −loss and its gradient (ε = {FIGURE1_EPS})",
    )
    notes = plot_metric_grid(
        _curves(cells, histories, ["reward_mean", "accuracy", "clip_ratio"]), ["reward_mean", "accuracy", "clip_ratio"],
        folder / "dynamics.png", title="Training dynamics (CFPO solid, PPO-clip dashed)",
    )
    notes += plot_metric_grid(_curves(cells, histories, ["entropy"]), ["entropy"], folder / "entropy.png",
                              title="Policy entropy of sampled tokens")
    notes += plot_metric_grid(_curves(cells, histories, ["policy_kl"]), ["policy_kl"], folder / "policy_kl.png",
                              title="KL(old → new) over each step's updates")
    return notes


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def findings(summary: Dict) -> str:
    """One paragraph stating what the sweep shows, composed from the summary's numbers."""
    cells = summary["cells"]
    sentences = [f"The warm-up policy answers {_pct(summary['warmup']['heldout_accuracy'])} of the "
                 f"{summary['eval_size']} held-out problems greedily."]
    by_objective: Dict[str, List[Dict]] = {}
    for cell in cells:
        by_objective.setdefault(cell["objective"], []).append(cell)
    for objective, rows in by_objective.items():
        rows = sorted(rows, key=lambda row: row["iterations"])
        low, high = rows[0], rows[-1]
        if len(rows) > 1:
            change = high["final_accuracy"] - low["final_accuracy"]
            trend = ("about the same" if abs(change) < SAME_ACCURACY else
                     f"{'higher' if change > 0 else 'lower'} by {abs(100 * change):.1f} points")
            sentences.append(
                f"{objective} ends at {_pct(low['final_accuracy'])} held-out accuracy with {low['iterations']} "
                f"iteration(s) and {_pct(high['final_accuracy'])} with {high['iterations']} ({trend}); its max clip "
                f"ratio goes from {low['max_clip_ratio']:.3f} to {high['max_clip_ratio']:.3f} and its final entropy "
                f"from {low['final_entropy']:.3f} to {high['final_entropy']:.3f}."
            )
        else:
            sentences.append(f"{objective} ends at {_pct(low['final_accuracy'])} held-out accuracy with "
                             f"{low['iterations']} iteration(s).")
    if {"ppo", "cfpo"} <= set(by_objective):
        counts = [{c["iterations"] for c in by_objective[name]} for name in ("ppo", "cfpo")]
        shared = sorted(counts[0] & counts[1])
        gaps = []
        for k in shared:
            ppo = next(c for c in by_objective["ppo"] if c["iterations"] == k)
            cfpo = next(c for c in by_objective["cfpo"] if c["iterations"] == k)
            gaps.append((k, cfpo["final_accuracy"] - ppo["final_accuracy"]))
        ahead = [f"{k} ({100 * gap:+.1f})" for k, gap in gaps if gap >= SAME_ACCURACY]
        behind = [f"{k} ({100 * gap:+.1f})" for k, gap in gaps if gap <= -SAME_ACCURACY]
        level = [str(k) for k, gap in gaps if abs(gap) < SAME_ACCURACY]
        parts = []
        if ahead:
            parts.append(f"CFPO ends ahead of PPO-clip at iterations {', '.join(ahead)}")
        if behind:
            parts.append(f"behind it at iterations {', '.join(behind)}")
        if level:
            parts.append(f"within {100 * SAME_ACCURACY:.0f} points of it at iterations {', '.join(level)}")
        sentences.append(f"Comparing final held-out accuracy (CFPO minus PPO-clip, in points): {'; '.join(parts)}.")
    start = summary["warmup"]["heldout_accuracy"]
    below = [f"{c['objective']}-it{c['iterations']} ({100 * (c['final_accuracy'] - start):+.1f})"
             for c in cells if c["final_accuracy"] <= start - SAME_ACCURACY]
    sentences.append(
        f"Cells ending {100 * SAME_ACCURACY:.0f}+ points below the warm-up policy ({_pct(start)}): {', '.join(below)}."
        if below else f"No cell ends {100 * SAME_ACCURACY:.0f}+ points below the warm-up policy ({_pct(start)})."
    )
    collapsed = [f"{c['objective']}-it{c['iterations']}" for c in cells if c["collapsed"]]
    sentences.append(
        f"Cells meeting the collapse rule ({summary['collapse_rule']}): {', '.join(collapsed)}." if collapsed
        else f"No cell meets the collapse rule ({summary['collapse_rule']})."
    )
    seeds = sorted({c["seed"] for c in cells})
    sentences.append(
        f"All cells share seed {seeds[0]}: one run per cell, so gaps of a few points may be noise."
        if len(seeds) == 1 else f"Cells use seeds {', '.join(map(str, seeds))}."
    )
    return " ".join(sentences)


def _table(cells: List[Dict]) -> str:
    header = ("| objective | iterations | held-out acc. (final) | held-out acc. (peak, step) | final entropy "
              "| max clip ratio | final reward | collapsed |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        lines.append(
            f"| {c['objective']} | {c['iterations']} | {_pct(c['final_accuracy'])} | {_pct(c['peak_accuracy'])} "
            f"({c['peak_step']}) | {c['final_entropy']:.3f} | {c['max_clip_ratio']:.3f} | {c['final_reward']:.3f} "
            f"| {'yes' if c['collapsed'] else 'no'} |"
        )
    return "\n".join(lines)


def write_outputs(
    out: Path, config: LabConfig, cells: Sequence[CellConfig], histories: Dict[str, List[Dict]],
    results: Dict[str, Dict], warmup_info: Dict,
) -> Dict:
    """summary.json, figures/ and report.md for a finished sweep; returns the summary."""
    summary = {
        "collapse_rule": COLLAPSE_RULE,
        "final_window": "final_reward and final_entropy average the last tenth of the steps (at least one)",
        "eval_size": config.eval_size,
        "warmup": {
            key: warmup_info[key] for key in ("key", "steps", "final_loss", "probe_accuracy", "heldout_accuracy")
        },
        "wall_time_s": round(sum(r["wall_time_s"] for r in results.values()), 2),
        "cells": [
            summarize_cell(histories[c.name], warmup_info["heldout_accuracy"], results[c.name]["wall_time_s"])
            for c in cells
        ],
    }
    atomic_write_json(out / "summary.json", summary)
    notes = write_figures(out, cells, histories)
    settings = ", ".join(
        f"{key}={getattr(config, key)}" for key in
        ("batch_ratio", "advantage", "seed", "steps", "prompts_per_step", "group_size", "eps_low", "eps_high",
         "kl_coef", "lr", "digits", "hidden_size", "num_layers")
    )
    lines = [
        "# CFPO lab: PPO-clip vs CFPO under sample reuse",
        "",
        f"Settings: {settings} (all in config.json). Held-out accuracy is greedy exact-match on "
        f"{config.eval_size} problems never used in warm-up or RL; "
        f"cells ran for {summary['wall_time_s']:.0f} s in all.",
        "",
        _table(summary["cells"]),
        "",
        findings(summary),
        "",
        "![Figure 1: surrogate objective and gradient vs ratio](figures/objective_vs_ratio.png)",
        "",
        "![Dynamics: reward, held-out accuracy and clip ratio per step](figures/dynamics.png)",
        "",
        "![Entropy](figures/entropy.png)",
        "",
        "![Policy KL (old to new)](figures/policy_kl.png)",
        "",
    ]
    if notes:
        lines += ["Figure notes:", "", *[f"- {note}" for note in notes], ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return summary
