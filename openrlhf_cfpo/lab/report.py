"""What a lab sweep leaves behind: summary.json, report.md and figures/ (via openrlhf_cfpo.reporting).

- ``cells``: per (objective, iterations, batch ratio, seed): final held-out accuracy, reward and
  entropy (means over the last tenth of the steps, ``FINAL_WINDOW``), peak held-out accuracy, max
  clip ratio and a collapse flag (``COLLAPSE_RULE``);
- ``aggregate``: per (objective, iterations, batch ratio): mean and t-interval over seeds of the
  final accuracy, final entropy and max clip ratio;
- ``paired``: per (iterations, batch ratio): CFPO minus PPO-clip final accuracy, seed by seed (both
  start from the same warm-up policy and see the same problems and random draws), its mean and
  t-interval, and a verdict read off the interval (``VERDICTS``).

report.md shows them as the paper's Tables 5–10 (warm-up row, then one row per objective and
iteration count, mean ± interval half-width) with a paragraph composed from the paired intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from openrlhf_cfpo.lab.config import CellConfig, LabConfig
from openrlhf_cfpo.objectives import get_objective
from openrlhf_cfpo.reporting.figures import Curve, plot_lines, plot_metric_grid
from openrlhf_cfpo.reporting.intervals import BAND_METHOD, INTERVAL_METHOD, seed_band, t_interval
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

COLLAPSE_FRACTION = 0.5
COLLAPSE_RULE = (
    f"collapsed = final held-out accuracy < {COLLAPSE_FRACTION} x the best held-out accuracy of the run "
    "(warm-up policy included)"
)
# The final accuracy, reward and entropy of a cell average its last steps: a single step's held-out
# accuracy moves by several points from one update to the next, noise that the paired interval
# over seeds would otherwise carry (at 100 steps: the mean of steps 91-100).
FINAL_WINDOW = "final_accuracy, final_reward and final_entropy average the last tenth of the steps (at least one)"
FIGURE1_EPS = 0.2
DYNAMICS_METRICS = ("reward_mean", "accuracy", "clip_ratio", "entropy", "policy_kl")
AGGREGATED = ("final_accuracy", "final_entropy", "max_clip_ratio")
OBJECTIVE_NAMES = {"ppo": "PPO-clip", "cfpo": "CFPO"}
# A paired interval that contains 0 and lies inside ± this margin says the objectives end within
# this many points of each other: equivalence, not just a failure to tell them apart.
EQUIVALENCE_MARGIN = 0.05
VERDICTS = {
    "ahead": "the interval lies above 0",
    "behind": "the interval lies below 0",
    "equivalent": f"the interval contains 0 and lies inside ±{100 * EQUIVALENCE_MARGIN:.0f} points",
    "indistinguishable": "the interval contains 0 and reaches beyond "
                         f"±{100 * EQUIVALENCE_MARGIN:.0f} points",
    "identical": "every seed's difference is exactly 0",
    "one seed": "no interval from a single seed",
}


def last_window_mean(history: List[Dict], key: str) -> float:
    """The mean of ``key`` over the last tenth of ``history`` (at least one step): ``FINAL_WINDOW``."""
    window = history[-max(1, len(history) // 10):]
    return sum(line[key] for line in window) / len(window)


def summarize_cell(history: List[Dict], initial_accuracy: float) -> Dict:
    """The summary numbers of one finished cell."""
    accuracies = [line["accuracy"] for line in history]
    peak_index = max(range(len(accuracies)), key=accuracies.__getitem__)
    best = max(initial_accuracy, accuracies[peak_index])
    first = history[0]
    final_accuracy = last_window_mean(history, "accuracy")
    return {
        "objective": first["objective"],
        "iterations": first["iterations"],
        "batch_ratio": first["batch_ratio"],
        "seed": first["seed"],
        "steps": len(history),
        "initial_accuracy": initial_accuracy,
        "final_accuracy": final_accuracy,
        "last_step_accuracy": accuracies[-1],
        "peak_accuracy": accuracies[peak_index],
        "peak_step": history[peak_index]["step"],
        "final_reward": last_window_mean(history, "reward_mean"),
        "final_entropy": last_window_mean(history, "entropy"),
        "max_clip_ratio": max(line["clip_ratio"] for line in history),
        "max_ratio": max(line["ratio_max"] for line in history),
        "collapsed": final_accuracy < COLLAPSE_FRACTION * best,
    }


def group_cells(cells: Sequence[Dict], keys: Tuple[str, ...]) -> Dict[Tuple, List[Dict]]:
    """``cells`` grouped by ``keys``, groups in first-seen order, each sorted by seed."""
    groups: Dict[Tuple, List[Dict]] = {}
    for cell in cells:
        groups.setdefault(tuple(cell[key] for key in keys), []).append(cell)
    return {key: sorted(rows, key=lambda row: row["seed"]) for key, rows in groups.items()}


def aggregate(cells: Sequence[Dict]) -> List[Dict]:
    """Per (objective, iterations, batch ratio): mean and t-interval over seeds of ``AGGREGATED``."""
    rows = []
    by_setting = group_cells(cells, ("objective", "iterations", "batch_ratio"))
    for (objective, iterations, batch_ratio), group in by_setting.items():
        row = {"objective": objective, "iterations": iterations, "batch_ratio": batch_ratio,
               "n_seeds": len(group), "seeds": [c["seed"] for c in group]}
        for name in AGGREGATED:
            row[f"{name}_mean"], interval = t_interval([c[name] for c in group])
            row[f"{name}_ci"] = None if interval is None else list(interval)
        row["n_collapsed"] = sum(c["collapsed"] for c in group)
        rows.append(row)
    return rows


def verdict(diffs: Sequence[float], interval) -> str:
    """A key of ``VERDICTS`` for per-seed differences and their interval."""
    if all(d == 0 for d in diffs):
        return "identical"
    if interval is None:
        return "one seed"
    if interval[0] > 0:
        return "ahead"
    if interval[1] < 0:
        return "behind"
    inside = -EQUIVALENCE_MARGIN <= interval[0] and interval[1] <= EQUIVALENCE_MARGIN
    return "equivalent" if inside else "indistinguishable"


def undecided_between(interval) -> List[str]:
    """For an "indistinguishable" interval (it contains 0 and reaches past the margin): the verdicts
    it cannot tell apart, by the side(s) on which it reaches past ±``EQUIVALENCE_MARGIN``."""
    above, below = interval[1] > EQUIVALENCE_MARGIN, interval[0] < -EQUIVALENCE_MARGIN
    return (["ahead"] if above else []) + (["behind"] if below else []) + ["equivalent"]


def fragile(verdict_key: str, interval) -> bool:
    """Whether an "ahead", "behind" or "equivalent" verdict rests on an edge that lies within the
    interval's own half-width of the boundary it clears (0, or the equivalence margin): an interval as
    wide, shifted by its half-width — what another sample of seeds (or another processor) can give —
    would read differently."""
    if verdict_key not in ("ahead", "behind", "equivalent"):
        return False
    low, high = interval
    half = (high - low) / 2
    clearance = {"ahead": low, "behind": -high,
                 "equivalent": min(EQUIVALENCE_MARGIN - high, low + EQUIVALENCE_MARGIN)}[verdict_key]
    return clearance < half


def paired(cells: Sequence[Dict]) -> List[Dict]:
    """Per (iterations, batch ratio): CFPO minus PPO-clip final held-out accuracy over the seeds that
    ran both, with mean, t-interval and its half-width, the number of seeds where CFPO ends higher,
    the verdict, the verdicts an indistinguishable interval cannot tell apart (``undecided_between``)
    and whether a decided verdict is ``fragile``."""
    rows = []
    for (iterations, batch_ratio), group in group_cells(cells, ("iterations", "batch_ratio")).items():
        by_objective = {name: {c["seed"]: c["final_accuracy"] for c in group if c["objective"] == name}
                        for name in ("ppo", "cfpo")}
        seeds = sorted(set(by_objective["ppo"]) & set(by_objective["cfpo"]))
        if not seeds:
            continue
        diffs = [by_objective["cfpo"][s] - by_objective["ppo"][s] for s in seeds]
        mean, interval = t_interval(diffs)
        key = verdict(diffs, interval)
        rows.append({
            "iterations": iterations, "batch_ratio": batch_ratio, "n_seeds": len(seeds), "seeds": seeds,
            "diffs": diffs, "diff_mean": mean, "diff_ci": None if interval is None else list(interval),
            "half_width": None if interval is None else interval[1] - mean,
            "cfpo_ahead": sum(d > 0 for d in diffs), "verdict": key,
            "undecided_between": undecided_between(interval) if key == "indistinguishable" else None,
            "fragile": fragile(key, interval),
        })
    return rows


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


def dynamics_curves(cells: Sequence[CellConfig], histories: Dict[str, List[Dict]], batch_ratio: int) -> List[Curve]:
    """Figure 2's curves for one batch ratio: per (objective, iterations) and metric, the mean over
    seeds with the seeds' range as its band."""
    groups: Dict[Tuple[str, int], List[CellConfig]] = {}
    for cell in cells:
        if cell.batch_ratio == batch_ratio:
            groups.setdefault((cell.objective, cell.iterations), []).append(cell)
    curves = []
    for (objective, iterations), group in groups.items():
        for metric in DYNAMICS_METRICS:
            steps, mean, low, high = seed_band(
                [([line["step"] for line in histories[c.name]], [line[metric] for line in histories[c.name]])
                 for c in group]
            )
            curves.append(Curve(
                label=f"{objective}-it{iterations}", objective=objective, panel=f"iterations={iterations}",
                metric=metric, steps=steps, values=mean, low=low, high=high,
            ))
    return curves


