"""MT-Bench: 80 two-turn questions, single-answer grading 1–10 by an LLM judge (FastChat llm_judge).

Protocol (FastChat ``gen_model_answer.py``, ``gen_judgment.py --mode single``, ``show_result.py``),
run with the current ``openai`` client instead of fschat's pre-1.0 one:

- answers: turn 1, then turn 2 with turn 1 in the context; temperature per category (writing and
  roleplay 0.7, stem and humanities 0.1, the others 0), at most 1024 new tokens.
- judging: turn 1 with ``single-v1``, turn 2 with ``single-v1-multi-turn``; math, reasoning and coding
  with ``single-math-v1[-multi-turn]``, guided by the GPT-4 reference answers. Judge sampling:
  temperature 0, max_tokens 2048 (``evaluation/judges/mt_bench.yaml``; judge GPT-4).
- rating: the first ``[[x]]`` in the judgment, else the first ``[x]``, read as a number (``[[08]]`` is
  8, ``[[8.5]]`` 8.5); none → -1, left out of the means.
- metrics: ``turn1``/``turn2`` = mean rating of that turn, ``score`` = mean over every rated turn,
  ``unrated`` = judged turns without a rating.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from openrlhf_cfpo.evaluation.answers import fastchat_format, model_answers
from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_jsonl
from openrlhf_cfpo.evaluation.judge import ChatRequest, load_judge_config, make_judge, reply_text, write_report
from openrlhf_cfpo.runinfo import atomic_write_text

NAME = "mt_bench"
PROTOCOL = (
    "MT-Bench (lm-sys/FastChat llm_judge @0e6d3e4b): single-answer grading 1-10, judge prompts single-v1 / "
    "single-math-v1 (+ multi-turn), GPT-4 reference answers for math, reasoning, coding"
)

_RAW = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
QUESTIONS = DataFile(
    "mt_bench/question.jsonl", f"{_RAW}/mt_bench/question.jsonl",
    sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
)
JUDGE_PROMPTS = DataFile(
    "mt_bench/judge_prompts.jsonl", f"{_RAW}/judge_prompts.jsonl",
    sha256="fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
)
_REFERENCE_SHA256 = {"gpt-4": "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f"}


def reference_file(model: str) -> DataFile:
    return DataFile(
        f"mt_bench/reference_answer/{model}.jsonl", f"{_RAW}/mt_bench/reference_answer/{model}.jsonl",
        sha256=_REFERENCE_SHA256.get(model),
    )


# what `openrlhf-cfpo data fetch/verify` handle (the judge config's reference model is gpt-4)
DATA_FILES = {NAME: (QUESTIONS, JUDGE_PROMPTS, reference_file("gpt-4"))}


NEED_REFERENCE = ("math", "reasoning", "coding")
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}  # others: 0.0
MAX_NEW_TOKENS = 1024


def generation_settings(temperature: float) -> SamplingSettings:
    return SamplingSettings(max_new_tokens=MAX_NEW_TOKENS, temperature=temperature)


SAMPLINGS = [generation_settings(t) for t in sorted({0.0, *TEMPERATURE.values()})]  # every setting _generate uses
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(judgment: str) -> float:
    """FastChat's rating: the first ``[[x]]``, else the first ``[x]``, as a number; -1 when there is none.

    FastChat reads the number with ``ast.literal_eval``, which rejects a leading zero (``[[08]]``);
    ``float`` reads every string the patterns match.
    """
    match = RATING.search(judgment) or RATING_BACKUP.search(judgment)
    return float(match.group(1)) if match else -1.0


def load_answers(path: Path, where: str) -> Dict[int, List[str]]:
    """question_id -> [turn 1, turn 2] from a FastChat ``model_answer`` jsonl (choices[0].turns)."""
    answers = {}
    for lineno, record in enumerate(read_jsonl(path, required=("question_id", "choices")), start=1):
        try:
            turns = record["choices"][0]["turns"]
        except (IndexError, KeyError, TypeError) as err:
            raise DataError(f"{path} line {lineno}: no choices[0].turns: {where} must be FastChat model_answer jsonl") from err
        if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, str) for t in turns[:2]):
            raise DataError(
                f"{path} line {lineno}: choices[0].turns must hold the two answers as strings: {where} must be "
                "FastChat MT-Bench model_answer jsonl"
            )
        answers[int(record["question_id"])] = turns[:2]
    return answers


def _generate(ctx: EvalContext, questions: List[Dict[str, Any]]) -> List[List[str]]:
    """Both turns for every question; one generate call per (turn, temperature)."""
    conversations = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    answers: List[List[str]] = [[] for _ in questions]
    by_temperature: Dict[float, List[int]] = {}
    for index, question in enumerate(questions):
        by_temperature.setdefault(TEMPERATURE.get(question["category"], 0.0), []).append(index)
    for turn in (0, 1):
        for temperature, indices in sorted(by_temperature.items()):
            texts = ctx.generator.generate([conversations[i] for i in indices], generation_settings(temperature))
            for index, text in zip(indices, texts):
                answers[index].append(text)
                conversations[index] = [*conversations[index], {"role": "assistant", "content": text}]
                if turn == 0:
                    conversations[index].append({"role": "user", "content": questions[index]["turns"][1]})
    return answers


def _model_answers(ctx: EvalContext, questions: List[Dict[str, Any]]) -> Dict[int, List[str]]:
    ids = [int(q["question_id"]) for q in questions]
    answer_format = fastchat_format(load_answers, as_turns=list)
    return model_answers(ctx, NAME, ids, answer_format, lambda: _generate(ctx, questions), sampling=SAMPLINGS)


def judge_prompt(prompt: Dict[str, str], question: Dict[str, Any], answer: List[str], reference: Optional[List[str]], turn: int) -> str:
    """The user message of FastChat's ``run_judge_single`` for one turn (1 or 2)."""
    kwargs = {}
    if reference is not None:
        kwargs["ref_answer_1"] = reference[0]
        if turn == 2:
            kwargs["ref_answer_2"] = reference[1]
    if turn == 2:
        return prompt["prompt_template"].format(
            question_1=question["turns"][0], question_2=question["turns"][1],
            answer_1=answer[0], answer_2=answer[1], **kwargs,
        )
    return prompt["prompt_template"].format(question=question["turns"][0], answer=answer[0], **kwargs)


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def run(ctx: EvalContext) -> Dict[str, Optional[float]]:
    settings = load_judge_config(NAME)
    questions = read_jsonl(locate(QUESTIONS, ctx.data_dir), required=("question_id", "category", "turns"))[: ctx.limit]
    prompts = {p["name"]: p for p in read_jsonl(locate(JUDGE_PROMPTS, ctx.data_dir), required=("name", "system_prompt", "prompt_template"))}
    references = {
        int(r["question_id"]): r["choices"][0]["turns"]
        for r in read_jsonl(locate(reference_file(settings["reference_answers"]), ctx.data_dir), required=("question_id", "choices"))
    }
    out = Path(ctx.out_dir) / NAME
    out.mkdir(parents=True, exist_ok=True)
    answers = _model_answers(ctx, questions)

    jobs = []  # (question, turn, prompt name, user prompt)
    for question in questions:
        qid = int(question["question_id"])
        needs_reference = question["category"] in NEED_REFERENCE
        if needs_reference and qid not in references:
            raise DataError(f"no reference answer for MT-Bench question {qid} ({question['category']}): restore the reference file")
        reference = references[qid] if needs_reference else None
        for turn in (1, 2):
            name = ("single-math-v1" if needs_reference else "single-v1") + ("-multi-turn" if turn == 2 else "")
            if name not in prompts:
                raise DataError(f"judge prompt {name!r} missing from the MT-Bench judge_prompts.jsonl: restore the original file")
            jobs.append((question, turn, name, judge_prompt(prompts[name], question, answers[qid], reference, turn)))

    judge = make_judge(ctx, NAME, settings["model"])
    requests = [
        ChatRequest(
            [{"role": "system", "content": prompts[name]["system_prompt"]}, {"role": "user", "content": user_prompt}],
            max_tokens=settings["max_tokens"], temperature=settings["temperature"],
        )
        for _, _, name, user_prompt in jobs
    ]
    replies = judge.complete(requests)

    records = []
    ratings: Dict[int, List[float]] = {1: [], 2: []}
    for (question, turn, name, user_prompt), reply in zip(jobs, replies):
        judgment = reply_text(reply)
        rating = parse_rating(judgment)
        if rating != -1:
            ratings[turn].append(rating)
        records.append({"question_id": question["question_id"], "model": ctx.model_name, "judge": [judge.model, name],
                        "user_prompt": user_prompt, "judgment": judgment, "score": rating, "turn": turn})
    atomic_write_text(out / "judgments.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    unrated = len(records) - len(ratings[1]) - len(ratings[2])
    metrics = {"score": _mean(ratings[1] + ratings[2]), "turn1": _mean(ratings[1]), "turn2": _mean(ratings[2]),
               "unrated": unrated}
    write_report(
        out / "results.md", "MT-Bench", PROTOCOL, judge, metrics,
        [f"{len(questions)} questions, {len(records)} judged turns, {unrated} without a rating (left out)."],
    )
    return {**metrics, "judge": judge.model}
