"""The evaluated model's answers to a judged benchmark, saved per generation identity and reused.

Answers are saved under ``OUT/<benchmark>/answers/<key>/`` with ``generation.json`` beside them;
``key`` is a hash of what decides the answers besides the questions: the benchmark, the generator's
``describe()`` (model path or Hub id and a fingerprint of a checkpoint folder, backend, seed,
--max-new-tokens, chat template, stop tokens) and the benchmark's sampling settings. A later run
reuses a file only under the same key, so a second checkpoint or a smoke run with a smaller
--max-new-tokens evaluated into the same ``--out`` generates into its own folder and never judges
another model's answers. The judge cache is keyed by content, so judgments already paid for are
found again whenever the same answers come back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Sequence, TypeVar

from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

Id = TypeVar("Id")
Answer = TypeVar("Answer")
IDENTITY_FILE = "generation.json"


@dataclass(frozen=True)
class AnswerFormat(Generic[Id, Answer]):
    """A benchmark's official answer file: its name, reader (``{id: answer}``) and writer."""

    filename: str
    load: Callable[[Path, str], Dict[Id, Answer]]  # (path, what it is, for errors) -> {id: answer}
    dump: Callable[[Sequence[Id], Sequence[Answer], str], str]  # (ids, answers, model name) -> file text


def fastchat_format(load: Callable[[Path, str], Dict[Id, Answer]], as_turns: Callable[[Answer], List[Any]]) -> AnswerFormat:
    """FastChat's ``model_answer`` jsonl (MT-Bench, Arena-Hard), each answer's ``choices[0].turns`` from ``as_turns``."""

    def dump(ids: Sequence[Id], answers: Sequence[Answer], model_name: str) -> str:
        records = [
            {"question_id": qid, "answer_id": f"{model_name}-{qid}", "model_id": model_name,
             "choices": [{"index": 0, "turns": as_turns(answer)}]}
            for qid, answer in zip(ids, answers)
        ]
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    return AnswerFormat("model_answer.jsonl", load, dump)


def generation_identity(ctx: EvalContext, benchmark: str, sampling: Sequence[SamplingSettings]) -> Dict[str, Any]:
    """What the answers of ``benchmark`` depend on besides its questions (see the module docstring)."""
    return {
        "benchmark": benchmark,
        **ctx.generator.describe(),
        "sampling": [asdict(ctx.generator.capped(s)) for s in sampling],
    }


def identity_key(identity: Dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _differences(folder: Path, identity: Dict[str, Any]) -> List[str]:
    """One line per other identity saved beside ``folder``: the fields in which it differs."""
    lines = []
    for other in sorted(folder.parent.glob(f"*/{IDENTITY_FILE}")):
        if other.parent == folder:
            continue
        try:
            saved = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fields = sorted(k for k in {*saved, *identity} if saved.get(k) != identity.get(k))
        lines.append(f"{other.parent.name} (differs in {', '.join(fields)})")
    return lines


def model_answers(
    ctx: EvalContext,
    benchmark: str,
    ids: Sequence[Id],
    answer_format: AnswerFormat,
    generate: Callable[[], List[Answer]],
    sampling: Sequence[SamplingSettings],
) -> Dict[Id, Answer]:
    """Each question's answer, from the first source that has them all:

    1. ``--responses`` (every id must be answered: a clear error names the first missing one);
    2. the answers saved by an earlier run with the same generation identity (``sampling`` = the
       settings ``generate`` uses);
    3. ``generate()`` (answers in ``ids`` order), saved atomically for the next run.
    """
    if ctx.responses is not None:
        answers = answer_format.load(ctx.responses, "--responses")
        missing = [qid for qid in ids if qid not in answers]
        if missing:
            raise DataError(
                f"{ctx.responses} has no answer for {len(missing)} {benchmark} question(s), e.g. "
                f"{str(missing[0])[:60]!r}: answer every question (or pass --limit N to score the first N)"
            )
        return {qid: answers[qid] for qid in ids}
    if ctx.generator is None:
        raise ValueError(f"{benchmark} needs a model (--model) or answers (--responses)")
    identity = generation_identity(ctx, benchmark, sampling)
    folder = Path(ctx.out_dir) / benchmark / "answers" / identity_key(identity)
    saved = folder / answer_format.filename
    if saved.is_file():
        answers = answer_format.load(saved, "the saved answers")
        if all(qid in answers for qid in ids):
            logger.info("%s: reusing the answers in %s (same model and generation settings)", benchmark, saved)
            return {qid: answers[qid] for qid in ids}
    others = _differences(folder, identity)
    if others:
        logger.info("%s: answers saved under other generation settings are not reused: %s", benchmark, "; ".join(others))
    generated = generate()
    atomic_write_json(folder / IDENTITY_FILE, identity)
    atomic_write_text(saved, answer_format.dump(ids, generated, ctx.model_name))
    logger.info("%s: answers saved to %s", benchmark, saved)
    return dict(zip(ids, generated))