def dynamics_figure_name(batch_ratios: Sequence[int], batch_ratio: int) -> str:
    return "dynamics.png" if len(batch_ratios) == 1 else f"dynamics_br{batch_ratio}.png"


def write_figures(
    out: Path, config: LabConfig, cells: Sequence[CellConfig], histories: Dict[str, List[Dict]]
) -> List[str]:
    """figures/objective_vs_ratio.png and one dynamics grid per batch ratio; returns the notes of
    empty figure cells."""
    folder = out / "figures"
    ratio, series = objective_vs_ratio_series()
    plot_lines(
        ratio, series, folder / "objective_vs_ratio.png",
        xlabel="ratio r = π_θ / π_old", ylabel="surrogate J and dJ/dr",
        title=f"Per-token surrogate J = −loss and its gradient (ε = {FIGURE1_EPS})",
    )
    notes = []
    n_seeds = len(config.seeds)
    for batch_ratio in config.batch_ratios:
        notes += plot_metric_grid(
            dynamics_curves(cells, histories, batch_ratio), DYNAMICS_METRICS,
            folder / dynamics_figure_name(config.batch_ratios, batch_ratio),
            title=f"Training dynamics, batch ratio {batch_ratio}: mean over {n_seeds} seed(s), band = seeds' range "
                  "(CFPO solid, PPO-clip dashed)",
        )
    return notes


