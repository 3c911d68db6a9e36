"""The RLHF toy world (openrlhf_cfpo.lab.rlhf_world): vocabulary, per-response helpers, the gold
preference's properties, the annotator's stated length bias, and the reward-model and SFT data."""

import itertools
import math

import pytest
import torch

from openrlhf_cfpo.lab import rlhf_world as w
from openrlhf_cfpo.lab import task

EOS = w.EOS_ID


def words(*names):
    """A response (1, MAX_NEW_TOKENS): the named tokens, then <eos> padding."""
    ids = [w.TOKEN_ID[n] for n in names]
    return torch.tensor([ids + [EOS] * (w.MAX_NEW_TOKENS - len(ids))])


def one_prompt(topic, k):
    return w.encode_prompts(torch.tensor([topic]), torch.tensor([k]))


def test_vocabulary_extends_the_addition_task_with_the_same_ids_first():
    assert w.VOCAB[: len(task.VOCAB)] == task.VOCAB
    assert len(w.VOCAB) == len(set(w.VOCAB)) == len(task.VOCAB) + w.N_TOPICS + w.MAX_WORDS_ASKED + 1 + w.N_WORDS
    for t in range(w.N_TOPICS):
        relevant = {w.VOCAB[i] for i in w.RELEVANT_WORDS[t].tolist()}
        assert relevant == {f"w{j}" for j in range(w.N_WORDS) if j % w.N_TOPICS == t}
        irrelevant = set(w.IRRELEVANT_TOKENS[t].tolist())
        assert irrelevant == set(range(len(w.VOCAB))) - {EOS} - set(w.RELEVANT_WORDS[t].tolist())


def test_prompts_say_topic_and_length_in_a_fixed_length():
    prompts = w.all_prompts()
    assert prompts.tokens.shape == (w.N_TOPICS * w.MAX_WORDS_ASKED, w.PROMPT_LENGTH)
    assert len({tuple(row) for row in prompts.tokens.tolist()}) == len(prompts)
    assert w.decode(one_prompt(2, 3).tokens[0]) == "<bos> T2 <len3> <sep>"
    grouped = prompts.repeat_each(2)
    assert torch.equal(grouped.tokens[0], grouped.tokens[1]) and torch.equal(grouped.k[::2], prompts.k)
    assert torch.equal(grouped[::2].tokens, prompts.tokens)
    assert torch.equal(prompts[prompts.k == 2].k, torch.full((w.N_TOPICS,), 2))
    with pytest.raises(ValueError, match="k in 1..4"):
        w.encode_prompts(torch.tensor([0]), torch.tensor([5]))


def test_per_response_helpers_by_hand():
    responses = torch.cat([
        words("w1", "w5", "w2"),  # T1, k=2: n=3, first 2 relevant
        words(),  # n=0
        torch.tensor([[w.TOKEN_ID["w1"]] * w.MAX_NEW_TOKENS]),  # no <eos>: n=8
        words("w3", "7", "w7", "w11"),  # T3, k=4: a digit counts as a word, not as relevant
    ])
    prompts = w.encode_prompts(torch.tensor([1, 1, 1, 3]), torch.tensor([2, 2, 4, 4]))
    assert w.word_count(responses).tolist() == [3, 0, 8, 4]
    assert w.terminated(responses).tolist() == [True, True, False, True]
    assert w.response_chars(responses).tolist() == [4, 1, 8, 5]
    assert w.relevant_count(prompts, responses).tolist() == [2, 0, 4, 3]
    assert w.gold_quality(prompts, responses).tolist() == [(2 - 1) / 2, (0 - 2) / 2, (4 - 4) / 4, 3 / 4]
    assert w.instruction_followed(prompts, responses).tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="long tensor"):
        w.word_count(responses[:, :4])
    with pytest.raises(ValueError, match="one response per prompt"):
        w.gold_quality(one_prompt(1, 2), responses)


