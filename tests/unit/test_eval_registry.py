"""Benchmark registry, suites.yaml and the generation-backend choice (no models)."""

import importlib.metadata

import pytest

from openrlhf_cfpo.evaluation import generation
from openrlhf_cfpo.evaluation.registry import (
    BENCHMARK_MODULES,
    TASK_ALIASES,
    UnknownBenchmarkError,
    resolve_benchmarks,
)
from openrlhf_cfpo.evaluation.suites import SuiteError, read_suites, suite_benchmarks


def test_issue_names_resolve_to_modules_and_tasks():
    selection = resolve_benchmarks(["ifeval", "math500", "gsm8k", "openllm.mmlu", "openllm.arc", "math500"])
    assert selection == {"ifeval": None, "reasoning": ("math500", "gsm8k"), "openllm": ("mmlu", "arc")}


def test_whole_benchmark_wins_over_its_tasks():
    assert resolve_benchmarks(["reasoning.aime24", "reasoning"]) == {"reasoning": None}
    assert resolve_benchmarks(["reasoning", "aime24"]) == {"reasoning": None}


def test_judge_benchmarks_are_registered_by_the_contract_names():
    for name in ("alpaca_eval", "arena_hard", "mt_bench"):
        assert BENCHMARK_MODULES[name] == f"openrlhf_cfpo.evaluation.{name}"


def test_unknown_benchmark_and_task_errors_list_the_choices():
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark 'mmlu'.*ifeval.*gpqa_diamond"):
        resolve_benchmarks(["mmlu"])
    with pytest.raises(UnknownBenchmarkError, match="unknown task 'bbh' of benchmark 'openllm'.*hellaswag"):
        resolve_benchmarks(["openllm.bbh"])


def test_aliases_name_tasks_the_reasoning_module_declares():
    from openrlhf_cfpo.evaluation import reasoning

    assert {alias.split(".")[1] for alias in TASK_ALIASES.values()} == set(reasoning.TASKS)


def test_suites_file_matches_the_issue():
    suites = read_suites()
    assert suites["alignment"] == ["alpaca_eval", "arena_hard", "mt_bench", "ifeval"]
    assert suites["capability"] == ["openllm"]
    assert suite_benchmarks("reasoning") == ["math500", "gsm8k", "aime24", "gpqa_diamond"]
    assert suite_benchmarks("all") == [*suites["alignment"], "openllm", *suites["reasoning"]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("alignment: [ifeval, nope]\n", "suite 'alignment'.*unknown benchmark 'nope'"),
        ("alignment: ifeval\n", "must map each suite name to a list"),
        ("all: [ifeval]\n", "must not define 'all'"),
        ("alignment: [ifeval\n", "not valid YAML"),
    ],
)
def test_bad_suite_files_are_rejected_with_the_reason(tmp_path, text, message):
    path = tmp_path / "suites.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        read_suites(path)


def test_unknown_suite_lists_the_suites():
    with pytest.raises(SuiteError, match="unknown suite 'safety'.*alignment, capability, reasoning, all"):
        suite_benchmarks("safety")


def test_vllm_stand_in_does_not_select_the_vllm_backend():
    import vllm  # tests/gpu_stubs puts an import-only stand-in on the path

    assert vllm is not None
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("vllm")
    assert not generation.vllm_usable()
    assert generation.default_backend() == "hf"
    with pytest.raises(generation.GenerationError, match="--backend vllm needs the vllm package and a CUDA GPU"):
        generation.make_generator("some/model", "vllm")


def test_vllm_is_the_default_with_a_real_distribution_and_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(generation.importlib.metadata, "distribution", lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert generation.default_backend() == "hf"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert generation.default_backend() == "vllm"
    assert isinstance(generation.make_generator("some/model"), generation.VLLMChatGenerator)


def test_configs_found_in_an_installed_copy(tmp_path, monkeypatch):
    """A non-editable install (e.g. the Docker image) reads the copies setup.py's data_files put
    under <prefix>/share/openrlhf-cfpo/evaluation."""
    import shutil
    import sys

    from openrlhf_cfpo.evaluation import suites
    from openrlhf_cfpo.evaluation.judge import load_judge_config

    checkout_configs = suites.config_dir()
    assert (checkout_configs / "suites.yaml").is_file() and (checkout_configs / "judges").is_dir()
    installed = tmp_path / "prefix" / "share" / "openrlhf-cfpo" / "evaluation"
    shutil.copytree(checkout_configs, installed, ignore=shutil.ignore_patterns("*.sh"))
    site_packages_file = tmp_path / "prefix" / "lib" / "site-packages" / "openrlhf_cfpo" / "evaluation" / "suites.py"
    monkeypatch.setattr(suites, "__file__", str(site_packages_file))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert suites.config_dir() == installed
    assert suites.suite_benchmarks("alignment") == suites.read_suites(checkout_configs / "suites.yaml")["alignment"]
    assert load_judge_config("mt_bench")["model"]
