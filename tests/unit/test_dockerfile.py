"""dockerfile/Dockerfile pins the GPU stack that setup.py and OpenRLHF 0.11.2 declare.

`docker build` cannot run here, so the file is read: its base image must be the one OpenRLHF
0.11.2's README (its wheel's long description) runs, and every `name==version` it installs must
equal the pin in setup.py and in the installed openrlhf wheel's requirements.
"""

from __future__ import annotations

import importlib.metadata
import re
import runpy
from pathlib import Path
from typing import Dict, List

import pytest
import setuptools
from packaging.requirements import Requirement

from openrlhf_cfpo.openrlhf_patch import SUPPORTED_OPENRLHF_VERSION

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "dockerfile" / "Dockerfile"
NGC_PYTORCH = re.compile(r"nvcr\.io/nvidia/pytorch:[\w.-]+")


def exact_pins(requirements: List[str], extra: str = "") -> Dict[str, str]:
    """{canonical name: version} of the ``name==version`` requirements that apply with ``extra``."""
    pins = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[requirement.name.lower().replace("_", "-")] = specs[0].version
    return pins


@pytest.fixture(scope="module")
def dockerfile_lines() -> List[str]:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def docker_pins(dockerfile_lines) -> Dict[str, str]:
    installs = [line for line in dockerfile_lines if line.startswith("RUN") and "pip install" in line]
    tokens = [token for line in installs for token in line.split() if "==" in token]
    return exact_pins(tokens)


@pytest.fixture(scope="module")
def setup_kwargs(monkeypatch_module) -> Dict[str, object]:
    captured: Dict[str, object] = {}
    monkeypatch_module.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch_module.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return captured


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_base_image_is_openrlhf_readme_one(dockerfile_lines):
    readme = importlib.metadata.metadata("openrlhf").get_payload()
    upstream_images = set(NGC_PYTORCH.findall(readme))
    assert len(upstream_images) == 1, upstream_images
    assert dockerfile_lines[0] == f"FROM {upstream_images.pop()}"


def test_pins_match_openrlhf_wheel(docker_pins):
    assert importlib.metadata.version("openrlhf") == SUPPORTED_OPENRLHF_VERSION
    upstream = exact_pins(importlib.metadata.requires("openrlhf"), extra="vllm")
    assert set(docker_pins) == {"vllm", "deepspeed", "transformers", "flash-attn"}
    for name, version in docker_pins.items():
        assert upstream[name] == version, name


def test_pins_match_setup_py(docker_pins, setup_kwargs):
    gpu_extra = exact_pins(setup_kwargs["extras_require"]["gpu"])
    assert gpu_extra == {"openrlhf": SUPPORTED_OPENRLHF_VERSION, "flash-attn": docker_pins["flash-attn"]}
    # transformers is pinned where OpenRLHF is installed, not in install_requires: the verl extra needs <5.11.
    assert "transformers" in setup_kwargs["install_requires"]
    cpu_requirements = (REPO / "requirements" / "openrlhf-cpu.txt").read_text(encoding="utf-8").splitlines()
    cpu_pins = exact_pins([line for line in cpu_requirements if line and not line.startswith("#")])
    assert cpu_pins["deepspeed"] == docker_pins["deepspeed"]
    assert cpu_pins["transformers"] == docker_pins["transformers"]


def test_installs_this_package_with_gpu_eval_and_trl_extras(dockerfile_lines, setup_kwargs):
    assert "COPY . ." in dockerfile_lines
    (install,) = [line for line in dockerfile_lines if re.search(r"pip install \S*\.\[", line)]
    extras = set(re.search(r"\.\[([\w,]+)\]", install).group(1).split(","))
    assert extras == {"gpu", "eval", "trl"} and extras <= set(setup_kwargs["extras_require"])
    # the package comes after the pinned stack, so pip finds the pins already satisfied
    assert dockerfile_lines.index(install) > max(
        index for index, line in enumerate(dockerfile_lines) if "==" in line and line.startswith("RUN")
    )
