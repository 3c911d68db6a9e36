"""Fixtures shared by integration test modules."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def quick_lab(tmp_path_factory) -> SimpleNamespace:
    """One `openrlhf-cfpo lab --quick` sweep (3 seeds x ppo,cfpo x iterations 1-16, one worker, a
    fresh warm-up cache), read by the lab's and the report's tests."""
    from openrlhf_cfpo.cli.main import main

    root: Path = tmp_path_factory.mktemp("quick_lab")
    out, cache = root / "out", root / "cache"
    argv = ["lab", "--quick", "--no-progress", "--workers", "1", "--out", str(out), "--cache-dir", str(cache)]
    assert main(argv) == 0
    return SimpleNamespace(out=out, cache=cache)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: the 2-core CI machine runs tiny models faster single-threaded
    (tiny matmuls, no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
