"""Test-wide environment: GPU stand-ins on the import path, offline hubs, benchmark data.

OpenRLHF imports flash_attn and vllm at module level; tests/gpu_stubs/ holds import-only stand-ins.
They go first on sys.path for this process and on PYTHONPATH for subprocesses and Ray workers.

Benchmark data: ``fixtures_dir`` is tests/fixtures/benchmarks, a few committed records per benchmark
laid out like the full folder. ``benchmark_data`` is the full folder ($OPENRLHF_CFPO_DATA_DIR, else
the eval CLI's download cache); a test marked ``@pytest.mark.needs_data("ifeval/input_data.jsonl", ...)``
is skipped, with a reason naming `make data`, when those files are not there, or fails under
OPENRLHF_CFPO_REQUIRE_DATA=1 (CI). ``nltk_punkt`` does the same for NLTK's Punkt tables (IFEval).
"""

import functools
import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
GPU_STUBS = TESTS_DIR / "gpu_stubs"
FIXTURES = TESTS_DIR / "fixtures" / "benchmarks"

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
    }
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_data(*relpaths): files of the full benchmark folder the test reads (see benchmark_data)"
    )


def missing_data(reason: str, variable: str = "OPENRLHF_CFPO_DATA_DIR") -> None:
    """Skip the calling test (``reason`` names what is missing), or fail it under OPENRLHF_CFPO_REQUIRE_DATA=1."""
    reason = f"{reason}: run `make data` or set {variable}"
    if os.environ.get("OPENRLHF_CFPO_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (OPENRLHF_CFPO_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(reason)


def full_data_root() -> Path:
    from openrlhf_cfpo.evaluation.data import cache_root

    return Path(os.environ.get("OPENRLHF_CFPO_DATA_DIR") or cache_root())


@functools.lru_cache(maxsize=None)
def make_data_relpaths() -> frozenset:
    """Every file `make data` fetches: the Makefile's TEST_DATA, resolved as `openrlhf-cfpo data fetch` does."""
    from openrlhf_cfpo.cli.data import select_units

    line = next(line for line in (REPO_ROOT / "Makefile").read_text().splitlines() if line.startswith("TEST_DATA"))
    units, _ = select_units(None, line.split(":=", 1)[1].strip())
    return frozenset(spec.relpath for files in units.values() for spec in files)


def require_data(*relpaths: str) -> Path:
    """The full benchmark folder, after checking it holds ``relpaths`` (else skip/fail, see missing_data).
    A file that `make data` would not fetch fails the test: its skip reason would send users nowhere."""
    unfetched = sorted(set(relpaths) - make_data_relpaths())
    if unfetched:
        pytest.fail(f"`make data` does not fetch {', '.join(unfetched)}: add its benchmark to TEST_DATA in the Makefile")
    root = full_data_root()
    absent = [relpath for relpath in relpaths if not (root / relpath).exists()]
    if absent or not root.is_dir():
        what = f"files {', '.join(absent)}" if absent else "folder"
        missing_data(f"needs the full benchmark {what} (looked in {root})")
    return root


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures/benchmarks: a few records per benchmark and small chat tokenizers, as a --data-dir."""
    return FIXTURES


@pytest.fixture
def benchmark_data(request) -> Path:
    """The full benchmark folder, holding the files named by the test's ``needs_data`` marker."""
    marker = request.node.get_closest_marker("needs_data")
    return require_data(*(marker.args if marker else ()))


@pytest.fixture(scope="session")
def nltk_punkt() -> None:
    """NLTK's Punkt sentence tables (IFEval's checkers), found on NLTK's search path ($NLTK_DATA, ~/nltk_data...)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        missing_data("needs NLTK's punkt_tab tables (IFEval) on NLTK's data path", "NLTK_DATA")
