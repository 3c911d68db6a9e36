"""AlpacaEval 2.0: 805 instructions, win rate against gpt-4-1106-preview, raw and length-controlled.

Protocol (the ``alpaca_eval`` package, 0.6.6):

- answers: greedy, at most 2048 new tokens, one user turn per instruction.
- annotation: alpaca_eval's ``PairwiseAnnotator`` with its ``weighted_alpaca_eval_gpt4_turbo`` config
  (its prompt, its seeded order switching, its logprob parser over the tokens "m"/"M"); only the
  judge model is replaced (``evaluation/judges/alpaca_eval.yaml``: GPT-4.1, the paper's) and the
  completions go through ``judge.JudgeClient`` (concurrency, retries, the on-disk cache) instead of
  alpaca_eval's own OpenAI caller.
- metrics: ``win_rate`` = alpaca_eval's ``get_winrate`` (mean preference for the model, in percent),
  ``lc_win_rate`` = its ``get_length_controlled_winrate`` (the ``length_controlled_v1`` GLM, fitted
  with alpaca_eval's instruction difficulties and gamed baselines ``df_gamed.csv`` from the HF dataset
  tatsu-lab/alpaca_eval, downloaded by alpaca_eval into the HF cache), ``avg_length`` = mean answer
  length in characters, as on the leaderboard.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from openrlhf_cfpo.evaluation.answers import AnswerFormat, model_answers
from openrlhf_cfpo.evaluation.context import EvalContext, SamplingSettings
from openrlhf_cfpo.evaluation.data import DataError, DataFile, locate, read_json_records, read_jsonl
from openrlhf_cfpo.evaluation.judge import ChatRequest, JudgeClient, load_judge_config, make_judge, write_report
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

NAME = "alpaca_eval"
PROTOCOL = (
    "AlpacaEval 2.0 (alpaca_eval 0.6.6): weighted_alpaca_eval_gpt4_turbo annotator vs gpt4_1106_preview "
    "reference outputs, length-controlled win rate (GLM length_controlled_v1)"
)

BASELINE = "gpt4_1106_preview"


def _jsonl_from_json_list(payload: bytes) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in json.loads(payload))


EVAL_SET = DataFile(
    "alpaca_eval/alpaca_eval.jsonl",
    "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json",
    convert=_jsonl_from_json_list,
)
REFERENCE_OUTPUTS = DataFile(
    f"alpaca_eval/{BASELINE}/model_outputs.json",
    "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/results/"
    f"{BASELINE}/model_outputs.json",
    sha256="83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4",
)
# for `openrlhf-cfpo data`; the eval set is the Hub's JSON list rewritten as JSONL: parse-checked only
DATA_FILES = {NAME: (EVAL_SET, REFERENCE_OUTPUTS)}
GENERATION = SamplingSettings(max_new_tokens=2048, temperature=0.0)


def load_outputs(path: Path, where: str) -> Dict[str, str]:
    """instruction -> output from an AlpacaEval ``model_outputs.json`` (a list of {instruction, output, ...})."""
    records = read_json_records(path, required=("instruction", "output"))
    for index, record in enumerate(records):
        if not isinstance(record["output"], str) or not isinstance(record["instruction"], str):
            raise DataError(f"{path} record {index}: instruction and output must be strings: {where} must be AlpacaEval model_outputs.json")
    return {record["instruction"]: record["output"] for record in records}


def _dump_outputs(instructions: Sequence[str], outputs: Sequence[str], model_name: str) -> str:
    records = [{"instruction": i, "output": o, "generator": model_name} for i, o in zip(instructions, outputs)]
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


ANSWER_FORMAT = AnswerFormat("model_outputs.json", load_outputs, _dump_outputs)


def _model_outputs(ctx: EvalContext, instructions: List[str]) -> List[str]:
    def generate() -> List[str]:
        return ctx.generator.generate([[{"role": "user", "content": i}] for i in instructions], GENERATION)

    outputs = model_answers(ctx, NAME, instructions, ANSWER_FORMAT, generate, sampling=[GENERATION])
    return [outputs[instruction] for instruction in instructions]


def completions_through(judge: JudgeClient):
    """An alpaca_eval ``fn_completions`` that sends its ChatML prompts through ``judge``.

    Returns what alpaca_eval's ``openai_completions`` returns: texts, the raw choices (with logprobs,
    for the logprob parser), price and time per example.
    """
    from alpaca_eval.utils import prompt_to_chatml

    def fn_completions(prompts: Sequence[str], model_name: str, max_tokens: int, temperature: float,
                       logprobs: bool = False, top_logprobs: Optional[int] = None, **_: Any) -> Dict[str, list]:
        if model_name != judge.model:
            raise ValueError(f"annotator model {model_name!r} differs from the judge client's {judge.model!r}")
        requests = [
            ChatRequest(prompt_to_chatml(prompt.strip()), max_tokens=max_tokens, temperature=temperature,
                        top_logprobs=top_logprobs if logprobs else None)
            for prompt in prompts
        ]
        started = time.monotonic()
        replies = judge.complete(requests, desc="alpaca_eval judge")
        choices = []
        for reply in replies:
            choice = dict(reply["choices"][0])
            choice["text"] = (choice.get("message") or {}).get("content") or " "
            choice["total_tokens"] = (reply.get("usage") or {}).get("total_tokens")
            choices.append(choice)
        elapsed = (time.monotonic() - started) / max(1, len(prompts))
        return {
            "completions": [choice["text"] for choice in choices],
            "completions_all": choices,
            "price_per_example": [math.nan] * len(choices),  # depends on the endpoint's pricing
            "time_per_example": [elapsed] * len(choices),
        }

    return fn_completions


def _annotator_config(judge: JudgeClient, annotator: str, folder: Path) -> Path:
    """alpaca_eval's config of ``annotator`` with its model set to the judge's and without its OpenAI
    caller (``fn_completions`` is passed in); written to ``folder/configs.yaml`` as a record."""
    import yaml
    from alpaca_eval import constants
    from alpaca_eval.utils import load_configs

    official_dir = constants.EVALUATORS_CONFIG_DIR / annotator
    config = load_configs(official_dir / "configs.yaml")[annotator]
    config.pop("fn_completions", None)
    config["completions_kwargs"] = {**config["completions_kwargs"], "model_name": judge.model}
    config["prompt_template"] = str(constants.EVALUATORS_CONFIG_DIR / config["prompt_template"])
    path = folder / "configs.yaml"
    atomic_write_text(path, yaml.safe_dump({annotator: config}, sort_keys=False))
    return path


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now (huggingface_hub reads it once, at its import)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _require_glm_data() -> None:
    """Fetch (or find in the HF cache) the ``df_gamed.csv`` that alpaca_eval's GLM reads, before any
    generation or judging, so that a machine without it fails at once with the fix. Offline
    (HF_HUB_OFFLINE) only the cache is looked at: no request, no retries."""
    from alpaca_eval import constants
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(
            repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv", repo_type="dataset",
            token=constants.DATASETS_TOKEN, cache_dir=constants.DEFAULT_CACHE_DIR, local_files_only=_hub_offline(),
        )
    except OSError as err:  # offline without a cached copy, or the hub unreachable
        raise DataError(
            "the length-controlled win rate needs df_gamed.csv of the Hugging Face dataset tatsu-lab/alpaca_eval, "
            f"which is neither in the HF cache nor downloadable ({type(err).__name__}): run once with network "
            "access (and HF_HUB_OFFLINE unset) so that it is cached"
        ) from err


def run(ctx: EvalContext) -> Dict[str, Optional[float]]:
    import pandas as pd
    from alpaca_eval.annotators import PairwiseAnnotator
    from alpaca_eval.metrics import get_length_controlled_winrate

    settings = load_judge_config(NAME)
    _require_glm_data()
    eval_set = read_jsonl(locate(EVAL_SET, ctx.data_dir), required=("instruction",))
    reference = read_json_records(locate(REFERENCE_OUTPUTS, ctx.data_dir), required=("instruction", "output"))
    if [r["instruction"] for r in reference] != [r["instruction"] for r in eval_set]:
        raise DataError(
            f"the {BASELINE} reference outputs do not follow the AlpacaEval instructions one to one: restore both files"
        )
    selected = list(range(len(eval_set)))[: ctx.limit]
    instructions = [eval_set[i]["instruction"] for i in selected]
    out = Path(ctx.out_dir) / NAME
    out.mkdir(parents=True, exist_ok=True)
    outputs = _model_outputs(ctx, instructions)

    judge = make_judge(ctx, NAME, settings["model"])
    annotator = PairwiseAnnotator(
        annotators_config=_annotator_config(judge, settings["annotator"], out / "annotator"),
        fn_completions=completions_through(judge),
        caching_path=None,  # judge.JudgeClient caches every completion
    )
    annotations = annotator.annotate_head2head(
        outputs_1=[{"instruction": i, "output": reference[n]["output"], "generator": BASELINE} for n, i in zip(selected, instructions)],
        outputs_2=[{"instruction": i, "output": o, "generator": ctx.model_name} for i, o in zip(instructions, outputs)],
        is_ordered=True,
    )
    frame = pd.DataFrame(annotations, index=selected)  # the GLM reads the instruction's position as "index"
    unannotated = int(frame["preference"].isna().sum())
    lc = get_length_controlled_winrate(frame, save_weights_dir=None)
    atomic_write_json(out / "annotations.json", json.loads(frame.to_json(orient="records")))

    metrics = {
        "lc_win_rate": float(lc["length_controlled_winrate"]),
        "win_rate": float(lc["win_rate"]),
        "avg_length": int(sum(len(o) for o in outputs) / len(outputs)),
    }
    write_report(
        out / "results.md", "AlpacaEval 2.0", PROTOCOL, judge, metrics,
        [f"{len(instructions)} instructions against {BASELINE}; {unannotated} without an annotation (left out). "
         f"Standard errors: win rate {lc['standard_error']:.3g}, length-controlled {lc['lc_standard_error']:.3g}. "
         "avg_length is in characters."],
    )
    return {**metrics, "judge": judge.model}
