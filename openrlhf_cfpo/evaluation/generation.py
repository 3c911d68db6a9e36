"""Generation backends: vLLM on GPU nodes, transformers (HF) on CPU.

Both feed the model the same token ids and stop at the same tokens:

- ``encode_prompts``: each conversation is rendered by the tokenizer's own chat template and
  tokenized once, without special tokens (the template text already starts with the BOS the model
  wants, e.g. Llama-3's ``<|begin_of_text|>``). vLLM receives these ids, never text: vLLM tokenizes
  a text prompt with special tokens and would add a second BOS.
- ``stop_tokens``: generation stops at any of the generation_config's eos ids, the tokenizer's eos
  and the chat template's end-of-turn token (``end_of_turn_token``), since a checkpoint's eos need
  not be the token that ends an assistant turn (early Llama-3: eos ``<|end_of_text|>``, turns end
  with ``<|eot_id|>``).

The tokenizer is loaded when first needed (``describe``, which the CLI calls at once, or the first
``generate``); the model on the first ``generate``, so a run that only scores ``--responses`` or only
runs lm-eval never loads it twice. ``release`` frees the engine (and its GPU memory) for lm-eval.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from openrlhf_cfpo.evaluation.context import Conversation, SamplingSettings

logger = logging.getLogger(__name__)

BACKENDS = ("vllm", "hf")
_TURN_MARKER = "END-OF-TURN-PROBE-4f1c"
_SAMPLED_BLOCKS = 16  # per large file in model_fingerprint
_BLOCK_BYTES = 1 << 16
_HASHED_WHOLE_BYTES = 64 << 20


class GenerationError(ValueError):
    """A model or tokenizer that cannot generate chat replies (message names the fix)."""


def vllm_usable() -> bool:
    """True when a real vLLM distribution is installed and a CUDA GPU is present.

    Checks the installed distribution's metadata rather than ``import vllm``: an import-only
    stand-in (as CPU tests put on the path) makes ``import vllm`` succeed without being vLLM.
    """
    try:
        importlib.metadata.distribution("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    import torch

    return torch.cuda.is_available()


def default_backend() -> str:
    return "vllm" if vllm_usable() else "hf"


def load_tokenizer(model: str):
    """The model's tokenizer, left-padded for batched generation; it must carry a chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise GenerationError(
            f"cannot load the tokenizer of --model {model!r} ({type(err).__name__}): pass a checkpoint folder or "
            "a Hugging Face model id this machine can download (or has in its HF cache)"
        ) from err
    if not tokenizer.chat_template:
        raise GenerationError(
            f"the tokenizer of {model!r} has no chat template: evaluate a chat/instruct checkpoint "
            "(its tokenizer_config.json must define chat_template)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode_prompts(tokenizer, conversations: Sequence[Conversation]) -> List[List[int]]:
    """Each conversation's prompt token ids: chat template text (ending with the assistant turn's
    header), tokenized once without special tokens. Both backends generate from exactly these ids."""
    texts = [
        tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
        for conv in conversations
    ]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def end_of_turn_token(tokenizer) -> Optional[int]:
    """The special token the chat template writes right after an assistant message's content
    (``<|eot_id|>``, ``<|im_end|>``, ...), found by rendering a one-turn conversation; None when the
    template puts no special token there (then eos is expected to end the turn)."""
    from jinja2 import TemplateError

    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _TURN_MARKER}]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
    except TemplateError as err:  # a template may reject this conversation (its raise_exception)
        logger.warning("the chat template cannot render a one-turn conversation (%s): no end-of-turn token", err)
        return None
    if _TURN_MARKER not in text:
        return None
    after = tokenizer(text[text.rindex(_TURN_MARKER) + len(_TURN_MARKER) :], add_special_tokens=False)["input_ids"]
    if not after:
        return None
    added = tokenizer.added_tokens_decoder.get(after[0])
    return after[0] if added is not None and added.special else None


