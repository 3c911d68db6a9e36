"""The judge client against a real chat-completions server on 127.0.0.1 (tests/judge_server.py)."""

import socket

import pytest
from judge_server import JudgeServer, mt_bench_rating

from openrlhf_cfpo.evaluation.judge import ChatRequest, JudgeClient, JudgeError, RetryPolicy, reply_text
from openrlhf_cfpo.evaluation.mt_bench import parse_rating

FAST = RetryPolicy(max_attempts=6, backoff_s=0.02, backoff_max_s=0.1, timeout_s=1.5)  # hangs last 2 s


def answers(n):
    return [" ".join(["word"] * (3 * i + 1)) for i in range(n)]


def grading_requests(texts):
    return [
        ChatRequest(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f'Rate it "[[rating]]".\n[The Start of Assistant\'s Answer]\n{t}\n[The End of Assistant\'s Answer]'},
            ],
            max_tokens=64,
        )
        for t in texts
    ]


def client(tmp_path, url, concurrency=8, retry=FAST):
    return JudgeClient("judge-m", "mt_bench", tmp_path / "cache", base_url=url, concurrency=concurrency, retry=retry)


def test_faults_are_retried_and_a_rerun_sends_nothing(tmp_path):
    texts = answers(16)
    requests = grading_requests(texts)
    with JudgeServer(fault_share=0.5, hang_s=2.0) as server:
        judge = client(tmp_path, server.url)
        replies = judge.complete(requests)
        assert set(server.injected) == {"429", "500", "hang"}
        # every distinct request was answered exactly once; faults cost retries, not extra judgments
        assert server.served == len(requests) and max(server.served_bodies.values()) == 1
        assert server.requests == server.served + sum(server.injected.values())
        # (a keep-alive connection the server closed after a hang may cost the client one more retry)
        assert judge.stats.received == len(requests) and judge.stats.retried >= sum(server.injected.values())
        assert [parse_rating(reply_text(r)) for r in replies] == [mt_bench_rating(t) for t in texts]
    with JudgeServer() as restarted:
        rerun = client(tmp_path, restarted.url)
        assert rerun.complete(requests) == replies
        assert restarted.requests == 0 and rerun.stats.cached == len(requests)


def test_requests_run_concurrently(tmp_path):
    with JudgeServer(latency_s=0.1) as server:
        client(tmp_path, server.url, concurrency=8).complete(grading_requests(answers(16)))
        assert server.peak_in_flight == 8
    with JudgeServer(latency_s=0.02) as server:
        client(tmp_path / "serial", server.url, concurrency=1).complete(grading_requests(answers(4)))
        assert server.peak_in_flight == 1


def test_a_crashed_run_resumes_without_paying_twice(tmp_path):
    requests = grading_requests(answers(20))
    with JudgeServer(max_served=7) as crashing:
        with pytest.raises(JudgeError, match="HTTP 400"):
            client(tmp_path, crashing.url, concurrency=2).complete(requests)
        first = set(crashing.served_bodies)
    assert len(first) == 7
    with JudgeServer() as restarted:
        client(tmp_path, restarted.url).complete(requests)
        assert set(restarted.served_bodies).isdisjoint(first)
        assert len(first) + restarted.served == len(requests)


def test_unreachable_judge_is_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    with pytest.raises(JudgeError) as failure:
        client(tmp_path, url, retry=RetryPolicy(max_attempts=3, backoff_s=0.01, timeout_s=0.5)).complete(grading_requests(["x"]))
    message = str(failure.value)
    assert url in message and "3 attempts" in message and "--judge-base-url" in message


def test_missing_api_key_for_openai_is_reported_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeError, match="set OPENAI_API_KEY"):
        client(tmp_path, None).complete(grading_requests(["x"]))


def test_logprobs_are_requested_and_returned(tmp_path):
    prompt = '"model_identifier": "m",\n        "output": """short"""\n    },\n    {\n        "model_identifier": "M",\n        "output": """a much longer answer than that"""\n    }'
    request = ChatRequest([{"role": "user", "content": prompt}], max_tokens=1, temperature=1.0, top_logprobs=5)
    with JudgeServer() as server:
        (reply,) = client(tmp_path, server.url).complete([request])
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert reply_text(reply) == "M" and {t["token"] for t in top} == {"m", "M"}
