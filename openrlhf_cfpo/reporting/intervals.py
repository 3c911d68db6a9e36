"""Statistics over seeds: a t-interval for a mean, and the mean and range of curves.

With the handful of seeds a CPU sweep affords (the lab's default is 3), a bootstrap interval has
too few distinct resamples to mean anything (3 values give 10), while Student's t-interval is exact
when the per-seed values are normal and says honestly how little 3 values pin down
(t(0.975, 2) = 4.30, so the half-width is 2.5 standard deviations). Curves are drawn as their mean
over seeds with a band from the lowest to the highest seed at each step: that shows every seed's
range without assuming anything about its distribution.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

CONFIDENCE = 0.95
INTERVAL_METHOD = (
    "two-sided 95% Student t-interval over seeds: mean ± t(0.975, n−1) · s / √n, with s the sample standard "
    "deviation (n−1 in its denominator); none with a single seed"
)
BAND_METHOD = "lines are the mean over seeds; the shaded band spans the lowest to the highest seed at each step"

Interval = Optional[Tuple[float, float]]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, Interval]:
    """The mean of ``values`` and its two-sided t-interval (None for fewer than two values).

    Values that are all equal give the degenerate interval [mean, mean] (all zeros give [0, 0]).
    """
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    from scipy.stats import t  # here: a single-seed run (e.g. bench/gpu_check.sh) needs no scipy

    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def seed_band(
    series: Sequence[Tuple[Sequence[float], Sequence[Optional[float]]]]
) -> Tuple[List[float], List[float], List[float], List[float]]:
    """Steps, mean, lowest and highest value over several runs' (steps, values), at the steps every
    run has a finite value for."""
    if not series:
        raise ValueError("seed_band needs at least one series")
    per_run = [
        {step: value for step, value in zip(steps, values) if value is not None and math.isfinite(value)}
        for steps, values in series
    ]
    shared = sorted(set.intersection(*(set(points) for points in per_run)))
    columns = [[points[step] for points in per_run] for step in shared]
    return (
        list(shared),
        [math.fsum(column) / len(column) for column in columns],
        [min(column) for column in columns],
        [max(column) for column in columns],
    )
