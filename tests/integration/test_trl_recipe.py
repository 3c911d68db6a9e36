"""examples/trl/: the TRL recipe carries the paper's Table 3 (RLVR) settings and trains with TRL.

The recipe's own parser builds the GRPOConfig it would train with (no training) for every paper model,
and the sweep script is run with a stand-in launcher that records each run's flags. One short run of
the real recipe on a tiny chat model and six MATH problems checks the data, reward and resume path.
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_cfpo.prompts import rlvr_system_prompt_for_model
from tiny_chat_model import build_small_vocab_chat_model
from trl_without_gpu_stubs import import_trl_grpo

import_trl_grpo()

REPO = Path(__file__).resolve().parents[2]
RECIPE_DIR = REPO / "examples" / "trl"
QWEN_MODELS = [f"Qwen/Qwen2.5-{size}{kind}" for size in ("1.5B", "3B", "7B") for kind in ("", "-Instruct")]


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_grpo_cfpo", RECIPE_DIR / "train_grpo_cfpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


recipe_module = load_recipe()


def parse(*argv, processes=1):
    return recipe_module.parse_args([*map(str, argv), "--use_cpu"], processes=processes)


@pytest.mark.parametrize("model", QWEN_MODELS)
def test_config_carries_table3(model):
    for loss_type in ("grpo", "cfpo"):
        recipe, config = parse("--model", model, "--loss_type", loss_type, "--iterations", 8)
        assert config.learning_rate == (1e-6 if "7B" in model else 3e-6)
        # 128 problems x group 3 per optimizer step; one generation batch per step, reused 8 times.
        assert config.num_generations == 3
        assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 128 * 3
        assert config.generation_batch_size == 128 * 3 and config.steps_per_generation == config.gradient_accumulation_steps
        assert config.num_iterations == 8 and config.loss_type == loss_type
        assert config.beta == 0.0
        assert (recipe.max_prompt_length, config.max_completion_length) == (512, 3072)
        assert config.temperature == 0.9
        assert config.epsilon == 0.2 and config.epsilon_high is None  # ε_low = ε_high = 0.2
        assert config.lr_scheduler_type == "cosine" and config.warmup_steps == 0.1
        assert (config.adam_beta1, config.adam_beta2, config.adam_epsilon) == (0.9, 0.999, 1e-8)
        assert config.optim.startswith("adamw") and config.weight_decay == 0.0
        assert config.scale_rewards == "group"  # eq. (9): group-normalised advantages
        assert recipe_module.system_prompt(recipe) == rlvr_system_prompt_for_model(model)
        assert config.output_dir == f"runs/trl/math_{model.split('/')[1]}_{loss_type}_it8"


def test_batch_maps_to_processes_and_accumulation():
    _, config = parse("--model", "Qwen/Qwen2.5-3B", processes=8)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (8, 6)  # 8 x 6 x 8 = 384
    _, config = parse("--model", "Qwen/Qwen2.5-3B", "--per_device_train_batch_size", 4)
    assert config.gradient_accumulation_steps == 96 and config.num_iterations == 1


def test_command_line_overrides_the_recipe():
    recipe, config = parse("--model", "/ckpt/policy", "--model_size", "7B", "--learning_rate", 5e-6,
                           "--max_completion_length", 1024, "--num_iterations", 4, "--output_dir", "/tmp/run")
    assert (config.learning_rate, config.max_completion_length, config.num_iterations) == (5e-6, 1024, 4)
    assert config.output_dir == "/tmp/run"
    assert recipe_module.system_prompt(recipe) == rlvr_system_prompt_for_model("Qwen2.5-7B")


@pytest.mark.parametrize("argv,message", [
    (["--model", "org/policy"], "cannot tell the model size from --model org/policy; pass --model_size"),
    (["--per_device_train_batch_size", 5], "384 per optimizer step is not a multiple of"),
    (["--gradient_accumulation_steps", 3], "leave --gradient_accumulation_steps and --num_generations"),
    (["--num_generations", 4, "--per_device_train_batch_size", 4], "in groups of 4"),
    (["--iterations", 4, "--num_iterations", 2], "--iterations and --num_iterations disagree"),
    (["--loss_type", "ppo"], "--loss_type ppo is not one the recipe trains; use grpo | cfpo | dapo | cfpo_dapo"),
    (["--iterations", 0], "--iterations 0: the sample reuse is at least 1"),
])
def test_settings_it_cannot_run_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe_module.main([*map(str, argv), "--use_cpu"])
    assert str(exit_info.value).startswith("train_grpo_cfpo.py: error: ") and message in str(exit_info.value)
    assert "\n" not in str(exit_info.value)


def test_math_reward_in_trls_signature_scores_boxed_answers_with_math_verify():
    logged = {}
    completions = [[{"role": "assistant", "content": f"so the answer is $\\boxed{{{answer}}}$."}]
                   for answer in ("\\frac{1}{2}", "0.4")] + [[{"role": "assistant", "content": "one half"}]]
    rewards = recipe_module.math_reward(completions, solution=["Thus \\boxed{0.5}"] * 3,
                                        log_metric=logged.__setitem__, trainer_state=None)
    assert rewards == [1.0, 0.0, 0.0]
    assert logged == {"has_boxed_answer": pytest.approx(2 / 3)}


def test_generation_stops_at_the_chat_templates_end_of_turn(fixtures_dir):
    """The Llama 3 tokenizer here declares <|end_of_text|> as eos while its template ends turns with <|eot_id|>."""
    recipe = recipe_module.RecipeArguments(model=str(fixtures_dir / "tokenizers" / "meta_llama3_8b_instruct_hf"))
    _, config = parse("--model_size", "3B", "--use_vllm")
    tokenizer = recipe_module.load_tokenizer(recipe, config)
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.padding_side == "left"
    assert config.generation_kwargs == {"stop_token_ids": [tokenizer.convert_tokens_to_ids("<|eot_id|>")]}


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, fixtures_dir):
    """A tiny chat Llama whose eos (<|endoftext|>) is not its template's end of turn (<|im_end|>), like
    Qwen2.5 base; its 512-token vocabulary keeps TRL's log-prob passes fast on CPU."""
    corpus = [fixtures_dir / "gsm8k" / "test.jsonl"]
    return build_small_vocab_chat_model(tmp_path_factory.mktemp("tiny_chat"), corpus)


