"""Arena-Hard-Auto v0.1: 500 hard prompts, pairwise judgments against gpt-4-0314, Bradley–Terry score.

Protocol (lmarena/arena-hard-auto v0.1: ``gen_answer.py``, ``gen_judgment.py``, ``show_result.py``):

- answers: greedy (temperature 0), at most 4096 new tokens.
- judging: the v0.1 judge config (``legacy/config/judge_config.yaml``: system prompt, prompt template,
  verdict regex ``[[A>>B]]``…, temperature 0, max_tokens 4096, 2 judgment attempts). Every question is
  judged twice: game 1 with the baseline as assistant A, game 2 with the positions swapped. A game
  whose reply holds no verdict label gets the official follow-up ("continue your judgment ...");
  several different labels leave the game without a verdict (dropped, as officially).
- scoring: each game is a battle (model win, baseline win or tie); ``A>>B``/``B>>A`` count 3 times.
  Bradley–Terry ratings by maximum likelihood with the official tie handling (a tie is half a win for
  each side); score = the model's predicted win rate against the baseline, in percent. 95% CI: the
  2.5/97.5 percentiles over 100 bootstrap resamples of the battles (numpy seed 42), taken on the win
  rate (a monotone map of the official's Elo percentiles).
- judge model: ``evaluation/judges/arena_hard.yaml`` (GPT-4.1, the paper's; the v0.1 config names
  gpt-4-1106-preview) unless ``--judge-model``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from openrlhf_cfpo.evaluation.answers import fastchat_format, model_answers
from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_jsonl
from openrlhf_cfpo.evaluation.judge import ChatRequest, load_judge_config, make_judge, reply_text, write_report
from openrlhf_cfpo.runinfo import atomic_write_text

NAME = "arena_hard"
PROTOCOL = (
    "Arena-Hard-Auto v0.1 (lmarena/arena-hard-auto judge_config @9a6791ab, data @7091a237): pairwise vs "
    "gpt-4-0314 in both orders, Bradley-Terry win rate, 95% bootstrap CI (100 rounds, seed 42)"
)

_RAW = "https://raw.githubusercontent.com/lmarena/arena-hard-auto"
QUESTIONS = DataFile(
    "arena_hard_v0.1/legacy/question.jsonl",
    f"{_RAW}/7091a237ccb1f4a33090583b35149faedb4f5ea1/data/arena-hard-v0.1/question.jsonl",
    sha256="4daad38811161c3ba5c248f26b90c3cef89634f4c772002ed9138c1e13f63e9f",
)
BASELINE_ANSWERS = DataFile(
    "arena_hard_v0.1/legacy/model_answer/gpt-4-0314.jsonl",
    f"{_RAW}/7091a237ccb1f4a33090583b35149faedb4f5ea1/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
    sha256="245109b8fe7c3bef0304f1c559d29da377f97f61535ad1170b46a61a08eb9ac7",
)
JUDGE_CONFIG = DataFile(
    "arena_hard_v0.1/legacy/config/judge_config.yaml",
    f"{_RAW}/9a6791abc5c218c57f079fd1132c367bca8a57a1/config/judge_config.yaml",
    sha256="6e001736bacacdb1591ffca7eec953a7089f8f5604872d1ca4f9a6f9de1ee451",
)
DATA_FILES = {NAME: (QUESTIONS, BASELINE_ANSWERS, JUDGE_CONFIG)}  # for `openrlhf-cfpo data`
GENERATION = SamplingSettings(max_new_tokens=4096, temperature=0.0)  # official gen_answer_config
CONTINUE = "continue your judgment and finish by outputting a final verdict label"

# (game, label) -> (winner, weight); game 0 has the baseline as A, game 1 the model as A.
_MODEL, _BASELINE, _TIE = 1.0, 0.0, 0.5


def battle_outcomes(label: Optional[str], game: int, significant_weight: int) -> List[float]:
    """The battles one game's verdict adds, as the model's outcome per battle (1 win, 0 loss, 0.5 tie).

    Official v0.1 mapping: ``A>B`` is a win for A, ``A>>B`` counts ``significant_weight`` times,
    ``A=B`` a tie; any other label (or none) adds nothing.
    """
    a_wins, b_wins = (_BASELINE, _MODEL) if game == 0 else (_MODEL, _BASELINE)
    table = {
        "A>>B": [a_wins] * significant_weight,
        "A>B": [a_wins],
        "A=B": [_TIE],
        "B>A": [b_wins],
        "B>>A": [b_wins] * significant_weight,
    }
    return table.get(label, [])


def parse_verdict(judgment: str, pattern: re.Pattern) -> Tuple[Optional[str], bool]:
    """(label, ask again) as the official ``get_score``: one distinct label → it; none → ask again;
    several different labels → no verdict, do not ask again."""
    labels = {match.strip("\n") for match in pattern.findall(judgment) if match != ""}
    if not labels:
        return None, True
    if len(labels) == 1:
        return labels.pop(), False
    return None, False


def bradley_terry_strengths(wins: np.ndarray, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry strengths π (summing to 1) from a weighted win matrix.

    ``wins[i, j]`` = how often i beat j (a tie counts 0.5 for each side: the official v0.1 fit
    duplicates every battle and turns a tie into one win each). P(i beats j) = π_i / (π_i + π_j),
    i.e. Elo ratings 400·log10(π). Solved by the minorise–maximise iteration (Hunter 2004), which
    also copes with a player that never wins (π → 0) where a logistic-regression fit diverges.
    """
    wins = np.asarray(wins, dtype=np.float64)
    games = wins + wins.T
    strengths = np.full(len(wins), 1.0 / len(wins))
    for _ in range(max_iter):
        pair_sum = strengths[:, None] + strengths[None, :]
        rate = np.divide(games, pair_sum, out=np.zeros_like(games), where=pair_sum > 0)
        np.fill_diagonal(rate, 0.0)
        denominator = rate.sum(axis=1)
        updated = np.divide(wins.sum(axis=1), denominator, out=np.zeros_like(strengths), where=denominator > 0)
        updated /= updated.sum()
        if np.max(np.abs(updated - strengths)) < tol:
            return updated
        strengths = updated
    return strengths


