"""CFPO on every node: a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, a
head and two nodes with two logical GPUs each), four single-GPU actors placed through a placement group
as OpenRLHF places its model actors, the driver connected with ``ray_runtime_env()``.

Each actor reports what test_worker_hook's GPU actors report (``actor_process_report``): its
CUDA_VISIBLE_DEVICES, the CUDA-probing modules imported before its code, and PolicyLoss("cfpo").
"""

import os
import sys

import pytest
import ray
import torch
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from openrlhf_cfpo import ray_runtime_env
from openrlhf_cfpo.objectives import cfpo_loss
from test_worker_hook import actor_process_report

pytestmark = pytest.mark.slow  # a three-node cluster and four actor processes: about 1 min on 2 cores


@ray.remote(num_gpus=1, num_cpus=0)
class NodeGpuActor:
    def report(self):
        return {**actor_process_report(), "node": ray.get_runtime_context().get_node_id()}


def test_cfpo_in_single_gpu_actors_on_two_nodes():
    for module in (__name__, "test_worker_hook", "worker_hook_probe"):
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=1, num_gpus=2) for _ in range(2)]
        ray.init(address=cluster.address, runtime_env=ray_runtime_env(), log_to_driver=False)
        cluster.wait_for_nodes()
        # OpenRLHF: one {"GPU": 1, "CPU": 1} bundle per GPU, strategy PACK, an actor per bundle index.
        group = ray.util.placement_group([{"GPU": 1}] * 4, strategy="PACK")
        ray.get(group.ready(), timeout=120)
        actors = [NodeGpuActor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=rank)).remote() for rank in range(4)]
        reports = ray.get([actor.report.remote() for actor in actors], timeout=300)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert {r["node"] for r in reports} == {node.node_id for node in workers}  # both GPU nodes
    assert len({r["pid"] for r in reports}) == 4 and os.getpid() not in {r["pid"] for r in reports}
    for node in workers:  # each node's two actors: its two GPUs, one each
        assert sorted(r["visible"] for r in reports if r["node"] == node.node_id) == ["0", "1"]
    expected = cfpo_loss(torch.tensor([[0.0, 0.5, -0.5, 0.05]]).exp(),
                         torch.tensor([[1.0, 1.0, -1.0, -1.0]])).mean().item()
    for r in reports:
        assert [str(gpu) for gpu in r["gpu_ids"]] == [r["visible"]]
        assert r["imported_before"] == [], r
        assert r["loss"] == pytest.approx(expected, rel=1e-6) and r["expected"] == pytest.approx(expected, rel=1e-6)
