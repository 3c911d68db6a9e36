"""Open LLM Leaderboard (v1) tasks through lm-eval-harness, with the leaderboard's shots and metrics.

ARC-Challenge 25-shot acc_norm, HellaSwag 10-shot acc_norm, MMLU 5-shot acc (mean over its 57
subjects, as the v1 leaderboard averaged them), TruthfulQA 0-shot mc2, Winogrande 5-shot acc,
GSM8K 5-shot exact match (lm-eval's strict-match filter: the number after ``####``); ``average`` is
their mean. Prompts, few-shot formatting and scoring are lm-eval's own task definitions (its YAML
files, loaded unchanged apart from ``num_fewshot``); no chat template, as on the leaderboard.

Data: without ``--data-dir`` lm-eval downloads each task's Hugging Face dataset itself. With
``--data-dir DIR`` the same task definitions read local copies instead, through lm-eval's
``custom_dataset`` hook, after converting them to the Hugging Face dataset's fields
(``LOCAL_READERS``). A task whose folder is absent from DIR is not run: it is ``null``, listed
under ``missing``, and ``average`` is the mean over the tasks that ran (stated in ``note``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from openrlhf_cfpo.evaluation.context import EvalContext
from openrlhf_cfpo.evaluation import reasoning
from openrlhf_cfpo.evaluation.data import DataError, DataFile, read_csv_rows, read_json, read_jsonl
from openrlhf_cfpo.runinfo import atomic_write_json

logger = logging.getLogger(__name__)

NAME = "openllm"
OWN_MODEL = True  # lm-eval loads --model itself
TASKS = ("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k")
LM_EVAL_VERSION = "0.4.13"
PROTOCOL = (
    f"Open LLM Leaderboard v1 via lm-eval {LM_EVAL_VERSION} task definitions: ARC-Challenge 25-shot acc_norm, "
    "HellaSwag 10-shot acc_norm, MMLU 5-shot acc (mean of 57 subjects), TruthfulQA 0-shot mc2, "
    "Winogrande 5-shot acc, GSM8K 5-shot exact match (strict-match); average = mean of the tasks that ran"
)


@dataclass(frozen=True)
class LeaderboardTask:
    lm_eval_task: str  # lm-eval task name ("mmlu" = its 57 mmlu_<subject> tasks)
    num_fewshot: int
    metric: str  # key in lm-eval's results: "<metric>,<filter>"


LEADERBOARD = {
    "arc": LeaderboardTask("arc_challenge", 25, "acc_norm,none"),
    "hellaswag": LeaderboardTask("hellaswag", 10, "acc_norm,none"),
    "mmlu": LeaderboardTask("mmlu", 5, "acc,none"),
    "truthfulqa": LeaderboardTask("truthfulqa_mc2", 0, "acc,none"),
    "winogrande": LeaderboardTask("winogrande", 5, "acc,none"),
    "gsm8k": LeaderboardTask("gsm8k", 5, "exact_match,strict-match"),
}

Splits = Dict[str, List[Dict[str, Any]]]  # split name (as the lm-eval task config names it) -> records


def _arc_records(path: Path) -> List[Dict[str, Any]]:
    """AI2's ARC JSONL (question.stem, question.choices) -> allenai/ai2_arc fields."""
    rows = read_jsonl(path, required=("id", "question", "answerKey"))
    records = []
    for row in rows:
        choices = row["question"].get("choices") if isinstance(row["question"], dict) else None
        if not choices or "stem" not in row["question"]:
            raise DataError(f"{path}: record {row['id']} lacks question.stem/question.choices (AI2 ARC format)")
        records.append(
            {
                "id": row["id"],
                "question": row["question"]["stem"],
                "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                "answerKey": row["answerKey"],
            }
        )
    return records


ARC_TEST_QUESTIONS = 1172  # ARC-Challenge test split as published by AI2 and on the Hub


