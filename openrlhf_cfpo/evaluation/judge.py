"""The judge: an OpenAI-compatible chat-completions client with retries and an on-disk judgment cache.

Used by AlpacaEval 2.0, Arena-Hard v0.1 and MT-Bench. Requests go out ``concurrency`` at a time
(threads sharing one ``openai.OpenAI`` client); 429, 5xx, timeouts and dropped connections are
retried with exponential backoff (honouring ``Retry-After``); other HTTP errors stop the run with
one line naming the fix.

Cache: one JSON file per judgment, ``CACHE/<benchmark>/<key[:2]>/<key>.json``, where ``key`` is the
sha256 of (benchmark, judge model, request body: messages + sampling). The messages hold the
benchmark's prompt and the judged answer, so the key is (benchmark, judge, prompt, answer). Each file
is written when its reply arrives, through a temporary file and ``os.replace``: a killed run leaves
only whole entries, a rerun or resumed run sends only what is missing, and concurrent runs may share
a cache. ``CACHE`` is ``OUT/judge_cache`` or ``$OPENRLHF_CFPO_JUDGE_CACHE`` (to share across runs).
The endpoint URL is not part of the key: the same model behind another gateway reuses judgments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from openrlhf_cfpo.evaluation.context import EvalContext
from openrlhf_cfpo.evaluation.suites import config_dir
from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

CACHE_ENV = "OPENRLHF_CFPO_JUDGE_CACHE"
OPENAI_URL = "https://api.openai.com/v1"


class JudgeError(ValueError):
    """The judge cannot be used (unreachable, rejected key, unknown model, ...); the message names the fix."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for one reply and how to retry transient failures (429, 5xx, timeouts)."""

    max_attempts: int = 8  # per request, including the first
    backoff_s: float = 2.0  # wait before retry k is backoff_s * 2**(k-1), jittered, capped
    backoff_max_s: float = 60.0
    timeout_s: float = 180.0  # per HTTP request


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions call (the judge model is the client's)."""

    messages: Sequence[Dict[str, str]]
    max_tokens: int
    temperature: float = 0.0
    top_logprobs: Optional[int] = None  # ask for logprobs with this many alternatives per token

    def body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "messages": [dict(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_logprobs is not None:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return body


def judgment_key(benchmark: str, model: str, request: ChatRequest) -> str:
    canonical = json.dumps(
        {"benchmark": benchmark, "judge": model, "request": request.body()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def reply_text(completion: Dict[str, Any]) -> str:
    """The assistant text of a chat completion (as returned by ``JudgeClient.complete``)."""
    choices = completion.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


class JudgmentCache:
    """Judgments on disk, one JSON file per key (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, benchmark: str, key: str) -> Path:
        return self.root / benchmark / key[:2] / f"{key}.json"

    def get(self, benchmark: str, key: str) -> Optional[Dict[str, Any]]:
        path = self.path(benchmark, key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["response"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("ignoring unreadable judge cache entry %s (%s); it will be requested again", path, err)
            return None

    def put(self, benchmark: str, key: str, model: str, request: ChatRequest, response: Dict[str, Any]) -> None:
        record = {"benchmark": benchmark, "judge": model, "request": request.body(), "response": response}
        atomic_write_json(self.path(benchmark, key), record)


class _Aborted(Exception):
    """Another request of the same batch failed for good; stop this one."""


@dataclass
class JudgeStats:
    """What a client did: judgments found in the cache, HTTP requests sent, replies received."""

    cached: int = 0
    requests: int = 0
    received: int = 0
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)


class JudgeClient:
    """Chat completions from one judge model for one benchmark, cached on disk."""

    def __init__(
        self,
        model: str,
        benchmark: str,
        cache_dir: Path,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        retry: Optional[RetryPolicy] = None,
    ):
        if concurrency < 1:
            raise JudgeError(f"judge concurrency must be at least 1, got {concurrency}: pass --concurrency 1 or more")
        self.model = model
        self.benchmark = benchmark
        self.cache = JudgmentCache(cache_dir)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.retry = retry or DEFAULT_RETRY
        self.stats = JudgeStats()
        self._client = None
        self._abort = threading.Event()

    def complete(self, requests: Sequence[ChatRequest], desc: Optional[str] = None) -> List[Dict[str, Any]]:
        """One chat completion (``ChatCompletion.model_dump()``) per request, in order.

        Cached judgments are read from disk; the others are requested concurrently and each is cached
        as soon as it arrives. Raises ``JudgeError`` when a request fails for good (what finished
        stays cached, so rerunning the same command resumes).
        """
        keys = [judgment_key(self.benchmark, self.model, request) for request in requests]
        replies: Dict[str, Dict[str, Any]] = {}
        missing: Dict[str, ChatRequest] = {}
        for key, request in zip(keys, requests):
            if key in replies or key in missing:
                continue
            cached = self.cache.get(self.benchmark, key)
            if cached is None:
                missing[key] = request
            else:
                replies[key] = cached
        self.stats.add(cached=len(replies))
        logger.info(
            "%s judge %s: %d of %d judgments cached, %d to request from %s",
            self.benchmark, self.model, len(replies), len(set(keys)), len(missing), self.base_url,
        )
        if missing:
            replies.update(self._request_all(missing, desc or f"{self.benchmark} judge"))
        return [replies[key] for key in keys]

    def _request_all(self, missing: Dict[str, ChatRequest], desc: str) -> Dict[str, Dict[str, Any]]:
        """Request (and cache) every reply, ``concurrency`` at a time; on the first failure for good, or
        an interrupt, the others stop at their next attempt and the failure is raised."""
        from tqdm.auto import tqdm

        self._openai()  # once, before the threads; a missing key fails here
        self._abort.clear()
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(missing)))
        try:
            with tqdm(total=len(missing), desc=desc, unit="judgment") as bar:
                futures = {pool.submit(self._request_and_cache, key, request): key for key, request in missing.items()}
                for future in futures:
                    future.add_done_callback(lambda _: bar.update(1))
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((future for future in done if future.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()
                return {key: future.result() for future, key in futures.items()}
        except BaseException:
            self._abort.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- one request -----------------------------------------------------------------------------

    def _openai(self):
        if self._client is None:
            import openai

            api_key = self.api_key or os.environ.get(self.api_key_env)
            if not api_key:
                if self.base_url == OPENAI_URL:
                    raise JudgeError(
                        f"no API key for the judge {self.model!r}: set {self.api_key_env}, or pass "
                        "--judge-base-url for an OpenAI-compatible endpoint that needs none"
                    )
                api_key = "no-key"  # local OpenAI-compatible servers ignore it, the client needs one
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=api_key, max_retries=0, timeout=self.retry.timeout_s
            )
            for name in ("httpx", "httpx2"):  # one INFO line per HTTP request otherwise
                logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
        return self._client

    def _request_and_cache(self, key: str, request: ChatRequest) -> Dict[str, Any]:
        response = self._request(request)
        self.cache.put(self.benchmark, key, self.model, request, response)
        return response

    def _request(self, request: ChatRequest) -> Dict[str, Any]:
        import openai

        client = self._openai()
        last_failure = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            if self._abort.is_set():
                raise _Aborted()
            retry_after: Optional[float] = None
            self.stats.add(requests=1)
            try:
                completion = client.chat.completions.create(model=self.model, **request.body())
                if not completion.choices:
                    raise JudgeError(
                        f"judge {self.model!r} at {self.base_url} returned no choices: check that the endpoint "
                        "implements the chat-completions API"
                    )
                self.stats.add(received=1)
                return completion.model_dump(mode="json")
            except openai.APIStatusError as err:
                status = err.status_code
                if status not in (408, 409, 429) and status < 500:
                    raise JudgeError(self._rejection(status, err)) from err
                last_failure = f"HTTP {status}"
                retry_after = _retry_after_s(err.response.headers)
            except openai.APITimeoutError:
                last_failure = f"no reply within {self.retry.timeout_s:g}s"
            except openai.APIConnectionError as err:
                last_failure = f"connection failed: {err.__cause__ or err}"
            if attempt == self.retry.max_attempts:
                break
            self.stats.add(retried=1)
            delay = min(self.retry.backoff_max_s, self.retry.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(self.retry.backoff_max_s, max(delay, retry_after))
            logger.debug("judge request failed (%s), attempt %d; retrying in %.2fs", last_failure, attempt, delay)
            if self._abort.wait(delay):
                raise _Aborted()
        raise JudgeError(
            f"judge {self.model!r} at {self.base_url} failed {self.retry.max_attempts} attempts in a row "
            f"(last: {last_failure}): check that the endpoint is up and --judge-base-url is right, then rerun "
            "(finished judgments are cached)"
        )

    def _rejection(self, status: int, err: Exception) -> str:
        detail = str(getattr(err, "message", "") or err)[:300]
        if status in (401, 403):
            return (
                f"the judge endpoint {self.base_url} rejected the API key (HTTP {status}): set {self.api_key_env} "
                "to a key valid there"
            )
        if status == 404:
            return (
                f"judge model {self.model!r} not found at {self.base_url} (HTTP 404: {detail}): pass --judge-model "
                "with a model that endpoint serves, or fix --judge-base-url"
            )
        return f"the judge endpoint {self.base_url} rejected a request (HTTP {status}: {detail})"


def _retry_after_s(headers) -> Optional[float]:
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def judged_benchmarks() -> List[str]:
    """The benchmarks that have a judge: one ``evaluation/judges/<benchmark>.yaml`` each."""
    return sorted(path.stem for path in (config_dir() / "judges").glob("*.yaml"))


def load_judge_config(benchmark: str) -> Dict[str, Any]:
    """``evaluation/judges/<benchmark>.yaml``: the paper's judge model and the protocol's judge settings."""
    path = config_dir() / "judges" / f"{benchmark}.yaml"
    if not path.is_file():
        raise JudgeError(f"judge config {path} not found: reinstall openrlhf-cfpo (it installs evaluation/judges/)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise JudgeError(f"judge config {path} is not valid YAML ({err}): fix or restore it") from err
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise JudgeError(f"judge config {path} must be a mapping with a 'model' name")
    return config


def write_report(
    path: Path, title: str, protocol: str, judge: JudgeClient, metrics: Dict[str, Any], notes: Sequence[str] = ()
) -> None:
    """A judged benchmark's ``results.md``: protocol, judge, metrics, then benchmark-specific notes."""
    lines = [
        f"# {title}",
        "",
        f"Protocol: {protocol}",
        "",
        f"Judge: `{judge.model}` at {judge.base_url} ({judge.stats.cached} judgments from the cache, "
        f"{judge.stats.received} new, {judge.stats.requests} HTTP requests, {judge.stats.retried} retried)",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {key} | {'—' if value is None else f'{value:.4g}' if isinstance(value, float) else value} |" for key, value in metrics.items()),
    ]
    if notes:
        lines += ["", *notes]
    atomic_write_text(path, "\n".join(lines) + "\n")


def make_judge(ctx: EvalContext, benchmark: str, default_model: str, retry: Optional[RetryPolicy] = None) -> JudgeClient:
    """The judge of ``benchmark`` for this run: ``--judge-model`` (``BENCHMARK=NAME`` or a bare name
    for all) or ``default_model``, cached under ``$OPENRLHF_CFPO_JUDGE_CACHE`` or ``OUT/judge_cache``."""
    cache_dir = Path(os.environ.get(CACHE_ENV) or Path(ctx.out_dir) / "judge_cache")
    return JudgeClient(
        model=ctx.judge.model_for(benchmark, default_model),
        benchmark=benchmark,
        cache_dir=cache_dir,
        base_url=ctx.judge.base_url,
        api_key_env=ctx.judge.api_key_env,
        concurrency=ctx.judge.concurrency,
        retry=retry,
    )
