"""Bad input to ``openrlhf-cfpo eval`` → one clear line on stderr, exit status 2, no traceback."""

import json
import shutil

import pytest

from openrlhf_cfpo.cli.main import main

REFERENCE = "ifeval/reference_gpt4/input_response_data_gpt4_20231107_145030.jsonl"


def _eval(capsys, *argv):
    rc = main(["eval", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--benchmarks", "ifeval,foo", "--model", "m"], "unknown benchmark 'foo': choose from alpaca_eval"),
        (["--model", "m"], "choose what to run: --suite"),
        (["--benchmarks", "ifeval"], "--model is required"),
        (["--benchmarks", "ifeval,openllm", "--responses", "{ref}"], "pass --benchmarks with exactly one"),
        (["--benchmarks", "ifeval", "--responses", "{tmp}/none.jsonl"], "none.jsonl does not exist"),
        (["--benchmarks", "ifeval", "--model", "m", "--limit", "0"], "--limit must be a positive integer"),
        (["--benchmarks", "ifeval", "--model", "m", "--data-dir", "{tmp}/nowhere"], "is not a folder"),
        (["--benchmarks", "ifeval", "--model", "m", "--backend", "vllm"], "--backend vllm needs the vllm package"),
        (["--benchmarks", "openllm", "--responses", "{ref}"], "openllm scores log-likelihoods"),
        (["--benchmarks", "gpqa_diamond", "--model", "{qwen}", "--model-size", "7B", "--data-dir", "{data}"],
         "gpqa_diamond.csv not found: put gpqa_diamond/gpqa_diamond.csv"),
        (["--suite", "reasoning", "--model", "{tmp}", "--model-name", "cfpo-run"],
         "' / 'cfpo-run' names no size of the paper's (1.5B, 3B, 7B): pass --model-size"),
        (["--benchmarks", "ifeval", "--model", "/ckpt/final"],
         "--model /ckpt/final does not exist: pass a checkpoint folder or a Hugging Face model id"),
        (["--benchmarks", "ifeval", "--model", "runs/cfpo/final"], "--model runs/cfpo/final does not exist"),
        (["--benchmarks", "ifeval", "--model", "org/no-such-model"],
         "cannot load the tokenizer of --model 'org/no-such-model'"),
        (["--benchmarks", "mt_bench", "--model", "m", "--judge-model", "gpt-4,gpt-4.1"],
         "--judge-model names two judges for all benchmarks (gpt-4, gpt-4.1)"),
        (["--benchmarks", "mt_bench", "--model", "m", "--judge-model", "ifeval=gpt-4"],
         "--judge-model ifeval=gpt-4: 'ifeval' has no judge: choose from alpaca_eval, arena_hard, mt_bench"),
        (["--benchmarks", "mt_bench", "--model", "m", "--judge-model", "mt_bench="],
         "give each judged benchmark one model, as mt_bench=NAME"),
    ],
)
def test_bad_flags_are_one_clear_line(tmp_path, fixtures_dir, capsys, argv, message):
    qwen = fixtures_dir / "tokenizers" / "qwen3"  # a folder with a chat tokenizer and no weights
    argv = [a.format(tmp=tmp_path, ref=fixtures_dir / REFERENCE, data=fixtures_dir, qwen=qwen) for a in argv]
    rc, err = _eval(capsys, *argv, "--out", tmp_path / "out")
    assert rc == 2
    assert err.startswith("openrlhf-cfpo eval: error: ") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_missing_data_file_names_the_file(tmp_path, fixtures_dir, capsys):
    rc, err = _eval(capsys, "--benchmarks", "ifeval", "--responses", fixtures_dir / REFERENCE,
                    "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert rc == 2 and f"{tmp_path / 'ifeval' / 'input_data.jsonl'} not found" in err


def test_corrupt_data_file_names_the_line(tmp_path, fixtures_dir, capsys):
    (tmp_path / "ifeval").mkdir()
    lines = (fixtures_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()
    lines[2] = lines[2][:40]  # truncated record
    (tmp_path / "ifeval" / "input_data.jsonl").write_text("\n".join(lines) + "\n")
    rc, err = _eval(capsys, "--benchmarks", "ifeval", "--responses", fixtures_dir / REFERENCE,
                    "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert rc == 2 and "input_data.jsonl line 3 is not valid JSON" in err and "replace it" in err


def test_responses_for_unknown_prompts_are_rejected(tmp_path, fixtures_dir, capsys):
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"prompt": "Tell me a joke.", "response": "No."}) + "\n")
    rc, err = _eval(capsys, "--benchmarks", "ifeval", "--responses", responses, "--data-dir", fixtures_dir,
                    "--out", tmp_path / "out")
    assert rc == 2 and "r.jsonl line 1: prompt 'Tell me a joke.'... is not an IFEval prompt" in err


def test_reasoning_with_no_data_for_any_selected_task_is_an_error(tmp_path, fixtures_dir, capsys):
    shutil.copytree(fixtures_dir / "aime24", tmp_path / "data" / "aime24")
    rc, err = _eval(capsys, "--benchmarks", "math500,gpqa_diamond", "--model", fixtures_dir / "tokenizers" / "qwen3",
                    "--model-size", "3B", "--data-dir", tmp_path / "data", "--out", tmp_path / "out")
    assert rc == 2 and "math500: " in err and "gpqa_diamond: " in err


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for flag in ("--model", "--suite", "--benchmarks", "--out", "--backend", "--judge-model", "--judge-base-url",
                 "--data-dir", "--limit", "--responses", "--concurrency"):
        assert flag in usage


@pytest.mark.parametrize("benchmark, model, message", [
    ("alpaca_eval", "/no/such/checkpoint", "--model /no/such/checkpoint does not exist"),
    ("openllm", "/no/such/checkpoint", "--model /no/such/checkpoint does not exist"),
    ("alpaca_eval", "org/no-such-model", "cannot load the tokenizer of --model 'org/no-such-model'"),
])
def test_missing_model_fails_before_any_benchmark_work(benchmark, model, message, tmp_path, monkeypatch, capsys):
    """Neither AlpacaEval's df_gamed preflight (a Hub download), a data file, nor lm-eval comes first."""
    from openrlhf_cfpo.evaluation import alpaca_eval, openllm

    work = []
    monkeypatch.setattr(alpaca_eval, "_require_glm_data", lambda: work.append("df_gamed preflight"))
    monkeypatch.setattr(alpaca_eval, "locate", lambda spec, data_dir: work.append(spec.relpath))
    monkeypatch.setattr(openllm, "run", lambda ctx: work.append("lm-eval"))
    rc, err = _eval(capsys, "--benchmarks", benchmark, "--model", model, "--out", tmp_path / "out")
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert work == []
