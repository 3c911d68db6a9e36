"""The vLLM backend hands vLLM the prompts the HF backend would build, with the same sampling
(checked with a recording stand-in for vllm.LLM; no GPU here)."""

import sys
import types

import pytest
from transformers import AutoTokenizer

from openrlhf_cfpo.evaluation import generation
from openrlhf_cfpo.evaluation.context import SamplingSettings

CONVERSATIONS = [
    [{"role": "system", "content": "Reason, then box."}, {"role": "user", "content": "1+1?"}],
    [{"role": "user", "content": "Write a haiku."}],
]


def test_vllm_backend_gets_the_chat_template_prompts_and_sampling(monkeypatch, benchmarks_dir):
    seen = {}

    class RecordingLLM:
        def __init__(self, model, seed, tensor_parallel_size):
            seen["init"] = (model, seed, tensor_parallel_size)

        def generate(self, prompts, params):
            seen["prompts"], seen["params"] = prompts, params
            reply = types.SimpleNamespace
            return [reply(outputs=[reply(text=f"reply {i}")]) for i in range(len(prompts))]

    fake_vllm = types.ModuleType("vllm")
    fake_vllm.LLM = RecordingLLM
    fake_vllm.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)

    tokenizer_dir = str(benchmarks_dir / "tokenizers" / "qwen3")
    generator = generation.VLLMChatGenerator(tokenizer_dir, seed=3, max_new_tokens_cap=64)
    replies = generator.generate(CONVERSATIONS, SamplingSettings(max_new_tokens=3072, temperature=0.6, top_p=0.95))
    assert replies == ["reply 0", "reply 1"]
    assert seen["init"] == (tokenizer_dir, 3, 1)
    assert seen["params"] == {"max_tokens": 64, "temperature": 0.6, "top_p": 0.95}

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert seen["prompts"] == generation.render_prompts(tokenizer, CONVERSATIONS)
    assert seen["prompts"][0] == (
        "<|im_start|>system\nReason, then box.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    )

    generator.generate(CONVERSATIONS[:1], SamplingSettings(max_new_tokens=16, temperature=0.0, top_p=0.9))
    assert seen["params"] == {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0}  # greedy ignores top-p


def test_tokenizer_without_chat_template_is_refused(tmp_path, benchmarks_dir):
    tokenizer = AutoTokenizer.from_pretrained(benchmarks_dir / "tokenizers" / "qwen3")
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(generation.GenerationError, match="has no chat template: evaluate a chat/instruct checkpoint"):
        generation.load_tokenizer(str(tmp_path))
