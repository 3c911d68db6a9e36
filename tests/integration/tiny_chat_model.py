"""Random-init tiny chat models with the chat tokenizers of tests/fixtures/benchmarks/tokenizers, saved to a folder."""

from pathlib import Path


def _copy_tokenizer(folder: Path, tokenizer_dir: Path):
    """Copy a tokenizer's files into ``folder``; return (vocabulary size with added tokens, {added token: id},
    the ids below that size the tokenizer has no token for).

    The fixture tokenizers keep the real special-token ids over a small vocabulary, so most ids below
    them name no token; the models built here never emit those (``_emit_only_known``)."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for path in Path(tokenizer_dir).iterdir():
        if path.suffix in (".json", ".txt", ".jinja"):
            shutil.copy(path, folder / path.name)
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    added = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    known = set(tokenizer["model"]["vocab"].values()) | set(added.values())
    size = max(known) + 1
    return size, added, sorted(set(range(size)) - known)


def _emit_only_known(model, unknown_ids) -> None:
    """Zero the output-head rows of ids the tokenizer lacks (logit 0) and scale the others x100 (random
    logits of several units): greedy and sampled decoding then never pick an unknown id, and a random model
    writes text, as one with the full tokenizer does, instead of ids that decode to nothing. Costs nothing
    per step, unlike generation_config.suppress_tokens over ~150k ids (about 1.5 s per generate call)."""
    import torch

    if not unknown_ids:
        return
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        head.mul_(100.0)
        head[torch.tensor(unknown_ids)] = 0.0


def build_tiny_chat_model(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Save tokenizer + a 2-layer, hidden-32 Qwen2 model (eos <|im_end|>, untied head) into ``folder``; return it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    vocab_size, added, unknown_ids = _copy_tokenizer(folder, tokenizer_dir)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,  # untied: with tied ones, a random model over a small vocabulary repeats its input
        bos_token_id=added["<|endoftext|>"],
        eos_token_id=added["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    _emit_only_known(model, unknown_ids)
    model.save_pretrained(folder)
    return folder


def build_tiny_llama3_model(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A 1-layer, hidden-16 Llama with a Llama-3 tokenizer whose eos (tokenizer and generation_config) is
    ``<|end_of_text|>`` while its chat template ends turns with ``<|eot_id|>``, as the early
    Meta-Llama-3-8B-Instruct revision; untied lm_head, so tests can bias it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    vocab_size, added, unknown_ids = _copy_tokenizer(folder, tokenizer_dir)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        bos_token_id=added["<|begin_of_text|>"],
        eos_token_id=added["<|end_of_text|>"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    _emit_only_known(model, unknown_ids)
    model.save_pretrained(folder)
    return folder


def build_small_vocab_model(folder: Path, corpus_files, vocab_size: int = 512, seed: int = 0) -> Path:
    """A tiny Llama with a byte-level BPE tokenizer trained here on ``corpus_files`` (fast log-likelihoods)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train([str(f) for f in corpus_files], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


# A ChatML template: turns end with <|im_end|>, while the tokenizer's eos stays <|endoftext|> (like Qwen2.5 base).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_small_vocab_chat_model(folder: Path, corpus_files, seed: int = 0) -> Path:
    """``build_small_vocab_model`` with ChatML turns: fast chat training on CPU (a 150k-token vocabulary
    costs seconds per log-prob pass), and an end-of-turn token that is not the tokenizer's eos."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    build_small_vocab_model(folder, corpus_files, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
