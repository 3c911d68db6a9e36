"""The lab's RL loop on a real tiny Llama: its loss path is openrlhf_cfpo.objectives, on-policy
equivalence of PPO-clip and CFPO (paper section 4.1), the off-policy knobs, the shortcuts that keep a
cell cheap (KV-cached sampling, one-pass greedy accuracy, no extra log-prob pass) and the warm-up's
stopping rule."""

import copy
from dataclasses import replace

import pytest
import torch

from openrlhf_cfpo import objectives
from openrlhf_cfpo.lab import warmup
from openrlhf_cfpo.lab.config import CellConfig, LabConfig, quick
from openrlhf_cfpo.lab.loop import train_cell
from openrlhf_cfpo.lab.model import greedy_accuracy, response_log_probs, sample
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
    policy, _ = warm_start(CONFIG, 0, task, tmp_path_factory.mktemp("lab-cache"))
    return policy, task


def _train(warm, objective, iterations, config=CONFIG, batch_ratio=1):
    policy, task = warm
    model = copy.deepcopy(policy)
    history = train_cell(config, CellConfig(objective, iterations, batch_ratio, seed=0), model, task,
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
    assert len(calls) == CONFIG.steps * 4
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
        train_cell(replace(CONFIG, kl_coef=0.5), CellConfig("cfpo", 1, 1, 0), copy.deepcopy(warm[0]), warm[1])


@torch.no_grad()
def _decode_greedily(model, prompts, max_new_tokens):
    """Token-by-token greedy decoding, recomputing the whole sequence each time (the reference)."""
    sequences = prompts
    for _ in range(max_new_tokens):
        next_tokens = model(input_ids=sequences).logits[:, -1, :].argmax(dim=-1)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
    return sequences[:, prompts.shape[1]:]


def test_one_pass_greedy_accuracy_equals_decoding_token_by_token(warm):
    policy, task = warm
    trained = copy.deepcopy(policy)  # a second, different policy: a few RL steps further
    train_cell(CONFIG, CellConfig("ppo", 4, 1, 0), trained, task)
    for model in (policy, trained):
        for problems, batch in ((task.heldout, task.heldout_batch), (task.probe, task.probe_batch)):
            decoded = task.rewards(problems, _decode_greedily(model, problems.prompts, task.max_new_tokens))
            assert greedy_accuracy(model, batch, torch.device("cpu")) == decoded.sum().item() / len(decoded)
    assert 0 < greedy_accuracy(policy, task.probe_batch, torch.device("cpu")) < 1  # neither all right nor all wrong


def test_kv_cached_group_sampling_draws_what_full_recomputation_draws(warm):
    policy, task = warm
    problems = task.sample(6, torch.Generator().manual_seed(5))
    cached = sample(policy, problems.prompts, 4, task.max_new_tokens, torch.Generator().manual_seed(9))
    generator, sequences = torch.Generator().manual_seed(9), problems.prompts.repeat_interleave(4, dim=0)
    with torch.no_grad():
        for _ in range(task.max_new_tokens):
            probs = policy(input_ids=sequences).logits[:, -1, :].float().softmax(dim=-1)
            sequences = torch.cat([sequences, torch.multinomial(probs, 1, generator=generator)], dim=1)
    assert torch.equal(cached, sequences[:, problems.prompts.shape[1]:])
    assert cached.shape == (24, task.max_new_tokens) and len(set(map(tuple, cached.tolist()))) > 1


def _full_sequence_log_probs(model, prompts, responses):
    """The reference that ``response_log_probs`` replaces: one pass over prompt + response per row."""
    logits = model(input_ids=torch.cat([prompts, responses], dim=1)).logits[:, prompts.shape[1] - 1 : -1, :].float()
    log_softmax = logits.log_softmax(dim=-1)
    return log_softmax.gather(-1, responses[..., None]).squeeze(-1), -(log_softmax.exp() * log_softmax).sum(dim=-1)


@pytest.mark.parametrize("rows", ["groups", "shuffled part"])
def test_shared_prompt_log_probs_and_gradients_equal_the_full_sequence_pass(warm, rows):
    """Each prompt encoded once for its group gives the full pass's log-probs, entropies and gradients,
    up to float summation order (other matmul shapes): 1e-5 relative, far below one AdamW step."""
    policy, task = warm
    problems = task.sample(6, torch.Generator().manual_seed(3))
    responses = sample(policy, problems.prompts, 4, task.max_new_tokens, torch.Generator().manual_seed(4))
    prompts = problems.prompts.repeat_interleave(4, dim=0)
    if rows == "shuffled part":  # a mini-batch: some groups split, rows in random order
        pick = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(5))[:10]
        prompts, responses = prompts[pick], responses[pick]
    results = []
    for function in (response_log_probs, _full_sequence_log_probs):
        model = copy.deepcopy(policy)
        log_probs, entropy = function(model, prompts, responses)
        (log_probs.sum() + entropy.sum()).backward()
        results.append((log_probs.detach(), entropy.detach(), [p.grad for p in model.parameters()]))
    (shared_lp, shared_ent, shared_grads), (full_lp, full_ent, full_grads) = results
    torch.testing.assert_close(shared_lp, full_lp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shared_ent, full_ent, rtol=1e-5, atol=1e-6)
    for shared, full in zip(shared_grads, full_grads):
        torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-5)
    assert any(g.abs().max() > 1e-3 for g in full_grads)  # gradients that could differ