def _arc(folder: Path) -> Splits:
    # No ARC train split here: lm-eval then draws the 25 shots from validation (Dev).
    return {
        "test": _arc_records(folder / "ARC-Challenge-Test.jsonl"),
        "validation": _arc_records(folder / "ARC-Challenge-Dev.jsonl"),
    }


def _arc_caveat(folder: Path) -> str:
    """How ARC from --data-dir departs from the leaderboard's (protocol string of such a run)."""
    questions = len(_arc(folder)["test"])
    return (
        f"ARC from --data-dir (AI2 JSONL): {questions} of {ARC_TEST_QUESTIONS} test questions, "
        "the 25 shots drawn from the dev split (no train split read)"
    )


def _mmlu_subject(folder: Path, subject: str) -> Splits:
    """The hendrycks CSVs (question, A, B, C, D, answer letter) -> cais/mmlu fields."""

    def records(split: str) -> List[Dict[str, Any]]:
        path = folder / split / f"{subject}_{split}.csv"
        out = []
        for row in read_csv_rows(path, columns=6):
            if row[5] not in "ABCD" or len(row[5]) != 1:
                raise DataError(f"{path}: answer {row[5]!r} is not one of A, B, C, D")
            out.append({"question": row[0], "subject": subject, "choices": row[1:5], "answer": "ABCD".index(row[5])})
        return out

    return {"test": records("test"), "dev": records("dev")}


def _truthfulqa(folder: Path) -> Splits:
    """TruthfulQA's mc_task.json ({answer: label} maps) -> truthful_qa/multiple_choice fields."""
    path = folder / "mc_task.json"
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path} must be TruthfulQA's mc_task.json: a JSON list of questions")
    records = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not {"question", "mc1_targets", "mc2_targets"} <= row.keys():
            raise DataError(f"{path} record {index} lacks question/mc1_targets/mc2_targets")
        records.append(
            {
                "question": row["question"],
                "mc1_targets": {"choices": list(row["mc1_targets"]), "labels": list(row["mc1_targets"].values())},
                "mc2_targets": {"choices": list(row["mc2_targets"]), "labels": list(row["mc2_targets"].values())},
            }
        )
    return {"validation": records}


def _gsm8k(folder: Path) -> Splits:
    return {
        "test": read_jsonl(folder / "test.jsonl", required=("question", "answer")),
        "train": read_jsonl(folder / "train.jsonl", required=("question", "answer")),
    }


def _hellaswag(folder: Path) -> Splits:
    fields = ("activity_label", "ctx_a", "ctx_b", "endings", "label")
    return {
        "validation": read_jsonl(folder / "hellaswag_val.jsonl", required=fields),
        "train": read_jsonl(folder / "hellaswag_train.jsonl", required=fields),
    }


def _winogrande(folder: Path) -> Splits:
    fields = ("sentence", "option1", "option2", "answer")
    return {
        "validation": read_jsonl(folder / "dev.jsonl", required=fields),
        "train": read_jsonl(folder / "train_xl.jsonl", required=fields),
    }


