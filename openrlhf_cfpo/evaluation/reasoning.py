"""Reasoning benchmarks of the paper's Tables 5–10: MATH500, GSM8K, AIME24, GPQA-Diamond.

Every problem is one chat with the system prompt the model trained with (the paper's appendix B.1
prompt for its size, ``openrlhf_cfpo.prompts``), sampled once
at temperature 0.6, top-p 0.95; accuracy (pass@1) is the share of replies that math-verify judges
equal to the reference answer. GPQA-Diamond is multiple choice: the four options are shuffled
with a fixed per-question seed and shown as ``A) …`` to ``D) …`` after an instruction asking for a
last line ``Answer: X`` (the style of lighteval's GPQA prompt). Only an anchored answer counts
(``gpqa_choice``): ``Answer: X`` or ``\\boxed{X}`` (also ``\\boxed{X) text}``); a letter anywhere else
in the reply, as in "A dog is not relevant" or a reply cut off mid-reasoning, is no answer (wrong).

A task whose data is unavailable (GPQA is gated; offline without ``--data-dir``) is reported as
``null`` and listed under ``missing`` when other tasks ran; when no selected task can run, the
data error is raised.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_csv_records, read_jsonl
from openrlhf_cfpo.prompts import rlvr_system_prompt
from openrlhf_cfpo.runinfo import atomic_write_text

logger = logging.getLogger(__name__)

NAME = "reasoning"
TASKS = ("math500", "gsm8k", "aime24", "gpqa_diamond")
GPQA_INSTRUCTION = (
    "Choose the correct option for the question below. Reason step by step, then end your reply with a last "
    "line of the form 'Answer: X', where X is A, B, C or D."
)
PROTOCOL = (
    "the RLVR system prompt of the model's size (paper appendix B.1), temperature 0.6, top-p 0.95, max 3072 new "
    "tokens, 1 sample per problem (pass@1); answers checked with math-verify 0.9.0; MATH500 (PRM800K test split), "
    "GSM8K test (1319), AIME 2024 I+II (30), GPQA-Diamond (198, options shuffled with seed = question index; "
    f"user turn: \"{GPQA_INSTRUCTION}\" + question + options \"A) ...\" to \"D) ...\"; "
    "scored on the last 'Answer: X' or \\boxed{X} of the reply, no such answer = wrong)"
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


def _math_tar_to_jsonl(payload: bytes) -> str:
    import tarfile

    problems = {}
    with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        for member in archive.getmembers():
            parts = member.name.removeprefix("./").split("/")
            if member.isfile() and len(parts) == 4 and parts[1] == "train" and parts[3].endswith(".json"):
                record = json.loads(archive.extractfile(member).read())
                record["unique_id"] = "/".join(parts[1:])
                problems[(parts[2], int(parts[3][: -len(".json")]))] = record
    if not problems:
        raise DataError("MATH.tar holds no MATH/train/<subject>/<n>.json files: is this the MATH release?")
    return "".join(json.dumps(problems[key]) + "\n" for key in sorted(problems))


GSM8K_RAW = (
    "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/"
    "grade_school_math/data"
)
DATA = {
    "math500": DataFile(
        "math500/test.jsonl", "https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl"
    ),
    "gsm8k": DataFile(
        "gsm8k/test.jsonl",
        f"{GSM8K_RAW}/test.jsonl",
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
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

# The MATH train split (the RLVR prompts of examples/trl, and the reward tests' reference answers), from
# the original release's tarball: every train/<subject>/<n>.json as one line plus "unique_id" (PRM800K's
# convention), sorted by subject then n. The conversion is deterministic but the tarball was not compared
# with the CI mirror's copy, so the file is parse-checked only.
MATH_TRAIN = DataFile(
    "math_train/train.jsonl", "https://people.eecs.berkeley.edu/~hendrycks/MATH.tar", convert=_math_tar_to_jsonl
)
# for `openrlhf-cfpo data`: one entry per task, plus the training split
DATA_FILES = {**{task: (spec,) for task, spec in DATA.items()}, "math_train": (MATH_TRAIN,)}

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
        question = f"{GPQA_INSTRUCTION}\n\n{row['Question'].strip()}\n\n{listing}"
        problems.append({"id": i, "question": question, "gold": gold, "choices": shown})
    return problems


LOADERS: Dict[str, Callable[[Path], List[Problem]]] = {
    "math500": _math_problems,
    "gsm8k": _gsm8k_problems,
    "aime24": _math_problems,
    "gpqa_diamond": _gpqa_problems,
}


_OPTION = re.compile(r"\(?([A-D])(?:\)?[.:]?|[).:]\s+.*)", re.DOTALL)  # B | (B) | B. | B) text | (B) text
_ANSWER_LINE = re.compile(r"(?<![A-Za-z])answer\s*[*_]*\s*:(.*)$", re.IGNORECASE | re.MULTILINE)
_BOXED = "\\boxed{"
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm)\{(.*)\}", re.DOTALL)


def _option_letter(fragment: str) -> Optional[str]:
    """The option letter that ``fragment`` (what follows ``Answer:``, or a box's content) consists of."""
    match = _OPTION.fullmatch(fragment.strip().strip("*_$").strip())
    return match.group(1) if match else None


def _boxed_contents(reply: str) -> List[Tuple[int, str]]:
    """(position, content) of every ``\\boxed{...}``, braces balanced."""
    boxes = []
    start = reply.find(_BOXED)
    while start != -1:
        depth, end = 1, start + len(_BOXED)
        while end < len(reply) and depth:
            depth += {"{": 1, "}": -1}.get(reply[end], 0)
            end += 1
        if depth == 0:
            content = reply[start + len(_BOXED) : end - 1]
            wrapped = _TEXT_WRAPPER.fullmatch(content.strip())
            boxes.append((start, wrapped.group(1) if wrapped else content))
        start = reply.find(_BOXED, start + 1)
    return boxes


def gpqa_choice(reply: str) -> Optional[str]:
    """The letter of the reply's last anchored answer: ``Answer: X`` (markdown emphasis and ``(X)``,
    ``X)``, ``X) text`` allowed) or ``\\boxed{X}`` / ``\\boxed{X) text}`` / ``\\boxed{\\text{X}}``; None
    when there is none (a letter elsewhere in prose is no answer)."""
    candidates = [(m.start(), m.group(1)) for m in _ANSWER_LINE.finditer(reply)] + _boxed_contents(reply)
    letters = [(position, _option_letter(fragment)) for position, fragment in candidates]
    answered = [letter for _, letter in sorted(letters) if letter is not None]
    return answered[-1] if answered else None


def is_correct(task: str, reply: str, gold: str) -> bool:
    """GPQA: the anchored letter equals the gold letter; the others: math-verify's verdict on ``reply``."""
    from math_verify import parse, verify

    if task == "gpqa_diamond":
        return gpqa_choice(reply) == gold
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
