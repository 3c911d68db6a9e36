"""Judge throughput: judgments/s at concurrency 1 vs 8 against the loopback judge server.

    python bench/judge_bench.py [--judgments 160] [--latency-s 0.05]

The server (tests/judge_server.py) answers MT-Bench-style grading requests after ``--latency-s``,
standing in for a remote judge's response time; each run starts from an empty cache. Prints the
throughput at each concurrency, their ratio, and the throughput of a rerun served from the cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from judge_server import JudgeServer  # noqa: E402

from openrlhf_cfpo.evaluation.judge import ChatRequest, JudgeClient  # noqa: E402


def requests(n: int):
    return [
        ChatRequest(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"[[rating]]\n[The Start of Assistant's Answer]\n{'word ' * (i + 1)}\n[The End of Assistant's Answer]"},
            ],
            max_tokens=64,
        )
        for i in range(n)
    ]


def throughput(url: str, cache: Path, concurrency: int, n: int) -> float:
    client = JudgeClient("bench-judge", "bench", cache, base_url=url, concurrency=concurrency)
    started = time.perf_counter()
    client.complete(requests(n), desc=f"concurrency {concurrency}")
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=160)
    parser.add_argument("--latency-s", type=float, default=0.05, help="server delay per reply (a remote judge's latency)")
    args = parser.parse_args()
    with JudgeServer(latency_s=args.latency_s) as server, tempfile.TemporaryDirectory() as tmp:
        serial = throughput(server.url, Path(tmp) / "c1", 1, args.judgments)
        parallel = throughput(server.url, Path(tmp) / "c8", 8, args.judgments)
        sent = server.requests
        cached = throughput(server.url, Path(tmp) / "c8", 8, args.judgments)
        rerun_requests = server.requests - sent
    print(f"judge throughput, {args.judgments} judgments, server latency {args.latency_s * 1000:.0f} ms")
    print(f"concurrency 1: {serial:8.1f} judgments/s")
    print(f"concurrency 8: {parallel:8.1f} judgments/s")
    print(f"ratio (8 vs 1): {parallel / serial:.2f}x")
    print(f"rerun from the cache: {cached:8.1f} judgments/s ({rerun_requests} requests)")


if __name__ == "__main__":
    main()
