"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests and bench/judge_bench.py.

``POST /v1/chat/completions`` answers deterministically from the request content, in the shape each
benchmark's judge parser reads:

- AlpacaEval 2.0 (a prompt with ``"model_identifier": "m"``): one token, ``m`` or ``M``, with
  ``top_logprobs`` for both; P(m) = ``alpaca_prob_first(output_m, output_M)``.
- Arena-Hard (a system prompt listing ``[[A>>B]]``): "My final verdict is ...: [[label]]" with
  ``arena_verdict(answer_A, answer_B)``. With ``withhold_share`` a share of first attempts end without a
  label; the follow-up ("continue your judgment ...") then gets one.
- MT-Bench single grading (``[[rating]]``): "Rating: " + ``rating_text(r)`` (default ``[[r]]``) with
  ``r = mt_bench_rating(answer)``; the judged answer is the single answer, or the second assistant
  turn for multi-turn prompts.
- anything else: "OK".

Verdicts depend on ``answer_quality`` (word count) only, so tests derive expected scores from the
answers alone. Fault injection: ``fault_share`` of distinct request bodies (chosen by hash) fail their
first one or two attempts with one of ``faults`` (``"429"``, ``"500"``, ``"hang"``: no reply for
``hang_s``, past the client's timeout). ``max_served`` makes every request after that many replies fail
with HTTP 400 (a crash mid-run). Bounded: after ``max_requests`` requests or ``lifetime_s`` seconds
the server answers 503 and shuts itself down. ``latency_s`` delays each reply (a remote judge's
latency, for the throughput benchmark). Counters: ``requests`` (all), ``served`` (200 replies),
``served_bodies`` (200 replies per distinct body), ``injected`` (faults by kind), ``peak_in_flight``,
``models`` (requests per judge model name).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ARENA_LABEL_STEP = 5  # word-count difference per verdict strength
ALPACA_SCALE = 5.0  # words per logit unit


def answer_quality(text: str) -> int:
    return len(text.split())


def arena_verdict(answer_a: str, answer_b: str) -> str:
    diff = answer_quality(answer_a) - answer_quality(answer_b)
    if diff >= 4 * ARENA_LABEL_STEP:
        return "A>>B"
    if diff >= ARENA_LABEL_STEP:
        return "A>B"
    if diff > -ARENA_LABEL_STEP:
        return "A=B"
    if diff > -4 * ARENA_LABEL_STEP:
        return "B>A"
    return "B>>A"


def mt_bench_rating(answer: str) -> int:
    return 1 + answer_quality(answer) % 10


def plain_rating(rating: int) -> str:
    return f"[[{rating}]]"


def alpaca_prob_first(output_1: str, output_2: str) -> float:
    """P(the judge names output_1 best), kept inside [1e-4, 1 - 1e-4]."""
    logit = (answer_quality(output_1) - answer_quality(output_2)) / ALPACA_SCALE
    return min(1 - 1e-4, max(1e-4, 1 / (1 + math.exp(-logit))))


def _between(text: str, start: str, end: str, occurrence: int = 0) -> str:
    pieces = text.split(start)
    if len(pieces) <= occurrence + 1:
        raise ValueError(f"marker {start!r} not found")
    return pieces[occurrence + 1].split(end)[0]


def _digest(body: Dict[str, Any]) -> int:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:8], "big")