# --- report.md ---------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def mean_pm(mean: float, interval, scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± half-width`` (the t-interval is symmetric); the mean alone without an interval."""
    if interval is None:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * (interval[1] - mean):.{digits}f}"


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ci_points(interval) -> str:
    return "–" if interval is None else f"[{_points(interval[0])}, {_points(interval[1])}]"


def warmup_table(warmups: Sequence[Dict]) -> str:
    lines = ["| seed | warm-up steps | probe accuracy (target) | held-out accuracy (start) |", "|---:|---:|---:|---:|"]
    for w in warmups:
        lines.append(f"| {w['seed']} | {w['steps']} | {_pct(w['probe_accuracy'])}% ({_pct(w['target_accuracy'])}%) "
                     f"| {_pct(w['heldout_accuracy'])}% |")
    return "\n".join(lines)


def results_table(summary: Dict, batch_ratio: int) -> str:
    """Tables 5–10 layout for one batch ratio: the warm-up row, then per objective a section with
    one row per iteration count; mean ± interval half-width over seeds."""
    start, start_ci = t_interval([w["heldout_accuracy"] for w in summary["warmup"]])
    header = ("| Model | held-out acc. % (final) | held-out acc. % (peak) | final entropy | max clip ratio "
              "| collapsed seeds |")
    lines = [header, "|---|---:|---:|---:|---:|---:|",
             f"| Warm-up policy (start) | {mean_pm(start, start_ci)} | | | | |"]
    peaks = {}
    for (objective, iterations), group in group_cells(
        [c for c in summary["cells"] if c["batch_ratio"] == batch_ratio], ("objective", "iterations")
    ).items():
        peaks[(objective, iterations)] = t_interval([c["peak_accuracy"] for c in group])
    rows = [r for r in summary["aggregate"] if r["batch_ratio"] == batch_ratio]
    for objective in dict.fromkeys(r["objective"] for r in rows):
        name = OBJECTIVE_NAMES.get(objective, objective)
        lines.append(f"| *{'GRPO / PPO-clip' if objective == 'ppo' else name} training* | | | | | |")
        for r in (r for r in rows if r["objective"] == objective):
            peak = peaks[(objective, r["iterations"])]
            lines.append(
                f"| + {name}-iteration {r['iterations']} "
                f"| {mean_pm(r['final_accuracy_mean'], r['final_accuracy_ci'])} "
                f"| {mean_pm(*peak)} | {mean_pm(r['final_entropy_mean'], r['final_entropy_ci'], 1, 3)} "
                f"| {mean_pm(r['max_clip_ratio_mean'], r['max_clip_ratio_ci'], 1, 3)} "
                f"| {r['n_collapsed']}/{r['n_seeds']} |"
            )
    return "\n".join(lines)


