"""Both generation backends feed the model the same token ids (exactly one BOS for Llama-3) and stop at
the chat template's end of turn; vLLM is a recording stand-in for vllm.LLM (no GPU here) that
tokenizes a text prompt the way vLLM does, with the tokenizer's special tokens."""

import functools
import json
import sys
import types
import weakref

import pytest
import torch
from tiny_chat_model import build_tiny_chat_model, build_tiny_llama3_model
from transformers import AutoTokenizer

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.evaluation import generation
from openrlhf_cfpo.evaluation.context import SamplingSettings

CONVERSATIONS = [
    [{"role": "system", "content": "Reason, then box."}, {"role": "user", "content": "1+1?"}],
    [{"role": "user", "content": "Write a haiku."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
]
# name -> (tokenizer folder, the stop tokens expected: generation_config eos ∪ tokenizer eos ∪ end of turn)
TOKENIZERS = {
    "llama3": ("meta_llama3_8b_instruct_hf", ["<|end_of_text|>", "<|eot_id|>"]),
    "qwen3": ("qwen3", ["<|im_end|>"]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory, fixtures_dir):
    folder = tmp_path_factory.mktemp("chat_models")
    tokenizers = fixtures_dir / "tokenizers"
    return {
        "llama3": str(build_tiny_llama3_model(folder / "llama3", tokenizers / TOKENIZERS["llama3"][0])),
        "qwen3": str(build_tiny_chat_model(folder / "qwen3", tokenizers / TOKENIZERS["qwen3"][0])),
    }


@functools.lru_cache(maxsize=None)
def tokenizer_of(model: str):
    return AutoTokenizer.from_pretrained(model)


class RecordingLLM:
    """vllm.LLM stand-in: records the prompt ids it would run (a text prompt tokenized as vLLM does,
    special tokens added; a TokensPrompt's ids as given) and the SamplingParams."""

    def __init__(self, model, seed, tensor_parallel_size):
        self.init = (model, seed, tensor_parallel_size)
        self.prompt_ids, self.params = None, None

    def generate(self, prompts, params):
        tokenizer = tokenizer_of(self.init[0])
        self.params = params
        self.prompt_ids = [
            tokenizer(p)["input_ids"] if isinstance(p, str) else list(p["prompt_token_ids"]) for p in prompts
        ]
        reply = types.SimpleNamespace
        return [reply(outputs=[reply(text=f"reply {i}")]) for i in range(len(prompts))]


@pytest.fixture
def vllm_engines(monkeypatch):
    """Puts a vllm module with RecordingLLM on sys.modules; yields the engines it creates."""
    engines = []
    fake = types.ModuleType("vllm")
    fake.LLM = lambda **kwargs: engines.append(RecordingLLM(**kwargs)) or engines[-1]
    fake.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake)
    return engines


def hf_generate_calls(generator, conversations, sampling):
    """Run the HF backend; return (unpadded prompt ids it gave model.generate, the generate kwargs, outputs)."""
    model = generator._load()
    calls, outputs = [], []
    original = model.generate

    def recording_generate(**kwargs):
        calls.append(kwargs)
        outputs.append(original(**kwargs))
        return outputs[-1]

    model.generate = recording_generate
    generator.generate(conversations, sampling)
    ids = [row[mask.bool()].tolist() for call in calls for row, mask in zip(call["input_ids"], call["attention_mask"])]
    return ids, calls, outputs


@pytest.mark.parametrize("name", TOKENIZERS)
def test_both_backends_give_the_model_the_same_ids_and_stop_at_the_end_of_turn(name, models, vllm_engines):
    tokenizer = tokenizer_of(models[name])
    stop_ids = tokenizer.convert_tokens_to_ids(TOKENIZERS[name][1])
    hf_ids, calls, _ = hf_generate_calls(
        generation.HFChatGenerator(models[name], batch_size=2), CONVERSATIONS, SamplingSettings(max_new_tokens=2)
    )
    assert [call["eos_token_id"] for call in calls] == [stop_ids, stop_ids]

    vllm = generation.VLLMChatGenerator(models[name], seed=3, max_new_tokens_cap=64)
    replies = vllm.generate(CONVERSATIONS, SamplingSettings(max_new_tokens=3072, temperature=0.6, top_p=0.95))
    assert replies == ["reply 0", "reply 1", "reply 2"]
    (engine,) = vllm_engines
    assert engine.init == (models[name], 3, 1)
    assert engine.prompt_ids == hf_ids
    assert engine.params == {"max_tokens": 64, "temperature": 0.6, "top_p": 0.95, "stop_token_ids": stop_ids}
    vllm.generate(CONVERSATIONS[:1], SamplingSettings(max_new_tokens=16, temperature=0.0, top_p=0.9))
    assert len(vllm_engines) == 1 and engine.params["top_p"] == 1.0  # loaded once; greedy ignores top-p

    rendered = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CONVERSATIONS]
    assert [tokenizer.decode(ids) for ids in hf_ids] == rendered
    if name == "llama3":  # the template writes <|begin_of_text|>; tokenizing with special tokens would add another
        assert all(ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1 for ids in hf_ids)


def test_hf_generation_ends_at_eot_id_although_eos_is_end_of_text(models):
    """The early Llama-3 revision: a model that says <|eot_id|> at once gets a one-token reply, not
    max_new_tokens of <|eot_id|> waiting for <|end_of_text|>."""
    generator = generation.HFChatGenerator(models["llama3"])
    model = generator._load()
    eot = generator.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()[eot] = 10.0
    model.lm_head = head
    ids, _, outputs = hf_generate_calls(generator, CONVERSATIONS[1:2], SamplingSettings(max_new_tokens=8))
    (out,) = outputs
    assert out[0, len(ids[0]) :].tolist() == [eot]


def test_end_of_turn_token_comes_from_the_chat_template(models):
    for name, (_, tokens) in TOKENIZERS.items():
        tokenizer = tokenizer_of(models[name])
        assert tokenizer.convert_ids_to_tokens(generation.end_of_turn_token(tokenizer)) == tokens[-1]
    plain = AutoTokenizer.from_pretrained(models["qwen3"])  # a fresh copy: its template is replaced
    plain.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert generation.end_of_turn_token(plain) is None  # nothing special ends a turn: eos alone stops


def test_run_config_records_the_stop_tokens(models, fixtures_dir, nltk_punkt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--model", models["llama3"], "--benchmarks", "ifeval", "--data-dir", str(fixtures_dir),
               "--limit", "1", "--max-new-tokens", "2", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    recorded = json.loads((out / "run_config.json").read_text())["config"]["generation"]
    tokenizer = tokenizer_of(models["llama3"])
    assert recorded["stop_tokens"] == TOKENIZERS["llama3"][1]
    assert recorded["stop_token_ids"] == tokenizer.convert_tokens_to_ids(TOKENIZERS["llama3"][1])
    assert recorded["backend"] == "hf" and recorded["max_new_tokens_cap"] == 2


def test_release_drops_the_engine_and_empties_the_cuda_cache(models, monkeypatch):
    generator = generation.HFChatGenerator(models["qwen3"])
    engine = weakref.ref(generator._load())
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    generator.release()
    assert engine() is None and emptied == [1]


def test_tokenizer_without_chat_template_is_refused(tmp_path, fixtures_dir):
    tokenizer = AutoTokenizer.from_pretrained(fixtures_dir / "tokenizers" / "qwen3")
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(generation.GenerationError, match="has no chat template: evaluate a chat/instruct checkpoint"):
        generation.load_tokenizer(str(tmp_path))
