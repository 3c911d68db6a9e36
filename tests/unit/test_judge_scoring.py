"""Judge-side scoring without a server: verdict and rating parsing, battles, Bradley–Terry, cache keys."""

import json
import re

import numpy as np
import pytest

from openrlhf_cfpo.evaluation.arena_hard import (
    battle_outcomes,
    bradley_terry_strengths,
    parse_verdict,
    score_battles,
    win_rate_vs_baseline,
)
from openrlhf_cfpo.evaluation.judge import ChatRequest, JudgmentCache, judgment_key
from openrlhf_cfpo.evaluation.mt_bench import parse_rating

ARENA_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")  # the v0.1 judge config's regex_pattern


@pytest.mark.parametrize(
    "judgment, expected",
    [
        ("Rating: [[7]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("no double brackets, Rating: [8]", 8.0),
        ("first [[3]] then [[9]]", 3.0),
        ("[2] in passing, then Rating: [[9]]", 9.0),  # [[x]] wins over the backup [x]
        ("no rating at all", -1.0),
    ],
)
def test_mt_bench_rating_follows_fastchat(judgment, expected):
    assert parse_rating(judgment) == expected


def test_arena_verdict_parsing_follows_official_get_score():
    assert parse_verdict("\nMy final verdict is: [[A>B]]", ARENA_PATTERN) == ("A>B", False)
    assert parse_verdict("[[B>>A]] and again [[B>>A]]", ARENA_PATTERN) == ("B>>A", False)
    assert parse_verdict("I cannot decide yet.", ARENA_PATTERN) == (None, True)  # ask again
    assert parse_verdict("[[A>B]] no, [[B>A]]", ARENA_PATTERN) == (None, False)  # contradictory: dropped


def test_battles_swap_sides_between_games():
    # game 0: baseline is A; game 1: the model is A. Outcomes are the model's (1 win, 0 loss, 0.5 tie).
    assert battle_outcomes("A>>B", 0, 3) == [0.0, 0.0, 0.0]
    assert battle_outcomes("A>>B", 1, 3) == [1.0, 1.0, 1.0]
    assert battle_outcomes("B>A", 0, 3) == [1.0]
    assert battle_outcomes("B>A", 1, 3) == [0.0]
    assert battle_outcomes("A=B", 0, 3) == battle_outcomes("A=B", 1, 3) == [0.5]
    assert battle_outcomes(None, 0, 3) == battle_outcomes("A<B", 1, 3) == []


def test_two_player_bradley_terry_is_the_mean_outcome():
    # With two players the BT likelihood has the closed-form optimum P(model wins) = (wins + ties/2) / n.
    outcomes = np.array([1, 1, 1, 0, 0.5, 0.5, 0, 1, 1, 1], dtype=float)
    assert win_rate_vs_baseline(outcomes) == pytest.approx(outcomes.mean(), abs=1e-12)
    assert win_rate_vs_baseline(np.ones(7)) == pytest.approx(1.0)
    assert win_rate_vs_baseline(np.zeros(7)) == pytest.approx(0.0)


def test_bradley_terry_solves_the_likelihood_equations():
    # At the MLE, every player's wins equal its expected wins: sum_j W_ij = sum_j N_ij * p_i / (p_i + p_j).
    rng = np.random.default_rng(0)
    wins = rng.integers(1, 20, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    strengths = bradley_terry_strengths(wins)
    games = wins + wins.T
    expected = (games * strengths[:, None] / (strengths[:, None] + strengths[None, :])).sum(axis=1)
    np.testing.assert_allclose(expected, wins.sum(axis=1), rtol=1e-8)
    np.testing.assert_allclose(bradley_terry_strengths(3 * wins), strengths, rtol=1e-8)  # scale-free


def test_bootstrap_interval_brackets_the_score_and_is_seeded():
    outcomes = [1.0] * 30 + [0.0] * 15 + [0.5] * 5
    first = score_battles(outcomes, rounds=100, seed=42)
    assert first == score_battles(outcomes, rounds=100, seed=42)
    assert first["score"] == pytest.approx(100 * (30 + 2.5) / 50)
    assert first["ci_low"] < first["score"] < first["ci_high"]
    ties = score_battles([0.5] * 20, rounds=20, seed=0)  # the baseline against itself
    assert ties == pytest.approx({"score": 50.0, "ci_low": 50.0, "ci_high": 50.0})
    assert score_battles([], rounds=10, seed=0) == {"score": None, "ci_low": None, "ci_high": None}


def test_cache_key_covers_benchmark_judge_prompt_and_answer():
    def request(prompt="Q", answer="A"):
        return ChatRequest([{"role": "system", "content": prompt}, {"role": "user", "content": answer}], max_tokens=8)

    base = judgment_key("mt_bench", "gpt-4", request())
    assert base == judgment_key("mt_bench", "gpt-4", request())
    variants = [
        judgment_key("arena_hard", "gpt-4", request()),
        judgment_key("mt_bench", "gpt-4.1", request()),
        judgment_key("mt_bench", "gpt-4", request(prompt="Q2")),
        judgment_key("mt_bench", "gpt-4", request(answer="A2")),
        judgment_key("mt_bench", "gpt-4", ChatRequest(request().messages, max_tokens=8, top_logprobs=5)),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_cache_entries_are_whole_files(tmp_path):
    cache = JudgmentCache(tmp_path)
    request = ChatRequest([{"role": "user", "content": "hi"}], max_tokens=4)
    key = judgment_key("mt_bench", "m", request)
    assert cache.get("mt_bench", key) is None
    reply = {"choices": [{"message": {"role": "assistant", "content": "Rating: [[4]]"}}]}
    cache.put("mt_bench", key, "m", request, reply)
    assert cache.get("mt_bench", key) == reply
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]  # no temporary left behind
    stored = json.loads(cache.path("mt_bench", key).read_text())
    assert stored["request"] == request.body() and stored["judge"] == "m"
    cache.path("mt_bench", key).write_text("{truncated")
    assert cache.get("mt_bench", key) is None  # unreadable entry: asked again, not a crash
