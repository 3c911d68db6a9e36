"""A lab sweep: every cell (objective x iterations x batch ratio x seed) into one output folder,
run by worker processes, resumable.

Layout of OUT::

    config.json               the resolved LabConfig, package versions and git SHA
    warmup.json               per seed: the warm-up policy's cache key, steps, probe and held-out accuracy
    cells/<objective>-it<k>-br<b>-seed<s>/   metrics.jsonl (written live); TensorBoard event file and
                              result.json (when the cell ends): `tensorboard --logdir OUT`
    metrics.jsonl             every finished cell's lines, in sweep order
    summary.json, report.md, figures/   see ``openrlhf_cfpo.lab.report``

Cells run in ``workers`` processes (spawned, ``config.threads`` torch threads each; with one
worker, in this process). A cell depends only on its settings and its seed's warm-up policy, which
every cell loads from the cache, so its lines are byte-identical whatever the number of workers.
Each seed's cells are queued, most expensive first, as soon as its warm-up policy is ready.

A cell with a result.json is finished and never recomputed; a cell without one (the sweep was
killed inside it) starts again from the warm-up policy, which gives the same lines again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from queue import Empty
from typing import Any, Dict, List, Optional, Tuple

import torch

from openrlhf_cfpo.lab.workers import init_worker, on_step, portable_warning_filters, report_progress_to
from openrlhf_cfpo.lab.config import CellConfig, LabConfig
from openrlhf_cfpo.lab.loop import train_cell
from openrlhf_cfpo.lab.task import AdditionTask
from openrlhf_cfpo.lab.warmup import warm_start
from openrlhf_cfpo.reporting.metrics import MetricsWriter, read_metrics_jsonl, write_tensorboard
from openrlhf_cfpo.runinfo import atomic_output, atomic_write_json, write_run_record

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# metrics.jsonl fields that name the cell rather than measure it (not plotted in TensorBoard).
CELL_IDENTITY = ("objective", "iterations", "batch_ratio", "seed")


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


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --- jobs: run in a worker process, or in this one with one worker --------------------------------


def _warmup_job(config: LabConfig, seed: int, cache_dir: Path) -> Dict[str, Any]:
    torch.set_num_threads(config.threads)
    return warm_start(config, seed, AdditionTask(config.digits, config.eval_size), cache_dir)[1]


def _cell_job(config: LabConfig, cell: CellConfig, folder: Path, cache_dir: Path) -> Tuple[List[Dict], Dict]:
    torch.set_num_threads(config.threads)
    task = AdditionTask(config.digits, config.eval_size)
    policy, _ = warm_start(config, cell.seed, task, cache_dir)
    reference = warm_start(config, cell.seed, task, cache_dir)[0] if config.kl_coef > 0 else None
    shutil.rmtree(folder, ignore_errors=True)  # a cell the last run did not finish
    folder.mkdir(parents=True)
    started = time.perf_counter()
    with MetricsWriter(folder / "metrics.jsonl") as writer:

        def record(metrics):
            writer.write(metrics)
            on_step(cell.cost)

        history = train_cell(config, cell, policy, task, reference=reference, on_step=record)
    write_tensorboard(folder, history, identity=CELL_IDENTITY)
    result = {"cell": cell.name, "steps": len(history), "wall_time_s": round(time.perf_counter() - started, 2)}
    atomic_write_json(folder / "result.json", result)
    return history, result


# --- the sweep ---------------------------------------------------------------------------------


def run_sweep(
    config: LabConfig, out: Path, cache_dir: Path, workers: int = 1, show_progress: Optional[bool] = None
) -> Dict[str, Any]:
    """Run (or resume) every cell of ``config`` into ``out`` with ``workers`` processes; returns the
    summary (also in summary.json). ``show_progress``: a bar with ETA (None: on a terminal only);
    without it, one log line per finished cell.

    Runs with ``config.threads`` torch CPU threads and restores the previous count afterwards.
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1; got {workers}")
    out = Path(out)
    prepare_output(out, config)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _Sweep(config, out, Path(cache_dir), workers, show_progress).run()
    finally:
        torch.set_num_threads(threads_before)


