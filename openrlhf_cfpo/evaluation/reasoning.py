"""Reasoning benchmarks of the paper's Tables 5–10: MATH500, GSM8K, AIME24, GPQA-Diamond.

Every problem is one chat with the system prompt the model trained with (the paper's appendix B.1
prompt for its size, ``openrlhf_cfpo.prompts``), sampled once
at temperature 0.6, top-p 0.95; accuracy (pass@1) is the share of replies that math-verify judges
equal to the reference answer. GPQA-Diamond is multiple choice: the four options are shuffled
with a fixed per-question seed, shown as A–D, and the letter the reply gives (``\\boxed{B}`` or
``Answer: B``) is checked with math-verify's string extraction.

A task whose data is unavailable (GPQA is gated; offline without ``--data-dir``) is reported as
``null`` and listed under ``missing`` when other tasks ran; when no selected task can run, the
data error is raised.
"""

from __future__ import annotations

import io
import json
import logging
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_csv_records, read_jsonl
from openrlhf_cfpo.prompts import rlvr_system_prompt
from openrlhf_cfpo.runinfo import atomic_write_text

logger = logging.getLogger(__name__)

NAME = "reasoning"
TASKS = ("math500", "gsm8k", "aime24", "gpqa_diamond")
PROTOCOL = (
    "the RLVR system prompt of the model's size (paper appendix B.1), temperature 0.6, top-p 0.95, max 3072 new tokens, 1 sample per problem (pass@1); "
    "answers checked with math-verify 0.9.0; MATH500 (PRM800K test split), GSM8K test (1319), "
    "AIME 2024 I+II (30), GPQA-Diamond (198, options shuffled with seed = question index)"
)
SAMPLING = SamplingSettings(max_new_tokens=3072, temperature=0.6, top_p=0.95)

CHOICE_LETTERS = ("A", "B", "C", "D")
GPQA_ACCESS = (
    "accept the dataset's terms at https://huggingface.co/datasets/Idavidrein/gpqa and export HF_TOKEN, "
    "or put gpqa_diamond/gpqa_diamond.csv under --data-dir"
)


def _parquet_to_jsonl(payload: bytes) -> str:
    import pandas

    frame = pandas.read_parquet(io.BytesIO(payload))
    frame.columns = [str(column).lower() for column in frame.columns]
    return "".join(json.dumps({k: str(v) for k, v in row.items()}) + "\n" for row in frame.to_dict("records"))


DATA = {
    "math500": DataFile(
        "math500/test.jsonl", "https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl"
    ),
    "gsm8k": DataFile(
        "gsm8k/test.jsonl",
        "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
    ),
    "aime24": DataFile(
        "aime24/test.jsonl",
        "https://huggingface.co/datasets/Maxwell-Jia/AIME_2024/resolve/main/aime_2024_problems.parquet",
        convert=_parquet_to_jsonl,
    ),
    "gpqa_diamond": DataFile(
        "gpqa_diamond/gpqa_diamond.csv",
        "https://huggingface.co/datasets/Idavidrein/gpqa/resolve/main/gpqa_diamond.csv",
        access=GPQA_ACCESS,
    ),
}

Problem = Dict[str, Any]  # {"id", "question" (user turn), "gold" (reference answer), "choices"?: [...]}


def _math_problems(path: Path) -> List[Problem]:
    rows = read_jsonl(path, required=("problem", "answer"))
    return [
        {"id": row.get("unique_id", row.get("id", i)), "question": row["problem"], "gold": str(row["answer"])}
        for i, row in enumerate(rows)
    ]


def _gsm8k_problems(path: Path) -> List[Problem]:
    rows = read_jsonl(path, required=("question", "answer"))
    problems = []
    for i, row in enumerate(rows):
        if "####" not in row["answer"]:
            raise DataError(f"{path} line {i + 1}: GSM8K answer lacks the '#### N' final answer")
        gold = row["answer"].split("####")[-1].strip().replace(",", "")
        problems.append({"id": i, "question": row["question"], "gold": gold})
    return problems


def _gpqa_problems(path: Path) -> List[Problem]:
    columns = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    problems = []
    for i, row in enumerate(read_csv_records(path, required=columns)):
        options = [row[c].strip() for c in columns[1:]]
        order = list(range(4))
        random.Random(i).shuffle(order)
        shown = [options[k] for k in order]
        gold = CHOICE_LETTERS[order.index(0)]
        listing = "\n".join(f"{letter}) {text}" for letter, text in zip(CHOICE_LETTERS, shown))
        question = f"{row['Question'].strip()}\n\n{listing}\n\nAnswer with the letter of the correct option."
        problems.append({"id": i, "question": question, "gold": gold, "choices": shown})
    return problems


LOADERS: Dict[str, Callable[[Path], List[Problem]]] = {
    "math500": _math_problems,
    "gsm8k": _gsm8k_problems,
    "aime24": _math_problems,
    "gpqa_diamond": _gpqa_problems,
}


def is_correct(task: str, reply: str, gold: str) -> bool:
    """math-verify's verdict on ``reply`` against the reference answer (letters for GPQA)."""
    from math_verify import LatexExtractionConfig, StringExtractionConfig, parse, verify

    if task == "gpqa_diamond":
        config = [LatexExtractionConfig(), StringExtractionConfig(strings=CHOICE_LETTERS)]
        return verify(parse(f"\\boxed{{{gold}}}", extraction_config=config), parse(reply, extraction_config=config))
    return verify(parse(f"${gold}$"), parse(reply))


def conversation(problem: Problem, system_prompt: str) -> List[Dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem["question"]}]


def run(ctx: EvalContext) -> Dict[str, Any]:
    if ctx.responses is not None:
        raise ValueError("reasoning does not score --responses: pass --model to generate and check answers")
    if ctx.generator is None:
        raise ValueError("reasoning needs --model (a checkpoint to generate with)")
    if ctx.model_size is None:
        raise ValueError("reasoning needs the model's size for its system prompt: pass --model-size")
    system_prompt = rlvr_system_prompt(ctx.model_size)
    tasks = ctx.tasks or TASKS
    loaded: Dict[str, List[Problem]] = {}
    errors: Dict[str, str] = {}
    for task in tasks:
        try:
            loaded[task] = LOADERS[task](locate(DATA[task], ctx.data_dir))[: ctx.limit]
        except DataError as err:
            errors[task] = str(err)
            logger.warning("reasoning.%s skipped: %s", task, err)
    if not loaded:
        raise DataError("; ".join(f"{task}: {message}" for task, message in errors.items()))

    flat: List[Tuple[str, Problem]] = [(task, p) for task, problems in loaded.items() for p in problems]
    replies = ctx.generator.generate([conversation(p, system_prompt) for _, p in flat], SAMPLING)
    folder = Path(ctx.out_dir) / NAME
    metrics: Dict[str, Any] = {task: None for task in tasks}
    records = []
    for (task, problem), reply in zip(flat, replies):
        records.append({"task": task, "id": problem["id"], "gold": problem["gold"], "response": reply,
                        "correct": is_correct(task, reply, problem["gold"])})
    atomic_write_text(folder / "generations.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    for task in loaded:
        verdicts = [r["correct"] for r in records if r["task"] == task]
        metrics[task] = sum(verdicts) / len(verdicts)
    if errors:
        metrics["missing"] = list(errors)
        metrics["note"] = " ".join(f"{task} not evaluated: {message}" for task, message in errors.items())
    return metrics
