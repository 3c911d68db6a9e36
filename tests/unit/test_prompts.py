"""The RLVR system prompts are the paper's appendix B.1 text, verbatim, and each model gets its size's."""

import re
import subprocess
import sys

import pytest

from openrlhf_cfpo.prompts import (
    MODEL_SIZES,
    RLVR_SYSTEM_PROMPTS,
    model_size_from_name,
    rlvr_system_prompt,
    rlvr_system_prompt_for_model,
)

# Appendix B.1 (Reasoning Hyperparameters) of "Clipping-Free Policy Optimization for Large Language Models"
# (arXiv 2601.22801v1), quoted verbatim from the paper's text extraction.
PAPER_B1 = """\
System prompt used for Qwen2.5-1.5B models.

You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. You FIRST think about the reasoning process step by step and then provide the user with the answer. Please enclose your final answer in the box: `\\boxed{Your Answer}`.

System prompt used for Qwen2.5-3B models.

You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. You FIRST think about the reasoning process step by step and then provide the user with the answer. Please enclose your final answer in the box: `\\boxed{Your Answer}`. Please stop generation immediately after outputting the box.

System prompt used for Qwen2.5-7B models.

You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. Please provide a step-by-step solution to the following problem.
"""


def paper_prompts():
    """{size: prompt} read off appendix B.1: the paragraph after "System prompt used for Qwen2.5-<size> models."
    The backticks around \\boxed{Your Answer} are the text extraction's markdown, not prompt text."""
    lines = PAPER_B1.splitlines()
    found = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(r"System prompt used for Qwen2\.5-([\d.]+B) models\.", line.strip())
        if match:
            following = next(text for text in lines[index + 1 :] if text.strip())
            found[match.group(1)] = following.strip().replace("`", "")
    return found


def test_prompts_are_the_papers_appendix_b1_text_verbatim():
    from_paper = paper_prompts()
    assert set(from_paper) == set(MODEL_SIZES) == {"1.5B", "3B", "7B"}
    assert RLVR_SYSTEM_PROMPTS == from_paper
    assert "designed to provided" in RLVR_SYSTEM_PROMPTS["7B"]  # the paper's wording, typo included
    assert "\\boxed{Your Answer}" in RLVR_SYSTEM_PROMPTS["1.5B"] and "`" not in RLVR_SYSTEM_PROMPTS["3B"]
    assert len(set(RLVR_SYSTEM_PROMPTS.values())) == 3


@pytest.mark.parametrize(
    "model, size",
    [
        ("Qwen/Qwen2.5-1.5B", "1.5B"),
        ("Qwen/Qwen2.5-1.5B-Instruct", "1.5B"),
        ("Qwen/Qwen2.5-3B-Instruct", "3B"),
        ("Qwen/Qwen2.5-7B", "7B"),
        ("/ckpt/qwen2.5-3b-cfpo/global_step100_hf", "3B"),
        ("runs/rlvr_math_Qwen2.5-7B-Instruct_cfpo_it8/model", "7B"),
        ("Qwen/Qwen2.5-Math-1.5B", "1.5B"),
        ("OpenRLHF/Llama-3-8b-sft-mixture", None),  # a size the paper gives no RLVR prompt for
        ("/ckpt/final", None),
        ("Qwen2.5-0.5B", None),
        ("distill-7B-from-1.5B", None),  # two sizes: ambiguous
        ("Qwen2.5-3B-backup", "3B"),
    ],
)
def test_model_size_from_name(model, size):
    assert model_size_from_name(model) == size


def test_size_lookup_and_errors_name_the_fix():
    assert rlvr_system_prompt_for_model("Qwen/Qwen2.5-7B-Instruct") == RLVR_SYSTEM_PROMPTS["7B"]
    assert rlvr_system_prompt_for_model("/ckpt/final", "1.5B") == RLVR_SYSTEM_PROMPTS["1.5B"]
    assert rlvr_system_prompt_for_model("Qwen/Qwen2.5-7B", "3B") == RLVR_SYSTEM_PROMPTS["3B"]  # explicit wins
    with pytest.raises(ValueError, match=r"cannot tell the model size from '/ckpt/final'.*1\.5B, 3B, 7B"):
        rlvr_system_prompt_for_model("/ckpt/final")
    with pytest.raises(ValueError, match="no RLVR system prompt for model size '8B'"):
        rlvr_system_prompt("8B")


def test_module_command_prints_the_prompt_or_one_error_line():
    ok = subprocess.run([sys.executable, "-m", "openrlhf_cfpo.prompts", "Qwen/Qwen2.5-3B"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == RLVR_SYSTEM_PROMPTS["3B"] + "\n"
    bad = subprocess.run([sys.executable, "-m", "openrlhf_cfpo.prompts", "/ckpt/final"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "python -m openrlhf_cfpo.prompts: error: cannot tell the model size from '/ckpt/final' (the paper's RLVR "
        "prompts are per size: 1.5B, 3B, 7B); name it explicitly (pass SIZE: 1.5B | 3B | 7B)"
    ]


# Table 3 of the paper (appendix B.1), its learning-rate row, quoted verbatim: columns "1.5B/3B" and "7B".
PAPER_TABLE3_LR = "Parameter\t1.5B/3B\t7B\nLearning Rate\t3×10^{-6}\t1×10^{-6}"


def test_learning_rates_are_table3s_and_the_shell_command_prints_them():
    from openrlhf_cfpo.learning_rate import RLVR_LEARNING_RATES, rlvr_learning_rate, rlvr_learning_rate_for_model

    header, row = (line.split("\t") for line in PAPER_TABLE3_LR.splitlines())
    paper = {size: float(cell.replace("×10^{", "e").rstrip("}"))
             for sizes, cell in zip(header[1:], row[1:]) for size in sizes.split("/")}
    assert RLVR_LEARNING_RATES == paper and set(paper) == set(MODEL_SIZES)
    assert rlvr_learning_rate_for_model("Qwen/Qwen2.5-7B-Instruct") == 1e-6
    assert rlvr_learning_rate_for_model("/ckpt/final", "3B") == 3e-6
    with pytest.raises(ValueError, match=r"cannot tell the model size from '/ckpt/final' \(the paper's RLVR learning"):
        rlvr_learning_rate_for_model("/ckpt/final")
    with pytest.raises(ValueError, match="no RLVR learning rate for model size '8B'"):
        rlvr_learning_rate("8B")
    command = [sys.executable, "-m", "openrlhf_cfpo.learning_rate"]
    for argv, printed in ((["Qwen/Qwen2.5-7B"], 1e-6), (["/ckpt/final", "1.5B"], 3e-6)):
        done = subprocess.run([*command, *argv], capture_output=True, text=True)
        assert done.returncode == 0 and float(done.stdout) == printed
    bad = subprocess.run([*command, "/ckpt/final"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and "pass SIZE: 1.5B | 3B | 7B" in bad.stderr
