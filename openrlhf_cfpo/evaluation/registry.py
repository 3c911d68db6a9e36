"""Benchmarks by name: the one table that the CLI and ``evaluation/suites.yaml`` look names up in.

A benchmark module (``NAME``, ``PROTOCOL``, ``run(ctx)``; see ``context.py``) is imported only when
it runs. A module with several tasks (``openllm``, ``reasoning``) also exposes ``TASKS``; a single
task is selected as ``module.task`` (``openllm.mmlu``) or, for the reasoning tasks, by its bare
name as the issue's command line spells it (``math500``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, Iterable, Optional, Tuple

BENCHMARK_MODULES: Dict[str, str] = {
    "alpaca_eval": "openrlhf_cfpo.evaluation.alpaca_eval",
    "arena_hard": "openrlhf_cfpo.evaluation.arena_hard",
    "mt_bench": "openrlhf_cfpo.evaluation.mt_bench",
    "ifeval": "openrlhf_cfpo.evaluation.ifeval",
    "openllm": "openrlhf_cfpo.evaluation.openllm",
    "reasoning": "openrlhf_cfpo.evaluation.reasoning",
}

TASK_ALIASES: Dict[str, str] = {
    "math500": "reasoning.math500",
    "gsm8k": "reasoning.gsm8k",
    "aime24": "reasoning.aime24",
    "gpqa_diamond": "reasoning.gpqa_diamond",
}

# benchmark -> selected tasks (None = all of the module's tasks)
Selection = Dict[str, Optional[Tuple[str, ...]]]


class UnknownBenchmarkError(ValueError):
    pass


def known_names() -> Tuple[str, ...]:
    return (*BENCHMARK_MODULES, *TASK_ALIASES)


def load_benchmark(name: str) -> ModuleType:
    """The module of benchmark ``name`` (imported now)."""
    if name not in BENCHMARK_MODULES:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}: choose from {', '.join(known_names())}")
    path = BENCHMARK_MODULES[name]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name != path:
            raise
        raise UnknownBenchmarkError(
            f"benchmark {name!r} is not available in this installation ({path} not found)"
        ) from err


def resolve_benchmarks(names: Iterable[str]) -> Selection:
    """Benchmark names (``ifeval``, ``math500``, ``openllm.mmlu``) → {benchmark: tasks or None}, in order."""
    selection: Selection = {}
    for raw in names:
        name = TASK_ALIASES.get(raw.strip(), raw.strip())
        benchmark, _, task = name.partition(".")
        if benchmark not in BENCHMARK_MODULES:
            raise UnknownBenchmarkError(
                f"unknown benchmark {raw!r}: choose from {', '.join(known_names())} (or MODULE.TASK, e.g. openllm.mmlu)"
            )
        if not task:
            selection[benchmark] = None
            continue
        tasks = getattr(load_benchmark(benchmark), "TASKS", ())
        if task not in tasks:
            raise UnknownBenchmarkError(
                f"unknown task {task!r} of benchmark {benchmark!r}: choose from {', '.join(tasks) or '(no tasks)'}"
            )
        if benchmark in selection and selection[benchmark] is None:
            continue  # the whole benchmark is already selected
        chosen = selection.get(benchmark) or ()
        selection[benchmark] = chosen if task in chosen else (*chosen, task)
    return selection
