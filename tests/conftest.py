"""Test-wide environment: GPU stand-ins on the import path, offline hubs, shared data.

OpenRLHF imports flash_attn and vllm at module level; tests/gpu_stubs/ holds import-only stand-ins.
They go first on sys.path for this process and on PYTHONPATH for subprocesses and Ray workers.
"""

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
GPU_STUBS = TESTS_DIR / "gpu_stubs"
SHARED = REPO_ROOT.parent / "shared"  # ../shared beside the clone, as in CI
BENCHMARKS = SHARED / "benchmarks"

sys.path.insert(0, str(GPU_STUBS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(GPU_STUBS), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "NLTK_DATA": str(SHARED / "nltk_data"),
    }
)


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """../shared/benchmarks, the offline benchmark files (see its README for provenance)."""
    if not BENCHMARKS.is_dir():
        pytest.fail(f"{BENCHMARKS} is missing: tests expect ../shared beside the repository clone")
    return BENCHMARKS
