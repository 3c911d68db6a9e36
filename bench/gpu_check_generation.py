"""The HF evaluation backend generating with a tiny model built here (no hub); part of bench/gpu_check.sh.

    python bench/gpu_check_generation.py --expect-device cuda

Builds a 2-layer Llama from a config and a byte-level BPE tokenizer trained on a few lines, with a
ChatML chat template whose turns end with <|im_end|> (the generation config's eos), then asks
``make_generator(backend="hf")`` (what ``openrlhf-cfpo eval --backend hf`` uses) for greedy replies
to three conversations. The backend puts the model on CUDA whenever a GPU is visible; exits 1
unless it generated on ``--expect-device`` (checked through CUDA's allocator) and every reply came
back. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a prime number."}],
    [{"role": "user", "content": "Say hello."}],
]


def build_tiny_chat_model(folder: Path) -> Path:
    """Save a random-init tiny Llama and its locally trained chat tokenizer into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [message["content"] for conversation in CONVERSATIONS for message in conversation] * 4
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-device", choices=["cpu", "cuda"], required=True)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)

    import torch

    from openrlhf_cfpo.evaluation.context import SamplingSettings
    from openrlhf_cfpo.evaluation.generation import make_generator

    with tempfile.TemporaryDirectory() as folder:
        generator = make_generator(str(build_tiny_chat_model(Path(folder))), backend="hf")
        replies = generator.generate(CONVERSATIONS, SamplingSettings(max_new_tokens=args.max_new_tokens))
    cuda_bytes = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    device = "cuda" if cuda_bytes > 0 else "cpu"
    report = {"device": device, "cuda_max_memory_allocated": cuda_bytes, "replies": replies}
    print(json.dumps(report))
    ok = device == args.expect_device and len(replies) == len(CONVERSATIONS) and all(isinstance(r, str) for r in replies)
    print(f"hf generation check: {'ok' if ok else 'FAILED'} ({len(replies)} replies on {device})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
