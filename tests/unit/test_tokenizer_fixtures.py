"""The small chat tokenizers of tests/fixtures/benchmarks/tokenizers behave as the Hub ones where tests rely
on it: special-token ids, BOS added by Llama-3's post-processor (so chat-template text tokenized with special
tokens carries two BOS), end-of-turn/eos tokens, the chat templates' rendering. With the full tokenizers
present (`make data`), fixture and Hub tokenizer are compared directly."""

import functools

import pytest
from transformers import AutoTokenizer

LLAMA3 = "meta_llama3_8b_instruct_hf"
QWEN3 = "qwen3"
CONVERSATION = [
    {"role": "system", "content": "Reason, then box."},
    {"role": "user", "content": "What is 1+1?"},
    {"role": "assistant", "content": "It is \\boxed{2}."},
    {"role": "user", "content": "Écris un haïku. 你好"},
]
TEXT = "Tabs\tand  spaces, ümlauts, 数学, emoji 🙂 and <b>tags</b>\n"


@functools.lru_cache(maxsize=None)
def load(folder):
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def llama3(fixtures_dir):
    return load(fixtures_dir / "tokenizers" / LLAMA3)


@pytest.fixture(scope="module")
def qwen3(fixtures_dir):
    return load(fixtures_dir / "tokenizers" / QWEN3)


def test_llama3_special_token_ids_are_the_hub_ones(llama3):
    ids = {token: llama3.convert_tokens_to_ids(token) for token in
           ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}
    assert ids == {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                   "<|end_header_id|>": 128007, "<|eot_id|>": 128009}
    # the early Meta-Llama-3-8B-Instruct revision: eos is <|end_of_text|>, turns end with <|eot_id|>
    assert (llama3.bos_token_id, llama3.eos_token_id) == (128000, 128001)
    added = llama3.get_added_vocab()
    assert sorted(added.values()) == list(range(128000, 128256))
    assert added["<|reserved_special_token_250|>"] == 128255


def test_llama3_bos_is_added_once_by_the_post_processor(llama3):
    ids = llama3(TEXT).input_ids
    assert ids[0] == 128000 and ids.count(128000) == 1
    assert llama3(TEXT, add_special_tokens=False).input_ids == ids[1:]
    assert llama3.decode(ids[1:]) == TEXT  # byte-level: any text round-trips


def test_llama3_chat_template_renders_bos_and_header_turns_and_tokenizing_it_again_doubles_bos(llama3):
    rendered = llama3.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nReason, then box.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 1+1?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is \\boxed{2}.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nÉcris un haïku. 你好<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    with_special = llama3(rendered).input_ids
    assert with_special[:2] == [128000, 128000]  # the double BOS of a text prompt tokenized with special tokens
    ids = llama3(rendered, add_special_tokens=False).input_ids
    assert ids[0] == 128000 and ids.count(128000) == 1 and ids.count(128009) == 4 and ids.count(128006) == 5
    assert llama3.apply_chat_template(CONVERSATION, tokenize=True, add_generation_prompt=True, return_dict=False) == ids


def test_qwen3_special_token_ids_are_the_hub_ones(qwen3):
    ids = {token: qwen3.convert_tokens_to_ids(token)
           for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")}
    assert ids == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<think>": 151667,
                   "</think>": 151668}
    assert (qwen3.bos_token, qwen3.eos_token, qwen3.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    assert sorted(qwen3.get_added_vocab().values()) == list(range(151643, 151669))


def test_qwen3_adds_no_bos_and_round_trips_text(qwen3):
    ids = qwen3(TEXT).input_ids
    assert ids == qwen3(TEXT, add_special_tokens=False).input_ids and max(ids) < 151643
    assert qwen3.decode(ids) == TEXT


def test_qwen3_chat_template_renders_chatml_turns_and_the_thinking_switch(qwen3):
    rendered = qwen3.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nReason, then box.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        "<|im_start|>assistant\nIt is \\boxed{2}.<|im_end|>\n<|im_start|>user\nÉcris un haïku. 你好<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_thinking = qwen3.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True,
                                            enable_thinking=False)
    assert no_thinking == rendered + "<think>\n\n</think>\n\n"
    ids = qwen3(rendered).input_ids
    assert ids.count(151644) == 5 and ids.count(151645) == 4 and ids[0] == 151644


@pytest.mark.parametrize("folder", [
    pytest.param(LLAMA3, marks=pytest.mark.needs_data(f"tokenizers/{LLAMA3}/tokenizer.json")),
    pytest.param(QWEN3, marks=pytest.mark.needs_data(f"tokenizers/{QWEN3}/tokenizer.json")),
])
def test_fixture_matches_the_full_tokenizer(folder, fixtures_dir, benchmark_data):
    small, full = load(fixtures_dir / "tokenizers" / folder), load(benchmark_data / "tokenizers" / folder)
    assert small.get_added_vocab() == full.get_added_vocab()
    assert (small.bos_token_id, small.eos_token_id, small.pad_token_id) == (full.bos_token_id, full.eos_token_id,
                                                                           full.pad_token_id)
    assert small.chat_template == full.chat_template
    for prompt in (True, False):
        rendered = full.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=prompt)
        assert small.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=prompt) == rendered
        for special in (True, False):
            small_ids, full_ids = small(rendered, add_special_tokens=special).input_ids, full(rendered, add_special_tokens=special).input_ids
            first_added = min(full.get_added_vocab().values())
            assert [i for i in small_ids if i >= first_added] == [i for i in full_ids if i >= first_added]
            assert small.decode(small_ids) == full.decode(full_ids)
