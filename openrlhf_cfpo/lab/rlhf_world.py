"""The RLHF setting's toy world: instructions that say how much to write, a gold preference, and a
simulated annotator with a stated length bias (the paper's §5.2: Tables 1-2, Figure 3).

The paper's RLHF claim is about verbosity: "under RLOO, response length increases alongside reward,
indicating the model learns to exploit verbosity as a reward-hacking strategy", and on AlpacaEval
"while raw win rates appear similar, length-controlled scores reveal a meaningful gap". This world
makes that exploitation *possible* without deciding who exploits it: the annotator that labels the
reward model's pairs likes longer responses, so a reward model trained on its labels pays for
length, and the policy has room to write more than it is asked to.

Vocabulary: the addition task's tokens first, with the same ids (``task.VOCAB``), then
``N_TOPICS`` topic tokens ``T0..T3``, one length-instruction token ``<len1>..<len4>`` for each
k = 1..``MAX_WORDS_ASKED``, a separator ``<sep>`` and ``N_WORDS`` word tokens ``w0..w11``. Word j
is relevant to topic t when j ≡ t (mod ``N_TOPICS``): three relevant words per topic.

Prompt: ``<bos> T<t> <len{k}> <sep>`` ("write k words about topic t"), always ``PROMPT_LENGTH``
tokens; the 16 (topic, k) pairs are all the prompts there are. Response: up to
``MAX_NEW_TOKENS`` = 8 tokens, words then ``<eos>``, so a policy can write up to 7 words and
``<eos>`` (or 8 tokens and no ``<eos>``).

Per response (token tensors of shape (n, MAX_NEW_TOKENS), anything after the first ``<eos>``
ignored):

- ``word_count`` n: the tokens before the first ``<eos>`` (every non-``<eos>`` token counts as a
  word, digits included), ``MAX_NEW_TOKENS`` when there is no ``<eos>``;
- ``terminated``: whether there is an ``<eos>``;
- ``response_chars``: the response's length in characters for the length-controlled win rate.
  The lab's vocabulary is a character vocabulary (one token, one character), so this is the number
  of response tokens up to and including the first ``<eos>`` (n + 1 when terminated, n when not):
  the same count as the lab's ``response_length_mean``.

Gold quality (the human judgment the toy stands in for), with r the number of relevant words among
the first min(n, k) tokens:

    q = (r − OFF_LENGTH_COST · |n − k|) / k          (OFF_LENGTH_COST = 1)

Its maximum, 1, is k relevant words and ``<eos>``; each word more or fewer than asked costs as much
as a wrong word. Words past the k-th earn nothing and cost 1/k each, so writing more than asked
never raises q; stopping early loses content and costs 1/k per missing word, so writing fewer
never raises q either. A response without ``<eos>`` has n = 8 > k: it is overlong. q lies in
[−8, 1]. ``instruction_followed`` (n == k and terminated) is the IFEval analogue.

Simulated annotator (labels the reward model's pairs; with fresh draws, the win-rate judge; the gold
verdict ``gold_preference`` is the judge without noise or bias):

    P(A ≻ B) = σ((q_A − q_B) / JUDGE_TEMPERATURE + JUDGE_LENGTH_BIAS · (n_A − n_B))

with JUDGE_TEMPERATURE τ = 0.5 and JUDGE_LENGTH_BIAS α = 1 (per word, in logits): of two responses
of equal gold quality the one longer by one word wins σ(1) ≈ 73% of the time. A reward model
that fits these labels scores about q/τ + α·n. One word past k costs 1/(kτ) = 2/k there and
earns α = 1, so the reward model's favourite response is as long as possible for k = 3 and 4
(+1/3 and +1/2 per extra word), any length ≥ 2 for k = 2, and exactly one word for k = 1:
verbosity pays where the instruction asks for more. These constants were fixed from this
arithmetic before any RL run; nothing here was tuned on the lab's results.

Reward-model data (``preference_pairs``): a uniform prompt and two independent responses, each with
a length uniform on 0..8 (8: no ``<eos>``) and a relevance rate ρ ~ U(0, 1): each token is one of the
topic's relevant words with probability ρ, otherwise a uniformly drawn irrelevant token (any
non-``<eos>`` token outside the topic's words: other topics' words, digits, instruction tokens), so
the reward model sees every length and what a policy might write. The annotator picks the chosen
one. SFT data (``sft_batch``): gold responses, k relevant words drawn uniformly (repeats allowed)
and ``<eos>``. Every draw comes from the caller's ``torch.Generator``: the same seed, the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from openrlhf_cfpo.lab.task import BOS_ID, EOS_ID
from openrlhf_cfpo.lab.task import VOCAB as ADDITION_VOCAB

N_TOPICS = 4
MAX_WORDS_ASKED = 4  # length instructions k = 1..MAX_WORDS_ASKED
N_WORDS = 12
PROMPT_LENGTH = 4  # <bos> topic <len_k> <sep>
MAX_NEW_TOKENS = 8  # up to 7 words and <eos>: room to write more than asked
OFF_LENGTH_COST = 1.0  # gold cost of each word more or fewer than asked, in units of one relevant word
JUDGE_TEMPERATURE = 0.5  # τ: the annotator's logit is (q_A − q_B) / τ ...
JUDGE_LENGTH_BIAS = 1.0  # α: ... + α · (n_A − n_B), its preference for longer responses, per word

TOPIC_TOKENS = tuple(f"T{t}" for t in range(N_TOPICS))
LENGTH_TOKENS = tuple(f"<len{k}>" for k in range(1, MAX_WORDS_ASKED + 1))
WORD_TOKENS = tuple(f"w{j}" for j in range(N_WORDS))
VOCAB = ADDITION_VOCAB + TOPIC_TOKENS + LENGTH_TOKENS + ("<sep>",) + WORD_TOKENS
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
TOPIC_IDS = torch.tensor([TOKEN_ID[t] for t in TOPIC_TOKENS])
LENGTH_IDS = torch.tensor([TOKEN_ID[t] for t in LENGTH_TOKENS])  # LENGTH_IDS[k - 1] says "write k words"
SEP_ID = TOKEN_ID["<sep>"]
WORD_IDS = torch.tensor([TOKEN_ID[w] for w in WORD_TOKENS])
# RELEVANT_WORDS[t]: topic t's words (j ≡ t mod N_TOPICS); IRRELEVANT_TOKENS[t]: every other non-<eos> token.
RELEVANT_WORDS = torch.stack([WORD_IDS[t::N_TOPICS] for t in range(N_TOPICS)])
IS_RELEVANT = torch.zeros(N_TOPICS, len(VOCAB), dtype=torch.bool).scatter_(1, RELEVANT_WORDS, True)
IRRELEVANT_TOKENS = torch.stack(
    [torch.tensor([i for i in range(len(VOCAB)) if i != EOS_ID and not IS_RELEVANT[t, i]]) for t in range(N_TOPICS)]
)


@dataclass(frozen=True)
class Prompts:
    """Instruction prompts: topic t (n,), words asked k (n,) and their token ids (n, PROMPT_LENGTH)."""

    topic: torch.Tensor
    k: torch.Tensor
    tokens: torch.Tensor

    def __len__(self) -> int:
        return len(self.topic)

    def __getitem__(self, index) -> "Prompts":
        """The prompts at ``index`` (a slice, indices or a boolean mask), as Prompts."""
        return Prompts(self.topic[index], self.k[index], self.tokens[index])

    def repeat_each(self, n: int) -> "Prompts":
        """Each prompt ``n`` times in a row (a group of ``n`` responses per prompt)."""
        return Prompts(*(t.repeat_interleave(n, dim=0) for t in (self.topic, self.k, self.tokens)))


def encode_prompts(topic: torch.Tensor, k: torch.Tensor) -> Prompts:
    """The prompts ``<bos> T<topic> <len{k}> <sep>`` for topics in 0..N_TOPICS-1 and k in 1..MAX_WORDS_ASKED."""
    topic, k = torch.as_tensor(topic, dtype=torch.long), torch.as_tensor(k, dtype=torch.long)
    if topic.shape != k.shape or topic.dim() != 1:
        raise ValueError(
            f"topic and k must be 1-D and of one length; got shapes {tuple(topic.shape)}, {tuple(k.shape)}"
        )
    if len(topic) and not (0 <= topic.min() and topic.max() < N_TOPICS and 1 <= k.min() and k.max() <= MAX_WORDS_ASKED):
        raise ValueError(f"topics must lie in 0..{N_TOPICS - 1} and k in 1..{MAX_WORDS_ASKED}")
    tokens = torch.stack(
        [torch.full_like(topic, BOS_ID), TOPIC_IDS[topic], LENGTH_IDS[k - 1], torch.full_like(topic, SEP_ID)], dim=1
    )
    return Prompts(topic=topic, k=k, tokens=tokens)


def sample_prompts(n: int, generator: torch.Generator) -> Prompts:
    """``n`` prompts, topic and k each uniform and independent."""
    topic = torch.randint(N_TOPICS, (n,), generator=generator)
    k = torch.randint(1, MAX_WORDS_ASKED + 1, (n,), generator=generator)
    return encode_prompts(topic, k)


def all_prompts() -> Prompts:
    """Every (topic, k) prompt once, topic-major: the evaluation set."""
    topic, k = torch.meshgrid(torch.arange(N_TOPICS), torch.arange(1, MAX_WORDS_ASKED + 1), indexing="ij")
    return encode_prompts(topic.reshape(-1), k.reshape(-1))


def decode(ids: torch.Tensor) -> str:
    """Token ids (1-D) as text, tokens separated by spaces."""
    return " ".join(VOCAB[i] for i in ids.tolist())


def _check_responses(responses: torch.Tensor, prompts: Optional[Prompts] = None) -> None:
    if responses.dim() != 2 or responses.shape[1] != MAX_NEW_TOKENS or responses.dtype != torch.long:
        raise ValueError(
            f"responses must be a long tensor (n, {MAX_NEW_TOKENS}) of token ids; got {responses.dtype} "
            f"{tuple(responses.shape)}"
        )
    if prompts is not None and len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses: pass one response per prompt")


def terminated(responses: torch.Tensor) -> torch.Tensor:
    """Whether each response (n, MAX_NEW_TOKENS) has an <eos>."""
    _check_responses(responses)
    return (responses == EOS_ID).any(dim=1)


def word_count(responses: torch.Tensor) -> torch.Tensor:
    """n: the tokens before the first <eos> (MAX_NEW_TOKENS when there is none), per response."""
    is_eos = responses == EOS_ID
    return torch.where(terminated(responses), is_eos.long().argmax(dim=1), responses.shape[1])


def response_chars(responses: torch.Tensor) -> torch.Tensor:
    """Length in characters (one per token): tokens up to and including the first <eos>, per response."""
    return word_count(responses) + terminated(responses).long()


def relevant_count(prompts: Prompts, responses: torch.Tensor) -> torch.Tensor:
    """r: how many of a response's first min(n, k) tokens are its topic's relevant words."""
    _check_responses(responses, prompts)
    counted = torch.arange(MAX_NEW_TOKENS) < torch.minimum(word_count(responses), prompts.k)[:, None]
    return (IS_RELEVANT[prompts.topic[:, None], responses] & counted).sum(dim=1)


def gold_quality(prompts: Prompts, responses: torch.Tensor) -> torch.Tensor:
    """q = (r − OFF_LENGTH_COST·|n − k|) / k per response, float32 in [−8, 1] (module docstring)."""
    off = (word_count(responses) - prompts.k).abs()
    return (relevant_count(prompts, responses) - OFF_LENGTH_COST * off).float() / prompts.k


def instruction_followed(prompts: Prompts, responses: torch.Tensor) -> torch.Tensor:
    """Exactly k words then <eos> (relevance aside): the IFEval analogue, per response."""
    _check_responses(responses, prompts)
    return (word_count(responses) == prompts.k) & terminated(responses)


def preference_logit(prompts: Prompts, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The annotator's log-odds that ``a`` beats ``b``: (q_a − q_b)/τ + α·(n_a − n_b)."""
    gold_gap = gold_quality(prompts, a) - gold_quality(prompts, b)
    return gold_gap / JUDGE_TEMPERATURE + JUDGE_LENGTH_BIAS * (word_count(a) - word_count(b)).float()