@pytest.mark.parametrize("iterations, batch_ratio", [(2, 1), (1, 4), (3, 2)])
def test_a_step_makes_no_forward_pass_it_does_not_need(warm, iterations, batch_ratio):
    """Per step: sampling (one pass per new token, the prompt once per group), one log-prob pass per
    update, one for log π_old of the first pass's later mini-batches (the first update's own pass
    gives its rows), one teacher-forced pass for held-out accuracy. A log-prob pass is two calls: the
    mini-batch's distinct prompts once, then its responses (all but the last token) on their keys/values."""
    policy, task = warm
    model, calls = copy.deepcopy(policy), []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                    with_kwargs=True)
    config = replace(CONFIG, steps=1)
    train_cell(config, CellConfig("cfpo", iterations, batch_ratio, 0), model, task)
    n = config.prompts_per_step * config.group_size
    expected = [(config.prompts_per_step, task.prompt_length)] + [(n, 1)] * (task.max_new_tokens - 1)
    passes = [n - n // batch_ratio] if batch_ratio > 1 else []
    passes += [n // batch_ratio] * (iterations * batch_ratio)
    for rows in passes:
        expected += [("distinct prompts", task.prompt_length), (rows, task.max_new_tokens - 1)]
    expected.append((CONFIG.eval_size, task.prompt_length + task.max_new_tokens))
    shapes = [tuple(shape) for shape in calls]
    assert len(shapes) == len(expected)
    for (rows, length), (want_rows, want_length) in zip(shapes, expected):
        if want_rows == "distinct prompts":  # at most one row per prompt of the step
            assert 1 <= rows <= config.prompts_per_step and length == want_length
        else:
            assert (rows, length) == (want_rows, want_length)


def _scripted_warmup(monkeypatch, task, probes, **constants):
    """train_warmup's probe measurements replaced by ``probes`` (then 0.0), its constants by ``constants``."""
    script = iter(probes)
    for name, value in constants.items():
        monkeypatch.setattr(warmup, name, value)
    monkeypatch.setattr(warmup, "greedy_accuracy",
                        lambda model, batch, device: next(script, 0.0) if batch is task.probe_batch else 0.5)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_warmup_keeps_the_policy_closest_to_the_target_where_it_crosses(monkeypatch):
    task = AdditionTask(CONFIG.digits, CONFIG.eval_size)
    config = replace(CONFIG, warmup_target_accuracy=0.3, warmup_steps=50)
    # probed after every step: 0.27 (step 3) is closer to 0.3 than 0.4 (step 4), so step 3 is kept
    _scripted_warmup(monkeypatch, task, [0.1, 0.2, 0.27, 0.4], PROBE_GATE=1.0, PROBE_EVERY=1)
    model, info = warmup.train_warmup(config, 0, task)
    assert (info["steps"], info["probe_accuracy"]) == (3, 0.27)
    three_steps, info = warmup.train_warmup(replace(config, warmup_steps=3), 0, task)
    assert info["steps"] == 3 and _same_weights(model, three_steps)


def test_warmup_replays_a_coarse_stretch_that_jumped_past_the_target(monkeypatch):
    task = AdditionTask(CONFIG.digits, CONFIG.eval_size)
    config = replace(CONFIG, warmup_target_accuracy=0.3, warmup_steps=50)
    # probed every 5 steps: 0.1 at step 5, 0.5 at step 10 (past the target) -> back to step 5, then
    # after every step: 0.2 (6), 0.28 (7), 0.35 (8); 0.28 is closer to 0.3, so step 7 is kept
    _scripted_warmup(monkeypatch, task, [0.1, 0.5, 0.2, 0.28, 0.35], PROBE_GATE=1.0, PROBE_EVERY=5, FINE_WINDOW=0.0)
    model, info = warmup.train_warmup(config, 0, task)
    assert (info["steps"], info["probe_accuracy"]) == (7, 0.28)
    # the replayed steps 6 and 7 computed exactly what 7 steps straight through compute
    seven_steps, _ = warmup.train_warmup(replace(config, warmup_steps=7), 0, task)
    assert _same_weights(model, seven_steps)

