"""A lab sweep: every (objective, iterations) cell into one output folder, resumable.

Layout of OUT::

    config.json               the resolved LabConfig, package versions and git SHA
    warmup.json               the warm-up policy's cache key, final loss and held-out accuracy
    cells/<objective>-it<k>/  metrics.jsonl (written live) and result.json (written when the cell ends)
    metrics.jsonl             every finished cell's lines, in sweep order
    summary.json, report.md, figures/   see ``openrlhf_cfpo.lab.report``

A cell with a result.json is finished and never recomputed; a cell without one (the sweep was
killed inside it) starts again from the warm-up policy, which gives the same lines again since
each cell is deterministic for its seed.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from openrlhf_cfpo.lab.config import CellConfig, LabConfig
from openrlhf_cfpo.lab.loop import train_cell
from openrlhf_cfpo.lab.report import write_outputs
from openrlhf_cfpo.lab.task import AdditionTask
from openrlhf_cfpo.lab.warmup import warm_start
from openrlhf_cfpo.reporting.metrics import MetricsWriter, read_metrics_jsonl
from openrlhf_cfpo.runinfo import atomic_output, atomic_write_json, write_run_record

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


class LabOutputError(ValueError):
    """OUT cannot hold this sweep (another experiment's folder, or not a folder)."""


def prepare_output(out: Path, config: LabConfig) -> None:
    """Create OUT with config.json, or accept it if it already holds this very experiment."""
    if out.exists() and not out.is_dir():
        raise LabOutputError(f"--out {out} is a file; give a folder path")
    saved_path = out / CONFIG_FILE
    if saved_path.is_file():
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))["config"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LabOutputError(
                f"--out {out} has a {CONFIG_FILE} that is not a lab config; give a new --out"
            ) from None
        current = config.to_dict()
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            raise LabOutputError(
                f"--out {out} holds another experiment (its config differs in: {', '.join(differing)}); "
                "give a new --out, or rerun with the same settings to resume it"
            )
        logger.info("resuming the sweep in %s", out)
        return
    if out.is_dir() and any(out.iterdir()):
        raise LabOutputError(
            f"--out {out} is a non-empty folder without a lab {CONFIG_FILE}; give a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_run_record(saved_path, config.to_dict())


def _run_or_load_cell(out: Path, config: LabConfig, cell: CellConfig, policy, task, reference, progress):
    folder = out / "cells" / cell.name
    result_path = folder / "result.json"
    if result_path.is_file():
        logger.info("cell %s finished earlier; not recomputed", cell.name)
        progress.update(config.steps)
        return read_metrics_jsonl(folder / "metrics.jsonl"), json.loads(result_path.read_text(encoding="utf-8"))
    shutil.rmtree(folder, ignore_errors=True)  # a cell the last run did not finish
    folder.mkdir(parents=True)
    progress.set_postfix_str(cell.name)
    started = time.perf_counter()
    with MetricsWriter(folder / "metrics.jsonl") as writer:

        def on_step(metrics):
            writer.write(metrics)
            progress.update(1)

        history = train_cell(config, cell, copy.deepcopy(policy), task, reference=reference, on_step=on_step)
    result = {"cell": cell.name, "steps": len(history), "wall_time_s": round(time.perf_counter() - started, 2)}
    atomic_write_json(result_path, result)
    return history, result


def _write_combined_metrics(out: Path, histories: Dict[str, List[Dict]]) -> None:
    with atomic_output(out / "metrics.jsonl") as tmp, MetricsWriter(tmp) as writer:
        for history in histories.values():
            for line in history:
                writer.write(line)


def run_sweep(config: LabConfig, out: Path, cache_dir: Path, show_progress: Optional[bool] = None) -> Dict[str, Any]:
    """Run (or resume) every cell of ``config`` into ``out``; returns the summary (also in summary.json).

    Runs with ``config.threads`` torch CPU threads and restores the previous count afterwards.
    """
    out = Path(out)
    prepare_output(out, config)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run_cells(config, out, cache_dir, show_progress)
    finally:
        torch.set_num_threads(threads_before)


def _run_cells(config: LabConfig, out: Path, cache_dir: Path, show_progress: Optional[bool]) -> Dict[str, Any]:
    from tqdm.auto import tqdm

    task = AdditionTask(config.digits, config.eval_size)
    policy, warmup_info = warm_start(config, task, cache_dir)
    atomic_write_json(out / "warmup.json", warmup_info)
    reference = policy if config.kl_coef > 0 else None  # the frozen warm-up policy (cells train a copy)

    cells = config.cells()
    histories: Dict[str, List[Dict]] = {}
    results: Dict[str, Dict] = {}
    disable = None if show_progress is None else not show_progress  # None: shown on a terminal only
    with tqdm(total=config.steps * len(cells), desc="lab", unit="step", disable=disable) as progress:
        for cell in cells:
            histories[cell.name], results[cell.name] = _run_or_load_cell(
                out, config, cell, policy, task, reference, progress
            )
            _write_combined_metrics(out, histories)
    return write_outputs(out, config, cells, histories, results, warmup_info)
