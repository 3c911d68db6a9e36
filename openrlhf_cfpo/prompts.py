"""The RLVR system prompts, one per model size, shared by the training recipes (OpenRLHF and TRL)
and the reasoning evaluation, so that a model is evaluated with the prompt it was trained with.

The texts are the paper's appendix B.1 ("System prompt used for
Qwen2.5-{1.5B,3B,7B} models"), verbatim: the paper's own wording ("designed to provided") is kept,
and the backticks around ``\\boxed{Your Answer}`` in the text extraction are markdown, not prompt.
"The same prompts are used for both base and instruct model variants."
"""

from __future__ import annotations

import re
from typing import Dict, Optional

# Model size (as the paper names it) -> the system prompt its RLVR runs trained with (appendix B.1).
RLVR_SYSTEM_PROMPTS: Dict[str, str] = {
    "1.5B": (
        "You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. "
        "You FIRST think about the reasoning process step by step and then provide the user with the answer. "
        "Please enclose your final answer in the box: \\boxed{Your Answer}."
    ),
    "3B": (
        "You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. "
        "You FIRST think about the reasoning process step by step and then provide the user with the answer. "
        "Please enclose your final answer in the box: \\boxed{Your Answer}. "
        "Please stop generation immediately after outputting the box."
    ),
    "7B": (
        "You are a helpful AI Assistant, designed to provided well-reasoned and detailed responses. "
        "Please provide a step-by-step solution to the following problem."
    ),
}
MODEL_SIZES = tuple(RLVR_SYSTEM_PROMPTS)

# A size token inside a model name or path: "Qwen2.5-1.5B-Instruct", "qwen2.5_3b", "/ckpt/7B-cfpo".
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z\d])")


def model_size_from_name(model: str) -> Optional[str]:
    """The paper's model size named in ``model`` (a Hub id or a path), or None when it names none
    of them or more than one (e.g. a 7B checkpoint distilled from a 1.5B one)."""
    found = {match.group(1) + "B" for match in _SIZE_IN_NAME.finditer(model)}
    sizes = found & set(MODEL_SIZES)
    return sizes.pop() if len(sizes) == 1 and len(found) == 1 else None


def rlvr_system_prompt(size: str) -> str:
    """The appendix B.1 system prompt for a model ``size`` ("1.5B", "3B" or "7B")."""
    try:
        return RLVR_SYSTEM_PROMPTS[size]
    except KeyError:
        raise ValueError(
            f"no RLVR system prompt for model size {size!r}: the paper gives one for {', '.join(MODEL_SIZES)}"
        ) from None


def paper_model_size(model: str, size: Optional[str] = None, what: str = "prompts") -> str:
    """``size`` when given, else the paper size ``model``'s name states. Raises ValueError naming the
    fix when the name states no single paper size; ``what`` names the per-size setting looked up."""
    if size is None:
        size = model_size_from_name(model)
        if size is None:
            raise ValueError(
                f"cannot tell the model size from {model!r} (the paper's RLVR {what} are per size: "
                f"{', '.join(MODEL_SIZES)}); name it explicitly"
            )
    return size


def rlvr_system_prompt_for_model(model: str, size: Optional[str] = None) -> str:
    """The system prompt ``model`` trains (or was trained) with: ``size`` when given, else the size
    its name states. Raises ValueError naming the fix when the name states no single paper size."""
    return rlvr_system_prompt(paper_model_size(model, size))


def print_for_model(module: str, description: str, setting_for_model, argv=None) -> None:
    """``python -m MODULE MODEL [SIZE]``: print ``setting_for_model(MODEL, SIZE)``, the per-size RLVR
    setting the shell recipes read; a model whose name states no paper size is one error line."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("model", help="Hub id or path; its name gives the size unless SIZE is given")
    parser.add_argument("size", nargs="?", choices=MODEL_SIZES, help="the paper's model size")
    args = parser.parse_args(argv)
    try:
        print(setting_for_model(args.model, args.size))
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err} (pass SIZE: {' | '.join(MODEL_SIZES)})\n")


def main(argv=None) -> None:
    """``python -m openrlhf_cfpo.prompts MODEL [SIZE]`` prints MODEL's system prompt (the shell recipes)."""
    print_for_model("openrlhf_cfpo.prompts", main.__doc__, rlvr_system_prompt_for_model, argv)


if __name__ == "__main__":
    main()
