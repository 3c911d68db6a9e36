"""The lab's RL loop on a real tiny Llama: its loss path is openrlhf_cfpo.objectives, on-policy
equivalence of PPO-clip and CFPO (paper section 4.1), and the off-policy knobs."""

import copy
from dataclasses import replace

import pytest
import torch

from openrlhf_cfpo import objectives
from openrlhf_cfpo.lab.config import LabConfig, quick
from openrlhf_cfpo.lab.loop import train_cell
from openrlhf_cfpo.lab.task import AdditionTask
from openrlhf_cfpo.lab.warmup import warm_start

CONFIG = replace(quick(LabConfig()), steps=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As the lab runs (LabConfig.threads): steady speed on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(CONFIG.threads)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    task = AdditionTask(CONFIG.digits, CONFIG.eval_size)
    policy, _ = warm_start(CONFIG, task, tmp_path_factory.mktemp("lab-cache"))
    return policy, task


def _train(warm, objective, iterations, config=CONFIG, batch_ratio=None):
    policy, task = warm
    config = replace(config, batch_ratio=batch_ratio or config.batch_ratio)
    model = copy.deepcopy(policy)
    history = train_cell(config, config.cell(objective, iterations), model, task,
                         reference=policy if config.kl_coef > 0 else None)
    return model, history


def _max_param_diff(a, b):
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


def test_on_policy_first_update_is_identical_for_ppo_and_cfpo(warm):
    config = replace(CONFIG, steps=1)
    ppo, ppo_history = _train(warm, "ppo", 1, config)
    cfpo, cfpo_history = _train(warm, "cfpo", 1, config)
    assert _max_param_diff(ppo, warm[0]) > 1e-5  # the update did move the policy
    # r = 1 on the only update, where both gradients equal A (section 4.1); float32 rounding only.
    for p_ppo, p_cfpo in zip(ppo.parameters(), cfpo.parameters()):
        torch.testing.assert_close(p_ppo, p_cfpo, rtol=1e-6, atol=1e-7)
    assert ppo_history[0]["grad_norm"] == pytest.approx(cfpo_history[0]["grad_norm"], rel=1e-6)
    # ...and they part as soon as a batch is reused (r != 1 on the second pass)
    ppo2, _ = _train(warm, "ppo", 2, config)
    cfpo2, _ = _train(warm, "cfpo", 2, config)
    assert _max_param_diff(ppo2, cfpo2) > 1e-6


def test_clip_ratio_follows_epsilon_through_objectives(warm):
    """A narrower trust region puts more tokens outside it: the lab's loss and stats use eps."""
    wide_model, wide = _train(warm, "ppo", 8, replace(CONFIG, eps_low=0.2, eps_high=0.2))
    narrow_model, narrow = _train(warm, "ppo", 8, replace(CONFIG, eps_low=0.02, eps_high=0.02))
    assert sum(m["clip_ratio"] for m in narrow) > sum(m["clip_ratio"] for m in wide)
    assert _max_param_diff(narrow_model, wide_model) > 1e-6  # eps reached the loss, not only the stats


def test_loss_is_looked_up_in_the_objectives_registry(warm, monkeypatch):
    calls = []

    def spy(ratio, advantages, eps_low, eps_high):
        calls.append(ratio.shape)
        return objectives.cfpo_loss(ratio, advantages, eps_low, eps_high)

    monkeypatch.setitem(objectives.OBJECTIVES, "spy", spy)
    spy_model, spy_history = _train(warm, "spy", 4)
    cfpo_model, cfpo_history = _train(warm, "cfpo", 4)
    assert len(calls) == CONFIG.steps * 4 * CONFIG.batch_ratio
    assert [dict(m, objective="cfpo") for m in spy_history] == cfpo_history
    assert _max_param_diff(spy_model, cfpo_model) == 0.0


def test_mini_batches_make_later_updates_off_policy(warm):
    _, history = _train(warm, "ppo", 1, batch_ratio=2)
    # the first mini-batch sees r = 1 exactly; the second comes after one update
    assert history[0]["ratio_max"] > 1.0 or history[0]["ratio_min"] < 1.0
    _, single = _train(warm, "ppo", 1, batch_ratio=1)
    assert single[0]["ratio_max"] == single[0]["ratio_min"] == 1.0


def test_rloo_and_kl_penalty_change_the_updates(warm):
    base, _ = _train(warm, "cfpo", 2)
    rloo, _ = _train(warm, "cfpo", 2, replace(CONFIG, advantage="rloo"))
    kl, _ = _train(warm, "cfpo", 2, replace(CONFIG, kl_coef=0.5))
    assert _max_param_diff(base, rloo) > 1e-6
    assert _max_param_diff(base, kl) > 1e-6
    with pytest.raises(ValueError, match="needs the reference"):
        train_cell(replace(CONFIG, kl_coef=0.5), CONFIG.cell("cfpo", 1), copy.deepcopy(warm[0]), warm[1])
