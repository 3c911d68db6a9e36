"""One optimizer step of a tiny Llama with OpenRLHF's PolicyLoss, shared by the ZeRO-3 test.

As a script (under torchrun, 2 ranks): a DeepSpeed ZeRO-3 step on CPU with the gloo backend, each
rank holding half the batch and reducing the loss as OpenRLHF does (``get_loss_batch_info``); rank 0
saves the gathered parameters to ``argv[1]``. Imported: the same model, batch and loss for a
single-process plain-PyTorch reference. SGD, not Adam: Adam's first step is invariant to the
gradient's scale and would hide a wrong dp_size or token count.
"""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

LEARNING_RATE = 0.5
BATCH, SEQ, PROMPT = 8, 16, 6


def build_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).float()


def build_batch(model):
    """Token ids, response mask (ragged), advantages and stale old log-probs (ratios far from 1)."""
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 64, (BATCH, SEQ), generator=gen)
    mask = torch.zeros(BATCH, SEQ - 1)
    for row in range(BATCH):
        mask[row, PROMPT - 1 : SEQ - 1 - row % 3] = 1
    advantages = torch.randn(BATCH, 1, generator=gen).expand(BATCH, SEQ - 1).contiguous()
    with torch.no_grad():
        current = sequence_log_probs(model, input_ids)
    old_log_probs = current + torch.randn(BATCH, SEQ - 1, generator=gen) * 0.5
    return input_ids, mask, advantages, old_log_probs


def sequence_log_probs(model, input_ids):
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def policy_loss(policy_loss_type: str):
    from openrlhf_cfpo import patch_openrlhf

    patch_openrlhf()
    from openrlhf.models.loss import PolicyLoss

    return PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.2, policy_loss_type=policy_loss_type)


def reference_step(policy_loss_type: str):
    """Single process, full batch, plain PyTorch: parameters after one SGD step."""
    model = build_model()
    input_ids, mask, advantages, old_log_probs = build_batch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss = policy_loss(policy_loss_type)(sequence_log_probs(model, input_ids), old_log_probs, advantages,
                                         action_mask=mask)[0]
    loss.backward()
    optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def zero3_step(out_path: str) -> None:
    import deepspeed
    import torch.distributed as dist
    from openrlhf.utils.loss_utils import get_loss_batch_info

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model()
    input_ids, mask, advantages, old_log_probs = build_batch(model)
    shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    config = {
        "train_micro_batch_size_per_gpu": BATCH // world,
        "gradient_accumulation_steps": 1,
        # overlap_comm off: on the CPU accelerator its "streams" are no-ops, and under load a gradient
        # partition was read before its reduction had finished (1 run in 3 differed).
        "zero_optimization": {"stage": 3, "overlap_comm": False},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,  # DeepSpeed's default is 1.0; a norm clip would also hide a scale error
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=LEARNING_RATE),
                                      config=config)
    loss_fn = policy_loss("cfpo")
    batch_info = get_loss_batch_info(None, mask[shard])  # global token count, dp_size, as OpenRLHF
    loss = loss_fn(sequence_log_probs(engine, input_ids[shard]), old_log_probs[shard], advantages[shard],
                   action_mask=mask[shard], **batch_info)[0]
    engine.backward(loss)
    engine.step()
    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params):
        if rank == 0:
            torch.save({name: p.detach().clone() for name, p in engine.module.named_parameters()}, out_path)
    dist.barrier()


if __name__ == "__main__":
    zero3_step(sys.argv[1])
