"""MATH answer reward in OpenRLHF 0.11.2's reward-function file format (the RLVR recipes), and as
verl's custom reward function (``compute_score``, examples/verl/).

    --reward.remote_url <path of this file>  --data.label_key solution

OpenRLHF loads this file by path (``importlib.util.spec_from_file_location``), so it imports only
installed packages, and calls ``reward_func(queries, prompts, labels)`` from a worker thread of a
vLLM engine actor, once per sample.

- query: the decoded prompt + response (special tokens kept). The response is the text after the
  prompt, cut at the first end-of-turn marker, so a ``\\boxed{}`` in the system prompt or in a turn
  the model invents after its own never counts.
- label: a MATH ``solution`` (the reference answer is its last ``\\boxed{...}``, Hendrycks' rule)
  or a bare reference answer (a label without ``\\boxed`` is the answer itself).
- reward = score = 1.0 when the response's last ``\\boxed{...}`` is equivalent to the reference
  answer under math-verify (``\\frac{1}{2}`` = ``0.5``, ``(3, -1)`` = ``(3,-1)``, ...), else 0.0;
  a response without ``\\boxed`` gets 0.0. ``extra_logs["has_boxed_answer"]`` logs the format rate.

math-verify's timeouts use ``signal.alarm``, which works only in the main thread; in OpenRLHF's
worker threads they are off, and answers longer than ``MAX_ANSWER_CHARS`` score 0 unparsed instead.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional

import torch
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

BOXED_COMMANDS = ("\\boxed", "\\fbox")
# End-of-turn / end-of-text markers of the chat templates the recipes use (Qwen2.5, Llama 3).
END_OF_TURN_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")
# Where the query does not start with the prompt (OpenRLHF cut the prompt from the left to fit
# --data.max_len), the response starts after this many trailing characters of the prompt.
PROMPT_TAIL_CHARS = 64
MAX_ANSWER_CHARS = 500
MATH_VERIFY_TIMEOUT_S = 5
_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


def last_boxed_answer(text: str) -> Optional[str]:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` (braces balanced), or the
    token after a brace-less ``\\boxed 9``; None without one."""
    start = max(text.rfind(command) for command in BOXED_COMMANDS)
    if start < 0:
        return None
    command = next(command for command in BOXED_COMMANDS if text.startswith(command, start))
    body = text[start + len(command) :].lstrip()
    if not body.startswith("{"):
        token = body.split(maxsplit=1)
        return token[0].rstrip("$.,") if token else None
    depth = 0
    for index, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return body[1:index].strip()
    return None


def reference_answer(label: str) -> str:
    """The reference answer in a label: a MATH solution's last boxed content, else the label."""
    boxed = last_boxed_answer(label)
    return (boxed if boxed is not None else label).strip()


def response_text(query: str, prompt: str) -> str:
    """The model's own turn in ``query`` (= prompt + response as OpenRLHF decodes it)."""
    if query.startswith(prompt):
        response = query[len(prompt) :]
    else:
        tail = prompt[-PROMPT_TAIL_CHARS:]
        at = query.find(tail)
        response = query[at + len(tail) :] if at >= 0 else query
    ends = [response.find(marker) for marker in END_OF_TURN_MARKERS if marker in response]
    return response[: min(ends)] if ends else response


def answers_match(reference: str, answer: str) -> bool:
    """math-verify equivalence of two answers written as LaTeX without delimiters."""
    if not reference or not answer or max(len(reference), len(answer)) > MAX_ANSWER_CHARS:
        return False
    in_main_thread = threading.current_thread() is threading.main_thread()
    timeout_s = MATH_VERIFY_TIMEOUT_S if in_main_thread else None
    gold = parse(f"${reference}$", extraction_config=_EXTRACTION, parsing_timeout=timeout_s)
    predicted = parse(f"${answer}$", extraction_config=_EXTRACTION, parsing_timeout=timeout_s)
    return bool(gold and predicted and verify(gold, predicted, timeout_seconds=timeout_s))


def score_response(response: str, label: str) -> float:
    """1.0 if the response's last boxed answer equals the label's reference answer, else 0.0."""
    answer = last_boxed_answer(response)
    return float(answer is not None and answers_match(reference_answer(label), answer))


def reward_func(queries: List[str], prompts: List[str], labels: List[str]) -> Dict[str, object]:
    """OpenRLHF's reward-function entry point: rewards, scores and extra_logs, one per query."""
    responses = [response_text(query, prompt) for query, prompt in zip(queries, prompts)]
    rewards = torch.tensor([score_response(r, label) for r, label in zip(responses, labels)])
    boxed = torch.tensor([float(last_boxed_answer(r) is not None) for r in responses])
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"has_boxed_answer": boxed}}


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info=None, **kwargs) -> Dict[str, float]:
    """verl's custom reward function (``reward.custom_reward_function.path=pkg://openrlhf_cfpo.rewards.math_reward``):
    verl's reward manager calls it per response, by keyword, with the decoded response (special tokens
    dropped) and the row's ``reward_model.ground_truth``. Returns {"score", "has_boxed_answer"}; verl logs
    every key (``reward_extra_info``)."""
    return {
        "score": score_response(solution_str, ground_truth),
        "has_boxed_answer": float(last_boxed_answer(solution_str) is not None),
    }
