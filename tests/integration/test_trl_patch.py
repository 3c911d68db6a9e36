"""CFPO in TRL 1.16.0's ``GRPOTrainer`` (``openrlhf_cfpo.trl_patch``) against TRL's own code.

Real TRL on CPU: a tiny Llama with a small byte-level BPE tokenizer built here (TRL's log-prob kernel
costs ~1 s per step on a 150k-token vocabulary, ~0.1 s on 512), HF generation, no vLLM.
"""

import importlib.metadata
import logging
import math

import pytest
import torch
from datasets import Dataset

from openrlhf_cfpo import patch_trl, trl_patch
from openrlhf_cfpo.objectives import trust_region_stats
from openrlhf_cfpo.trl_patch import HOST_LOSS_TYPES, SUPPORTED_TRL_VERSION, check_trl_version, surrogate_compute_loss
from tiny_chat_model import build_small_vocab_model
from trl_without_gpu_stubs import import_trl_grpo

import_trl_grpo()
patch_trl()
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

UPSTREAM_COMPUTE_LOSS = GRPOTrainer._compute_loss.__wrapped__  # TRL's own, kept by functools.wraps
UPSTREAM_INIT = GRPOTrainer.__init__.__wrapped__
EPS_LOW, EPS_HIGH = 0.2, 0.28

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fixtures_dir):
    return build_small_vocab_model(tmp_path_factory.mktemp("tiny_llama"), [fixtures_dir / "gsm8k" / "test.jsonl"])


def length_reward(completions, **kwargs):
    """A deterministic reward that differs within a group, so advantages are non-zero."""
    return [float(len(text) % 3) for text in completions]


PROMPTS = Dataset.from_list([{"prompt": f"Question {i}: what is {i} plus {i}?"} for i in range(16)])


def make_trainer(model_dir, output_dir, **config):
    settings = dict(
        output_dir=str(output_dir), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[],
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, learning_rate=1e-2, temperature=1.0,
        per_device_train_batch_size=4, gradient_accumulation_steps=2, num_generations=4,
        max_completion_length=8, epsilon=EPS_LOW, epsilon_high=EPS_HIGH,
    )
    settings.update(config)
    return GRPOTrainer(model=str(model_dir), reward_funcs=length_reward, args=GRPOConfig(**settings),
                       train_dataset=PROMPTS)


def train(model_dir, output_dir, **config):
    trainer = make_trainer(model_dir, output_dir, **config)
    trainer.train()
    return trainer


def same_parameters(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


# --- training end to end ---------------------------------------------------------------------------------


def test_on_policy_cfpo_trains_exactly_like_grpo(model_dir, tmp_path):
    """num_iterations=1: r = 1 on every token, where CFPO's gradient is PPO-clip's (−A): "cfpo" and TRL's
    "grpo" (eq. 8's normalization, both) are the same run. ("cfpo_dapo" and "dapo": the bit-for-bit test
    of the host path below.)"""
    baseline = train(model_dir, tmp_path / "grpo", loss_type="grpo", num_iterations=1, max_steps=3)
    cfpo = train(model_dir, tmp_path / "cfpo", loss_type="cfpo", num_iterations=1, max_steps=3)
    initial = make_trainer(model_dir, tmp_path / "init", loss_type="grpo")
    assert not same_parameters(baseline, initial)  # the runs did train
    assert same_parameters(cfpo, baseline)
    assert [log.get("loss") for log in cfpo.state.log_history] == [log.get("loss") for log in baseline.state.log_history]


def test_sample_reuse_gives_a_different_finite_update_and_logs_trust_region_metrics(model_dir, tmp_path):
    config = dict(num_iterations=2, max_steps=4)
    grpo = train(model_dir, tmp_path / "grpo", loss_type="grpo", **config)
    cfpo = train(model_dir, tmp_path / "cfpo", loss_type="cfpo", **config)
    assert not same_parameters(cfpo, grpo)
    assert all(torch.isfinite(p).all() for p in cfpo.model.parameters())
    steps = [log for log in cfpo.state.log_history if "loss" in log]
    assert len(steps) == 4 and all(math.isfinite(log["loss"]) for log in steps)
    # The first step of each batch is on-policy (r = 1): identical loss; the reuse step is where they part.
    assert steps[0]["loss"] == grpo.state.log_history[0]["loss"]
    for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "clip_ratio/low_min",
                "clip_ratio/high_max", "entropy"):
        assert all(key in log for log in steps), key
    assert "reward" in steps[0] and "reward" in steps[2]  # logged where a batch is generated
    assert steps[0]["clip_ratio/region_mean"] == 0 and max(log["clip_ratio/region_mean"] for log in steps) > 0