# task -> its folder under --data-dir
LOCAL_FOLDERS = {
    "arc": "arc_challenge",
    "hellaswag": "hellaswag",
    "mmlu": "mmlu",
    "truthfulqa": "truthfulqa",
    "winogrande": "winogrande",
    "gsm8k": "gsm8k",
}
# Files `openrlhf-cfpo data` fetches into those folders, from each dataset's original release (ARC, MMLU
# and Winogrande are archives: the files are their members). None is sha256-pinned but GSM8K: the other
# sources are unpinned or were not compared byte for byte with the CI mirror, so they are parse-checked.
_HELLASWAG_RAW = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data"
_ARC_ZIP = "https://ai2-public-datasets.s3.amazonaws.com/arc/ARC-V1-Feb2018.zip"
_MMLU_TAR = "https://people.eecs.berkeley.edu/~hendrycks/data.tar"
_WINOGRANDE_ZIP = "https://storage.googleapis.com/ai2-mosaic/public/winogrande/winogrande_1.1.zip"
MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous moral_disputes "
    "moral_scenarios nutrition philosophy prehistory professional_accounting professional_law "
    "professional_medicine professional_psychology public_relations security_studies sociology us_foreign_policy "
    "virology world_religions"
).split()
DATA_FILES = {
    "openllm.gsm8k": (
        reasoning.DATA["gsm8k"],
        DataFile(
            "gsm8k/train.jsonl", f"{reasoning.GSM8K_RAW}/train.jsonl",
            sha256="17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        ),
    ),
    "openllm.truthfulqa": (
        DataFile("truthfulqa/mc_task.json", "https://raw.githubusercontent.com/sylinrl/TruthfulQA/main/data/mc_task.json"),
    ),
    "openllm.arc": tuple(
        DataFile(f"arc_challenge/{name}", _ARC_ZIP, member=f"ARC-V1-Feb2018-2/ARC-Challenge/{name}")
        for name in ("ARC-Challenge-Test.jsonl", "ARC-Challenge-Dev.jsonl")
    ),
    "openllm.mmlu": tuple(
        DataFile(f"mmlu/{split}/{subject}_{split}.csv", _MMLU_TAR, member=f"data/{split}/{subject}_{split}.csv")
        for split in ("dev", "test")
        for subject in MMLU_SUBJECTS
    ),
    "openllm.winogrande": tuple(
        DataFile(f"winogrande/{name}", _WINOGRANDE_ZIP, member=f"winogrande_1.1/{name}")
        for name in ("train_xl.jsonl", "dev.jsonl")
    ),
    "openllm.hellaswag": tuple(
        DataFile(f"hellaswag/{name}", f"{_HELLASWAG_RAW}/{name}")
        for name in ("hellaswag_val.jsonl", "hellaswag_train.jsonl")
    ),
}

# task -> reader of that folder into the lm-eval task's splits (MMLU: _mmlu_subject, one per subject)
LOCAL_READERS: Dict[str, Callable[[Path], Splits]] = {
    "arc": _arc,
    "hellaswag": _hellaswag,
    "truthfulqa": _truthfulqa,
    "winogrande": _winogrande,
    "gsm8k": _gsm8k,
}


def _task_config(task_manager, name: str, num_fewshot: int, splits: Optional[Splits]) -> Dict[str, Any]:
    """lm-eval's own YAML config of ``name`` (includes and !function resolved), shots set, data optionally local."""
    # lm-eval 0.4.13 has no public "config of a registered task" call; its YAML loader is the one it uses itself.
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = task_manager.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        raise ValueError(f"lm-eval {LM_EVAL_VERSION} has no task {name!r}: install lm-eval=={LM_EVAL_VERSION}")
    config = load_yaml(entry.yaml_path, resolve_func=True)
    for structural in ("tag", "group", "include"):
        config.pop(structural, None)
    config["num_fewshot"] = num_fewshot
    if splits is not None:
        config["custom_dataset"] = _in_memory_dataset(splits)
        config["dataset_kwargs"] = None
        for role in ("training_split", "validation_split", "test_split", "fewshot_split"):
            if config.get(role) is not None and config[role] not in splits:
                config[role] = None  # e.g. no local ARC train split: lm-eval falls back to validation
    return config


def _in_memory_dataset(splits: Splits) -> Callable[..., Any]:
    def build(**_metadata):
        import datasets

        return datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in splits.items()})

    return build


def _mmlu_subjects(task_manager) -> List[str]:
    """The 57 subjects of lm-eval's default MMLU: its tasks ``mmlu_<subject>`` in ``tasks/mmlu/default/``."""
    subjects = []
    for name, entry in task_manager.task_index.items():
        path = entry.yaml_path
        if entry.kind.name == "TASK" and name.startswith("mmlu_") and path is not None:
            if (path.parent.parent.name, path.parent.name) == ("mmlu", "default"):
                subjects.append(name[len("mmlu_") :])
    return sorted(subjects)