@pytest.fixture
def six_problems(tmp_path, fixtures_dir, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    lines = (fixtures_dir / "math_train" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:6]
    path = tmp_path / "math6.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dataset_is_chat_prompts_within_the_prompt_length(chat_model, six_problems):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    rows = [json.loads(line) for line in six_problems.read_text().splitlines()]
    system = rlvr_system_prompt_for_model("Qwen2.5-1.5B")
    lengths = [len(tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                  {"role": "user", "content": row["problem"]}],
                                                 add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
               for row in rows]
    limit = sorted(lengths)[2]
    recipe = recipe_module.RecipeArguments(math_train=str(six_problems), max_prompt_length=limit)
    dataset = recipe_module.math_train_dataset(recipe, tokenizer, system)
    expected = [row for row, length in zip(rows, lengths) if length <= limit]
    assert 0 < len(dataset) == len(expected) < len(rows)
    assert [record["solution"] for record in dataset] == [row["solution"] for row in expected]
    assert dataset[0]["prompt"] == [{"role": "system", "content": system}, {"role": "user", "content": expected[0]["problem"]}]



def test_recipe_trains_writes_its_record_and_resumes(chat_model, six_problems, tmp_path, caplog, one_torch_thread):
    out = tmp_path / "run"
    argv = ["--model", chat_model, "--model_size", "1.5B", "--math_train", six_problems, "--prompts_per_step", 2,
            "--per_device_train_batch_size", 6, "--max_completion_length", 8, "--iterations", 2,
            "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
            "--save_steps", 1, "--logging_steps", 1, "--output_dir", out, "--disable_tqdm", "true"]
    assert recipe_module.main([*map(str, argv), "--max_steps", "1"]) == 0
    record = json.loads((out / "openrlhf_cfpo_run.json").read_text())
    assert record["config"]["grpo_config"]["loss_type"] == "cfpo"
    assert record["config"]["grpo_config"]["num_iterations"] == 2
    assert record["config"]["system_prompt"] == rlvr_system_prompt_for_model("Qwen2.5-1.5B")
    assert record["versions"]["trl"] == "1.16.0"
    assert record["config"]["train_problems"] == 6
    assert (out / "checkpoint-1").is_dir() and (out / "model.safetensors").is_file()
    # Generation stopped (and TRL masked completions) at the template's end of turn, as well as at eos.
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer["eos_token"] == "<|im_end|>"
    vocab = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    ids = {token["content"]: token["id"] for token in vocab}
    stops = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert {ids["<|im_end|>"], ids["<|endoftext|>"]} <= set(stops)
    with caplog.at_level(logging.INFO, logger="train_grpo_cfpo"):
        assert recipe_module.main([*map(str, argv), "--max_steps", "2"]) == 0
    assert f"resuming from {out / 'checkpoint-1'}" in caplog.text
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = {key for entry in state["log_history"] for key in entry}
    assert {"rewards/math_reward/mean", "has_boxed_answer", "clip_ratio/region_mean"} <= logged


def run_sweep(tmp_path, *args, **env):
    """sweep_iterations.sh with a recorder as LAUNCHER (tmp_path/launched: each run's argv) and, as the
    PYTHON that checks the runs, a stand-in that keeps the folder of records it is given (tmp_path/checked,
    with its command line in `call`) and finds every run valid: the check itself,
    which imports TRL (~10 s), runs in-process in the tests that read that folder."""
    recorder = tmp_path / "record_argv"
    recorder.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$(mktemp "$RECORD_DIR/argv.XXXXXX")"\n')
    checker = tmp_path / "python"
    checker.write_text('#!/usr/bin/env bash\ncp -r "${@: -1}" "$CHECKED" && echo "$*" > "$CHECKED/call"\n')
    for script in (recorder, checker):
        script.chmod(0o755)
    (tmp_path / "launched").mkdir()
    environment = {key: val for key, val in os.environ.items() if key not in ("SKIP_INVALID", "LAYOUT_ONLY")}
    environment.update(LAUNCHER=str(recorder), RECORD_DIR=str(tmp_path / "launched"), PYTHON=str(checker),
                       CHECKED=str(tmp_path / "checked"), MODEL="Qwen/Qwen2.5-7B", **env)
    done = subprocess.run(["bash", str(RECIPE_DIR / "sweep_iterations.sh"), *args], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    launched = [path.read_text().split("\0")[:-1] for path in sorted((tmp_path / "launched").iterdir())]
    return launched, tmp_path / "checked"


def test_sweep_runs_the_tables_5_to_10_grid(tmp_path, capsys):
    launched, checked = run_sweep(tmp_path, "--seed", "7", NUM_PROCESSES="8")
    runs = []
    for script, *argv in launched:
        assert Path(script) == RECIPE_DIR / "train_grpo_cfpo.py"
        runs.append(parse(*argv, processes=8)[1])
    # The paper's GRPO and CFPO, both with eq. (8)'s normalization (TRL's "grpo", openrlhf_cfpo's "cfpo").
    assert sorted((c.loss_type, c.num_iterations) for c in runs) == sorted(
        (loss, it) for loss in ("grpo", "cfpo") for it in (2, 4, 8, 16))
    assert all(c.seed == 7 and c.learning_rate == 1e-6 for c in runs)
    assert len({c.output_dir for c in runs}) == len(runs)
    # Before launching, the sweep handed every run's flags to the recipe's check, with its process count.
    recipe, flag, processes, _ = (checked / "call").read_text().split()
    assert (Path(recipe), flag, processes) == (RECIPE_DIR / "train_grpo_cfpo.py", "--check_layouts", "8")
    records = [(checked / f"{index}.layout").read_text().split("\0")[1:-1] for index in range(1, len(runs) + 1)]
    assert sorted(records) == sorted(argv for _, *argv in launched)
    assert recipe_module.check_layouts(8, str(checked)) == 0 and capsys.readouterr().out == ""


def test_sweep_check_names_each_run_the_recipe_refuses(tmp_path, capsys):
    """The check the sweep runs before any run (recipe_module.check_layouts on the sweep's records):
    one line per run the recipe would refuse, naming the run and the recipe's reason."""
    _, checked = run_sweep(tmp_path, ITERATIONS="2 0", LOSS_TYPES="cfpo cfpp", NUM_PROCESSES="5")
    refused = {"--loss_type cfpo --iterations 0": "--iterations 0: the sample reuse is at least 1",
               "--loss_type cfpp --iterations 2": "--loss_type cfpp is not one the recipe trains",
               "--loss_type cfpp --iterations 0": "--loss_type cfpp is not one the recipe trains"}
    layout = "384 per optimizer step is not a multiple of --per_device_train_batch_size 8 x 5 process(es)"
    for processes, reasons in ((1, refused), (5, {**refused, "--loss_type cfpo --iterations 2": layout})):
        assert recipe_module.check_layouts(processes, str(checked)) == 0
        lines = [line.split("\t", 1)[1] for line in capsys.readouterr().out.splitlines()]
        assert {line.split(": ", 1)[0] for line in lines} == set(reasons)
        assert all(reasons[line.split(": ", 1)[0]] in line for line in lines), lines
