"""AlpacaEval 2.0, Arena-Hard v0.1 and MT-Bench end to end through ``openrlhf-cfpo eval --responses``.

The judge is tests/judge_server.py on 127.0.0.1; its verdicts depend on answer word counts only, so
every expected score below is derived from the answers with the server's verdict functions and the
official score definitions, independently of the code under test.
"""

import json

import numpy as np
import pandas as pd
import pytest
from judge_server import JudgeServer, alpaca_prob_first, arena_verdict, mt_bench_rating
from tiny_chat_model import build_tiny_chat_model

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.evaluation import generation, judge, mt_bench

LIMITS = {"alpaca_eval": 8, "arena_hard": 8, "mt_bench": 30}  # mt_bench: 30 reaches the reference-guided reasoning questions
METRIC_KEYS = {
    "alpaca_eval": ("lc_win_rate", "win_rate", "avg_length"),
    "arena_hard": ("score", "ci_low", "ci_high"),
    "mt_bench": ("score", "turn1", "turn2"),
}
DELTAS = (-40, -12, -3, 0, 4, 12, 40, 90)  # words removed from / added to the baseline's answer


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(judge, "DEFAULT_RETRY", judge.RetryPolicy(max_attempts=6, backoff_s=0.02, backoff_max_s=0.1, timeout_s=1.5))
    monkeypatch.delenv(judge.CACHE_ENV, raising=False)


@pytest.fixture
def glm_data(tmp_path_factory, monkeypatch):
    """A stand-in for alpaca_eval's df_gamed.csv (HF dataset tatsu-lab/alpaca_eval; no hub offline) in an
    HF cache layout: two gamed baselines over the 805 instructions with seeded random features."""
    import alpaca_eval.constants

    cache = tmp_path_factory.mktemp("hf_cache")
    repo = cache / "datasets--tatsu-lab--alpaca_eval"
    revision = "0" * 40
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    rng = np.random.default_rng(0)
    difficulty = rng.normal(size=805)
    frames = []
    for name, length_shift in (("gpt4_1106_preview_verbose", 1.0), ("gpt4_1106_preview_concise", -1.0)):
        std_delta_len = length_shift + 0.3 * rng.normal(size=805)
        preference = 1 / (1 + np.exp(-(0.8 * np.tanh(std_delta_len) - 0.5 * difficulty)))
        frames.append(pd.DataFrame({"model": name, "index": np.arange(805), "preference": preference,
                                    "std_delta_len": std_delta_len, "instruction_difficulty": difficulty,
                                    "not_gamed_baseline": False}))
    pd.concat(frames, ignore_index=True).to_csv(repo / "snapshots" / revision / "df_gamed.csv", index=False)
    monkeypatch.setattr(alpaca_eval.constants, "DEFAULT_CACHE_DIR", str(cache))