def _generation_config_eos(model: str) -> List[int]:
    """The eos id(s) of the checkpoint's generation_config.json ([] when it has none)."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model).eos_token_id
    except OSError:
        return []
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def stop_tokens(tokenizer, model: str) -> Dict[int, str]:
    """{token id: token} that end a reply: generation_config eos ids ∪ tokenizer eos ∪ end of turn."""
    ids = [*_generation_config_eos(model), tokenizer.eos_token_id, end_of_turn_token(tokenizer)]
    return {i: tokenizer.convert_ids_to_tokens(i) for i in dict.fromkeys(ids) if i is not None}


def model_fingerprint(model: str) -> Optional[str]:
    """sha256 over a checkpoint folder's files (None for a Hub id): small files whole; files over
    64 MiB (weight shards) by size and 16 blocks of 64 KiB spread over them, so two checkpoints of one
    architecture differ, and fingerprinting a 16 GB folder reads about 1 MiB per shard."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            if size <= _HASHED_WHOLE_BYTES:
                digest.update(handle.read())
                continue
            for block in range(_SAMPLED_BLOCKS):
                handle.seek(block * (size - _BLOCK_BYTES) // (_SAMPLED_BLOCKS - 1))
                digest.update(handle.read(_BLOCK_BYTES))
    return digest.hexdigest()


def free_accelerator_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back to the driver (no-op without CUDA)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cap(sampling: SamplingSettings, max_new_tokens_cap: Optional[int]) -> SamplingSettings:
    if max_new_tokens_cap is None or sampling.max_new_tokens <= max_new_tokens_cap:
        return sampling
    return replace(sampling, max_new_tokens=max_new_tokens_cap)


class _ChatGenerator:
    """What both backends share: tokenizer, stop tokens, identity, sampling cap, release."""

    backend = ""

    def __init__(self, model: str, seed: int = 0, max_new_tokens_cap: Optional[int] = None):
        self.model_name = model
        self.seed = seed
        self.max_new_tokens_cap = max_new_tokens_cap
        self._tokenizer = None
        self._stop: Dict[int, str] = {}
        self._engine = None  # the loaded model (HF) or vllm.LLM
        self._description: Optional[Dict[str, Any]] = None  # describe()'s, once computed

    def _tokenizer_and_stop(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_name)
            self._stop = stop_tokens(self._tokenizer, self.model_name)
        return self._tokenizer, self._stop

    @property
    def tokenizer(self):
        return self._tokenizer_and_stop()[0]

    @property
    def stop_token_ids(self) -> List[int]:
        return list(self._tokenizer_and_stop()[1])

    def capped(self, sampling: SamplingSettings) -> SamplingSettings:
        """``sampling`` with --max-new-tokens applied."""
        return _cap(sampling, self.max_new_tokens_cap)

    def describe(self) -> Dict[str, Any]:
        """What decides the replies besides the conversations and sampling: the model (a folder's
        resolved path and fingerprint, or the Hub id), backend, seed, length cap, chat template and stop
        tokens. Recorded in run_config.json; saved answers are reused only under the same description."""
        if self._description is None:  # computed once: the fingerprint reads the checkpoint's files
            tokenizer, stop = self._tokenizer_and_stop()
            folder = Path(self.model_name)
            self._description = {
                "model": str(folder.resolve()) if folder.is_dir() else self.model_name,
                "model_fingerprint": model_fingerprint(self.model_name),
                "backend": self.backend,
                "seed": self.seed,
                "max_new_tokens_cap": self.max_new_tokens_cap,
                "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode("utf-8")).hexdigest(),
                "stop_token_ids": list(stop),
                "stop_tokens": list(stop.values()),
            }
        return dict(self._description)

    def release(self) -> None:
        """Drop the loaded engine and free its GPU memory; the next ``generate`` loads it again."""
        if self._engine is not None:
            logger.info("releasing the %s engine of %s", self.backend, self.model_name)
        self._engine = None
        free_accelerator_memory()


class HFChatGenerator(_ChatGenerator):
    """transformers ``generate`` in batches (CPU, or a GPU without vLLM)."""

    backend = "hf"

    def __init__(
        self, model: str, batch_size: int = 8, seed: int = 0, max_new_tokens_cap: Optional[int] = None
    ):
        super().__init__(model, seed=seed, max_new_tokens_cap=max_new_tokens_cap)
        self.batch_size = batch_size

    def _load(self):
        if self._engine is None:
            import torch
            from transformers import AutoModelForCausalLM

            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            logger.info("loading %s with transformers on %s", self.model_name, device)
            self._engine = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype).to(device).eval()
        return self._engine

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> List[str]:
        import torch
        from tqdm import tqdm

        tokenizer = self.tokenizer
        model = self._load()
        sampling = self.capped(sampling)
        prompts = encode_prompts(tokenizer, conversations)
        do_sample = sampling.temperature > 0
        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=do_sample,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=self.stop_token_ids,
        )
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        torch.manual_seed(self.seed)
        replies: List[str] = []
        batches = range(0, len(prompts), self.batch_size)
        for start in tqdm(batches, desc="generate (hf)", disable=len(batches) < 2):
            batch = tokenizer.pad({"input_ids": prompts[start : start + self.batch_size]}, return_tensors="pt")
            batch = batch.to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, **kwargs)
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return replies


class VLLMChatGenerator(_ChatGenerator):
    """vLLM offline inference on the token ids of ``encode_prompts`` (the HF backend's ids)."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        max_new_tokens_cap: Optional[int] = None,
    ):
        super().__init__(model, seed=seed, max_new_tokens_cap=max_new_tokens_cap)
        self.tensor_parallel_size = tensor_parallel_size

    def _load(self):
        if self._engine is None:
            from vllm import LLM

            logger.info("loading %s with vLLM (tp=%d)", self.model_name, self.tensor_parallel_size)
            self._engine = LLM(model=self.model_name, seed=self.seed, tensor_parallel_size=self.tensor_parallel_size)
        return self._engine

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> List[str]:
        from vllm import SamplingParams

        prompts = encode_prompts(self.tokenizer, conversations)
        llm = self._load()
        sampling = self.capped(sampling)
        params = SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            stop_token_ids=self.stop_token_ids,
        )
        # {"prompt_token_ids": ...} is vLLM's TokensPrompt (a TypedDict): the ids are used as given.
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params)
        return [output.outputs[0].text for output in outputs]


def make_generator(
    model: str, backend: Optional[str] = None, seed: int = 0, max_new_tokens_cap: Optional[int] = None
):
    """The ``backend`` generator for ``model`` (None = vLLM when usable, else HF)."""
    backend = backend or default_backend()
    if backend == "vllm":
        if not vllm_usable():
            raise GenerationError(
                "--backend vllm needs the vllm package and a CUDA GPU (pip install 'openrlhf-cfpo[gpu]' on a GPU "
                "node); on CPU use --backend hf"
            )
        return VLLMChatGenerator(model, seed=seed, max_new_tokens_cap=max_new_tokens_cap)
    if backend == "hf":
        return HFChatGenerator(model, seed=seed, max_new_tokens_cap=max_new_tokens_cap)
    raise GenerationError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
