"""A DeepSpeed ZeRO-3 CFPO step on 2 CPU processes (gloo) equals a single-process PyTorch step."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zero3_step import build_model, reference_step

pytestmark = pytest.mark.slow


def test_zero3_cfpo_step_matches_single_process(tmp_path):
    out = tmp_path / "zero3_params.pt"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    # --standalone: rendezvous on a free localhost port chosen by torchrun itself (no port race).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("zero3_step.py")), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    zero3 = torch.load(out)

    initial = dict(build_model().named_parameters())
    cfpo = reference_step("cfpo")
    ppo = reference_step("ppo")
    # float32, gradients summed in a different order across 2 ranks: rtol 1e-4, atol 1e-6.
    for name, value in cfpo.items():
        torch.testing.assert_close(zero3[name], value, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    update = lambda params: torch.cat([(params[n] - initial[n].detach()).flatten() for n in params])  # noqa: E731
    cfpo_update, ppo_update = update(cfpo), update(ppo)
    assert cfpo_update.norm() > 1e-3  # the step really moved the model
    # ...and it was CFPO's step: PPO's differs by far more than the tolerance.
    assert (cfpo_update - ppo_update).norm() > 100 * 1e-6 * cfpo_update.numel() ** 0.5
