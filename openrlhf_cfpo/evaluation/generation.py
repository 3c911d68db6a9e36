"""Generation backends: vLLM on GPU nodes, transformers (HF) on CPU.

Both render every conversation with the model tokenizer's own chat template (``render_prompts``)
and sample with the same ``SamplingSettings``, so a benchmark sees the same prompts whichever
backend runs. The model is loaded on the first ``generate`` call: a run that only scores
``--responses`` or only runs lm-eval never loads it twice.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import replace
from typing import List, Optional, Sequence

from openrlhf_cfpo.evaluation.context import Conversation, SamplingSettings

logger = logging.getLogger(__name__)

BACKENDS = ("vllm", "hf")


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

    tokenizer = AutoTokenizer.from_pretrained(model)
    if not tokenizer.chat_template:
        raise GenerationError(
            f"the tokenizer of {model!r} has no chat template: evaluate a chat/instruct checkpoint "
            "(its tokenizer_config.json must define chat_template)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_prompts(tokenizer, conversations: Sequence[Conversation]) -> List[str]:
    """Each conversation as text through the tokenizer's chat template, ending with the assistant turn."""
    return [
        tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
        for conv in conversations
    ]


def _cap(sampling: SamplingSettings, max_new_tokens_cap: Optional[int]) -> SamplingSettings:
    if max_new_tokens_cap is None or sampling.max_new_tokens <= max_new_tokens_cap:
        return sampling
    return replace(sampling, max_new_tokens=max_new_tokens_cap)


class HFChatGenerator:
    """transformers ``generate`` in batches (CPU, or a GPU without vLLM)."""

    def __init__(
        self, model: str, batch_size: int = 8, seed: int = 0, max_new_tokens_cap: Optional[int] = None
    ):
        self.model_name = model
        self.batch_size = batch_size
        self.seed = seed
        self.max_new_tokens_cap = max_new_tokens_cap
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            self._tokenizer = load_tokenizer(self.model_name)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            logger.info("loading %s with transformers on %s", self.model_name, device)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype).to(device).eval()
        return self._model, self._tokenizer

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> List[str]:
        import torch
        from tqdm import tqdm

        model, tokenizer = self._load()
        sampling = _cap(sampling, self.max_new_tokens_cap)
        prompts = render_prompts(tokenizer, conversations)
        do_sample = sampling.temperature > 0
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id)
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        torch.manual_seed(self.seed)
        replies: List[str] = []
        batches = range(0, len(prompts), self.batch_size)
        for start in tqdm(batches, desc="generate (hf)", disable=len(batches) < 2):
            batch = tokenizer(
                prompts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, **kwargs)
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return replies


class VLLMChatGenerator:
    """vLLM offline inference on the prompts rendered by the same chat template as the HF backend."""

    def __init__(
        self,
        model: str,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        max_new_tokens_cap: Optional[int] = None,
    ):
        self.model_name = model
        self.seed = seed
        self.tensor_parallel_size = tensor_parallel_size
        self.max_new_tokens_cap = max_new_tokens_cap
        self._llm = None
        self._tokenizer = None

    def _load(self):
        if self._llm is None:
            from vllm import LLM

            self._tokenizer = load_tokenizer(self.model_name)
            logger.info("loading %s with vLLM (tp=%d)", self.model_name, self.tensor_parallel_size)
            self._llm = LLM(model=self.model_name, seed=self.seed, tensor_parallel_size=self.tensor_parallel_size)
        return self._llm, self._tokenizer

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> List[str]:
        from vllm import SamplingParams

        llm, tokenizer = self._load()
        sampling = _cap(sampling, self.max_new_tokens_cap)
        params = SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
        )
        outputs = llm.generate(render_prompts(tokenizer, conversations), params)
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
