"""The set-up of a lab sweep's worker processes, importing nothing heavy.

A spawned worker runs ``init_worker`` before its first job imports torch and transformers, so the
parent's warning filters (no third-party deprecation noise unless --verbose) already apply to those
imports. ``on_step`` is how a cell reports progress, in a worker or in the parent process alike.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable


def _no_progress(cost: int) -> None:
    pass


_progress: Callable[[int], None] = _no_progress


def on_step(cost: int) -> None:
    """Called after each RL step of a cell with the cell's cost per step (``CellConfig.cost``)."""
    _progress(cost)


def report_progress_to(callback: Callable[[int], None] = _no_progress) -> None:
    """Send this process's ``on_step`` calls to ``callback`` (no callback: nowhere)."""
    global _progress
    _progress = callback


def portable_warning_filters() -> list:
    """This process's warning filters that a worker can take before it imports anything: those with
    a builtin category. Unpickling any other category imports its module first (torch's
    TracerWarning imports torch, whose import warns); such a module adds its own filters again when
    the worker imports it."""
    return [f for f in warnings.filters if f[2].__module__ == "builtins"]


def init_worker(warning_filters: list, log_level: int, steps) -> None:
    """A worker process: the parent's warning filters and log level; progress onto the ``steps`` queue."""
    warnings.filters[:] = warning_filters
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    report_progress_to(steps.put)
