"""Figures as PNGs with matplotlib's Agg backend; generic over where the numbers came from.

- ``plot_metric_grid``: the paper's Figure 2 layout. Rows are metrics, columns are panels (e.g. one
  per iteration count or KL setting); CFPO is drawn solid and every other objective dashed, with one
  colour per objective throughout the figure. A curve that carries a band (its seeds' range) is
  drawn with the band shaded in its colour.
- ``plot_lines``: several named series against one x axis (used for Figure 1, objective vs ratio).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from openrlhf_cfpo.runinfo import atomic_output  # noqa: E402

PathLike = Union[str, "os.PathLike[str]"]
SOLID_OBJECTIVE = "cfpo"


@dataclass(frozen=True)
class Curve:
    """One metric of one run against training step, placed in one panel of a grid."""

    label: str  # run label, e.g. "cfpo-it4"
    objective: str  # "cfpo" is drawn solid; anything else (ppo, rloo, ...) dashed
    panel: str  # column title, e.g. "iterations=4" or "KL=0"
    metric: str  # row, e.g. "reward_mean", "clip_ratio"
    steps: Sequence[float]
    values: Sequence[float]
    low: Optional[Sequence[float]] = None  # band around values (e.g. the seeds' range), shaded
    high: Optional[Sequence[float]] = None


def _has_data(curve: Curve) -> bool:
    return any(value is not None and math.isfinite(value) for value in curve.values)


def _save(fig, path: PathLike) -> None:
    """Write the PNG atomically and close the figure."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def _as_float(values: Sequence) -> List[float]:
    return [math.nan if value is None else float(value) for value in values]


def plot_metric_grid(curves: Sequence[Curve], metrics: Sequence[str], path: PathLike, *, title: str = "") -> List[str]:
    """Rows = metrics (in the given order), columns = panels (first-seen order); CFPO solid, others dashed.

    Returns one note per (panel, metric) cell without any finite value (that cell is left empty,
    not an error). Writes a PNG to ``path``. Raises ValueError for no curves, no metrics, or a
    curve whose steps and values differ in length.
    """
    if not curves:
        raise ValueError("plot_metric_grid needs at least one curve")
    if not metrics:
        raise ValueError("plot_metric_grid needs at least one metric (one row each)")
    for curve in curves:
        lengths = {len(curve.steps), len(curve.values)} | {len(b) for b in (curve.low, curve.high) if b is not None}
        if len(lengths) > 1:
            raise ValueError(
                f"curve {curve.label!r} ({curve.metric}): {len(curve.steps)} steps but {len(curve.values)} values"
                + ("" if curve.low is None else f" and a band of {len(curve.low)}/{len(curve.high)}")
            )
        if (curve.low is None) != (curve.high is None):
            raise ValueError(f"curve {curve.label!r} ({curve.metric}): a band needs both low and high")
    panels = list(dict.fromkeys(curve.panel for curve in curves))
    objectives = list(dict.fromkeys(curve.objective for curve in curves))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {objective: palette[i % len(palette)] for i, objective in enumerate(objectives)}

    fig, axes = plt.subplots(
        len(metrics), len(panels), figsize=(3.2 * len(panels) + 0.8, 2.4 * len(metrics) + 0.8),
        squeeze=False, sharex="col", sharey="row",
    )
    notes = []
    for row, metric in enumerate(metrics):
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            cell = [c for c in curves if c.panel == panel and c.metric == metric and _has_data(c)]
            if not cell:
                notes.append(f"no data for metric {metric!r} in panel {panel!r}; cell left empty")
            for curve in cell:
                ax.plot(
                    _as_float(curve.steps), _as_float(curve.values), label=curve.label,
                    color=colour[curve.objective],
                    linestyle="-" if curve.objective == SOLID_OBJECTIVE else "--",
                    linewidth=1.4,
                )
                if curve.low is not None:
                    ax.fill_between(_as_float(curve.steps), _as_float(curve.low), _as_float(curve.high),
                                    color=colour[curve.objective], alpha=0.18, linewidth=0)
            if row == 0:
                ax.set_title(panel, fontsize=10)
            if col == 0:
                ax.set_ylabel(metric)
            if row == len(metrics) - 1:
                ax.set_xlabel("step")
            if cell:
                ax.legend(fontsize=7, loc="best")
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return notes


def plot_lines(
    x: Sequence[float], series: Dict[str, Sequence[float]], path: PathLike, *, xlabel: str, ylabel: str, title: str = ""
) -> None:
    """One line per named series against the shared ``x``; writes a PNG to ``path``.

    Raises ValueError for no series or a series whose length differs from ``x``.
    """
    if not series:
        raise ValueError("plot_lines needs at least one series")
    for name, values in series.items():
        if len(values) != len(x):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(x)} x values")
    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    for name, values in series.items():
        ax.plot(_as_float(x), _as_float(values), label=name, linewidth=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: never hides a line
    fig.tight_layout()
    _save(fig, path)
