"""Evaluate a checkpoint the way the paper does: alignment (AlpacaEval 2.0, Arena-Hard v0.1, MT-Bench,
IFEval), capability (OpenLLM leaderboard v1 tasks through lm-eval) and reasoning (MATH500, GSM8K,
AIME24, GPQA-Diamond). Writes OUT/results.json (stable keys), OUT/results.md, OUT/run_config.json
(resolved config, package versions, git SHA) and one folder per benchmark with its raw generations,
judgments, results.md and run_config.json. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from openrlhf_cfpo.prompts import MODEL_SIZES, model_size_from_name

HELP = "evaluate a checkpoint (or generated responses) on the alignment, capability and reasoning suites"
SUITE_CHOICES = ("alignment", "capability", "reasoning", "all")

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint folder or Hugging Face model id (not needed with --responses)")
    parser.add_argument("--suite", choices=SUITE_CHOICES, help="benchmarks listed in evaluation/suites.yaml")
    parser.add_argument(
        "--benchmarks",
        help="comma-separated benchmark names instead of --suite: alpaca_eval, arena_hard, mt_bench, ifeval, "
        "openllm, reasoning, math500, gsm8k, aime24, gpqa_diamond, or MODULE.TASK (e.g. openllm.mmlu)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--backend", choices=("vllm", "hf"), help="generation backend (default: vllm on a GPU node, else hf)"
    )
    parser.add_argument(
        "--judge-model",
        help="judge model for every judged benchmark (NAME), or per benchmark (mt_bench=gpt-4,alpaca_eval=gpt-4.1; "
        "a bare NAME among them covers the others); default: each benchmark's paper default",
    )
    parser.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of the judge (default: OpenAI)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="local benchmark files, as `openrlhf-cfpo data fetch --to DIR` lays them out "
        "(default: download and cache)",
    )
    parser.add_argument("--limit", type=int, help="only the first N items of each benchmark/task (smoke runs)")
    parser.add_argument(
        "--responses", type=Path, help="score these answers (the benchmark's official format) without a model"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent judge requests (default 8)")
    parser.add_argument(
        "--max-new-tokens", type=int, help="cap on generated tokens per reply (default: each benchmark's protocol)"
    )
    parser.add_argument("--model-name", help="name of the evaluated model in outputs (default: the --model folder)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--suites", type=Path, help="suite file (default: evaluation/suites.yaml of this checkout)")
    parser.add_argument(
        "--model-size",
        choices=MODEL_SIZES,
        help="the reasoning suite's system prompt is the one this size trained with (paper appendix B.1); "
        "default: the size in --model / --model-name",
    )


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    """Validate the flags together; return the resolved configuration (raises ValueError naming the fix)."""
    from openrlhf_cfpo.evaluation.registry import resolve_benchmarks
    from openrlhf_cfpo.evaluation.suites import suite_benchmarks

    if args.benchmarks:
        names = [name for name in args.benchmarks.split(",") if name.strip()]
    elif args.suite:
        names = suite_benchmarks(args.suite, args.suites)
    else:
        raise ValueError("choose what to run: --suite alignment|capability|reasoning|all or --benchmarks NAME[,NAME]")
    selection = resolve_benchmarks(names)
    if not selection:
        raise ValueError("--benchmarks is empty: name at least one benchmark")
    if args.responses is not None:
        if len(selection) != 1:
            raise ValueError(
                f"--responses holds one benchmark's answers but {len(selection)} benchmarks are selected "
                f"({', '.join(selection)}): pass --benchmarks with exactly one of them"
            )
        if not args.responses.exists():
            raise ValueError(f"--responses {args.responses} does not exist")
    elif not args.model:
        raise ValueError("--model is required (a checkpoint folder or Hugging Face id) unless --responses is given")
    else:
        _check_model(args.model)
    counts = (("--limit", args.limit), ("--concurrency", args.concurrency), ("--max-new-tokens", args.max_new_tokens))
    for flag, value in counts:
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise ValueError(
            f"--data-dir {args.data_dir} is not a folder: point it at a folder filled by "
            "`openrlhf-cfpo data fetch --to DIR`"
        )
    judge_model, judge_models = _judge_models(args.judge_model)
    model_name = args.model_name or (Path(args.model).name if args.model else args.responses.stem)
    model_size = args.model_size
    if "reasoning" in selection:
        model_size = model_size or _model_size(args.model, args.model_name)
    return {
        "model": args.model,
        "model_name": model_name,
        "benchmarks": {name: list(tasks) if tasks else None for name, tasks in selection.items()},
        "suite": None if args.benchmarks else args.suite,
        "out": str(args.out),
        "backend": args.backend,
        "judge_model": judge_model,
        "judge_models": judge_models,
        "judge_base_url": args.judge_base_url,
        "data_dir": str(args.data_dir) if args.data_dir else None,
        "limit": args.limit,
        "responses": str(args.responses) if args.responses else None,
        "concurrency": args.concurrency,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "model_size": model_size,
    }


def _model_size(*names: Optional[str]) -> str:
    """The paper's model size stated by --model or --model-name, for the reasoning system prompt."""
    for name in names:
        size = model_size_from_name(name) if name else None
        if size:
            return size
    shown = " / ".join(repr(name) for name in names if name)
    raise ValueError(
        f"the reasoning suite prompts with the system prompt the model trained with, one per size, and "
        f"{shown} names no size of the paper's ({', '.join(MODEL_SIZES)}): pass --model-size"
    )