# --- one loss computation on a fixed batch -------------------------------------------------------------


def fixed_batch(trainer, ratios, seed=0):
    """Inputs as TRL's _prepare_inputs hands them to _compute_loss, with old log-probs chosen so that
    r = π_θ/π_old takes the given per-token values; advantages of both signs, ragged completions."""
    gen = torch.Generator().manual_seed(seed)
    vocab = trainer.model.config.vocab_size
    batch, prompt_len, completion_len = ratios.shape[0], 5, ratios.shape[1]
    prompt_ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen)
    completion_ids = torch.randint(0, vocab, (batch, completion_len), generator=gen)
    completion_mask = torch.ones(batch, completion_len, dtype=torch.long)
    for row in range(batch):
        completion_mask[row, completion_len - row :] = 0
    inputs = dict(
        prompt_ids=prompt_ids, prompt_mask=torch.ones_like(prompt_ids), completion_ids=completion_ids,
        completion_mask=completion_mask, advantages=torch.tensor([1.0, -0.5, 0.8, -1.2]),
        num_items_in_batch=completion_mask.sum(),
    )
    with torch.no_grad():
        inputs["old_per_token_logps"] = completion_logps(trainer.model, inputs) - ratios.log()
    return inputs


def completion_logps(model, inputs):
    """log π_θ of each completion token, by a plain forward pass (independent of TRL's kernel)."""
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, inputs["prompt_ids"].shape[1] - 1 : -1]
    return logits.log_softmax(-1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)


# Per-token ratios: inside the trust region, beyond 1+ε_high and below 1−ε_low, on both advantage signs.
RATIOS = torch.tensor([
    [1.00, 1.10, 1.50, 0.70, 1.35, 0.95],
    [0.60, 0.90, 1.40, 0.75, 0.85, 1.05],
    [1.29, 0.50, 1.20, 1.60, 0.99, 1.02],
    [0.70, 1.30, 0.79, 1.10, 0.55, 0.90],
])


def normalized(per_token, mask, loss_type, accumulation_steps):
    """The reduction of ``loss_type``'s host, written out for one process: eq. (8) ("cfpo": each
    completion's token mean, then the mean over completions, divided by the accumulation steps as
    TRL's "grpo" does) or DAPO ("cfpo_dapo": token sum / token count of the generation batch)."""
    if loss_type == "cfpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1)).mean() / accumulation_steps
    return (per_token * mask).sum() / mask.sum()


def hand_cfpo_loss(ratio, advantages, mask, loss_type, accumulation_steps):
    """Eq. (7), written out: −(r·A − |A|/(2ε)·(r−1)²), ε = ε_high if A > 0 else ε_low, then reduced."""
    eps = torch.where(advantages > 0, EPS_HIGH, EPS_LOW)
    per_token = -(ratio * advantages - advantages.abs() / (2 * eps) * (ratio - 1) ** 2)
    return normalized(per_token, mask, loss_type, accumulation_steps)


def compute_loss(trainer, inputs, compute=None):
    """(loss, gradients, metrics appended by this call) of one _compute_loss in train mode."""
    trainer.model.train()
    trainer.model.zero_grad()
    # Set by Trainer's loop. The batch stands for a whole generation batch (num_items_in_batch counts its
    # tokens), which TRL spreads over steps_per_generation accumulation steps: DAPO divides by its token count.
    trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation
    metrics = trainer._metrics["train"]
    before = {key: len(values) for key, values in metrics.items()}
    loss = (compute or type(trainer)._compute_loss)(trainer, trainer.model, inputs)
    loss.backward()
    grads = [p.grad.clone() for p in trainer.model.parameters()]
    logged = {key: values[before.get(key, 0):] for key, values in metrics.items()}
    return loss.detach(), grads, logged


@pytest.fixture
def cfpo_trainer(model_dir, tmp_path):
    """A fresh trainer per test: a new GRPOConfig resets accelerate's shared state under older trainers."""
    return make_trainer(model_dir, tmp_path, loss_type="cfpo")


