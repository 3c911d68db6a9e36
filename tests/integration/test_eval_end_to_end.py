"""Each benchmark of this area end to end through the CLI on tiny random models, offline, with --limit
and --data-dir tests/fixtures/benchmarks: IFEval, reasoning (HF generation with the Qwen3 chat template) and
the OpenLLM tasks (lm-eval log-likelihoods on a small-vocabulary model)."""

import json
import weakref

import pytest

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.evaluation import generation, openllm
from tiny_chat_model import build_small_vocab_model, build_tiny_chat_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, fixtures_dir):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat"), fixtures_dir / "tokenizers" / "qwen3")


def _eval(capsys, *argv):
    rc = main(["eval", *map(str, argv)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def test_ifeval_generates_scores_and_rescoring_its_responses_gives_the_same_numbers(chat_model, fixtures_dir, nltk_punkt,
                                                                                   tmp_path, capsys):
    out = tmp_path / "gen"
    _eval(capsys, "--model", chat_model, "--benchmarks", "ifeval", "--data-dir", fixtures_dir, "--out", out,
          "--limit", 3, "--max-new-tokens", 8)
    generated = json.loads((out / "results.json").read_text())["ifeval"]
    assert generated["n_prompts"] == 3
    for key in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose"):
        assert 0.0 <= generated[key] <= 1.0
    assert generated["prompt_strict"] <= generated["prompt_loose"] and generated["inst_strict"] <= generated["inst_loose"]
    responses = [json.loads(line) for line in (out / "ifeval" / "responses.jsonl").read_text().splitlines()]
    prompts = [json.loads(line)["prompt"] for line in (fixtures_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()[:3]]
    assert [r["prompt"] for r in responses] == prompts
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["config"]["backend"] == "hf" and run_config["config"]["max_new_tokens"] == 8

    rescored = tmp_path / "rescored"
    _eval(capsys, "--responses", out / "ifeval" / "responses.jsonl", "--benchmarks", "ifeval",
          "--data-dir", fixtures_dir, "--out", rescored)
    assert json.loads((rescored / "results.json").read_text())["ifeval"] == generated


def test_reasoning_suite_runs_the_local_tasks_and_reports_gated_gpqa_missing(chat_model, fixtures_dir, tmp_path, capsys):
    out = tmp_path / "reasoning"
    printed = _eval(capsys, "--model", chat_model, "--suite", "reasoning", "--data-dir", fixtures_dir, "--out", out,
                    "--limit", 2, "--max-new-tokens", 6, "--model-name", "tiny-qwen2.5-3b")
    result = json.loads((out / "results.json").read_text())["reasoning"]
    assert {task: result[task] in (0.0, 0.5, 1.0) for task in ("math500", "gsm8k", "aime24")} == {
        "math500": True, "gsm8k": True, "aime24": True}
    assert result["gpqa_diamond"] is None and result["missing"] == ["gpqa_diamond"]
    assert "huggingface.co/datasets/Idavidrein/gpqa" in result["note"]
    assert "temperature 0.6, top-p 0.95" in result["protocol"]
    generations = [json.loads(line) for line in (out / "reasoning" / "generations.jsonl").read_text().splitlines()]
    assert [g["task"] for g in generations] == ["math500"] * 2 + ["gsm8k"] * 2 + ["aime24"] * 2
    for task in ("math500", "gsm8k", "aime24"):
        verdicts = [g["correct"] for g in generations if g["task"] == task]
        assert result[task] == sum(verdicts) / len(verdicts)
    assert "reasoning: math500=" in printed and (out / "results.md").is_file()
    assert json.loads((out / "run_config.json").read_text())["config"]["model_size"] == "3B"  # from --model-name


def _synthetic_hellaswag(folder, n=12):
    """Records in rowanz/hellaswag's JSONL layout (the layout --data-dir expects; no fixture ships)."""
    folder.mkdir()
    for name in ("hellaswag_train.jsonl", "hellaswag_val.jsonl"):
        rows = [{"ind": i, "activity_label": "Cooking", "ctx_a": f"A man cuts onion {i}.", "ctx_b": "then he",
                 "ctx": f"A man cuts onion {i}. then he", "endings": ["fries it.", "sings.", "runs.", "sleeps."],
                 "source_id": "x", "split": "val", "split_type": "indomain", "label": i % 4} for i in range(n)]
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_openllm_runs_lm_eval_tasks_on_local_files_and_averages_what_ran(fixtures_dir, tmp_path, capsys):
    corpus = [fixtures_dir / "arc_challenge" / "ARC-Challenge-Dev.jsonl", fixtures_dir / "gsm8k" / "test.jsonl"]
    model = build_small_vocab_model(tmp_path / "small", corpus)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for folder in ("arc_challenge", "mmlu", "truthfulqa", "gsm8k"):
        (data_dir / folder).symlink_to(fixtures_dir / folder)
    _synthetic_hellaswag(data_dir / "hellaswag")  # winogrande stays absent
    out = tmp_path / "openllm"
    _eval(capsys, "--model", model, "--suite", "capability", "--data-dir", data_dir, "--out", out,
          "--limit", 1, "--max-new-tokens", 8)
    result = json.loads((out / "results.json").read_text())["openllm"]
    ran = ("arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k")
    assert all(0.0 <= result[task] <= 1.0 for task in ran)
    assert result["arc"] in (0.0, 1.0) and result["gsm8k"] in (0.0, 1.0)  # one item each
    assert result["winogrande"] is None and result["missing"] == ["winogrande"]
    assert result["average"] == pytest.approx(sum(result[task] for task in ran) / len(ran), abs=1e-12)
    assert "average is over arc, hellaswag, mmlu, truthfulqa, gsm8k only" in result["note"]
    assert result["protocol"].startswith(openllm.PROTOCOL)
    assert "ARC from --data-dir (AI2 JSONL): 3 of 1172 test questions, the 25 shots drawn from the dev split" in (
        result["protocol"])

    lm_eval_results = json.loads((out / "openllm" / "lm_eval_results.json").read_text())
    subjects = [name for name in lm_eval_results["results"] if name.startswith("mmlu_")]
    assert len(subjects) == 57
    mmlu_macro = sum(lm_eval_results["results"][s]["acc,none"] for s in subjects) / 57
    assert result["mmlu"] == pytest.approx(mmlu_macro, abs=1e-12)
    assert result["arc"] == lm_eval_results["results"]["arc_challenge"]["acc_norm,none"]
    assert lm_eval_results["n-shot"]["arc_challenge"] == 25 and lm_eval_results["n-shot"]["hellaswag"] == 10
    assert lm_eval_results["n-shot"]["mmlu_anatomy"] == 5 and lm_eval_results["n-shot"]["truthfulqa_mc2"] == 0


def test_generation_engine_is_released_before_lm_eval_loads_the_model(chat_model, fixtures_dir, nltk_punkt, tmp_path,
                                                                      monkeypatch, capsys):
    """--suite all on one GPU: OpenLLM (lm-eval loads --model itself) runs after the generating
    benchmarks, and by then the generation engine is gone (here: no reference to the HF model left)."""
    engines = []
    load = generation.HFChatGenerator._load
    monkeypatch.setattr(generation.HFChatGenerator, "_load", lambda self: engines.append(weakref.ref(load(self))) or load(self))
    at_lm_eval = {}

    def lm_eval_stand_in(ctx):
        at_lm_eval.update(engines_alive=[ref() is not None for ref in engines], generator=ctx.generator)
        return {"average": 0.5}

    monkeypatch.setattr(openllm, "run", lm_eval_stand_in)
    out = tmp_path / "out"
    _eval(capsys, "--model", chat_model, "--benchmarks", "openllm,ifeval", "--data-dir", fixtures_dir, "--out", out,
          "--limit", 1, "--max-new-tokens", 2)
    assert engines and at_lm_eval == {"engines_alive": [False] * len(engines), "generator": None}
    assert list(json.loads((out / "results.json").read_text())) == ["ifeval", "openllm"]
