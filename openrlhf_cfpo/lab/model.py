"""The tiny policy: a few-layer transformers Llama built from a config, plus sampling and log-probs."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from openrlhf_cfpo.lab.task import BOS_ID, EOS_ID, VOCAB, AdditionTask, Problems


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
def generate(
    model: LlamaForCausalLM, prompts: torch.Tensor, max_new_tokens: int, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """Responses (n, max_new_tokens): sampled at temperature 1 with ``generator``, greedy if it is None.

    Prompts all have the same length, so no padding or attention mask is needed; tokens after a
    response's first <eos> are ignored by ``response_mask``. Every position draws a token, so the
    generator advances by the same amount whatever the policy (same randomness for every objective).
    """
    sequences = prompts
    for _ in range(max_new_tokens):
        logits = model(input_ids=sequences).logits[:, -1, :].float()
        if generator is None:
            next_tokens = logits.argmax(dim=-1)
        else:
            next_tokens = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
    return sequences[:, prompts.shape[1]:]


def response_log_probs(
    model: LlamaForCausalLM, prompts: torch.Tensor, responses: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(response token) and policy entropy, both (n, response_length), with grad."""
    sequences = torch.cat([prompts, responses], dim=1)
    logits = model(input_ids=sequences).logits[:, prompts.shape[1] - 1 : -1, :].float()
    log_softmax = logits.log_softmax(dim=-1)
    log_probs = log_softmax.gather(-1, responses[..., None]).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
    return log_probs, entropy


@torch.no_grad()
def greedy_accuracy(model: LlamaForCausalLM, task: AdditionTask, problems: Problems, device: torch.device) -> float:
    """Fraction of ``problems`` answered exactly by greedy decoding."""
    responses = generate(model, problems.prompts.to(device), task.max_new_tokens, generator=None)
    return task.rewards(problems, responses.cpu()).mean().item()
