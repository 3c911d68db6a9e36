"""The evaluated model's answers for the judged benchmarks in FastChat's ``model_answer`` format."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, TypeVar

from openrlhf_cfpo.evaluation.context import EvalContext
from openrlhf_cfpo.evaluation.data import DataError
from openrlhf_cfpo.runinfo import atomic_write_text

logger = logging.getLogger(__name__)

Id = TypeVar("Id")
Answer = TypeVar("Answer")


def model_answers(
    ctx: EvalContext,
    benchmark: str,
    ids: Sequence[Id],
    load_answers: Callable[[Path, str], Dict[Id, Answer]],
    generate: Callable[[], List[Answer]],
    as_turns: Callable[[Answer], List[Any]],
) -> Dict[Id, Answer]:
    """Each question's answer, from the first source that has them all:

    1. ``--responses`` (every id must be answered: a clear error names the first missing one);
    2. ``OUT/<benchmark>/model_answer.jsonl`` from an earlier run over the same questions;
    3. ``generate()`` (answers in ``ids`` order), saved there atomically with each answer's
       ``choices[0].turns`` given by ``as_turns``.

    ``load_answers(path, where)`` reads the benchmark's official answer file into ``{id: answer}``.
    """
    if ctx.responses is not None:
        answers = load_answers(ctx.responses, "--responses")
        missing = [qid for qid in ids if qid not in answers]
        if missing:
            raise DataError(
                f"{ctx.responses} has no answer for {len(missing)} {benchmark} question(s), e.g. {missing[0]}: "
                "answer every question (or pass --limit N to score the first N)"
            )
        return {qid: answers[qid] for qid in ids}
    saved = ctx.out_dir / benchmark / "model_answer.jsonl"
    if saved.is_file():
        answers = load_answers(saved, "the saved answers")
        if all(qid in answers for qid in ids):
            logger.info("%s: reusing the answers in %s (delete it to generate again)", benchmark, saved)
            return {qid: answers[qid] for qid in ids}
    if ctx.generator is None:
        raise ValueError(f"{benchmark} needs a model (--model) or answers (--responses)")
    generated = generate()
    records = [
        {"question_id": qid, "answer_id": f"{ctx.model_name}-{qid}", "model_id": ctx.model_name,
         "choices": [{"index": 0, "turns": as_turns(answer)}]}
        for qid, answer in zip(ids, generated)
    ]
    atomic_write_text(saved, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return dict(zip(ids, generated))