def _verdict_cell(p: Dict) -> str:
    if p["verdict"] == "indistinguishable":
        return f"indistinguishable ({' or '.join(p['undecided_between'])})"
    return p["verdict"] + (" (fragile)" if p.get("fragile") else "")


def paired_table(summary: Dict) -> str:
    lines = ["| iterations | batch ratio | CFPO − PPO-clip, points (mean) | 95% interval | per seed | CFPO higher in "
             "| verdict |", "|---:|---:|---:|---:|---|---:|---|"]
    for p in summary["paired"]:
        per_seed = ", ".join(_points(d) for d in p["diffs"])
        lines.append(f"| {p['iterations']} | {p['batch_ratio']} | {_points(p['diff_mean'])} "
                     f"| {_ci_points(p['diff_ci'])} | {per_seed} | {p['cfpo_ahead']}/{p['n_seeds']} "
                     f"| {_verdict_cell(p)} |")
    return "\n".join(lines)


def _either(names: Sequence[str]) -> str:
    quoted = [f'"{n}"' for n in names]
    return " from ".join(quoted) if len(quoted) == 2 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _entry(p: Dict) -> str:
    """One paired row in the verdict paragraph: iterations, mean, interval, and a fragile verdict's caveat."""
    text = f"{p['iterations']} ({_points(p['diff_mean'])} points, {_ci_points(p['diff_ci'])}"
    if p.get("fragile"):
        boundary = "0" if p["verdict"] in ("ahead", "behind") else f"±{100 * EQUIVALENCE_MARGIN:.0f}"
        text += (f"; fragile: an edge lies within one half-width (±{100 * p['half_width']:.1f}) of {boundary}, "
                 "so another sample of seeds may read otherwise")
    return text + ")"


