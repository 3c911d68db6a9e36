"""IFEval (Zhou et al., 2023): prompt- and instruction-level accuracy, strict and loose.

Scoring is lm-eval 0.4.13's IFEval implementation (``lm_eval.tasks.ifeval``: its instruction
checkers, ``process_results`` and ``agg_inst_level_acc``), the same code its ``ifeval`` task runs;
nothing here re-implements a rule. Generation follows that task: the prompt as the only user turn
(no system prompt), greedy decoding, at most 1280 new tokens.

``--responses`` takes google's ``{prompt, response}`` JSON lines (as published with the benchmark);
each prompt must be one of the 541 IFEval prompts, and only the prompts answered there are scored.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import random
from pathlib import Path
from typing import Any, Dict, List, Sequence

from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_jsonl
from openrlhf_cfpo.runinfo import atomic_write_text

logger = logging.getLogger(__name__)

NAME = "ifeval"
LM_EVAL_VERSION = "0.4.13"
PROTOCOL = (
    "IFEval (google-research instruction_following_eval, 541 prompts); "
    f"scored by lm-eval {LM_EVAL_VERSION} ifeval v4.0; greedy, max 1280 new tokens"
)
INPUT = DataFile(
    "ifeval/input_data.jsonl",
    "https://raw.githubusercontent.com/google-research/google-research/master/"
    "instruction_following_eval/data/input_data.jsonl",
)
# GPT-4's responses published with IFEval and the per-prompt verdicts of a run of google's checker, from
# the clone the tests' reference numbers were computed on (pinned: these are the exact files).
_REFERENCE_RAW = "https://raw.githubusercontent.com/Podtech-AI/IFEval/76670a377db0f75ac8e808bbdaa8df5e6f185399/data"
REFERENCE_GPT4 = tuple(
    DataFile(f"ifeval/reference_gpt4/{name}", f"{_REFERENCE_RAW}/{source}", sha256=sha256)
    for name, source, sha256 in (
        ("input_response_data_gpt4_20231107_145030.jsonl", "input_response_data_gpt4_20231107_145030.jsonl",
         "49c1a90439654e3699e69e56da1d41e9bad957a7ba0595386a9176378395553a"),
        ("eval_results_loose.jsonl", "test_output/eval_results_loose.jsonl",
         "0b8abbf8cbd78aa7ecc9f8858f37448a432e281dfb2c51bcf05caed3354d416c"),
        ("eval_results_strict.jsonl", "test_output/eval_results_strict.jsonl",
         "9300cb552df300894fe9fab35f53c399c3a1d37077e344c6bf20cddbaa23aa78"),
    )
)
# for `openrlhf-cfpo data`: the prompts (parse-checked: google's master is not pinned), and the reference set
DATA_FILES = {NAME: (INPUT,), f"{NAME}.reference_gpt4": REFERENCE_GPT4}
SAMPLING = SamplingSettings(max_new_tokens=1280, temperature=0.0, top_p=1.0)
PROMPT_FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")


def read_responses(path: Path, prompts: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """google's ``{prompt, response}`` lines, each joined to its IFEval prompt record."""
    by_prompt = {doc["prompt"]: doc for doc in prompts}
    joined = []
    for index, record in enumerate(read_jsonl(path, required=("prompt", "response")), start=1):
        doc = by_prompt.get(record["prompt"])
        if doc is None:
            raise DataError(
                f"{path} line {index}: prompt {record['prompt'][:60]!r}... is not an IFEval prompt "
                "(--responses must answer prompts of ifeval/input_data.jsonl verbatim)"
            )
        joined.append({**doc, "response": record["response"]})
    return joined


def score(answered: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per-prompt verdicts by lm-eval's ``process_results`` (strict and loose), reproducibly.

    Two checkers draw randomness: langdetect (language and letter-case checks), seeded its documented
    way; and ``letter_frequency``, which picks a random letter when the prompt's "letter" is not one
    (keys 1122 '#', 1129 '!'), so Python's ``random`` is seeded with each prompt's key while scoring
    it (the caller's random state is restored afterwards).
    """
    from langdetect import DetectorFactory
    from lm_eval.tasks.ifeval.utils import process_results

    DetectorFactory.seed = 0
    state = random.getstate()
    verdicts = []
    try:
        for doc in answered:
            random.seed(doc["key"])
            verdict = process_results(doc, [doc["response"]])
            verdicts.append({"key": doc["key"], "prompt": doc["prompt"], "response": doc["response"], **verdict})
    finally:
        random.setstate(state)
    return verdicts


def aggregate(verdicts: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """The four IFEval accuracies with lm-eval's aggregations (mean; ``agg_inst_level_acc``)."""
    from lm_eval.tasks.ifeval.utils import agg_inst_level_acc

    n = len(verdicts)
    return {
        "prompt_strict": sum(v["prompt_level_strict_acc"] for v in verdicts) / n,
        "prompt_loose": sum(v["prompt_level_loose_acc"] for v in verdicts) / n,
        "inst_strict": agg_inst_level_acc([v["inst_level_strict_acc"] for v in verdicts]),
        "inst_loose": agg_inst_level_acc([v["inst_level_loose_acc"] for v in verdicts]),
    }


def run(ctx: EvalContext) -> Dict[str, Any]:
    installed = importlib.metadata.version("lm-eval")
    if installed != LM_EVAL_VERSION:
        logger.warning("IFEval protocol pins lm-eval %s; lm-eval %s is installed", LM_EVAL_VERSION, installed)
    prompts = read_jsonl(locate(INPUT, ctx.data_dir), required=PROMPT_FIELDS)
    if ctx.responses is not None:
        answered = read_responses(ctx.responses, prompts)[: ctx.limit]
        if ctx.limit is None and len(answered) < len(prompts):
            logger.warning(
                "%s answers %d of %d IFEval prompts; scoring those", ctx.responses, len(answered), len(prompts)
            )
    else:
        if ctx.generator is None:
            raise ValueError("ifeval needs --model (to generate) or --responses (answers to score)")
        docs = prompts[: ctx.limit]
        replies = ctx.generator.generate([[{"role": "user", "content": doc["prompt"]}] for doc in docs], SAMPLING)
        answered = [{**doc, "response": reply} for doc, reply in zip(docs, replies)]
    verdicts = score(answered)
    folder = Path(ctx.out_dir) / NAME
    atomic_write_text(
        folder / "responses.jsonl",
        "".join(json.dumps({"prompt": v["prompt"], "response": v["response"]}) + "\n" for v in verdicts),
    )
    atomic_write_text(folder / "verdicts.jsonl", "".join(json.dumps(v) + "\n" for v in verdicts))
    metrics = aggregate(verdicts)
    logger.info("ifeval: %d prompts scored", len(verdicts))
    return {**metrics, "n_prompts": len(verdicts)}
