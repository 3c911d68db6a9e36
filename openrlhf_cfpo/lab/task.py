"""The lab's task: multi-digit addition with a verifiable reward, on a character vocabulary.

A prompt is ``<bos>`` + both operands zero-padded to ``digits`` + ``+`` and ``=`` (so every prompt
has the same length); the answer is the sum written in full followed by ``<eos>``. The reward is 1
for exactly the right digits followed by ``<eos>`` and 0 otherwise. A fixed set of held-out
problems (the same for every seed) is never used in warm-up or RL.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import List, Tuple

import torch

VOCAB = tuple("0123456789+=") + ("<eos>", "<bos>")
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
EOS_ID = TOKEN_ID["<eos>"]
BOS_ID = TOKEN_ID["<bos>"]
# The held-out split depends only on the task size, not on the run's seed.
SPLIT_SEED = 20240917
# The warm-up's probe set is this many times the held-out set: its stopping rule picks the first
# step whose probe accuracy crosses a target, which favours steps where the probe set happens to be
# easy for the policy; a larger set keeps that selection bias (and so the gap to the held-out
# accuracy) small.
PROBE_FACTOR = 4


def check_task_size(digits: int, eval_size: int) -> None:
    """Raise ValueError unless the held-out and probe sets (eval_size each) leave training problems."""
    n_problems = 10 ** (2 * digits)
    if not 1 <= eval_size <= n_problems // 4:
        raise ValueError(
            f"eval_size must be between 1 and a quarter of the {n_problems} problems of a {digits}-digit task "
            f"({n_problems // 4}); got {eval_size}"
        )


@dataclass(frozen=True)
class Problems:
    """A batch of addition problems: operands (n,) and their prompt token ids (n, prompt_length)."""

    a: torch.Tensor
    b: torch.Tensor
    prompts: torch.Tensor

    def repeat_each(self, n: int) -> "Problems":
        """Each problem ``n`` times in a row (a group of ``n`` responses per prompt)."""
        return Problems(*(t.repeat_interleave(n, dim=0) for t in (self.a, self.b, self.prompts)))


class AdditionTask:
    """Problems ``a + b`` with ``0 <= a, b < 10**digits``, split into RL/warm-up and held-out pools.

    ``heldout`` is the fixed evaluation set; ``probe`` is a fixed set of training problems
    (``PROBE_FACTOR`` times as many, or all of them), used to decide when the warm-up has gone far
    enough without looking at held-out data.
    """

    def __init__(self, digits: int, eval_size: int):
        self.digits = digits
        check_task_size(digits, eval_size)
        order = torch.randperm(10 ** (2 * digits), generator=torch.Generator().manual_seed(SPLIT_SEED))
        self.train_ids = order[eval_size:]
        self.prompt_length = 2 * digits + 3  # <bos> a + b =
        self.max_new_tokens = digits + 2  # up to digits+1 sum digits, then <eos>
        self.heldout = self._problems(order[:eval_size].sort().values)
        self.probe = self._problems(self.train_ids[: PROBE_FACTOR * eval_size].sort().values)

    def _problems(self, ids: torch.Tensor) -> Problems:
        a, b = ids // 10**self.digits, ids % 10**self.digits
        prompts = torch.tensor([self.encode_prompt(x, y) for x, y in zip(a.tolist(), b.tolist())], dtype=torch.long)
        return Problems(a=a, b=b, prompts=prompts)

    def sample(self, n: int, generator: torch.Generator) -> Problems:
        """``n`` training problems drawn uniformly (with replacement) by ``generator``."""
        pick = torch.randint(len(self.train_ids), (n,), generator=generator)
        return self._problems(self.train_ids[pick])

    def encode_prompt(self, a: int, b: int) -> List[int]:
        text = f"{a:0{self.digits}d}+{b:0{self.digits}d}="
        return [BOS_ID] + [TOKEN_ID[c] for c in text]

    @staticmethod
    def encode_answer(a: int, b: int) -> List[int]:
        return [TOKEN_ID[c] for c in str(a + b)] + [EOS_ID]

    def teacher_forcing(self, problems: Problems) -> Tuple[torch.Tensor, torch.Tensor]:
        """Input ids (n, prompt_length + max_new_tokens): prompt, answer, then <eos> padding; and labels
        of the same shape, the answer's tokens at their positions and -100 (ignored) elsewhere."""
        n, length = len(problems.a), self.prompt_length + self.max_new_tokens
        input_ids = torch.full((n, length), EOS_ID, dtype=torch.long)
        labels = torch.full((n, length), -100, dtype=torch.long)
        input_ids[:, : self.prompt_length] = problems.prompts
        for i, (a, b) in enumerate(zip(problems.a.tolist(), problems.b.tolist())):
            answer = torch.tensor(self.encode_answer(a, b))
            end = self.prompt_length + len(answer)
            input_ids[i, self.prompt_length : end] = answer
            labels[i, self.prompt_length : end] = answer
        return input_ids, labels

    @cached_property
    def heldout_batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``teacher_forcing(heldout)``, built once."""
        return self.teacher_forcing(self.heldout)

    @cached_property
    def probe_batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``teacher_forcing(probe)``, built once."""
        return self.teacher_forcing(self.probe)

    def rewards(self, problems: Problems, responses: torch.Tensor) -> torch.Tensor:
        """1.0 where a response (n, max_new_tokens) is exactly the sum then <eos>, else 0.0."""
        out = torch.zeros(len(responses))
        for i, (a, b, row) in enumerate(zip(problems.a.tolist(), problems.b.tolist(), responses.tolist())):
            answer = self.encode_answer(a, b)
            out[i] = float(row[: len(answer)] == answer)
        return out


def response_mask(responses: torch.Tensor) -> torch.Tensor:
    """1 for response tokens up to and including the first <eos> (all tokens if none), else 0."""
    is_eos = (responses == EOS_ID).long()
    eos_before = is_eos.cumsum(dim=1) - is_eos  # <eos> tokens strictly before each position
    return (eos_before == 0).to(torch.float32)
