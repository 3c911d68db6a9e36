"""Ray's worker setup hook must not touch CUDA: it runs before Ray sets CUDA_VISIBLE_DEVICES.

Regression for the defect in which the hook imported ``openrlhf.models`` (→ peft → bitsandbytes,
deepspeed → ``torch.cuda.*``): CUDA then initialised with every GPU of the node visible and every
actor's device 0 was the node's GPU 0. ARCHITECTURE.md, "GPU-only failure modes".
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch

from openrlhf_cfpo import ray_runtime_env
from openrlhf_cfpo.objectives import cfpo_loss

PROBE = Path(__file__).with_name("worker_hook_probe.py")
sys.path.insert(0, str(PROBE.parent))
from worker_hook_probe import CUDA_PROBING_MODULES, cfpo_through_policy_loss  # noqa: E402


def test_hook_makes_no_cuda_call_and_imports_nothing_that_probes_cuda():
    """Fresh interpreter: zero torch.cuda calls and no CUDA-probing import while the hook runs; the
    actor's own import of OpenRLHF then gets a PolicyLoss that computes CFPO."""
    out = subprocess.run([sys.executable, str(PROBE), "--actor-module", "openrlhf.trainer.ray.ppo_actor"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["hook"] == ray_runtime_env()["worker_process_setup_hook"]
    assert report["hook_cuda_calls"] == {}
    assert report["hook_imported"] == []
    assert report["cfpo_loss"] == pytest.approx(report["cfpo_expected"], rel=1e-6)
    assert report["import_hook_left"] == []  # it removed itself once it had fired


@pytest.mark.slow
def test_hook_in_an_interpreter_that_already_imported_the_loss_module_patches_at_once():
    code = (
        "import openrlhf.models.loss as loss\n"
        "from openrlhf_cfpo.openrlhf_patch import setup_ray_worker\n"
        "setup_ray_worker(); setup_ray_worker()\n"  # idempotent
        "import torch\n"
        "x = torch.zeros(1, 2)\n"
        "print(loss.PolicyLoss(policy_loss_type='cfpo')(x, x, x + 1, action_mask=torch.ones(1, 2))[0].item())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(-1.0)  # r = 1, A = 1: CFPO = −A


def actor_process_report():
    """What a GPU actor sees when its code starts, then CFPO through the actor module's PolicyLoss."""
    imported_before = [module for module in CUDA_PROBING_MODULES if module in sys.modules]
    from openrlhf.trainer.ray.ppo_actor import PolicyLoss  # the actor's own code imports OpenRLHF

    loss, expected = cfpo_through_policy_loss(PolicyLoss, "cpu")
    return dict(pid=os.getpid(), visible=os.environ.get("CUDA_VISIBLE_DEVICES"), gpu_ids=ray.get_gpu_ids(),
                imported_before=imported_before, loss=loss, expected=expected)


@ray.remote(num_gpus=1)
class GpuActor:
    def __init__(self):
        self.report = actor_process_report()

    def get_report(self):
        return self.report


@pytest.mark.slow
def test_two_gpu_actors_each_see_their_own_gpu_and_compute_cfpo():
    """ray.init(num_gpus=2) (logical GPUs work on CPU), two num_gpus=1 actors under the hook."""
    # Workers cannot import the test modules by name; ship their functions by value.
    for module in (__name__, "worker_hook_probe"):
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, runtime_env=ray_runtime_env(), log_to_driver=False)
    try:
        actors = [GpuActor.remote() for _ in range(2)]
        reports = ray.get([actor.get_report.remote() for actor in actors], timeout=300)
    finally:
        ray.shutdown()
    assert len({r["pid"] for r in reports}) == 2 and os.getpid() not in {r["pid"] for r in reports}
    assert sorted(r["visible"] for r in reports) == ["0", "1"]
    for r in reports:
        assert [str(gpu) for gpu in r["gpu_ids"]] == [r["visible"]]
        assert r["imported_before"] == [], r  # the hook ran in this process, importing none of them
        expected = cfpo_loss(torch.tensor([[0.0, 0.5, -0.5, 0.05]]).exp(),
                             torch.tensor([[1.0, 1.0, -1.0, -1.0]])).mean().item()
        assert r["expected"] == pytest.approx(expected, rel=1e-6)
        assert r["loss"] == pytest.approx(expected, rel=1e-6)
