"""The lab's RLHF formulas (openrlhf_cfpo.lab.rlhf_formulas) against OpenRLHF 0.11.2's own code: the reward
model's pairwise loss and score normalization, and RLOO advantages with the k1 KL penalty in the reward."""

from types import SimpleNamespace

import pytest
import torch

from openrlhf.models.loss import PairWiseLoss  # imports with tests/gpu_stubs (tests/conftest.py)
from openrlhf.models.utils import compute_approx_kl, compute_reward
from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

from openrlhf_cfpo.lab.rlhf_formulas import RewardNormalizer, k1_kl, pairwise_loss, rloo_advantages, token_rewards


def rollout(seed, batch=8, length=6):
    """A rollout batch as the lab makes one: per-token log-probs of the rollout and reference policies,
    ragged action masks (1 up to the <eos>), one reward-model score per response."""
    gen = torch.Generator().manual_seed(seed)
    log_probs = -torch.rand(batch, length, generator=gen) * 3
    ref_log_probs = log_probs + torch.randn(batch, length, generator=gen) * 0.5
    ref_log_probs[0, 0] = log_probs[0, 0] - 15  # beyond the ±10 clamp
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    scores = torch.randn(batch, generator=gen) * 4
    scores[1] = 30.0  # an RLOO value beyond the ±10 reward clip
    return log_probs, ref_log_probs, mask, scores


def test_pairwise_loss_equals_openrlhf_pairwise_loss():
    gen = torch.Generator().manual_seed(0)
    chosen = torch.randn(64, generator=gen, requires_grad=True)
    rejected = torch.randn(64, generator=gen, requires_grad=True)
    ours = pairwise_loss(chosen, rejected)
    theirs = PairWiseLoss()(chosen, rejected)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert torch.equal(*(torch.autograd.grad(loss, chosen)[0] for loss in (ours, theirs)))


@pytest.mark.parametrize("kl_coef", [0.0, 1e-4, 0.05, -1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_rloo_advantages_equal_openrlhf_experience_maker(kl_coef, seed):
    """OpenRLHF's compute_advantages_and_returns on two micro-batch experiences, with k1 KL from compute_approx_kl
    (--algo.kl.use_loss off), rloo, 2 samples per prompt and default clip range, equals rloo_advantages."""
    log_probs, ref_log_probs, mask, scores = rollout(seed)
    kl = compute_approx_kl(log_probs, ref_log_probs, kl_estimator="k1")
    torch.testing.assert_close(k1_kl(log_probs, ref_log_probs), kl, rtol=0, atol=0)

    args = SimpleNamespace(
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator="rloo", gamma=1.0, no_std_norm=False)),
        rollout=SimpleNamespace(n_samples_per_prompt=2), reward=SimpleNamespace(clip_range=(-10, 10)),
    )
    maker = object.__new__(RemoteExperienceMaker)
    maker.strategy, maker.args, maker.advantage_estimator = SimpleNamespace(args=args), args, "rloo"
    maker.kl_ctl = FixedKLController(kl_coef)
    halves = [slice(0, 4), slice(4, 8)]
    experiences = [
        Experience(rewards=scores[s].clone(), kl=kl[s].clone(), action_mask=mask[s], index=list(range(8))[s], info={})
        for s in halves
    ]
    maker.compute_advantages_and_returns(experiences)

    ours = rloo_advantages(scores, k1_kl(log_probs, ref_log_probs), mask, kl_coef, n_samples_per_prompt=2)
    theirs = torch.cat([e.advantages for e in experiences])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(ours, torch.cat([e.returns for e in experiences]), rtol=0, atol=0)


def test_token_rewards_equal_openrlhf_compute_reward_with_a_clip_range():
    log_probs, ref_log_probs, mask, scores = rollout(2)
    kl = k1_kl(log_probs, ref_log_probs)
    for clip in [(-10.0, 10.0), (-1.0, 2.0)]:
        torch.testing.assert_close(token_rewards(scores, kl, mask, 0.1, clip),
                                   compute_reward(scores, 0.1, kl, action_mask=mask, reward_clip_range=clip),
                                   rtol=0, atol=0)


def test_reward_normalizer_equals_what_normalize_enable_does():
    """OpenRLHF's reward-model trainer stores mean and std of its eval set's chosen and rejected scores in the
    config (RewardModelTrainer.evaluate); with normalize_reward its RewardModel returns (r − mean) / std in eval
    mode. RewardNormalizer fits and applies the same."""
    from openrlhf.models.model import _get_reward_model
    from openrlhf.trainer.rm_trainer import RewardModelTrainer
    from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel

    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randn(5, generator=gen) * 3 + 1, torch.randn(5, generator=gen) * 2) for _ in range(3)]
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    config.normalize_reward = False
    trainer = object.__new__(RewardModelTrainer)
    trainer.model = _get_reward_model(LlamaPreTrainedModel, LlamaModel)(config)
    identity = lambda x, *_, **__: x  # noqa: E731
    trainer.strategy = SimpleNamespace(is_rank_0=lambda: False, all_gather=identity, all_reduce=identity,
                                       _unwrap_model=identity, print=lambda *_: None)
    trainer.loss_fn, trainer.margin_loss = PairWiseLoss(), False
    replies = iter(batches)
    trainer.concatenated_forward = lambda *_: (*next(replies), [])
    dummy = torch.zeros(5, 1, 4, dtype=torch.long)
    trainer.evaluate([(dummy, dummy, dummy, dummy, None)] * len(batches))

    normalizer = RewardNormalizer.fit(torch.cat([torch.cat(pair) for pair in batches]))
    assert normalizer.mean == pytest.approx(config.mean, rel=1e-6)
    assert normalizer.std == pytest.approx(config.std, rel=1e-6)

    raw_model = trainer.model.eval()
    config.normalize_reward = True
    normalizing_model = _get_reward_model(LlamaPreTrainedModel, LlamaModel)(config).eval()
    normalizing_model.load_state_dict(raw_model.state_dict())
    input_ids = torch.randint(40, (6, 9), generator=gen)
    attention_mask = (torch.arange(9)[None, :] < torch.tensor([9, 5, 7, 9, 3, 8])[:, None]).long()
    with torch.no_grad():
        raw = raw_model(input_ids, attention_mask=attention_mask)
        torch.testing.assert_close(normalizer(raw), normalizing_model(input_ids, attention_mask=attention_mask))
