"""A sweep of the RLHF setting into one output folder: one job per seed (its world, then its cells,
one stack per schedule), in worker processes, resumable.

Layout of OUT (beside the RLVR lab's)::

    config.json      the resolved RLHFConfig ("setting": "rlhf"), package versions and git SHA
    worlds.json      per seed: the world's cache key, the reward model's pair accuracy, length
                     preference and normalizer, and the SFT policy's evaluation (the baseline row)
    cells/<objective>-it<k>-br<b>-kl<β>-seed<s>/   metrics.jsonl (live), result.json (the cell's
                     evaluation, when it ends) and a TensorBoard event file
    metrics.jsonl, summary.json, report.md, figures/   see ``lab.rlhf_report``

A seed's world (SFT policy and reward model) is cached under the cache folder, keyed by its settings
(``rlhf_config.WORLD_FIELDS``) and ``WORLD_FORMAT``, as the RLVR warm-ups are. A cell with a
result.json is finished; a seed's unfinished cells run again from its world. A job depends only on
the settings and its seed, so the files are the same whatever ``workers`` is.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from openrlhf_cfpo.lab.engine import from_hf_state_dict, llama_config, to_hf_state_dict
from openrlhf_cfpo.lab.rlhf_config import RLHFCell, RLHFConfig, world_key
from openrlhf_cfpo.lab.workers import init_worker, on_step, portable_warning_filters, report_progress_to
from openrlhf_cfpo.reporting.metrics import MetricsWriter, read_metrics_jsonl, write_tensorboard
from openrlhf_cfpo.runinfo import atomic_folder, atomic_output, atomic_write_json

logger = logging.getLogger(__name__)

# Bump when the world's training changes, so that no stale SFT policy or reward model is reused.
WORLD_FORMAT = 1
CELL_IDENTITY = ("objective", "iterations", "batch_ratio", "kl_coef", "seed")


def _save_model(shape, params, folder: Path, value_head: bool) -> None:
    """config.json + model.safetensors that transformers loads (LlamaForCausalLM, or
    LlamaForSequenceClassification with one label for the reward model)."""
    from safetensors.torch import save_file

    from openrlhf_cfpo.lab import rlhf_world as world

    folder.mkdir(parents=True)
    extra = {"num_labels": 1, "architectures": ["LlamaForSequenceClassification"]} if value_head else {
        "architectures": ["LlamaForCausalLM"]}
    llama_config(shape, bos_token_id=world.BOS_ID, eos_token_id=world.EOS_ID, pad_token_id=world.EOS_ID,
                 **extra).to_json_file(folder / "config.json")
    save_file(to_hf_state_dict(shape, params, value_head), folder / "model.safetensors")


def _load_model(shape, folder: Path, value_head: bool):
    from safetensors.torch import load_file

    return from_hf_state_dict(shape, load_file(folder / "model.safetensors"), value_head)


def load_or_build_world(config: RLHFConfig, seed: int, cache_dir: Path):
    """The seed's SFT policy, reward model, normalizer and info: from the cache, else trained and cached."""
    from openrlhf_cfpo.lab import rlhf_loop
    from openrlhf_cfpo.lab.rlhf_formulas import RewardNormalizer

    shape = rlhf_loop.model_shape(config)
    key = world_key(config, seed, WORLD_FORMAT)
    path = Path(cache_dir) / f"rlhf-world-{key}"
    if (path / "world.json").is_file():
        info = json.loads((path / "world.json").read_text())
        return (_load_model(shape, path / "sft", False), _load_model(shape, path / "rm", True),
                RewardNormalizer(info["rm_mean"], info["rm_std"]), info)
    logger.info("seed %d: training the SFT policy and the reward model; cached at %s", seed, path)
    sft, sft_info = rlhf_loop.train_sft(config, seed)
    rm, normalizer, rm_info = rlhf_loop.train_reward_model(config, seed)
    (baseline,) = rlhf_loop.evaluate(config, seed, rlhf_loop.copies(shape, sft, 1), sft, rm, normalizer)
    info = {"seed": seed, "key": key, **sft_info, **rm_info,
            "sft_eval": {k: baseline[k] for k in ("instruction_following", "gold_quality", "rm_score", "length",
                                                  "skill_accuracy")}}
    with atomic_folder(path) as tmp:
        _save_model(shape, sft, tmp / "sft", False)
        _save_model(shape, rm, tmp / "rm", True)
        (tmp / "world.json").write_text(json.dumps(info, indent=2))
    return sft, rm, normalizer, info