def verdict_paragraph(summary: Dict) -> str:
    """What the paired intervals say, per batch ratio: where CFPO ends ahead of PPO-clip, behind it,
    or indistinguishable from it in final held-out accuracy."""
    if not summary["paired"]:
        return "No iteration count ran both PPO-clip and CFPO, so there is no paired comparison."
    n_seeds = max(p["n_seeds"] for p in summary["paired"])
    sentences = [f"Verdict, paired over {n_seeds} seed(s) (CFPO minus PPO-clip final held-out accuracy in points, "
                 "seed by seed: same warm-up policy, problems and random draws; 95% t-intervals over seeds):"]
    for batch_ratio in dict.fromkeys(p["batch_ratio"] for p in summary["paired"]):
        rows = [p for p in summary["paired"] if p["batch_ratio"] == batch_ratio]
        parts = []
        margin = f"{100 * EQUIVALENCE_MARGIN:.0f}"
        for key, text in (("ahead", "CFPO ends ahead at iterations"), ("behind", "CFPO ends behind at iterations"),
                          ("equivalent", f"equivalent within {margin} points (the interval contains 0 and lies "
                                         f"inside ±{margin}) at iterations")):
            chosen = [p for p in rows if p["verdict"] == key]
            if chosen:
                parts.append(text + " " + ", ".join(_entry(p) for p in chosen))
        undecided: Dict[Tuple[str, ...], List[Dict]] = {}
        for p in rows:
            if p["verdict"] == "indistinguishable":
                undecided.setdefault(tuple(p["undecided_between"]), []).append(p)
        for between, chosen in undecided.items():
            parts.append(f"indistinguishable: the interval contains 0 and reaches past ±{margin} "
                         f"{'on both sides' if len(between) == 3 else 'above' if between[0] == 'ahead' else 'below'}"
                         f", so it cannot tell {_either(between)} apart (more seeds needed) at iterations "
                         + ", ".join(_entry(p) for p in chosen))
        identical = [p for p in rows if p["verdict"] == "identical"]
        if identical:
            on_policy = any(p["iterations"] == 1 and batch_ratio == 1 for p in identical)
            parts.append(f"no difference at iterations {', '.join(str(p['iterations']) for p in identical)} (every "
                         "seed's difference is exactly 0" + ("; with one iteration and batch ratio 1 every update is "
                                                            "on-policy, where the objectives coincide)" if on_policy
                                                            else ")"))
        single = [str(p["iterations"]) for p in rows if p["verdict"] == "one seed"]
        if single:
            parts.append(f"one seed only, no interval, at iterations {', '.join(single)}")
        sentences.append(f"at batch ratio {batch_ratio}, {'; '.join(parts)}.")
    collapsed = [f"{c['objective']}-it{c['iterations']}-br{c['batch_ratio']}-seed{c['seed']}"
                 for c in summary["cells"] if c["collapsed"]]
    sentences.append(f"Cells meeting the collapse rule ({COLLAPSE_RULE}): {', '.join(collapsed)}." if collapsed
                     else f"No cell meets the collapse rule ({COLLAPSE_RULE}).")
    return " ".join(sentences)


PRECISION_DEFINITION = (
    "half-width of the paired 95% interval; the smallest difference this run could detect is that half-width: "
    "with the same spread over seeds, a mean difference at least that large would give an interval excluding 0"
)


def precision_lines(summary: Dict) -> List[str]:
    """One line per paired (iterations, batch ratio): the interval's half-width, the seeds behind it,
    and so the smallest difference the run could detect (``PRECISION_DEFINITION``)."""
    lines = []
    for p in summary["paired"]:
        head = f"- iterations {p['iterations']}, batch ratio {p['batch_ratio']}: {p['n_seeds']} seed(s), "
        if p["half_width"] is None:
            lines.append(head + "no interval (one seed), so no difference is detectable")
        else:
            lines.append(head + f"half-width ±{100 * p['half_width']:.1f} points, so the smallest detectable "
                                f"difference is {100 * p['half_width']:.1f} points")
    return lines


def results_markdown(summary: Dict, batch_ratios: Sequence[int]) -> str:
    """The tables and the verdict: report.md's core, also what `openrlhf-cfpo lab` prints."""
    parts = []
    for batch_ratio in batch_ratios:
        if len(batch_ratios) > 1:
            parts.append(f"Batch ratio {batch_ratio}:\n")
        parts += [results_table(summary, batch_ratio), ""]
    parts += [paired_table(summary), "", f"Precision ({PRECISION_DEFINITION}):", "", *precision_lines(summary), "",
              verdict_paragraph(summary)]
    return "\n".join(parts)