def gold_preference(prompts: Prompts, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1.0 where ``a`` has the higher gold quality, 0.0 where ``b`` has, 0.5 for equal quality: the gold win rate's
    per-pair verdicts (ties are common: q takes few values)."""
    return (torch.sign(gold_quality(prompts, a) - gold_quality(prompts, b)) + 1) / 2


def annotate(prompts: Prompts, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The simulated annotator's verdicts: True where it prefers ``a`` to ``b`` (one draw per pair)."""
    p_a = torch.sigmoid(preference_logit(prompts, a, b))
    return torch.rand(len(p_a), generator=generator) < p_a


def random_responses(prompts: Prompts, generator: torch.Generator) -> torch.Tensor:
    """One response per prompt from the reward-model data's distribution (module docstring): length
    uniform on 0..MAX_NEW_TOKENS (MAX_NEW_TOKENS: no <eos>), relevance rate ρ ~ U(0, 1)."""
    n = len(prompts)
    lengths = torch.randint(MAX_NEW_TOKENS + 1, (n, 1), generator=generator)
    rho = torch.rand(n, 1, generator=generator)
    relevant = torch.rand(n, MAX_NEW_TOKENS, generator=generator) < rho
    topic = prompts.topic[:, None]
    pick_relevant = torch.randint(RELEVANT_WORDS.shape[1], (n, MAX_NEW_TOKENS), generator=generator)
    pick_irrelevant = torch.randint(IRRELEVANT_TOKENS.shape[1], (n, MAX_NEW_TOKENS), generator=generator)
    words = torch.where(relevant, RELEVANT_WORDS[topic, pick_relevant], IRRELEVANT_TOKENS[topic, pick_irrelevant])
    return torch.where(torch.arange(MAX_NEW_TOKENS) < lengths, words, EOS_ID)


@dataclass(frozen=True)
class PreferencePairs:
    """Reward-model data: prompts and, per prompt, the annotator's chosen and rejected response (n, MAX_NEW_TOKENS)."""

    prompts: Prompts
    chosen: torch.Tensor
    rejected: torch.Tensor


def preference_pairs(n: int, generator: torch.Generator) -> PreferencePairs:
    """``n`` pairs of ``random_responses`` to ``sample_prompts``, labelled by ``annotate``."""
    prompts = sample_prompts(n, generator)
    a, b = random_responses(prompts, generator), random_responses(prompts, generator)
    a_wins = annotate(prompts, a, b, generator)[:, None]
    return PreferencePairs(prompts, torch.where(a_wins, a, b), torch.where(a_wins, b, a))


def equal_gold_pairs(n: int, generator: torch.Generator) -> Tuple[Prompts, torch.Tensor, torch.Tensor]:
    """``n`` pairs from the reward-model data's distribution whose two responses have the same gold quality
    and different word counts: (prompts, longer, shorter). Measures a length preference with content fixed."""
    kept: List[Tuple[Prompts, torch.Tensor, torch.Tensor]] = []
    found = 0
    while found < n:
        prompts = sample_prompts(8 * n, generator)
        a, b = random_responses(prompts, generator), random_responses(prompts, generator)
        n_a, n_b = word_count(a), word_count(b)
        keep = (gold_quality(prompts, a) == gold_quality(prompts, b)) & (n_a != n_b)
        a_longer = (n_a > n_b)[:, None]
        longer, shorter = torch.where(a_longer, a, b)[keep], torch.where(a_longer, b, a)[keep]
        kept.append((prompts[keep], longer, shorter))
        found += int(keep.sum())
    topic, k = (torch.cat([getattr(p, field) for p, _, _ in kept])[:n] for field in ("topic", "k"))
    return encode_prompts(topic, k), torch.cat([x for _, x, _ in kept])[:n], torch.cat([x for _, _, x in kept])[:n]


def gold_responses(prompts: Prompts, generator: torch.Generator) -> torch.Tensor:
    """A best response (q = 1) per prompt: k of the topic's relevant words, drawn uniformly, then <eos>."""
    pick = torch.randint(RELEVANT_WORDS.shape[1], (len(prompts), MAX_NEW_TOKENS), generator=generator)
    words = RELEVANT_WORDS[prompts.topic[:, None], pick]
    return torch.where(torch.arange(MAX_NEW_TOKENS) < prompts.k[:, None], words, EOS_ID)


def sft_batch(prompts: Prompts, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Supervised data for ``prompts``, as ``AdditionTask.teacher_forcing``: input ids (n, PROMPT_LENGTH +
    MAX_NEW_TOKENS), the prompt, a ``gold_responses`` answer and <eos> padding; and labels of the same shape,
    the answer's tokens (its <eos> included) at their positions and -100 (ignored) elsewhere."""
    responses = gold_responses(prompts, generator)
    input_ids = torch.cat([prompts.tokens, responses], dim=1)
    answer = torch.arange(MAX_NEW_TOKENS) <= prompts.k[:, None]  # k words and <eos>
    labels = torch.cat([torch.full_like(prompts.tokens, -100), torch.where(answer, responses, -100)], dim=1)
    return input_ids, labels
