"""docs/verl.md's GPU install lines against verl 0.9.1's own wheel metadata, as tests/unit/test_setup.py
checks requirements/openrlhf-cpu.txt against OpenRLHF's: the pins are verl's for the extras the recipe
needs (its rollout engine, its actor strategy), and this package comes from the checkout."""

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("verl.trainer.ppo.core_algos", reason="the verl tests run in .venv-verl (make test builds it)")

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

from openrlhf_cfpo.verl_patch import SUPPORTED_VERL_VERSION  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def install_lines():
    """The `pip install` lines of the first bash block of docs/verl.md's Install section, as words."""
    section = (REPO / "docs" / "verl.md").read_text(encoding="utf-8").split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if " install " in line]


def arguments(words):
    """What a `pip install` line installs: its words after `install` that are not options."""
    return [word for word in words[words.index("install") + 1:] if not word.startswith("-")]


def verl_pins(extras):
    """{package: version} of the exact pins verl's wheel declares for ``extras``, following verl[...] inside them."""
    declared = [Requirement(line) for line in importlib.metadata.requires("verl")]
    pending, seen, pins = set(extras), set(), {}
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in declared:
            if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
                continue
            if requirement.name == "verl":
                pending |= requirement.extras - seen
            elif [spec.operator for spec in requirement.specifier] == ["=="]:
                pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


def recipe_setting(key, verl_defaults):
    """A key's value as examples/verl/train_rlvr_math.sh sets it, else verl's default."""
    from omegaconf import OmegaConf

    found = re.search(rf"^\s*{re.escape(key)}=(\S+)$", (REPO / "examples/verl/train_rlvr_math.sh").read_text(), re.M)
    return found.group(1) if found else OmegaConf.select(verl_defaults, key)


def test_gpu_install_pins_are_verls_own_for_the_recipe(verl_defaults):
    lines = install_lines()
    installed = [arguments(words) for words in lines]
    assert ".[verl]" in installed[0], "this package is not on PyPI: install it from the checkout"
    (verl,) = [Requirement(word) for word in installed[0] if word.startswith("verl")]
    assert str(verl.specifier) == f"=={SUPPORTED_VERL_VERSION}" == f"=={importlib.metadata.version('verl')}"
    setup_py = (REPO / "setup.py").read_text()
    assert f'VERL_VERSION = "{SUPPORTED_VERL_VERSION}"' in setup_py and '"verl": [f"verl=={VERL_VERSION}"]' in setup_py

    rollout, strategy = (recipe_setting(key, verl_defaults)
                         for key in ("actor_rollout_ref.rollout.name", "actor_rollout_ref.actor.strategy"))
    assert (rollout, strategy) == ("vllm", "fsdp")
    assert rollout in verl.extras, f"verl[{rollout}] is verl's own set for rollout.name={rollout}"
    needed = verl_pins(verl.extras | {strategy})
    pinned = {canonicalize_name(r.name): str(r.specifier).removeprefix("==")
              for r in (Requirement(word) for words in installed for word in words if word != ".[verl]")
              if r.name != "verl"}
    assert set(pinned) == {"torch", rollout, "flash-attn"}
    assert pinned == {name: needed[name] for name in pinned}
    assert (pinned["torch"], pinned["vllm"]) == ("2.11.0", "0.24.0")


def test_flash_attn_is_built_against_the_installed_torch():
    """flash-attn's build imports torch: it needs the torch of the first line, not an isolated build env."""
    lines = install_lines()
    (index,) = [i for i, words in enumerate(lines) if any(word.startswith("flash-attn") for word in words)]
    assert "--no-build-isolation" in lines[index]
    assert index > min(i for i, words in enumerate(lines) if any(word.startswith("torch==") for word in words))