def win_rate_vs_baseline(outcomes: np.ndarray) -> float:
    """The model's Bradley–Terry win probability against the baseline from its battle outcomes."""
    wins = np.array([[0.0, outcomes.sum()], [len(outcomes) - outcomes.sum(), 0.0]])  # [model, baseline]
    strengths = bradley_terry_strengths(wins)
    return float(strengths[0] / (strengths[0] + strengths[1]))


def score_battles(outcomes: Sequence[float], rounds: int, seed: int) -> Dict[str, Optional[float]]:
    """score, ci_low, ci_high in percent (see the module docstring)."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if len(outcomes) == 0:
        return {"score": None, "ci_low": None, "ci_high": None}
    rng = np.random.default_rng(seed)
    boot = [win_rate_vs_baseline(outcomes[rng.integers(0, len(outcomes), len(outcomes))]) for _ in range(rounds)]
    return {
        "score": 100 * win_rate_vs_baseline(outcomes),
        "ci_low": 100 * float(np.percentile(boot, 2.5)),
        "ci_high": 100 * float(np.percentile(boot, 97.5)),
    }


def load_answers(path: Path, where: str) -> Dict[str, str]:
    """question_id -> answer text from an Arena-Hard v0.1 ``model_answer`` jsonl (choices[0].turns[0].content)."""
    answers = {}
    for lineno, record in enumerate(read_jsonl(path, required=("question_id", "choices")), start=1):
        try:
            content = record["choices"][0]["turns"][0]["content"]
        except (IndexError, KeyError, TypeError) as err:
            raise DataError(
                f"{path} line {lineno}: no choices[0].turns[0].content ({err!r}): {where} must be in Arena-Hard "
                "v0.1 model_answer format"
            ) from err
        if not isinstance(content, str):
            raise DataError(f"{path} line {lineno}: choices[0].turns[0].content is not a string")
        answers[str(record["question_id"])] = content
    return answers


def _model_answers(ctx: EvalContext, questions: List[Dict[str, Any]]) -> Dict[str, str]:
    def generate() -> List[str]:
        chats = [[{"role": "user", "content": q["turns"][0]["content"]}] for q in questions]
        return ctx.generator.generate(chats, GENERATION)

    ids = [str(q["question_id"]) for q in questions]
    answer_format = fastchat_format(load_answers, as_turns=lambda text: [{"content": text}])
    return model_answers(ctx, NAME, ids, answer_format, generate, sampling=[GENERATION])


def _load_official_config(path: Path) -> Dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path} is not a readable YAML file ({err}): replace it with the original file") from err
    keys = ("system_prompt", "prompt_template", "regex_pattern", "temperature", "max_tokens", "number_of_judgment_attempts")
    if not isinstance(config, dict) or any(key not in config for key in keys):
        raise DataError(f"{path} is not the Arena-Hard v0.1 judge config (needs {', '.join(keys)})")
    return config


def run(ctx: EvalContext) -> Dict[str, Optional[float]]:
    settings = load_judge_config(NAME)
    official = _load_official_config(locate(JUDGE_CONFIG, ctx.data_dir))
    questions = read_jsonl(locate(QUESTIONS, ctx.data_dir), required=("question_id", "turns"))[: ctx.limit]
    baseline = load_answers(locate(BASELINE_ANSWERS, ctx.data_dir), "the baseline answer file")
    out = Path(ctx.out_dir) / NAME
    out.mkdir(parents=True, exist_ok=True)
    answers = _model_answers(ctx, questions)

    judge = make_judge(ctx, NAME, settings["model"])
    template = official["prompt_template"][0]
    pattern = re.compile(official["regex_pattern"])
    conversations: Dict[Tuple[str, int], List[Dict[str, str]]] = {}
    for question in questions:
        qid = str(question["question_id"])
        if qid not in baseline:
            raise DataError(f"the baseline answers hold no answer for question {qid}: restore the original file")
        pair = (baseline[qid], answers[qid])
        for game in (0, 1):
            answer_a, answer_b = pair if game == 0 else pair[::-1]
            prompt = template.format(question_1=question["turns"][0]["content"], answer_1=answer_a, answer_2=answer_b)
            conversations[qid, game] = [
                {"role": "system", "content": official["system_prompt"]},
                {"role": "user", "content": prompt},
            ]

    judgments = {key: "" for key in conversations}
    labels: Dict[Tuple[str, int], Optional[str]] = {}
    pending = list(conversations)
    for attempt in range(1, official["number_of_judgment_attempts"] + 1):
        requests = [
            ChatRequest(conversations[key], max_tokens=official["max_tokens"], temperature=official["temperature"])
            for key in pending
        ]
        replies = judge.complete(requests, desc=f"arena_hard judge (attempt {attempt})")
        asked_again = []
        for key, reply in zip(pending, replies):
            text = reply_text(reply)
            judgments[key] += "\n" + text
            labels[key], again = parse_verdict(judgments[key], pattern)
            conversations[key] = [*conversations[key], {"role": "assistant", "content": text}]
            if again:
                conversations[key].append({"role": "user", "content": CONTINUE})
                asked_again.append(key)
        pending = asked_again
        if not pending:
            break

    records, outcomes = [], []
    for question in questions:
        qid = str(question["question_id"])
        games = []
        for game in (0, 1):
            games.append({"user_prompt": conversations[qid, game][1]["content"], "judgment": judgments[qid, game],
                          "score": labels[qid, game]})
            outcomes += battle_outcomes(labels[qid, game], game, settings["significant_weight"])
        records.append({"question_id": qid, "model": ctx.model_name, "judge": judge.model, "games": games})
    atomic_write_text(out / "judgments.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    metrics = score_battles(outcomes, settings["bootstrap_rounds"], settings["bootstrap_seed"])
    unlabeled = sum(label is None for label in labels.values())
    write_report(
        out / "results.md", "Arena-Hard v0.1", PROTOCOL, judge, metrics,
        [f"{len(questions)} questions, {len(labels)} games, {len(outcomes)} weighted battles; "
         f"{unlabeled} games without a verdict (dropped). Score and CI: win rate (%) against "
         f"{settings['baseline_model']}; the baseline scores 50."],
    )
    return {**metrics, "judge": judge.model}