@pytest.mark.parametrize("loss_type", ["cfpo", "cfpo_dapo"])
def test_cfpo_loss_gradient_and_clip_ratio_on_a_fixed_batch_match_the_hand_computation(model_dir, tmp_path, loss_type):
    cfpo_trainer = make_trainer(model_dir, tmp_path, loss_type=loss_type)
    accumulation = cfpo_trainer.args.steps_per_generation
    inputs = fixed_batch(cfpo_trainer, RATIOS)
    loss, grads, logged = compute_loss(cfpo_trainer, inputs)

    cfpo_trainer.model.zero_grad()
    ratio = (completion_logps(cfpo_trainer.model, inputs) - inputs["old_per_token_logps"]).exp()
    adv, mask = inputs["advantages"].unsqueeze(1), inputs["completion_mask"].float()
    expected = hand_cfpo_loss(ratio, adv, mask, loss_type, accumulation)
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, (p.grad for p in cfpo_trainer.model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)

    # Both sides of the trust region are exercised, and CFPO is not PPO-clip on this batch.
    low = ((adv < 0) & (RATIOS < 1 - EPS_LOW) & (mask > 0)).sum().item()
    high = ((adv > 0) & (RATIOS > 1 + EPS_HIGH) & (mask > 0)).sum().item()
    assert low >= 2 and high >= 2
    ppo = -torch.min(RATIOS * adv, RATIOS.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * adv)
    assert abs(loss.item() - normalized(ppo, mask, loss_type, accumulation).item()) > 1e-3
    # TRL's clip_ratio/* for CFPO: objectives.trust_region_stats's definition, and the hand count.
    stats = trust_region_stats(ratio.detach(), adv, mask, EPS_LOW, EPS_HIGH)
    assert logged["clip_ratio/region_mean"] == [pytest.approx(stats["clip_ratio"].item(), abs=1e-7)]
    assert logged["clip_ratio/low_mean"] == [pytest.approx(low / mask.sum().item(), abs=1e-7)]
    assert logged["clip_ratio/high_mean"] == [pytest.approx(high / mask.sum().item(), abs=1e-7)]


@pytest.mark.parametrize("loss_type", ["cfpo", "cfpo_dapo"])
def test_sequence_level_cfpo_uses_each_sequences_ratio(model_dir, tmp_path, caplog, loss_type):
    """Decision: importance_sampling_level="sequence" is supported. r becomes the sequence's
    exp(mean log r) (GSPO's ratio, TRL's own) and eq. (7) applies to it. "cfpo" then averages per
    sequence (GSPO's objective with CFPO's surrogate); "cfpo_dapo" counts it once per completion token
    (sequences weighted by length, as TRL's "dapo" does; a warning says so)."""
    with caplog.at_level(logging.WARNING, logger=trl_patch.__name__):
        trainer = make_trainer(model_dir, tmp_path, loss_type=loss_type, importance_sampling_level="sequence")
    assert ("importance_sampling_level='sequence'" in caplog.text) == (loss_type == "cfpo_dapo")
    inputs = fixed_batch(trainer, RATIOS)
    loss, _, logged = compute_loss(trainer, inputs)
    log_ratio = completion_logps(trainer.model, inputs).detach() - inputs["old_per_token_logps"]
    mask = inputs["completion_mask"].float()
    seq_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1)).exp().unsqueeze(1)
    expected = hand_cfpo_loss(seq_ratio.expand_as(mask), inputs["advantages"].unsqueeze(1), mask, loss_type,
                              trainer.args.steps_per_generation)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    outside = trust_region_stats(seq_ratio, inputs["advantages"].unsqueeze(1), None, EPS_LOW, EPS_HIGH)
    assert logged["clip_ratio/region_mean"] == [pytest.approx(outside["clip_ratio"].item(), abs=1e-7)]


def test_cfpo_stays_finite_for_extreme_ratios(cfpo_trainer):
    ratios = RATIOS.clone()
    ratios[0, :3] = torch.tensor([math.exp(60.0), math.exp(-60.0), math.exp(30.0)])
    loss, grads, _ = compute_loss(cfpo_trainer, fixed_batch(cfpo_trainer, ratios))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