class _Sweep:
    """One run of ``run_sweep``: loads the finished cells, runs the others, writes the outputs."""

    def __init__(self, config: LabConfig, out: Path, cache_dir: Path, workers: int, show_progress: Optional[bool]):
        self.config, self.out, self.cache_dir = config, out, cache_dir
        self.cells = config.cells()
        self.workers = workers
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
        self.histories: Dict[str, List[Dict]] = {}
        self.results: Dict[str, Dict] = {}
        self.warmups: Dict[int, Dict] = {}

    def folder(self, cell: CellConfig) -> Path:
        return self.out / "cells" / cell.name

    def run(self) -> Dict[str, Any]:
        from tqdm.auto import tqdm

        from openrlhf_cfpo.lab.report import write_outputs  # matplotlib: not in the workers

        todo = []
        for cell in self.cells:
            result_path = self.folder(cell) / "result.json"
            if result_path.is_file():
                self.histories[cell.name] = read_metrics_jsonl(self.folder(cell) / "metrics.jsonl")
                self.results[cell.name] = json.loads(result_path.read_text(encoding="utf-8"))
            else:
                todo.append(cell)
        if len(todo) < len(self.cells):
            logger.info("%d of %d cells finished earlier; not recomputed", len(self.cells) - len(todo), len(self.cells))
        total = sum(self.config.steps * cell.cost for cell in self.cells)
        done = total - sum(self.config.steps * cell.cost for cell in todo)
        self.bar = tqdm(total=total, initial=done, disable=not self.show_progress, desc="lab",
                        bar_format="{l_bar}{bar}| {postfix} [{elapsed}<{remaining}]")
        self._set_postfix()
        with self.bar:
            if min(self.workers, len(todo)) <= 1:
                self._run_here(todo)
            else:
                self._run_in_pool(todo)
        warmups = [self.warmups[seed] for seed in self.config.seeds]
        atomic_write_json(self.out / "warmup.json", warmups)
        return write_outputs(self.out, self.config, self.cells, self.histories, self.results, warmups)

    def _run_here(self, todo: List[CellConfig]) -> None:
        """One worker (or at most one cell left): warm-ups, then the cells in sweep order, in this process."""
        report_progress_to(self.bar.update)
        try:
            for seed in self.config.seeds:
                self.warmups[seed] = _warmup_job(self.config, seed, self.cache_dir)
            for cell in todo:
                self._finish(cell, *_cell_job(self.config, cell, self.folder(cell), self.cache_dir))
        finally:
            report_progress_to()

    def _run_in_pool(self, todo: List[CellConfig]) -> None:
        """Warm-ups first; each seed's unfinished cells, most expensive first, once its warm-up is ready."""
        context = multiprocessing.get_context("spawn")
        steps = context.Queue()
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(todo)), mp_context=context, initializer=init_worker,
            initargs=(portable_warning_filters(), logging.getLogger().level, steps),
        )
        try:
            pending: Dict[Future, Any] = {
                pool.submit(_warmup_job, self.config, seed, self.cache_dir): seed for seed in self.config.seeds
            }
            while pending:
                finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                self._drain(steps)
                for future in finished:
                    item = pending.pop(future)
                    if isinstance(item, CellConfig):
                        self._finish(item, *future.result())
                        continue
                    self.warmups[item] = future.result()
                    for cell in sorted((c for c in todo if c.seed == item), key=lambda c: -c.cost):
                        pending[pool.submit(_cell_job, self.config, cell, self.folder(cell), self.cache_dir)] = cell
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        self._drain(steps)

    def _drain(self, steps) -> None:
        """Progress the workers reported so far."""
        while True:
            try:
                self.bar.update(steps.get_nowait())
            except Empty:
                return

    def _set_postfix(self) -> None:
        self.bar.set_postfix_str(f"{len(self.results)}/{len(self.cells)} cells")

    def _finish(self, cell: CellConfig, history: List[Dict], result: Dict) -> None:
        self.histories[cell.name], self.results[cell.name] = history, result
        self._set_postfix()
        if not self.show_progress:
            logger.info("cell %s finished in %.0f s (%d/%d cells): final held-out accuracy %.3f",
                        cell.name, result["wall_time_s"], len(self.results), len(self.cells), history[-1]["accuracy"])
        finished = [c for c in self.cells if c.name in self.histories]
        with atomic_output(self.out / "metrics.jsonl") as tmp, MetricsWriter(tmp) as writer:
            for c in finished:
                for line in self.histories[c.name]:
                    writer.write(line)