def every_relevance_pattern():
    """For every topic, k and pattern of relevant (1) / irrelevant (0) tokens over MAX_NEW_TOKENS positions,
    the response cut at every length n = 0..MAX_NEW_TOKENS (MAX_NEW_TOKENS: no <eos>). Returns prompts and
    responses shaped (cases, n) so that [:, n] is the same content cut at n."""
    rows, topics, ks = [], [], []
    for topic, k, pattern in itertools.product(range(w.N_TOPICS), range(1, w.MAX_WORDS_ASKED + 1),
                                               itertools.product((0, 1), repeat=w.MAX_NEW_TOKENS)):
        relevant, irrelevant = w.RELEVANT_WORDS[topic, 0].item(), w.IRRELEVANT_TOKENS[topic, 0].item()
        content = [relevant if bit else irrelevant for bit in pattern]
        rows += [content[:n] + [EOS] * (w.MAX_NEW_TOKENS - n) for n in range(w.MAX_NEW_TOKENS + 1)]
        topics += [topic] * (w.MAX_NEW_TOKENS + 1)
        ks += [k] * (w.MAX_NEW_TOKENS + 1)
    prompts = w.encode_prompts(torch.tensor(topics), torch.tensor(ks))
    return prompts, torch.tensor(rows)


def test_gold_quality_peaks_at_the_asked_length_for_every_content():
    """Exhaustive over topic, k, relevance pattern and cut: for fixed content, q rises with each word up to k
    words and falls strictly with each word past k (no <eos> at all is the longest); its maximum 1 is exactly
    k relevant words then <eos>."""
    prompts, responses = every_relevance_pattern()
    q = w.gold_quality(prompts, responses).reshape(-1, w.MAX_NEW_TOKENS + 1)
    k = prompts.k.reshape(-1, w.MAX_NEW_TOKENS + 1)[:, 0]
    step = q[:, 1:] - q[:, :-1]  # adding the (n+1)-th word
    shorter_than_k = torch.arange(w.MAX_NEW_TOKENS)[None, :] < k[:, None]
    assert (step[shorter_than_k] > 0).all(), "writing fewer words than asked must never raise q"
    assert (step[~shorter_than_k] < 0).all(), "writing more words than asked must never raise q"
    best = w.instruction_followed(prompts, responses) & (w.relevant_count(prompts, responses) == prompts.k)
    flat = q.reshape(-1)
    assert (flat[best] == 1).all() and (flat[~best] < 1).all()
    assert flat.min() >= -8


def test_gold_quality_rewards_relevant_content_within_the_asked_words():
    generator = torch.Generator().manual_seed(0)
    prompts = w.sample_prompts(4000, generator)
    responses = w.random_responses(prompts, generator)
    q = w.gold_quality(prompts, responses)
    first = responses[:, 0]
    swapped = responses.clone()
    swapped[:, 0] = torch.where(first == EOS, EOS, w.RELEVANT_WORDS[prompts.topic, 0])
    was_irrelevant = (first != EOS) & ~w.IS_RELEVANT[prompts.topic, first]
    gain = w.gold_quality(prompts, swapped) - q
    torch.testing.assert_close(gain[was_irrelevant], 1 / prompts.k[was_irrelevant].float(), rtol=0, atol=1e-6)
    assert (gain[~was_irrelevant] == 0).all() and was_irrelevant.sum() > 1000
    # Truncating a too-long response to k words (and <eos>) never lowers q.
    n = w.word_count(responses)
    truncated = torch.where(torch.arange(w.MAX_NEW_TOKENS) < torch.minimum(n, prompts.k)[:, None], responses, EOS)
    assert (w.gold_quality(prompts, truncated)[n > prompts.k] > q[n > prompts.k]).all()


def test_annotator_logit_is_the_stated_formula():
    prompts = one_prompt(0, 2)
    exact, verbose = words("w0", "w4"), words("w0", "w4", "w8", "w0")  # q = 1 and 0; n = 2 and 4
    logit = w.preference_logit(prompts, verbose, exact)
    expected = (0.0 - 1.0) / w.JUDGE_TEMPERATURE + w.JUDGE_LENGTH_BIAS * 2
    torch.testing.assert_close(logit, torch.tensor([expected]))
    torch.testing.assert_close(w.preference_logit(prompts, exact, verbose), -logit)
    assert w.gold_preference(prompts.repeat_each(3), torch.cat([exact, verbose, exact]),
                             torch.cat([verbose, exact, exact])).tolist() == [1.0, 0.0, 0.5]