# TRL features around the surrogate, each switched on alone: GRPOConfig fields, and the inputs TRL
# would have added for them (functions of the batch's old log-probs and a noise draw).
SETTINGS = {
    "plain": (dict(), {}),
    "kl_beta": (dict(beta=0.04), {"ref_per_token_logps": lambda old, noise: old - 0.3 + noise}),
    "entropy_mask": (dict(top_entropy_quantile=0.5), {}),
    "entropy_bonus": (dict(entropy_coef=0.01), {}),
    "sequence_level": (dict(importance_sampling_level="sequence"), {}),
    "off_policy_mask": (dict(off_policy_mask_threshold=0.05), {}),
    "vllm_is_correction": (dict(), {"importance_sampling_ratio": lambda old, noise: 0.9 * noise.exp()}),
}


@pytest.mark.parametrize("host", sorted(set(HOST_LOSS_TYPES.values())))
@pytest.mark.parametrize("name", SETTINGS)
def test_ppo_surrogate_path_reproduces_the_host_bit_for_bit(model_dir, tmp_path, name, host):
    """The substitution path run with the PPO-clip surrogate is TRL's "grpo" / "dapo", bit for bit (loss,
    gradients, metrics): so CFPO gets exactly TRL's treatment around the surrogate."""
    config, extra_inputs = SETTINGS[name]
    trainer = make_trainer(model_dir, tmp_path, loss_type=host, **config)
    if "importance_sampling_ratio" in extra_inputs:
        trainer.use_vllm = trainer.vllm_importance_sampling_correction = True  # as if vLLM had sampled
    inputs = fixed_batch(trainer, RATIOS)
    old = inputs["old_per_token_logps"]
    gen = torch.Generator().manual_seed(1)
    for key, make in extra_inputs.items():
        inputs[key] = make(old, 0.1 * torch.randn(old.shape, generator=gen))
    expected = compute_loss(trainer, inputs, UPSTREAM_COMPUTE_LOSS)
    got = compute_loss(trainer, inputs, lambda t, m, i: surrogate_compute_loss(t, m, i, "ppo", host))
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(g, e) for g, e in zip(got[1], expected[1]))
    assert got[2] == expected[2] and "clip_ratio/region_mean" in got[2]


# --- settings, versions, idempotence ---------------------------------------------------------------------


@pytest.mark.parametrize("config,message", [
    (dict(delta=2.0), "delta"),
    (dict(epsilon=0.0), "eps_low must be > 0"),
    (dict(epsilon_high=-0.1), "eps_high must be > 0"),
])
def test_cfpo_refuses_settings_it_cannot_honour_before_loading_the_model(tmp_path, config, message):
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, loss_type="cfpo", report_to=[], **config)
    with pytest.raises(ValueError, match=message):
        GRPOTrainer(model=str(tmp_path / "no-such-model"), reward_funcs=length_reward, args=args,
                    train_dataset=PROMPTS)


def test_substitution_fails_loudly_when_trl_does_not_reach_the_clipped_surrogate(cfpo_trainer):
    """Guard for a changed TRL: a host path without the clamp/min pair must not train silently."""
    with pytest.raises(RuntimeError, match="did not reach its clipped surrogate for loss_type 'sapo'"):
        surrogate_compute_loss(cfpo_trainer, cfpo_trainer.model, fixed_batch(cfpo_trainer, RATIOS), "cfpo", "sapo")
    assert cfpo_trainer.loss_type == "cfpo"  # restored


def test_without_the_patch_trl_has_no_cfpo(cfpo_trainer):
    with pytest.raises(ValueError, match="Unknown loss type: cfpo"):
        UPSTREAM_COMPUTE_LOSS(cfpo_trainer, cfpo_trainer.model, fixed_batch(cfpo_trainer, RATIOS))


def test_patch_is_idempotent():
    patch_trl()
    patch_trl()
    assert GRPOTrainer._compute_loss.__wrapped__ is UPSTREAM_COMPUTE_LOSS
    assert GRPOTrainer.__init__.__wrapped__ is UPSTREAM_INIT
    assert not hasattr(UPSTREAM_COMPUTE_LOSS, "__wrapped__") and not hasattr(UPSTREAM_INIT, "__wrapped__")


def test_other_trl_versions_are_refused(monkeypatch):
    assert check_trl_version() == SUPPORTED_TRL_VERSION == "1.16.0"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.17.0")
    with pytest.raises(RuntimeError, match=r"TRL 1\.16\.0 only, found trl 1\.17\.0; install trl==1\.16\.0"):
        patch_trl()

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(RuntimeError, match=r"TRL is not installed.*openrlhf-cfpo\[trl\]"):
        patch_trl()
