"""The tiny policy: a few-layer transformers Llama built from a config, plus sampling, log-probs and
greedy accuracy."""

from __future__ import annotations

from typing import Tuple

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from openrlhf_cfpo.lab.task import BOS_ID, EOS_ID, VOCAB


def build_policy(hidden_size: int, num_layers: int, num_heads: int, max_length: int) -> LlamaForCausalLM:
    """A randomly initialised Llama over the task's character vocabulary (seed torch first)."""
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_length,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


@torch.no_grad()
def sample(
    model: LlamaForCausalLM, prompts: torch.Tensor, group_size: int, max_new_tokens: int, generator: torch.Generator
) -> torch.Tensor:
    """Responses (n_prompts x group_size, max_new_tokens) sampled at temperature 1 with ``generator``,
    ``group_size`` consecutive rows per prompt.

    Prompts all have the same length, so no padding or attention mask is needed. Each prompt is
    encoded once and its keys/values are repeated for its group; every further token costs one
    position per row (KV cache). Tokens after a response's first <eos> are ignored by
    ``response_mask``. Every position draws a token for every row, so the generator advances by the
    same amount whatever the policy (the same randomness for every objective).
    """
    out = model(input_ids=prompts, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(group_size)
    logits = out.logits[:, -1, :].float().repeat_interleave(group_size, dim=0)
    tokens = []
    for position in range(max_new_tokens):
        next_tokens = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
        tokens.append(next_tokens)
        if position + 1 < max_new_tokens:
            logits = model(input_ids=next_tokens, past_key_values=cache, use_cache=True).logits[:, -1, :].float()
    return torch.cat(tokens, dim=1)


def response_log_probs(
    model: LlamaForCausalLM, prompts: torch.Tensor, responses: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(response token) and policy entropy, both (n, response_length), with grad.

    The rows of a rollout batch share their prompts (G responses each), so each distinct prompt is
    encoded once and its keys/values are gathered for its rows; the responses then cost one position
    per token. Same numbers as one pass over the concatenated sequences, up to float summation order
    (tested), at 16 x 7 + 128 x 3 instead of 128 x 11 positions for the default rollout batch.
    """
    unique, row_prompt = torch.unique(prompts, dim=0, return_inverse=True)
    encoded = model(input_ids=unique, use_cache=True)
    cache = encoded.past_key_values
    cache.reorder_cache(row_prompt)  # differentiable gather: a prompt's gradient sums over its rows
    first = encoded.logits[row_prompt, -1:, :]  # predicts each response's first token
    rest = model(input_ids=responses[:, :-1], past_key_values=cache, use_cache=True).logits
    logits = torch.cat([first, rest], dim=1).float()
    log_softmax = logits.log_softmax(dim=-1)
    log_probs = log_softmax.gather(-1, responses[..., None]).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
    return log_probs, entropy


def exact_match(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row (bool): the most likely token is the label at every labelled position, for logits of a
    teacher-forced pass over ``AdditionTask.teacher_forcing``'s input ids and its ``labels``.

    That is exactly "greedy decoding writes the answer": while the first j greedy tokens are the
    answer's, the next one is the argmax given exactly that prefix (induction over j).
    """
    targets = labels[:, 1:].to(logits.device)
    right = (logits[:, :-1, :].argmax(dim=-1) == targets) | (targets == -100)
    return right.all(dim=1)


@torch.no_grad()
def greedy_accuracy(model: LlamaForCausalLM, batch: Tuple[torch.Tensor, torch.Tensor], device: torch.device) -> float:
    """Fraction of ``batch = AdditionTask.teacher_forcing(problems)`` that greedy decoding answers
    exactly, from one teacher-forced forward pass (``exact_match``) instead of one pass per token."""
    input_ids, labels = batch
    right = exact_match(model(input_ids=input_ids.to(device)).logits, labels)
    return right.sum().item() / len(right)