def _configs_for(task: str, task_manager, data_dir: Optional[Path]) -> List[Dict[str, Any]]:
    """lm-eval configs that make up leaderboard ``task`` (57 for MMLU), reading ``data_dir`` when given."""
    spec = LEADERBOARD[task]
    folder = Path(data_dir) / LOCAL_FOLDERS[task] if data_dir is not None else None
    if task == "mmlu":
        return [
            _task_config(
                task_manager,
                f"mmlu_{subject}",
                spec.num_fewshot,
                _mmlu_subject(folder, subject) if folder is not None else None,
            )
            for subject in _mmlu_subjects(task_manager)
        ]
    splits = LOCAL_READERS[task](folder) if folder is not None else None
    return [_task_config(task_manager, spec.lm_eval_task, spec.num_fewshot, splits)]


def _model_and_args(ctx: EvalContext):
    import torch

    if ctx.backend == "vllm":
        return "vllm", {"pretrained": ctx.model_path, "seed": ctx.seed}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    return "hf", {"pretrained": ctx.model_path, "device": device, "dtype": dtype}


def run(ctx: EvalContext) -> Dict[str, Any]:
    if ctx.responses is not None:
        raise ValueError("openllm scores log-likelihoods of a model and cannot score --responses: pass --model")
    if not ctx.model_path:
        raise ValueError("openllm needs --model (a checkpoint or Hugging Face id)")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tasks = ctx.tasks or TASKS
    task_manager = TaskManager()
    configs: Dict[str, List[Dict[str, Any]]] = {}
    missing: List[str] = []
    for task in tasks:
        if ctx.data_dir is not None and not (Path(ctx.data_dir) / LOCAL_FOLDERS[task]).is_dir():
            missing.append(task)
            continue
        configs[task] = _configs_for(task, task_manager, ctx.data_dir)
    if not configs:
        raise DataError(
            f"none of the openllm tasks {', '.join(tasks)} has data under --data-dir {ctx.data_dir} "
            f"(folders {', '.join(LOCAL_FOLDERS[t] for t in tasks)}): add them, or leave out --data-dir to download"
        )
    model, model_args = _model_and_args(ctx)
    gen_kwargs = {"max_gen_toks": ctx.max_new_tokens_cap} if ctx.max_new_tokens_cap else None
    output = simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[config for task_configs in configs.values() for config in task_configs],
        task_manager=task_manager,
        limit=ctx.limit,
        batch_size=1 if model == "hf" and model_args["device"] == "cpu" else "auto",
        gen_kwargs=gen_kwargs,
        log_samples=False,
        random_seed=ctx.seed,
    )
    per_lm_eval_task = output["results"]
    folder = Path(ctx.out_dir) / NAME
    summary = {"results": per_lm_eval_task, "n-shot": output.get("n-shot"), "versions": output.get("versions")}
    atomic_write_json(folder / "lm_eval_results.json", json.loads(json.dumps(summary, default=str)))

    metrics: Dict[str, Any] = {task: None for task in tasks}
    if ctx.data_dir is not None and "arc" in configs:
        metrics["protocol"] = f"{PROTOCOL}; {_arc_caveat(Path(ctx.data_dir) / LOCAL_FOLDERS['arc'])}"
    for task, task_configs in configs.items():
        scores = [per_lm_eval_task[c["task"]][LEADERBOARD[task].metric] for c in task_configs]
        metrics[task] = sum(scores) / len(scores)
    ran = [metrics[task] for task in configs]
    metrics["average"] = sum(ran) / len(ran)
    if missing:
        metrics["missing"] = missing
        metrics["note"] = (
            f"no data under --data-dir for {', '.join(missing)}; average is over {', '.join(configs)} only"
        )
    return metrics