def shifted(text, delta):
    words = text.split()
    return " ".join(words[: len(words) + delta]) if delta < 0 else " ".join(words + ["more"] * delta)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_responses(name, data, path):
    """Answers in the benchmark's official format; returns what the expectations need."""
    if name == "alpaca_eval":
        reference = json.loads((data / "alpaca_eval/gpt4_1106_preview/model_outputs.json").read_text())
        outputs = [{"instruction": r["instruction"], "output": shifted(r["output"], DELTAS[i % 8]), "generator": "m"}
                   for i, r in enumerate(reference)]
        path.write_text(json.dumps(outputs))
        return reference, outputs
    if name == "arena_hard":
        baseline = read_jsonl(data / "arena_hard_v0.1/legacy/model_answer/gpt-4-0314.jsonl")
        records = [{"question_id": b["question_id"], "model_id": "m",
                    "choices": [{"index": 0, "turns": [{"content": shifted(b["choices"][0]["turns"][0]["content"], DELTAS[i % 8])}]}]}
                   for i, b in enumerate(baseline)]
    else:
        questions = read_jsonl(data / "mt_bench/question.jsonl")
        records = [{"question_id": q["question_id"], "model_id": "m",
                    "choices": [{"index": 0, "turns": ["w " * (3 * i % 17 + 1), "v " * (5 * i % 23 + 2)]}]}
                   for i, q in enumerate(questions)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def expected_metrics(name, data, answers, n):
    if name == "mt_bench":
        turns = [a["choices"][0]["turns"] for a in answers[:n]]
        turn1 = [mt_bench_rating(t[0]) for t in turns]
        turn2 = [mt_bench_rating(t[1]) for t in turns]
        return {"score": np.mean(turn1 + turn2), "turn1": np.mean(turn1), "turn2": np.mean(turn2)}
    if name == "arena_hard":
        baseline = {b["question_id"]: b["choices"][0]["turns"][0]["content"]
                    for b in read_jsonl(data / "arena_hard_v0.1/legacy/model_answer/gpt-4-0314.jsonl")}
        questions = read_jsonl(data / "arena_hard_v0.1/legacy/question.jsonl")[:n]
        model = {a["question_id"]: a["choices"][0]["turns"][0]["content"] for a in answers}
        # the model's points per verdict when it is assistant B (game 1) / A (game 2); >> counts 3 times
        as_b = {"A>>B": [0] * 3, "A>B": [0], "A=B": [0.5], "B>A": [1], "B>>A": [1] * 3}
        as_a = {"A>>B": [1] * 3, "A>B": [1], "A=B": [0.5], "B>A": [0], "B>>A": [0] * 3}
        points = []
        for q in questions:
            qid = q["question_id"]
            points += as_b[arena_verdict(baseline[qid], model[qid])] + as_a[arena_verdict(model[qid], baseline[qid])]
        return {"score": 100 * np.mean(points)}  # two-player Bradley-Terry MLE = mean points
    reference, outputs = answers
    p_model = [alpaca_prob_first(o["output"], r["output"]) for r, o in zip(reference[:n], outputs[:n])]
    from alpaca_eval.metrics import get_length_controlled_winrate

    frame = pd.DataFrame({"preference": [1 + p for p in p_model],
                          "output_1": [r["output"] for r in reference[:n]], "output_2": [o["output"] for o in outputs[:n]],
                          "generator_1": "gpt4_1106_preview", "generator_2": "model", "annotator": "a"})
    lc = get_length_controlled_winrate(frame, save_weights_dir=None)
    return {"win_rate": 100 * np.mean(p_model), "lc_win_rate": lc["length_controlled_winrate"],
            "avg_length": int(np.mean([len(o["output"]) for o in outputs[:n]]))}


def saved_answers(out, name):
    """The answers the last generating run of ``name`` saved (OUT/<name>/answers/<key>/)."""
    (path,) = sorted((out / name / "answers").glob("*/model_*.json*"), key=lambda p: p.stat().st_mtime)[-1:]
    return json.loads(path.read_text()) if path.suffix == ".json" else read_jsonl(path)


def evaluate(name, responses, data, out, url, capsys, limit=None, extra=()):
    code = main(["eval", "--benchmarks", name, "--responses", str(responses), "--data-dir", str(data),
                 "--limit", str(limit or LIMITS[name]), "--judge-base-url", url, "--out", str(out), "--model-name", "model",
                 *extra])
    captured = capsys.readouterr()
    if code != 0:
        return code, captured.err
    results = json.loads((out / "results.json").read_text())[name]
    return code, {key: results[key] for key in METRIC_KEYS[name]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alpaca_eval", "arena_hard", "mt_bench"])
def test_scores_survive_faults_and_a_restart_pays_nothing(name, fixtures_dir, tmp_path, glm_data, capsys):
    answers = write_responses(name, fixtures_dir, tmp_path / "responses")
    with JudgeServer() as server:
        code, clean = evaluate(name, tmp_path / "responses", fixtures_dir, tmp_path / "clean", server.url, capsys)
        assert code == 0, clean
        judged = server.served
    for key, value in expected_metrics(name, fixtures_dir, answers, LIMITS[name]).items():
        assert clean[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    if name == "arena_hard":
        assert clean["ci_low"] <= clean["score"] <= clean["ci_high"]
    assert (tmp_path / "clean" / name / "results.md").is_file()

    with JudgeServer(fault_share=0.4, hang_s=2.0, withhold_share=0.3) as faulty:
        code, recovered = evaluate(name, tmp_path / "responses", fixtures_dir, tmp_path / "faulty", faulty.url, capsys)
        assert code == 0, recovered
        assert sum(faulty.injected.values()) > 0
        assert max(faulty.served_bodies.values()) == 1  # nothing judged twice
    if name != "arena_hard":  # withheld Arena-Hard verdicts add follow-up requests, same verdicts
        assert faulty.served == judged
    assert recovered == clean

    with JudgeServer() as restarted:
        code, rerun = evaluate(name, tmp_path / "responses", fixtures_dir, tmp_path / "faulty", restarted.url, capsys)
        assert code == 0, rerun
        assert restarted.requests == 0
    assert rerun == clean


@pytest.mark.slow
def test_tiny_model_end_to_end(fixtures_dir, tmp_path, glm_data, capsys):
    model = build_tiny_chat_model(tmp_path / "tiny", fixtures_dir / "tokenizers" / "qwen3")
    out = tmp_path / "out"
    command = ["eval", "--model", str(model), "--backend", "hf", "--benchmarks", "alpaca_eval,arena_hard,mt_bench",
               "--data-dir", str(fixtures_dir), "--limit", "2", "--max-new-tokens", "8", "--out", str(out)]
    with JudgeServer() as server:
        assert main([*command, "--judge-base-url", server.url]) == 0, capsys.readouterr().err
        assert server.served == 2 + 2 * 2 + 2 * 2  # alpaca_eval, arena_hard (2 games), mt_bench (2 turns)
    results = json.loads((out / "results.json").read_text())
    reference = json.loads((fixtures_dir / "alpaca_eval/gpt4_1106_preview/model_outputs.json").read_text())
    generated = {
        "alpaca_eval": (reference, saved_answers(out, "alpaca_eval")),
        "arena_hard": saved_answers(out, "arena_hard"),
        "mt_bench": saved_answers(out, "mt_bench"),
    }
    for name, answers in generated.items():
        assert results[name]["protocol"] and results[name]["judge"] == judge.load_judge_config(name)["model"]
        for key, value in expected_metrics(name, fixtures_dir, answers, 2).items():
            assert results[name][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)
    with JudgeServer() as restarted:  # the same command again: generations and judgments are reused
        assert main([*command, "--judge-base-url", restarted.url]) == 0
        assert restarted.requests == 0
    assert json.loads((out / "results.json").read_text()) == results

    other = build_tiny_chat_model(tmp_path / "other", fixtures_dir / "tokenizers" / "qwen3", seed=1)
    with JudgeServer() as server:  # another checkpoint into the same OUT: every benchmark generates anew
        assert main([*command, "--model", str(other), "--judge-base-url", server.url]) == 0
        assert server.requests > 0
    for name in generated:
        assert len(list((out / name / "answers").iterdir())) == 2, name


def test_mt_bench_reasoning_is_judged_against_the_reference(fixtures_dir, tmp_path, capsys):
    write_responses("mt_bench", fixtures_dir, tmp_path / "responses")
    with JudgeServer() as server:
        code, _ = evaluate("mt_bench", tmp_path / "responses", fixtures_dir, tmp_path / "out", server.url, capsys, limit=21)
    assert code == 0
    judgments = read_jsonl(tmp_path / "out" / "mt_bench" / "judgments.jsonl")
    references = {r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(fixtures_dir / "mt_bench/reference_answer/gpt-4.jsonl")}
    by_prompt = {(j["question_id"], j["turn"]): j for j in judgments}
    assert by_prompt[101, 1]["judge"][1] == "single-math-v1" and references[101][0] in by_prompt[101, 1]["user_prompt"]
    assert by_prompt[101, 2]["judge"][1] == "single-math-v1-multi-turn" and references[101][1] in by_prompt[101, 2]["user_prompt"]
    assert by_prompt[81, 1]["judge"][1] == "single-v1" and by_prompt[81, 2]["judge"][1] == "single-v1-multi-turn"


@pytest.mark.parametrize("name", ["alpaca_eval", "arena_hard", "mt_bench"])
def test_corrupt_answer_file_is_a_clear_error(name, fixtures_dir, tmp_path, glm_data, capsys):
    write_responses(name, fixtures_dir, tmp_path / "responses")
    text = (tmp_path / "responses").read_text()
    (tmp_path / "responses").write_text(text[: len(text) // 3])  # cut mid-record
    with JudgeServer() as server:
        code, error = evaluate(name, tmp_path / "responses", fixtures_dir, tmp_path / "out", server.url, capsys)
        assert server.requests == 0
    assert code == 2
    assert error.startswith("openrlhf-cfpo eval: error: ") and str(tmp_path / "responses") in error
    assert "not valid JSON" in error


def test_missing_answers_are_named(fixtures_dir, tmp_path, capsys):
    records = write_responses("arena_hard", fixtures_dir, tmp_path / "responses")
    first = read_jsonl(fixtures_dir / "arena_hard_v0.1/legacy/question.jsonl")[0]["question_id"]
    (tmp_path / "responses").write_text("".join(json.dumps(r) + "\n" for r in records if r["question_id"] != first))
    code, error = evaluate("arena_hard", tmp_path / "responses", fixtures_dir, tmp_path / "out", "http://127.0.0.1:9/v1", capsys)
    assert code == 2 and first in error and "--limit" in error


def test_unreachable_judge_is_a_clear_error(fixtures_dir, tmp_path, capsys):
    import socket

    write_responses("mt_bench", fixtures_dir, tmp_path / "responses")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    code, error = evaluate("mt_bench", tmp_path / "responses", fixtures_dir, tmp_path / "out", url, capsys, limit=2)
    assert code == 2 and url in error and "--judge-base-url" in error


def test_alpaca_eval_without_glm_data_fails_before_judging(fixtures_dir, tmp_path, monkeypatch, capsys):
    import alpaca_eval.constants

    monkeypatch.setattr(alpaca_eval.constants, "DEFAULT_CACHE_DIR", str(tmp_path / "empty_hf_cache"))
    write_responses("alpaca_eval", fixtures_dir, tmp_path / "responses")
    with JudgeServer() as server:
        code, error = evaluate("alpaca_eval", tmp_path / "responses", fixtures_dir, tmp_path / "out", server.url, capsys)
        assert server.requests == 0
    assert code == 2 and "df_gamed.csv" in error and "tatsu-lab/alpaca_eval" in error


@pytest.mark.parametrize("judge_flag, name, expected", [
    ("judge-all,mt_bench=judge-mt", "mt_bench", "judge-mt"),
    ("judge-all,mt_bench=judge-mt", "arena_hard", "judge-all"),
    ("arena_hard=judge-ah", "mt_bench", "gpt-4"),  # not named: the paper's default (evaluation/judges/)
])
def test_judge_model_per_benchmark_is_used_and_recorded(judge_flag, name, expected, fixtures_dir, tmp_path, capsys):
    write_responses(name, fixtures_dir, tmp_path / "responses")
    with JudgeServer() as server:
        code, _ = evaluate(name, tmp_path / "responses", fixtures_dir, tmp_path / "out", server.url, capsys, limit=2,
                           extra=["--judge-model", judge_flag])
        assert code == 0 and set(server.models) == {expected}
    results = json.loads((tmp_path / "out" / "results.json").read_text())[name]
    assert results["judge"] == expected
    assert f"Judge: {expected}" in (tmp_path / "out" / "results.md").read_text()


def test_mt_bench_ratings_are_numbers_and_unrated_turns_are_counted(fixtures_dir, tmp_path, capsys):
    """FastChat's literal_eval fails on [[08]]; every rating the patterns match is a number here, and a
    judgment without one is left out of the means and counted."""
    def rating_text(rating):
        return ("no rating given", f"[[0{rating}]]", f"[[{rating}.5]]")[rating % 3]

    answers = write_responses("mt_bench", fixtures_dir, tmp_path / "responses")
    with JudgeServer(rating_text=rating_text) as server:
        code, _ = evaluate("mt_bench", tmp_path / "responses", fixtures_dir, tmp_path / "out", server.url, capsys, limit=6)
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["mt_bench"]
    turns = [[mt_bench_rating(turn) for turn in a["choices"][0]["turns"]] for a in answers[:6]]
    read = {0: None, 1: 0.0, 2: 0.5}  # what each rating_text form adds to the rating (None: no rating)
    rated = {t: [r + read[r % 3] for r in (pair[t] for pair in turns) if read[r % 3] is not None] for t in (0, 1)}
    assert results["turn1"] == pytest.approx(np.mean(rated[0]))
    assert results["turn2"] == pytest.approx(np.mean(rated[1]))
    assert results["score"] == pytest.approx(np.mean(rated[0] + rated[1]))
    assert results["unrated"] == 12 - len(rated[0]) - len(rated[1]) > 0


@pytest.mark.parametrize("judgment, rating", [
    ("Rating: [[08]]", 8.0), ("Rating: [[8.5]]", 8.5), ("[[10]] and later [[3]]", 10.0), ("Rating: [7]", 7.0),
    ("I rate it highly.", -1.0),
])
def test_parse_rating(judgment, rating):
    assert mt_bench.parse_rating(judgment) == rating


def test_saved_answers_are_reused_only_for_the_same_model_and_settings(fixtures_dir, tmp_path, monkeypatch, capsys):
    tokenizer = fixtures_dir / "tokenizers" / "qwen3"
    first = build_tiny_chat_model(tmp_path / "first", tokenizer, seed=0)
    second = build_tiny_chat_model(tmp_path / "second", tokenizer, seed=1)
    generate_calls = []
    original = generation.HFChatGenerator.generate
    monkeypatch.setattr(generation.HFChatGenerator, "generate",
                        lambda self, *args: generate_calls.append(self.model_name) or original(self, *args))
    out = tmp_path / "out"
    folders = lambda: sorted(p.name for p in (out / "arena_hard" / "answers").iterdir())  # noqa: E731

    def run(server, model, max_new_tokens=4):
        command = ["eval", "--model", str(model), "--backend", "hf", "--benchmarks", "arena_hard", "--data-dir",
                   str(fixtures_dir), "--limit", "2", "--max-new-tokens", str(max_new_tokens), "--out", str(out),
                   "--judge-base-url", server.url]
        assert main(command) == 0, capsys.readouterr().err
        return [g["user_prompt"] for r in read_jsonl(out / "arena_hard" / "judgments.jsonl") for g in r["games"]]

    with JudgeServer() as server:
        first_judged = run(server, first)
        judged_first = server.requests
        assert generate_calls == [str(first)] and judged_first == 4
        run(server, second)  # a second checkpoint into the same OUT generates and is judged anew
        assert generate_calls == [str(first), str(second)] and len(folders()) == 2
        assert server.requests > judged_first
        requests = server.requests
        assert run(server, first) == first_judged  # the first again: its answers and paid judgments are found
        assert len(generate_calls) == 2 and server.requests == requests

        build_tiny_chat_model(first, tokenizer, seed=2)  # retrained in place: same path, other weights
        run(server, first)
        assert len(generate_calls) == 3 and len(folders()) == 3
        run(server, first, max_new_tokens=6)  # a longer run after a smoke run does not reuse the smoke answers
        assert len(generate_calls) == 4 and len(folders()) == 4
    identities = [json.loads(p.read_text()) for p in (out / "arena_hard" / "answers").glob("*/generation.json")]
    assert sorted(i["max_new_tokens_cap"] for i in identities) == [4, 4, 4, 6]
    assert len({i["model_fingerprint"] for i in identities}) == 3


def test_alpaca_eval_preflight_offline_looks_only_at_the_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE set after huggingface_hub read it (it takes the flag once, at import): the preflight
    still asks the Hub nothing, so it fails at once instead of retrying its HEAD request for half a minute."""
    import socket

    import alpaca_eval.constants
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import file_download

    from openrlhf_cfpo.evaluation import alpaca_eval as benchmark
    from openrlhf_cfpo.evaluation.data import DataError

    asked = []

    def head_request(url, *args, **kwargs):
        asked.append(url)
        raise OSError("no network in tests")

    monkeypatch.setattr(alpaca_eval.constants, "DEFAULT_CACHE_DIR", str(tmp_path / "empty_hf_cache"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(file_download, "get_hf_file_metadata", head_request)
    def no_network(*args, **kwargs):  # huggingface_hub's best-effort lookups (agent registry) stay local
        raise socket.gaierror("no network in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(DataError, match="df_gamed.csv"):
        benchmark._require_glm_data()
    assert asked == []