def test_annotator_length_bias_on_equal_gold_pairs_is_the_stated_one():
    """P(longer wins | equal gold quality) = σ(α·Δn), within 4 standard errors, for Δn = 1, 2, 3."""
    generator = torch.Generator().manual_seed(1)
    prompts, longer, shorter = w.equal_gold_pairs(12000, generator)
    assert (w.gold_quality(prompts, longer) == w.gold_quality(prompts, shorter)).all()
    gap = w.word_count(longer) - w.word_count(shorter)
    assert (gap > 0).all()
    longer_wins = w.annotate(prompts, longer, shorter, generator).float()
    for delta in (1, 2, 3):
        wins = longer_wins[gap == delta]
        expected = 1 / (1 + math.exp(-w.JUDGE_LENGTH_BIAS * delta))
        se = math.sqrt(expected * (1 - expected) / len(wins))
        assert len(wins) > 1000 and abs(wins.mean().item() - expected) < 4 * se, (delta, wins.mean(), expected)


def test_annotator_follows_gold_quality_at_equal_length():
    generator = torch.Generator().manual_seed(2)
    prompts = w.sample_prompts(20000, generator)
    a, b = w.random_responses(prompts, generator), w.random_responses(prompts, generator)
    same_length = w.word_count(a) == w.word_count(b)
    gap = (w.gold_quality(prompts, a) - w.gold_quality(prompts, b))[same_length]
    a_wins = w.annotate(prompts, a, b, generator)[same_length].float()
    predicted = torch.sigmoid(gap / w.JUDGE_TEMPERATURE)
    se = (predicted * (1 - predicted)).sum().sqrt() / len(predicted)
    assert abs(a_wins.mean() - predicted.mean()) < 4 * se
    assert a_wins[gap > 0].mean() > 0.6 and a_wins[gap < 0].mean() < 0.4


def test_preference_pairs_cover_every_length_and_are_seeded():
    pairs = w.preference_pairs(3000, torch.Generator().manual_seed(3))
    again = w.preference_pairs(3000, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in ((pairs.chosen, again.chosen), (pairs.rejected, again.rejected),
                                              (pairs.prompts.tokens, again.prompts.tokens)))
    other = w.preference_pairs(3000, torch.Generator().manual_seed(4))
    assert not torch.equal(pairs.chosen, other.chosen)
    for responses in (pairs.chosen, pairs.rejected):
        counts = torch.bincount(w.word_count(responses), minlength=w.MAX_NEW_TOKENS + 1)
        assert len(counts) == w.MAX_NEW_TOKENS + 1 and (counts > 100).all()
    relevant_share = w.relevant_count(pairs.prompts, pairs.chosen).float() / torch.minimum(
        w.word_count(pairs.chosen), pairs.prompts.k).clamp(min=1)
    assert (relevant_share == 0).sum() > 100 and (relevant_share == 1).sum() > 100
    longer, shorter = (w.word_count(x) for x in (pairs.chosen, pairs.rejected))
    assert (longer > shorter).float().mean() > (longer < shorter).float().mean()  # the length bias shows


def test_sft_batch_holds_gold_responses_with_variety():
    generator = torch.Generator().manual_seed(5)
    prompts = w.all_prompts().repeat_each(20)
    input_ids, labels = w.sft_batch(prompts, generator)
    assert input_ids.shape == labels.shape == (len(prompts), w.PROMPT_LENGTH + w.MAX_NEW_TOKENS)
    assert torch.equal(input_ids[:, : w.PROMPT_LENGTH], prompts.tokens)
    responses = input_ids[:, w.PROMPT_LENGTH:]
    assert (w.gold_quality(prompts, responses) == 1).all() and w.instruction_followed(prompts, responses).all()
    supervised = labels != -100
    assert (supervised.sum(1) == prompts.k + 1).all()  # k words and <eos>
    assert torch.equal(labels[supervised], input_ids[supervised]) and not supervised[:, : w.PROMPT_LENGTH].any()
    distinct = {tuple(r) for r in responses[prompts.k == 3].tolist()}
    assert len(distinct) > 10
