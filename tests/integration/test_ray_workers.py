"""CFPO is active inside Ray worker processes started with ``ray_runtime_env()``."""

import os
import sys

import pytest
import ray
import torch

from openrlhf_cfpo import ray_runtime_env
from openrlhf_cfpo.objectives import cfpo_loss

pytestmark = pytest.mark.slow


def cfpo_in_this_process():
    """Run OpenRLHF's PolicyLoss("cfpo") on fixed tensors; also report the process id."""
    from openrlhf.models.loss import PolicyLoss

    log_probs = torch.tensor([[0.0, 0.5, -0.5, 0.05]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, clip_ratio, *_ = PolicyLoss(policy_loss_type="cfpo")(
        log_probs, torch.zeros_like(log_probs), advantages, action_mask=torch.ones_like(log_probs)
    )
    return os.getpid(), loss.item(), clip_ratio.item()


@ray.remote
def cfpo_task():
    return cfpo_in_this_process()


@ray.remote
class PolicyActor:
    def loss(self):
        return cfpo_in_this_process()


@pytest.fixture(scope="module")
def local_ray():
    # Workers cannot import this test module by name; ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_runtime_env(), log_to_driver=False)
    yield
    ray.shutdown()


def test_worker_setup_hook_registers_cfpo_in_tasks_and_actors(local_ray):
    ratio = torch.tensor([[0.0, 0.5, -0.5, 0.05]]).exp()
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    expected_loss = cfpo_loss(ratio, advantages).mean().item()
    task_pid, task_loss, task_clip = ray.get(cfpo_task.remote(), timeout=120)
    actor = PolicyActor.remote()
    actor_pid, actor_loss, actor_clip = ray.get(actor.loss.remote(), timeout=120)
    assert os.getpid() not in (task_pid, actor_pid)  # really other processes
    for loss, clip in ((task_loss, task_clip), (actor_loss, actor_clip)):
        assert loss == pytest.approx(expected_loss, rel=1e-6)
        assert clip == pytest.approx(0.5)  # r=e^0.5 with A>0 and r=e^-0.5 with A<0 lie outside
