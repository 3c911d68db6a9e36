"""Per-run diagnostics the paper discusses, computed from the logged series.

- collapse step: ``COLLAPSE_RULE`` (training reward);
- entropy decay rate: k = −100 · d ln(entropy)/d step, least squares (entropy ≈ H₀·e^(−k·step/100));
- clip-ratio trend: least-squares slope per 100 steps, with its mean and maximum;
- response-length growth (verbosity): mean length over the last 10% of logged steps divided by the
  mean over the first 10% (at least one point each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from openrlhf_cfpo.reporting.tables import Table
from openrlhf_cfpo.reporting.training_logs import TrainingRun

SMOOTHING_WINDOW = 5
EDGE_FRACTION = 0.1
COLLAPSE_RULE = (
    f"a run collapses at the first logged step from which the {SMOOTHING_WINDOW}-point trailing mean of "
    "its training reward (reward_mean) stays, until the end of the run, below the midpoint between its "
    "starting value and its best value so far; runs whose reward never rose above its start cannot collapse"
)


def trailing_mean(values: Sequence[float], window: int = SMOOTHING_WINDOW) -> List[float]:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def collapse_step(steps: Sequence[int], rewards: Sequence[float]) -> Optional[int]:
    """The step at which the run collapses under ``COLLAPSE_RULE``; None if it does not."""
    smooth = trailing_mean(rewards)
    if not smooth:
        return None
    start, best = smooth[0], -math.inf
    below = []  # below[i]: point i is under the midpoint between start and the best so far
    for value in smooth:
        best = max(best, value)
        below.append(best > start and value < start + 0.5 * (best - start))
    first = len(below)
    while first > 0 and below[first - 1]:
        first -= 1
    return steps[first] if first < len(below) else None


def least_squares_slope(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Slope of the least-squares line through (x, y); None for fewer than two distinct x."""
    n = len(x)
    if n < 2:
        return None
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((xi - mean_x) ** 2 for xi in x)
    if sxx == 0:
        return None
    return sum((xi - mean_x) * (yi - mean_y) for xi, yi in zip(x, y)) / sxx


def entropy_decay_per_100_steps(steps: Sequence[int], entropy: Sequence[float]) -> Optional[float]:
    """k in entropy ≈ H₀·exp(−k·step/100), fitted by least squares on ln(entropy)."""
    if any(value <= 0 for value in entropy):
        return None
    slope = least_squares_slope(steps, [math.log(value) for value in entropy])
    return None if slope is None else -100.0 * slope


def edge_ratio(values: Sequence[float]) -> Optional[float]:
    """Mean of the last 10% of values over the mean of the first 10% (≥ 1 value each)."""
    if not values:
        return None
    count = max(1, int(len(values) * EDGE_FRACTION))
    first = sum(values[:count]) / count
    return None if first == 0 else (sum(values[-count:]) / count) / first


@dataclass(frozen=True)
class RunDiagnostics:
    label: str
    last_step: Optional[int]
    final_reward: Optional[float]
    peak_reward: Optional[float]
    collapse_step: Optional[int]
    entropy_decay_per_100_steps: Optional[float]
    clip_ratio_mean: Optional[float]
    clip_ratio_max: Optional[float]
    clip_ratio_slope_per_100_steps: Optional[float]
    response_length_growth: Optional[float]


def diagnose(run: TrainingRun) -> RunDiagnostics:
    """All diagnostics of one run; a metric the run lacks leaves its diagnostics empty."""
    series = run.series
    steps_seen = [steps[-1] for steps, _ in series.values() if steps]
    final_reward = peak_reward = collapse = None
    if "reward_mean" in series:
        steps, rewards = series["reward_mean"]
        smooth = trailing_mean(rewards)
        final_reward, peak_reward = smooth[-1], max(smooth)
        collapse = collapse_step(steps, rewards)
    decay = entropy_decay_per_100_steps(*series["entropy"]) if "entropy" in series else None
    clip_mean = clip_max = clip_slope = None
    if "clip_ratio" in series:
        steps, clip = series["clip_ratio"]
        clip_mean, clip_max = sum(clip) / len(clip), max(clip)
        slope = least_squares_slope(steps, clip)
        clip_slope = None if slope is None else 100.0 * slope
    growth = edge_ratio(series["response_length_mean"][1]) if "response_length_mean" in series else None
    return RunDiagnostics(
        label=run.label,
        last_step=max(steps_seen) if steps_seen else None,
        final_reward=final_reward,
        peak_reward=peak_reward,
        collapse_step=collapse,
        entropy_decay_per_100_steps=decay,
        clip_ratio_mean=clip_mean,
        clip_ratio_max=clip_max,
        clip_ratio_slope_per_100_steps=clip_slope,
        response_length_growth=growth,
    )


DIAGNOSTIC_HEADERS: Dict[str, str] = {
    "model": "Run",
    "objective": "Objective",
    "iterations": "Iterations",
    "last_step": "Last step",
    "final_reward": "Final reward",
    "peak_reward": "Peak reward",
    "collapse_step": "Collapse step",
    "entropy_decay_per_100_steps": "Entropy decay k/100 steps",
    "clip_ratio_mean": "Clip ratio mean",
    "clip_ratio_max": "Clip ratio max",
    "clip_ratio_slope_per_100_steps": "Clip ratio slope/100 steps",
    "response_length_growth": "Length growth (×)",
}


def diagnostics_table(runs: Sequence[TrainingRun]) -> Table:
    """One row per run (``model`` = run label), with the collapse rule as a note."""
    columns = list(DIAGNOSTIC_HEADERS)
    table = Table(
        "diagnostics", "Training diagnostics", columns, [DIAGNOSTIC_HEADERS[c] for c in columns]
    )
    for run in sorted(runs, key=lambda r: r.label):
        found = diagnose(run)
        row = {"model": run.label, "objective": run.settings.objective, "iterations": run.settings.iterations}
        row.update({c: getattr(found, c) for c in columns if c not in row})
        table.rows.append(row)
    table.notes.append(f"Collapse rule: {COLLAPSE_RULE}.")
    table.notes.append(
        "Entropy decay k: entropy ≈ H₀·exp(−k·step/100), least squares on ln(entropy); "
        f"length growth: mean response length over the last {EDGE_FRACTION:.0%} of logged steps "
        f"÷ the first {EDGE_FRACTION:.0%}; final and peak reward are {SMOOTHING_WINDOW}-point trailing means."
    )
    return table
