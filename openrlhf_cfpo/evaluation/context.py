"""What every benchmark receives: where to write, where data lives, how to generate and to judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

Conversation = Sequence[Dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}, ...]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling for one benchmark's generations (the same for every backend)."""

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0


class ChatGenerator(Protocol):
    """A generation backend (transformers on CPU, vLLM on GPU nodes) with the model's chat template."""

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingSettings) -> List[str]:
        """One assistant reply per conversation, in order."""

    def capped(self, sampling: SamplingSettings) -> SamplingSettings:
        """``sampling`` as ``generate`` applies it (with the --max-new-tokens cap)."""

    def describe(self) -> Dict[str, Any]:
        """Model, backend, seed, chat template and stop tokens: what decides replies besides the
        conversations and sampling (saved answers are reused only when it is unchanged)."""


@dataclass(frozen=True)
class JudgeSettings:
    """An OpenAI-compatible chat-completions endpoint; None fields take each benchmark's default."""

    model: Optional[str] = None  # judge of every judged benchmark (--judge-model NAME)
    base_url: Optional[str] = None
    concurrency: int = 8
    api_key_env: str = "OPENAI_API_KEY"
    models: Mapping[str, str] = field(default_factory=dict)  # benchmark -> judge (--judge-model BENCH=NAME)

    def model_for(self, benchmark: str, default: str) -> str:
        """The judge of ``benchmark``: its own override, else the one for all, else ``default``."""
        return self.models.get(benchmark) or self.model or default


@dataclass
class EvalContext:
    out_dir: Path  # OUT; a benchmark writes into OUT/<NAME>/
    data_dir: Optional[Path] = None  # as `openrlhf-cfpo data fetch` lays it out; None = download and cache
    limit: Optional[int] = None  # first N items, for smoke runs
    generator: Optional[ChatGenerator] = None  # None when scoring --responses
    responses: Optional[Path] = None  # answers in the benchmark's official format
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    model_name: str = "model"
    tasks: Optional[Tuple[str, ...]] = None  # a multi-task benchmark's selected tasks (its TASKS); None = all
    model_path: Optional[str] = None  # --model, for benchmarks that score log-likelihoods (lm-eval)
    backend: Optional[str] = None  # "hf" | "vllm": the backend behind generator, for such benchmarks too
    seed: int = 0
    max_new_tokens_cap: Optional[int] = None  # --max-new-tokens; generators apply it, lm-eval runs read it here
    model_size: Optional[str] = None  # "1.5B" | "3B" | "7B": picks the RLVR system prompt (openrlhf_cfpo.prompts)