def _check_model(model: str) -> None:
    """--model must be an existing path or have the shape of a Hugging Face id (ORG/NAME or NAME);
    anything else is a checkpoint path that does not exist, refused before any download."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(model).exists():
        return
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1
    if not looks_like_path:
        try:
            validate_repo_id(model)
            return
        except HFValidationError:
            pass
    raise ValueError(f"--model {model} does not exist: pass a checkpoint folder or a Hugging Face model id (ORG/NAME)")


def _judge_models(spec: Optional[str]) -> Tuple[Optional[str], Dict[str, str]]:
    """--judge-model as (judge for all or None, {benchmark: judge}): ``gpt-4.1`` or
    ``mt_bench=gpt-4,alpaca_eval=gpt-4.1`` (a bare name among them covers the benchmarks not named)."""
    from openrlhf_cfpo.evaluation.judge import judged_benchmarks

    judged = judged_benchmarks()
    default: Optional[str] = None
    per_benchmark: Dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        benchmark, assigned, model = (part.strip() for part in item.partition("="))
        if not assigned:
            if default is not None:
                raise ValueError(
                    f"--judge-model names two judges for all benchmarks ({default}, {item}): give one bare name and "
                    "the others as BENCHMARK=NAME"
                )
            default = item
        elif benchmark not in judged:
            raise ValueError(f"--judge-model {item}: {benchmark!r} has no judge: choose from {', '.join(judged)}")
        elif not model or benchmark in per_benchmark:
            raise ValueError(f"--judge-model {item}: give each judged benchmark one model, as {benchmark}=NAME")
        else:
            per_benchmark[benchmark] = model
    return default, per_benchmark


def evaluate(config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Run every selected benchmark; results are recorded after each one. Returns results.json's content.

    Benchmarks that load the model themselves (``OWN_MODEL``: OpenLLM through lm-eval) run after the
    others, once the generation engine is released, so that one GPU never holds both.
    """
    from openrlhf_cfpo.evaluation.context import EvalContext, JudgeSettings
    from openrlhf_cfpo.evaluation.generation import default_backend, make_generator
    from openrlhf_cfpo.evaluation.registry import load_benchmark
    from openrlhf_cfpo.evaluation.results import read_results, record_results, write_run_config

    out_dir = Path(config["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = {name: load_benchmark(name) for name in config["benchmarks"]}
    own_model = {name: getattr(module, "OWN_MODEL", False) for name, module in modules.items()}
    generator = None
    if config["model"] and not config["responses"]:
        config["backend"] = config["backend"] or default_backend()
        if not all(own_model.values()):
            generator = make_generator(
                config["model"], config["backend"], seed=config["seed"], max_new_tokens_cap=config["max_new_tokens"]
            )
            config["generation"] = generator.describe()  # loads the tokenizer: a bad --model fails here
    write_run_config(out_dir, config)
    judge = JudgeSettings(
        model=config["judge_model"], base_url=config["judge_base_url"], concurrency=config["concurrency"],
        models=config["judge_models"],
    )
    for name in sorted(modules, key=own_model.get):  # stable: the listed order within each group
        module, tasks = modules[name], config["benchmarks"][name]
        if own_model[name] and generator is not None:
            generator.release()
            generator = None
        ctx = EvalContext(
            out_dir=out_dir,
            data_dir=Path(config["data_dir"]) if config["data_dir"] else None,
            limit=config["limit"],
            generator=generator,
            responses=Path(config["responses"]) if config["responses"] else None,
            judge=judge,
            model_name=config["model_name"],
            tasks=tuple(tasks) if tasks else None,
            model_path=config["model"],
            backend=config["backend"],
            seed=config["seed"],
            max_new_tokens_cap=config["max_new_tokens"],
            model_size=config["model_size"],
        )
        write_run_config(out_dir / module.NAME, {**config, "benchmarks": {name: tasks}})
        logger.info("%s (%s): starting", module.NAME, module.PROTOCOL)
        started = time.monotonic()
        metrics = module.run(ctx)
        protocol = metrics.pop("protocol", module.PROTOCOL)
        record_results(out_dir, module.NAME, metrics, protocol)
        logger.info("%s: done in %.1fs", module.NAME, time.monotonic() - started)
    return read_results(out_dir)


def _summary(results: Dict[str, Dict[str, Any]]) -> List[str]:
    lines = []
    for name, entry in results.items():
        scores = ", ".join(
            f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in entry.items()
            if key not in ("protocol", "judge", "note", "missing")
        )
        lines.append(f"{name}: {scores}")
    return lines


def run(args: argparse.Namespace, passthrough: List[str]) -> int:
    try:
        config = resolve_config(args)
        results = evaluate(config)
    except ValueError as err:
        logger.debug("eval failed", exc_info=True)
        print(f"openrlhf-cfpo eval: error: {err}", file=sys.stderr)
        return 2
    print("\n".join(_summary(results)))
    print(f"results: {Path(config['out']) / 'results.json'}")
    return 0