def judge_reply(
    body: Dict[str, Any], withhold_share: float = 0.0, rating_text: Callable[[int], str] = plain_rating
) -> Tuple[str, Optional[List[Dict[str, Any]]]]:
    """(content, logprobs content list or None) for a chat-completions request body."""
    messages = body["messages"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    first_user = next(m["content"] for m in messages if m["role"] == "user")
    if '"model_identifier": "m"' in first_user:
        outputs = re.findall(r'"output": """(.*?)"""\n    }', first_user, flags=re.DOTALL)
        p_m = alpaca_prob_first(outputs[0], outputs[1])
        token = "m" if p_m >= 0.5 else "M"
        top = [
            {"token": "m", "logprob": math.log(p_m), "bytes": list(b"m")},
            {"token": "M", "logprob": math.log(1 - p_m), "bytes": list(b"M")},
        ]
        top.sort(key=lambda t: -t["logprob"])
        return token, [{"token": token, "logprob": top[0]["logprob"], "bytes": list(token.encode()), "top_logprobs": top}]
    if "[[A>>B]]" in system:
        answer_a = _between(first_user, "<|The Start of Assistant A's Answer|>\n", "\n<|The End of Assistant A's Answer|>")
        answer_b = _between(first_user, "<|The Start of Assistant B's Answer|>\n", "\n<|The End of Assistant B's Answer|>")
        is_first_attempt = not any(m["role"] == "assistant" for m in messages)
        question_digest = _digest({"q": first_user})
        if is_first_attempt and (question_digest % 1000) / 1000 < withhold_share:
            return "Both answers need a closer look before I can decide.", None
        return f"My final verdict is: [[{arena_verdict(answer_a, answer_b)}]]", None
    if "[[rating]]" in system + first_user:
        if "### Assistant A:" in first_user:
            answer = _between(first_user, "### Assistant A:\n", "\n\n<|The End of Assistant A's Conversation", occurrence=1)
            answer = answer.split("\n\n### User:")[0]
        else:
            answer = _between(first_user, "[The Start of Assistant's Answer]\n", "\n[The End of Assistant's Answer]")
        return f"The answer is judged. Rating: {rating_text(mt_bench_rating(answer))}", None
    return "OK", None


class JudgeServer:
    """Start with ``with JudgeServer(...) as server:``; ``server.url`` is the base URL (``.../v1``)."""

    def __init__(
        self,
        fault_share: float = 0.0,
        faults: Sequence[str] = ("429", "500", "hang"),
        hang_s: float = 2.0,
        latency_s: float = 0.0,
        withhold_share: float = 0.0,
        max_served: Optional[int] = None,
        max_requests: int = 20_000,
        lifetime_s: float = 300.0,
        rating_text: Callable[[int], str] = plain_rating,
    ):
        self.fault_share = fault_share
        self.faults = tuple(faults)
        self.hang_s = hang_s
        self.latency_s = latency_s
        self.withhold_share = withhold_share
        self.max_served = max_served
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.rating_text = rating_text
        self.requests = 0  # POSTs received
        self.served = 0  # 200 replies
        self.injected: Counter = Counter()  # faults injected, by kind
        self.served_bodies: Counter = Counter()  # digest -> 200 replies
        self.models: Counter = Counter()  # judge model name -> requests
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests handled at the same time
        self._attempts: Counter = Counter()
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._threads: List[threading.Thread] = []

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "JudgeServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    status, payload, headers = server._handle(self.path, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if status is None:  # a hang: the client has given up by now
                    self.close_connection = True
                    return
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serve.start()
        timer = threading.Timer(self.lifetime_s, self.stop)
        timer.daemon = True
        timer.start()
        self._threads = [serve, timer]

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        for thread in self._threads:
            if isinstance(thread, threading.Timer):
                thread.cancel()

    def _handle(self, path: str, body: Dict[str, Any]):
        with self._lock:
            self.requests += 1
            if self.requests > self.max_requests:
                threading.Thread(target=self.stop, daemon=True).start()
                return 503, _error("test judge server: request budget spent, shutting down"), {}
            if not path.rstrip("/").endswith("/chat/completions"):
                return 404, _error(f"no route {path}"), {}
            if self.max_served is not None and self.served >= self.max_served:
                return 400, _error("test judge server: reply budget spent"), {}
            digest = _digest(body)
            self.models[body.get("model", "")] += 1
            self._attempts[digest] += 1
            fault = self._fault(digest, self._attempts[digest])
            if fault:
                self.injected[fault] += 1
        if fault == "429":
            return 429, _error("rate limited"), {"retry-after": "0"}
        if fault == "500":
            return 500, _error("internal error"), {}
        if fault == "hang":
            time.sleep(self.hang_s)
            return None, None, {}
        if self.latency_s:
            time.sleep(self.latency_s)
        content, logprobs = judge_reply(body, self.withhold_share, self.rating_text)
        with self._lock:
            self.served += 1
            self.served_bodies[digest] += 1
            serial = self.served
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        return 200, {
            "id": f"chatcmpl-{serial}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": {"content": logprobs} if body.get("logprobs") and logprobs else None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content.split()),
                "total_tokens": prompt_tokens + len(content.split()),
            },
        }, {}

    def _fault(self, digest: int, attempt: int) -> Optional[str]:
        """Which fault (if any) attempt ``attempt`` of this body gets: deterministic in the body."""
        if not self.faults or (digest % 10_000) / 10_000 >= self.fault_share:
            return None
        failing_attempts = 1 + (digest >> 20) % 2
        if attempt > failing_attempts:
            return None
        return self.faults[(digest >> 24) % len(self.faults)]


def _error(message: str) -> Dict[str, Any]:
    return {"error": {"message": message, "type": "test_server_error"}}
