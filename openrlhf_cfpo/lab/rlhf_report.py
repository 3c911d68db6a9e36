"""What an RLHF-setting sweep leaves behind: summary.json, report.md and figures/ — the paper's
Table 1 (AlpacaEval raw vs length-controlled win rate, IFEval), Table 2 (alignment tax) and Figure 3
(reward, length, clip ratio, KL between consecutive policies) in miniature, per β.

- ``cells``: per cell, its evaluation against the seed's SFT policy (``rlhf_loop.evaluate``), the
  alignment tax (relative drop of the addition skill, %), the length change, the raw − LC gap, and
  from its curves the reward-model score's rise and final value, final ``kl_to_ref`` and the max
  clip ratio ("final" = mean of the last tenth of the steps, as in the RLVR lab);
- ``aggregate``: per (objective, β, iterations, batch ratio): mean and t-interval over seeds;
- ``paired``: per (β, iterations, batch ratio) and metric: CFPO minus PPO-clip seed by seed (same
  world, prompts and draws), its t-interval and a direction read off it (``DIRECTIONS``);
- ``worlds``: per seed, the reward model's held-out pair accuracy and its length preference on
  equal-gold pairs, the SFT policy's evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from openrlhf_cfpo.lab.report import group_cells, last_window_mean, mean_pm
from openrlhf_cfpo.lab.rlhf_config import RLHFCell, RLHFConfig
from openrlhf_cfpo.reporting.figures import Curve, plot_metric_grid
from openrlhf_cfpo.reporting.intervals import BAND_METHOD, INTERVAL_METHOD, seed_band, t_interval
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

FIGURE3_METRICS = ("reward_mean", "response_length_mean", "clip_ratio", "policy_kl", "gold_reward_mean")
# Per-cell numbers compared over seeds: (key, label, scale for the tables).
METRICS = (
    ("win_rate", "raw win rate vs SFT, %", 100), ("lc_win_rate", "length-controlled win rate vs SFT, %", 100),
    ("gold_win_rate", "gold win rate vs SFT, %", 100), ("raw_minus_lc", "raw − LC win rate, points", 100),
    ("instruction_following", "exact instruction following, %", 100),
    ("rm_score", "reward-model score (normalized)", 1),
    ("length", "response length, characters", 1), ("length_change", "length change vs SFT, characters", 1),
    ("gold_quality", "gold quality", 1), ("skill_accuracy", "addition skill after RL, %", 100),
    ("alignment_tax", "alignment tax, % of the skill lost", 1), ("reward_rise", "reward-model score rise over RL", 1),
    ("final_kl_to_ref", "final KL to the SFT policy (k1)", 1), ("max_clip_ratio", "max clip ratio", 1),
)
DIRECTIONS = {
    "higher": "the interval of CFPO − PPO-clip lies above 0", "lower": "it lies below 0",
    "indistinguishable": "it contains 0", "identical": "every seed's difference is exactly 0",
    "one seed": "no interval from a single seed",
}
NAMES = {"ppo": "PPO-clip (RLOO)", "cfpo": "CFPO"}


def summarize_cell(cell: RLHFCell, history: List[Dict], evaluation: Dict, world: Dict) -> Dict:
    sft = world["sft_eval"]
    before = sft["skill_accuracy"]
    return {
        "objective": cell.objective, "iterations": cell.iterations, "batch_ratio": cell.batch_ratio,
        "kl_coef": cell.kl_coef, "seed": cell.seed, **evaluation,
        "raw_minus_lc": evaluation["win_rate"] - evaluation["lc_win_rate"],
        "length_change": evaluation["length"] - sft["length"],
        "skill_before": before,
        "alignment_tax": 100.0 * (before - evaluation["skill_accuracy"]) / before if before > 0 else float("nan"),
        "final_reward": last_window_mean(history, "reward_mean"),
        "reward_rise": last_window_mean(history, "reward_mean") - history[0]["reward_mean"],
        "final_kl_to_ref": last_window_mean(history, "kl_to_ref"),
        "max_clip_ratio": max(line["clip_ratio"] for line in history),
    }


def aggregate(cells: Sequence[Dict]) -> List[Dict]:
    rows = []
    for (objective, kl_coef, iterations, batch_ratio), group in group_cells(
            cells, ("objective", "kl_coef", "iterations", "batch_ratio")).items():
        row = {"objective": objective, "kl_coef": kl_coef, "iterations": iterations, "batch_ratio": batch_ratio,
               "n_seeds": len(group)}
        for key, _, _ in METRICS:
            row[f"{key}_mean"], interval = t_interval([c[key] for c in group])
            row[f"{key}_ci"] = None if interval is None else list(interval)
        rows.append(row)
    return rows


def direction(diffs: Sequence[float], interval) -> str:
    """A key of ``DIRECTIONS``: no equivalence verdict (no margin was stated for these metrics)."""
    if all(d == 0 for d in diffs):
        return "identical"
    if interval is None:
        return "one seed"
    return "higher" if interval[0] > 0 else "lower" if interval[1] < 0 else "indistinguishable"


def paired(cells: Sequence[Dict]) -> List[Dict]:
    rows = []
    groups = group_cells(cells, ("kl_coef", "iterations", "batch_ratio"))
    for (kl_coef, iterations, batch_ratio), group in groups.items():
        by = {name: {c["seed"]: c for c in group if c["objective"] == name} for name in ("ppo", "cfpo")}
        seeds = sorted(set(by["ppo"]) & set(by["cfpo"]))
        if not seeds:
            continue
        row = {"kl_coef": kl_coef, "iterations": iterations, "batch_ratio": batch_ratio, "seeds": seeds,
               "n_seeds": len(seeds), "metrics": {}}
        for key, _, _ in METRICS:
            diffs = [by["cfpo"][s][key] - by["ppo"][s][key] for s in seeds]
            mean, interval = t_interval(diffs)
            row["metrics"][key] = {"diffs": diffs, "mean": mean, "ci": None if interval is None else list(interval),
                                   "half_width": None if interval is None else interval[1] - mean,
                                   "direction": direction(diffs, interval)}
        rows.append(row)
    return rows


TABLE1 = ("win_rate", "lc_win_rate", "gold_win_rate", "instruction_following", "rm_score", "length")


def table1(summary: Dict, kl_coef: float) -> str:
    """Table 1 layout for one β: the SFT row, then one row per objective, mean ± half-width over seeds."""
    labels = {key: (label, scale) for key, label, scale in METRICS}
    header = "| Model | " + " | ".join(labels[k][0] for k in TABLE1) + " |"
    lines = [header, "|---|" + "---:|" * len(TABLE1)]
    worlds = summary["worlds"]
    sft = []
    for key in TABLE1:
        if key.endswith("win_rate"):
            sft.append("50 (itself)")
            continue
        label, scale = labels[key]
        sft.append(mean_pm(*t_interval([w["sft_eval"][key] for w in worlds]), scale, 2 if scale == 1 else 1))
    lines.append("| SFT policy | " + " | ".join(sft) + " |")
    for row in (r for r in summary["aggregate"] if r["kl_coef"] == kl_coef):
        cells = [mean_pm(row[f"{k}_mean"], row[f"{k}_ci"], labels[k][1], 2 if labels[k][1] == 1 else 1) for k in TABLE1]
        lines.append(f"| {NAMES.get(row['objective'], row['objective'])}, it{row['iterations']} br{row['batch_ratio']} "
                     f"| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table2(summary: Dict, kl_coef: float) -> str:
    """Table 2 layout for one β: the addition skill before (SFT) and after RL, and the relative drop."""
    before = t_interval([100 * w["sft_eval"]["skill_accuracy"] for w in summary["worlds"]])
    lines = ["| Model | addition skill, % | alignment tax, % (relative drop) |", "|---|---:|---:|",
             f"| SFT policy | {mean_pm(*before, 1)} | |"]
    for row in (r for r in summary["aggregate"] if r["kl_coef"] == kl_coef):
        lines.append(f"| {NAMES.get(row['objective'], row['objective'])}, it{row['iterations']} br{row['batch_ratio']} "
                     f"| {mean_pm(row['skill_accuracy_mean'], row['skill_accuracy_ci'], 100)} "
                     f"| {mean_pm(row['alignment_tax_mean'], row['alignment_tax_ci'], 1)} |")
    return "\n".join(lines)


def paired_table(row: Dict) -> str:
    lines = ["| metric | CFPO − PPO-clip (mean) | 95% interval | half-width | direction |", "|---|---:|---:|---:|---|"]
    for key, label, scale in METRICS:
        p = row["metrics"][key]
        interval = "–" if p["ci"] is None else f"[{scale * p['ci'][0]:+.2f}, {scale * p['ci'][1]:+.2f}]"
        half = "–" if p["half_width"] is None else f"±{scale * p['half_width']:.2f}"
        lines.append(f"| {label} | {scale * p['mean']:+.2f} | {interval} | {half} | {p['direction']} |")
    return "\n".join(lines)


def _said(p: Dict, scale: float, unit: str) -> str:
    interval = "" if p["ci"] is None else f", [{scale * p['ci'][0]:+.2f}, {scale * p['ci'][1]:+.2f}]"
    return f"{scale * p['mean']:+.2f}{unit}{interval}"


def verdict_paragraph(summary: Dict) -> str:
    """Per β: does CFPO lengthen responses less, show a smaller raw − LC gap, keep more of the skill, and
    at what reward — only what the paired intervals support."""
    sentences = []
    for row in summary["paired"]:
        m = row["metrics"]
        words = {"higher": "higher than", "lower": "lower than", "identical": "identical to",
                 "indistinguishable": "not distinguishable from", "one seed": "(one seed, no interval) vs"}

        def claim(key, what, scale, unit):
            return f"{what} {words[m[key]['direction']]} PPO-clip's ({_said(m[key], scale, unit)})"

        sentences.append(
            f"β = {row['kl_coef']:g} (iterations {row['iterations']}, batch ratio {row['batch_ratio']}, "
            f"{row['n_seeds']} seeds, CFPO − PPO-clip paired by seed): CFPO's "
            + "; ".join([claim("length_change", "length change vs SFT is", 1, " characters"),
                         claim("raw_minus_lc", "raw − LC win-rate gap is", 100, " points"),
                         claim("alignment_tax", "alignment tax is", 1, " %"),
                         claim("rm_score", "reward-model score is", 1, ""),
                         claim("gold_quality", "gold quality is", 1, "")]) + ".")
    moved = []
    for row in summary["aggregate"]:
        if row["kl_coef"] == 0:
            moved.append(f"{NAMES.get(row['objective'], row['objective'])} "
                         f"{mean_pm(row['reward_rise_mean'], row['reward_rise_ci'], 1, 2)}")
    if moved:
        sentences.append("RL moved the policy: the reward-model score's rise over RL at β = 0 (final minus first "
                         "step, mean ± half-width over seeds) is " + ", ".join(moved) + ".")
    return " ".join(sentences)


def world_table(worlds: Sequence[Dict]) -> str:
    lines = ["| seed | RM held-out pair accuracy | RM prefers the longer of equal-gold pairs | SFT skill % "
             "| SFT instruction following % | SFT length |", "|---:|---:|---:|---:|---:|---:|"]
    for w in worlds:
        lines.append(f"| {w['seed']} | {w['rm_pair_accuracy']:.3f} | {w['rm_length_preference']:.3f} "
                     f"| {100 * w['sft_eval']['skill_accuracy']:.1f} "
                     f"| {100 * w['sft_eval']['instruction_following']:.1f} "
                     f"| {w['sft_eval']['length']:.2f} |")
    accuracy = t_interval([w["rm_pair_accuracy"] for w in worlds])
    length = t_interval([w["rm_length_preference"] for w in worlds])
    lines.append(f"| mean | {mean_pm(*accuracy, 1, 3)} | {mean_pm(*length, 1, 3)} | | | |")
    return "\n".join(lines)


def figure3_curves(cells: Sequence[RLHFCell], histories: Dict[str, List[Dict]]) -> List[Curve]:
    groups: Dict[Tuple, List[RLHFCell]] = {}
    for cell in cells:
        groups.setdefault((cell.objective, cell.kl_coef, cell.iterations, cell.batch_ratio), []).append(cell)
    curves = []
    for (objective, kl_coef, iterations, batch_ratio), group in groups.items():
        for metric in FIGURE3_METRICS:
            steps, mean, low, high = seed_band([([l["step"] for l in histories[c.name]],
                                                 [l[metric] for l in histories[c.name]]) for c in group])
            curves.append(Curve(label=f"{objective}-it{iterations}-br{batch_ratio}", objective=objective,
                                panel=f"β = {kl_coef:g}", metric=metric, steps=steps, values=mean, low=low, high=high))
    return curves


def write_outputs(out: Path, config: RLHFConfig, cells: Sequence[RLHFCell], histories: Dict[str, List[Dict]],
                  results: Dict[str, Dict], worlds: Sequence[Dict]) -> Dict:
    """summary.json, figures/figure3.png and report.md; returns the summary (results only: no wall
    times, so it is byte-identical for the same settings whatever the number of workers)."""
    by_seed = {w["seed"]: w for w in worlds}
    rows = [summarize_cell(c, histories[c.name], results[c.name]["evaluation"], by_seed[c.seed]) for c in cells]
    summary = {
        "setting": "rlhf", "interval_method": INTERVAL_METHOD,
        "final_window": "final_reward, final_kl_to_ref and the end of reward_rise average the last tenth of the "
                        "steps (at least one)",
        "worlds": [{k: w[k] for k in ("seed", "key", "rm_pair_accuracy", "rm_length_preference", "rm_mean", "rm_std",
                                      "skill_accuracy", "sft_eval")} for w in worlds],
        "cells": rows, "aggregate": aggregate(rows), "paired": paired(rows),
    }
    atomic_write_json(out / "summary.json", summary)
    notes = plot_metric_grid(figure3_curves(cells, histories), FIGURE3_METRICS, out / "figures" / "figure3.png",
                             title=f"RLHF dynamics: mean over {len(config.seeds)} seed(s), band = range\n"
                                   "(CFPO solid, PPO-clip dashed)")
    lines = ["# CFPO lab, RLHF setting: RLOO with PPO-clip vs CFPO against a length-biased reward model", "",
             f"Settings: seeds {', '.join(map(str, config.seeds))}; β {', '.join(f'{b:g}' for b in config.kl_coefs)}; "
             f"{config.steps} steps of {config.prompts_per_step} prompts x {config.samples_per_prompt} samples, "
             f"iterations {list(config.iterations_list)}, batch ratio {list(config.batch_ratios)}, lr {config.lr} "
             "(all in config.json). Win rates are against the seed's SFT policy on the same prompts, judged by the "
             "length-biased simulated annotator (its probability, as AlpacaEval 2.0's judge) and by the gold "
             "preference; LC = AlpacaEval 2.0's length_controlled_minimal GLM.", "",
             f"Intervals: {INTERVAL_METHOD}. Tables show mean ± half-width.", "",
             "## Each seed's world", "", world_table(summary["worlds"]), ""]
    for kl_coef in config.kl_coefs:
        lines += [f"## β = {kl_coef:g}", "", "Table 1 analogue:", "", table1(summary, kl_coef), "",
                  "Table 2 analogue:", "", table2(summary, kl_coef), ""]
        for row in (r for r in summary["paired"] if r["kl_coef"] == kl_coef):
            lines += [f"Paired CFPO − PPO-clip (iterations {row['iterations']}, batch ratio {row['batch_ratio']}):", "",
                      paired_table(row), ""]
    lines += ["## Verdict", "", verdict_paragraph(summary), "", "## Figure 3 analogue", "",
              "![Figure 3: reward, length, clip ratio, KL between consecutive policies, gold reward per β]"
              "(figures/figure3.png)", "", f"Dynamics: {BAND_METHOD}.", ""]
    if notes:
        lines += ["Figure notes:", "", *[f"- {n}" for n in notes], ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return summary


def results_markdown(summary: Dict, kl_coefs: Sequence[float]) -> str:
    """What `openrlhf-cfpo lab --setting rlhf` prints: the Table 1 and 2 analogues and the verdict."""
    parts = []
    for kl_coef in kl_coefs:
        parts += [f"β = {kl_coef:g}", "", table1(summary, kl_coef), "", table2(summary, kl_coef), ""]
    return "\n".join(parts + [verdict_paragraph(summary)])