def _cells_table(cells: List[Dict]) -> str:
    lines = ["| objective | iterations | batch ratio | seed | start % | final % | peak % (step) | final entropy "
             "| max clip ratio | final reward | collapsed |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        lines.append(
            f"| {c['objective']} | {c['iterations']} | {c['batch_ratio']} | {c['seed']} "
            f"| {_pct(c['initial_accuracy'])} "
            f"| {_pct(c['final_accuracy'])} | {_pct(c['peak_accuracy'])} ({c['peak_step']}) | {c['final_entropy']:.3f} "
            f"| {c['max_clip_ratio']:.3f} | {c['final_reward']:.3f} | {'yes' if c['collapsed'] else 'no'} |"
        )
    return "\n".join(lines)


def write_outputs(
    out: Path, config: LabConfig, cells: Sequence[CellConfig], histories: Dict[str, List[Dict]],
    results: Dict[str, Dict], warmups: Sequence[Dict],
) -> Dict:
    """summary.json, figures/ and report.md for a finished sweep; returns the summary.

    summary.json holds results only (wall times stay in each cell's result.json), so it is
    byte-identical for the same settings whatever the number of workers.
    """
    start = {w["seed"]: w["heldout_accuracy"] for w in warmups}
    cell_rows = [summarize_cell(histories[c.name], start[c.seed]) for c in cells]
    summary = {
        "interval_method": INTERVAL_METHOD,
        "collapse_rule": COLLAPSE_RULE,
        "final_window": FINAL_WINDOW,
        "eval_size": config.eval_size,
        "warmup": [
            {key: w[key] for key in ("seed", "key", "steps", "final_loss", "target_accuracy", "probe_accuracy",
                                     "heldout_accuracy")}
            for w in warmups
        ],
        "cells": cell_rows,
        "aggregate": aggregate(cell_rows),
        "paired": paired(cell_rows),
    }
    atomic_write_json(out / "summary.json", summary)
    notes = write_figures(out, config, cells, histories)
    settings = ", ".join(
        f"{key}={getattr(config, key)}" for key in
        ("advantage", "steps", "prompts_per_step", "group_size", "eps_low", "eps_high", "kl_coef", "lr", "digits",
         "hidden_size", "num_layers")
    )
    seeds = ", ".join(map(str, config.seeds))
    lines = [
        "# CFPO lab: PPO-clip vs CFPO under sample reuse",
        "",
        f"Settings: seeds {seeds}; batch ratio(s) {', '.join(map(str, config.batch_ratios))}; {settings} (all in "
        f"config.json). Held-out accuracy is greedy exact-match on {config.eval_size} problems never used in "
        f"warm-up or RL; the cells took {sum(r['wall_time_s'] for r in results.values()):.0f} s of worker time in all.",
        "",
        f"Intervals: {INTERVAL_METHOD}. Tables show mean ± half-width in percentage points (entropy and clip "
        "ratio as fractions).",
        "",
        "## Each seed's start",
        "",
        "The warm-up stops where its probe accuracy (greedy, on training problems) crosses the target; the "
        "held-out accuracy of that policy is where every cell of the seed starts.",
        "",
        warmup_table(summary["warmup"]),
        "",
        "## Results (the layout of the paper's Tables 5–10)",
        "",
        results_markdown(summary, config.batch_ratios),
        "",
        "## Figures",
        "",
        "![Figure 1: surrogate objective and gradient vs ratio](figures/objective_vs_ratio.png)",
        "",
    ]
    for batch_ratio in config.batch_ratios:
        name = dynamics_figure_name(config.batch_ratios, batch_ratio)
        lines += [f"![Dynamics, batch ratio {batch_ratio}: reward, held-out accuracy, clip ratio, entropy, "
                  f"policy KL per step](figures/{name})", ""]
    lines += [f"Dynamics: {BAND_METHOD}.", ""]
    if notes:
        lines += ["Figure notes:", "", *[f"- {note}" for note in notes], ""]
    lines += ["## Every cell", "", _cells_table(cell_rows), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return summary
