"""The CPU install stays in step with OpenRLHF 0.11.2, and the GPU stand-ins stay test-only."""

import ast
import importlib
import importlib.metadata
import importlib.util
import subprocess
from pathlib import Path

from packaging.requirements import Requirement

from openrlhf_cfpo.openrlhf_patch import SUPPORTED_OPENRLHF_VERSION
from openrlhf_cfpo.trl_patch import SUPPORTED_TRL_VERSION

REPO = Path(__file__).resolve().parents[2]
GPU_ONLY = {"flash-attn", "torch"}  # flash-attn needs CUDA to build; torch is pinned to a CPU build


def requirement_lines(path: Path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_cpu_requirements_are_openrlhfs_own_minus_gpu_only():
    declared = [Requirement(r) for r in importlib.metadata.requires("openrlhf") or []]
    upstream = {str(r) for r in declared if r.marker is None and r.name not in GPU_ONLY}
    ours = {str(Requirement(line)) for line in requirement_lines(REPO / "requirements/openrlhf-cpu.txt")}
    assert ours == upstream


def test_versions_pinned_once_and_consistently():
    assert importlib.metadata.version("openrlhf") == SUPPORTED_OPENRLHF_VERSION
    setup_py = (REPO / "setup.py").read_text()
    assert f'OPENRLHF_VERSION = "{SUPPORTED_OPENRLHF_VERSION}"' in setup_py
    makefile = (REPO / "Makefile").read_text()
    assert f"--no-deps openrlhf=={SUPPORTED_OPENRLHF_VERSION}" in makefile
    assert requirement_lines(REPO / "requirements/cpu-constraints.txt") == ["torch==2.13.0"]
    assert "torch==2.13.0" in makefile


def test_trl_extra_pins_the_patched_version_and_make_installs_it():
    assert importlib.metadata.version("trl") == SUPPORTED_TRL_VERSION
    setup_py = (REPO / "setup.py").read_text()
    assert f'TRL_VERSION = "{SUPPORTED_TRL_VERSION}"' in setup_py and '"trl": [f"trl=={TRL_VERSION}"]' in setup_py
    assert "-e '.[eval,test,trl]'" in (REPO / "Makefile").read_text()


def module_level_imports(package: str, names: tuple):
    """(module, imported names) for every import of `names` at module level (not inside a def) in `package`."""
    root = Path(importlib.util.find_spec(package).origin).parent
    found = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in names:
                found.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update((alias.name, None) for alias in node.names if alias.name.split(".")[0] in names)
    return found


def test_gpu_stubs_cover_exactly_what_openrlhf_imports_at_module_level():
    imports = module_level_imports("openrlhf", ("flash_attn", "vllm"))
    assert imports, "expected OpenRLHF 0.11.2 to import flash_attn/vllm at module level"
    stub_root = REPO / "tests/gpu_stubs"
    for module, name in imports:
        stub = importlib.import_module(module)
        assert Path(stub.__file__).is_relative_to(stub_root), f"{module} did not resolve to tests/gpu_stubs"
        if name is not None:
            assert hasattr(stub, name), f"tests/gpu_stubs lacks {module}.{name}"
    # Any use raises: the stand-ins only let modules import.
    for module, name in imports:
        if name is not None:
            try:
                getattr(importlib.import_module(module), name)()
            except RuntimeError as err:
                assert "CPU test stand-in" in str(err)
            else:
                raise AssertionError(f"{module}.{name}() did not raise")


def test_nothing_outside_tests_uses_the_gpu_stubs():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    code = [REPO / p for p in tracked.splitlines() if not p.startswith("tests/") and not p.endswith(".md")]
    offenders = [str(p.relative_to(REPO)) for p in code if p.is_file() and "gpu_stubs" in p.read_text(errors="ignore")]
    assert offenders == []
