"""openrlhf_cfpo/rewards/math_reward.py: MATH answers scored with math-verify, in OpenRLHF's format.

The last test loads the file through OpenRLHF 0.11.2's own SingleTurnAgentExecutor (by path, called
from a worker thread) and scores real MATH-train items end to end with a Qwen chat tokenizer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from openrlhf_cfpo.rewards import math_reward
from openrlhf_cfpo.prompts import RLVR_SYSTEM_PROMPTS
from openrlhf_cfpo.rewards.math_reward import (
    last_boxed_answer,
    reference_answer,
    response_text,
    reward_func,
    score_response,
)

# One item per MATH subject folder, with the answer in its solution's last \boxed{} (read by hand).
MATH_ITEMS = {
    "train/algebra/0.json": "0",
    "train/algebra/3.json": "8+4i",
    "train/algebra/24014.json": "2",  # written "\boxed 2", without braces
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("our answer is $\\boxed 9$.", "9"),
        ("no box here: 5", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed_answer(text, expected):
    assert last_boxed_answer(text) == expected


def test_reference_answer_from_solution_or_bare_label():
    assert reference_answer("Then $x=\\boxed{1}$ and $a+b=\\boxed{0}$.") == "0"
    assert reference_answer(" \\frac{3}{4} ") == "\\frac{3}{4}"


def test_response_text_drops_prompt_and_later_turns():
    prompt = f"<|im_start|>system\n{RLVR_SYSTEM_PROMPTS['1.5B']}<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    answer = "It is \\boxed{2}."
    invented_turn = "<|im_start|>user\nAnd 2+2?<|im_end|>\n<|im_start|>assistant\n\\boxed{4}"
    assert response_text(prompt + answer + "<|im_end|>\n" + invented_turn, prompt) == answer
    # OpenRLHF cuts an over-long prompt from the left: the response starts after the prompt's tail.
    truncated = prompt[len(prompt) // 2 :]
    assert response_text(truncated + answer, prompt) == answer


@pytest.mark.parametrize(
    "response, label, expected",
    [
        ("The answer is $\\boxed{42}$.", "42", 1.0),
        ("The answer is $\\boxed{41}$.", "42", 0.0),
        ("The answer is 42.", "42", 0.0),  # right but not boxed
        ("$\\boxed{0.5}$", "\\frac{1}{2}", 1.0),
        ("$\\boxed{\\dfrac12}$", "Half: $\\boxed{\\frac{1}{2}}$.", 1.0),
        ("$\\boxed{(3, -1)}$", "(3,-1)", 1.0),
        ("$\\boxed{\\frac{\\sqrt{2}}{2}}$", "\\frac{1}{\\sqrt{2}}", 1.0),
        ("$\\boxed{(x+1)^2}$", "x^2+2x+1", 1.0),
        ("$\\boxed{\\frac{1}{3}}$", "0.33", 0.0),
        ("$\\boxed{}$", "0", 0.0),
    ],
)
def test_score_response(response, label, expected):
    assert score_response(response, label) == expected


def test_boxed_example_in_the_prompt_does_not_count():
    prompt = "<|im_start|>system\nEnd with e.g. \\boxed{5}.<|im_end|>\n<|im_start|>assistant\n"
    output = reward_func([prompt + "I think it is five."], [prompt], ["5"])
    assert output["rewards"].tolist() == [0.0]
    assert output["extra_logs"]["has_boxed_answer"].tolist() == [0.0]


def test_reward_func_batch_format():
    prompts = ["Q1 ", "Q2 ", "Q3 "]
    responses = ["\\boxed{1}", "\\boxed{3}", "one"]
    output = reward_func([p + r for p, r in zip(prompts, responses)], prompts, ["1", "2", "1"])
    assert output["rewards"].dtype == torch.float32
    assert output["rewards"].tolist() == [1.0, 0.0, 0.0]
    assert output["scores"].tolist() == [1.0, 0.0, 0.0]
    assert output["extra_logs"]["has_boxed_answer"].tolist() == [1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def math_items(fixtures_dir):
    lines = (fixtures_dir / "math_train" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = {row["unique_id"]: row for row in map(json.loads, lines)}
    return {unique_id: rows[unique_id] for unique_id in MATH_ITEMS}


def test_math_train_reference_answers(math_items):
    for unique_id, answer in MATH_ITEMS.items():
        solution = math_items[unique_id]["solution"]
        assert reference_answer(solution) == answer
        assert score_response(solution, solution) == 1.0  # the worked solution itself is correct


class CannedEngine:
    """Stands in for a vLLM engine: "generates" a fixed response."""

    def __init__(self, tokenizer, response: str):
        self.response = response
        self.token_ids = tokenizer(response, add_special_tokens=False)["input_ids"]

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(token_ids=self.token_ids, text=self.response, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


def test_loaded_by_path_in_openrlhf_single_turn_executor(fixtures_dir, math_items):
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(fixtures_dir / "tokenizers" / "qwen3"))
    executor = SingleTurnAgentExecutor(remote_rm_url=str(Path(math_reward.__file__)))
    assert executor.reward_func.__module__ == "reward_func"  # OpenRLHF's own loader, not our import

    for unique_id, answer in MATH_ITEMS.items():
        item = math_items[unique_id]
        chat = [{"role": "system", "content": RLVR_SYSTEM_PROMPTS["3B"]}, {"role": "user", "content": item["problem"]}]
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        for response, expected in ((f"So the answer is $\\boxed{{{answer}}}$.", 1.0), ("\\boxed{-17}", 0.0)):
            engine = CannedEngine(tokenizer, response + "<|im_end|>")
            params = SimpleNamespace(max_tokens=64, logprobs=None)
            result = asyncio.run(executor.execute(prompt, item["solution"], params, 4096, tokenizer, engine))
            assert float(result["reward"]) == expected, (unique_id, response)
            assert float(result["scores"]) == expected
            assert float(result["extra_logs"]["has_boxed_answer"]) == 1.0