def _seed_job(config: RLHFConfig, seed: int, todo: List[RLHFCell], out: Path, cache_dir: Path):
    """Everything of one seed: its world, then its unfinished cells, one stack per schedule."""
    from openrlhf_cfpo.lab import rlhf_loop

    torch.set_num_threads(config.threads)
    sft, rm, normalizer, info = load_or_build_world(config, seed, cache_dir)
    finished: Dict[str, Tuple[List[Dict], Dict]] = {}
    schedules = list(dict.fromkeys(cell.schedule for cell in todo))
    for schedule in schedules:
        cells = [c for c in todo if c.schedule == schedule]
        folders = [out / "cells" / c.name for c in cells]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        writers = [MetricsWriter(folder / "metrics.jsonl") for folder in folders]
        started = time.perf_counter()
        try:
            def record(lines):
                for writer, line in zip(writers, lines):
                    writer.write(line)
                on_step(sum(c.cost for c in cells))

            policy, histories = rlhf_loop.train_cells(config, cells, sft, rm, normalizer, on_step=record)
        finally:
            for writer in writers:
                writer.close()
        evaluations = rlhf_loop.evaluate(config, seed, policy, sft, rm, normalizer)
        seconds = round(time.perf_counter() - started, 2)
        for cell, folder, history, evaluation in zip(cells, folders, histories, evaluations):
            write_tensorboard(folder, history, identity=CELL_IDENTITY)
            result = {"cell": cell.name, "steps": len(history), "wall_time_s_stack": seconds,
                      "evaluation": evaluation}
            atomic_write_json(folder / "result.json", result)
            finished[cell.name] = (history, result)
    return info, finished


def run_rlhf_sweep(config: RLHFConfig, out: Path, cache_dir: Path, workers: int = 1,
                   show_progress: Optional[bool] = None) -> Dict[str, Any]:
    """Run (or resume) every cell of ``config`` into ``out``; returns the summary (also summary.json)."""
    from tqdm.auto import tqdm

    from openrlhf_cfpo.lab.rlhf_report import write_outputs
    from openrlhf_cfpo.lab.sweep import prepare_output

    if workers < 1:
        raise ValueError(f"--workers must be >= 1; got {workers}")
    out = Path(out)
    prepare_output(out, config)
    cells = config.cells()
    histories: Dict[str, List[Dict]] = {}
    results: Dict[str, Dict] = {}
    for cell in cells:
        result_path = out / "cells" / cell.name / "result.json"
        if result_path.is_file():
            histories[cell.name] = read_metrics_jsonl(out / "cells" / cell.name / "metrics.jsonl")
            results[cell.name] = json.loads(result_path.read_text(encoding="utf-8"))
    todo = {seed: [c for c in cells if c.seed == seed and c.name not in results] for seed in config.seeds}
    total = sum(config.steps * c.cost for c in cells)
    done = total - sum(config.steps * c.cost for seed_cells in todo.values() for c in seed_cells)
    show = sys.stderr.isatty() if show_progress is None else show_progress
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    worlds: Dict[int, Dict] = {}
    with tqdm(total=total, initial=done, disable=not show, desc="lab rlhf",
              bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:
        try:
            jobs = [(config, seed, todo[seed], out, Path(cache_dir)) for seed in config.seeds]
            if min(workers, len(jobs)) <= 1:
                report_progress_to(bar.update)
                outputs = [_seed_job(*job) for job in jobs]
            else:
                outputs = _run_in_pool(jobs, workers, bar)
        finally:
            report_progress_to()
            torch.set_num_threads(threads_before)
    for seed, (info, finished) in zip(config.seeds, outputs):
        worlds[seed] = info
        for name, (history, result) in finished.items():
            histories[name], results[name] = history, result
            if not show:
                logger.info("cell %s finished", name)
    atomic_write_json(out / "worlds.json", [worlds[s] for s in config.seeds])
    with atomic_output(out / "metrics.jsonl") as tmp, MetricsWriter(tmp) as writer:
        for cell in cells:
            for line in histories[cell.name]:
                writer.write(line)
    return write_outputs(out, config, cells, histories, results, [worlds[s] for s in config.seeds])


def _run_in_pool(jobs, workers: int, bar) -> List:
    context = multiprocessing.get_context("spawn")
    steps = context.Queue()
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=init_worker,
                             initargs=(portable_warning_filters(), logging.getLogger().level, steps)) as pool:
        futures = [pool.submit(_seed_job, *job) for job in jobs]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            while not steps.empty():
                bar.update(steps.get())
        while not steps.empty():
            bar.update(steps.get())
        return [f.result() for f in futures]
