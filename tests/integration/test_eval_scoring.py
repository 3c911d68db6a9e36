"""Scoring known outputs reproduces known numbers: IFEval (hand-checked and google's GPT-4 responses
against an independent lm-eval run), reasoning answers through math-verify, OpenLLM data conversion."""

import json
import shutil
from pathlib import Path

import pytest

from openrlhf_cfpo.cli.main import main
from openrlhf_cfpo.evaluation import openllm, reasoning
from openrlhf_cfpo.evaluation.context import EvalContext
from openrlhf_cfpo.prompts import RLVR_SYSTEM_PROMPTS

REFERENCE = "ifeval/reference_gpt4/input_response_data_gpt4_20231107_145030.jsonl"

# Hand-checked verdicts (strict, loose) per instruction of lm-eval's checkers:
HAND_CHECKED = [
    # 1162 punctuation:no_comma — no comma anywhere: followed.
    ("Write a riddle for kids about auspices but make sure you don't use any commas.",
     "What has feathers and tells the future? A bird seen by an augur who reads the auspices.",
     [True], [True]),
    # 1051 change_case:english_lowercase — capital 'D' in the first line breaks strict; loose also
    # tries the reply without its first line, which is all lowercase English.
    ("Write a letter to a friend in all lowercase letters ask them to go and vote.",
     "Dear Sam\nplease remember to go and vote in the election next week. every single vote matters for "
     "our town and for the future of the schools we both care about.\nsee you soon",
     [False], [True]),
    # 1322 detectable_format:title — no <<title>> in the reply: not followed either way.
    ("What are the pros and cons of kotlin vs java? Your answer must have a title contained in double angular "
     "brackets, such as <<kotlin vs java>>.",
     "Kotlin is concise and null safe while Java has the larger ecosystem.",
     [False], [False]),
    # 1000 no_comma, 3 highlighted sections, >= 300 words: no comma and three *sections* but 12 words.
    (None,
     "*Early life* Raymond was born in 1140. *Rule* He ruled Tripoli. *Legacy* He died in 1187.",
     [True, True, False], [True, True, False]),
]


def _responses_file(tmp_path, fixtures_dir):
    prompts = {json.loads(line)["key"]: json.loads(line)["prompt"]
               for line in (fixtures_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()}
    path = tmp_path / "responses.jsonl"
    lines = [json.dumps({"prompt": prompt or prompts[1000], "response": response})
             for prompt, response, _, _ in HAND_CHECKED]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ifeval_hand_checked_responses_give_hand_computed_accuracies(tmp_path, fixtures_dir, nltk_punkt, capsys):
    responses = _responses_file(tmp_path, fixtures_dir)
    out = tmp_path / "out"
    rc = main(["eval", "--benchmarks", "ifeval", "--responses", str(responses), "--data-dir", str(fixtures_dir),
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    verdicts = [json.loads(line) for line in (out / "ifeval" / "verdicts.jsonl").read_text().splitlines()]
    assert [v["inst_level_strict_acc"] for v in verdicts] == [strict for _, _, strict, _ in HAND_CHECKED]
    assert [v["inst_level_loose_acc"] for v in verdicts] == [loose for _, _, _, loose in HAND_CHECKED]
    result = json.loads((out / "results.json").read_text())["ifeval"]
    # prompts fully followed: strict 1 of 4, loose 2 of 4; instructions: strict 3 of 6, loose 4 of 6.
    assert result["prompt_strict"] == pytest.approx(1 / 4)
    assert result["prompt_loose"] == pytest.approx(2 / 4)
    assert result["inst_strict"] == pytest.approx(3 / 6)
    assert result["inst_loose"] == pytest.approx(4 / 6)
    assert "lm-eval 0.4.13" in result["protocol"]


def _lm_eval_ifeval_on_reference(benchmarks, input_data, tmp_path, limit):
    """lm-eval's own ifeval task (its YAML, its evaluator) on the reference answers replayed by a fake LM."""
    import lm_eval
    from lm_eval.api.model import LM

    answers = {json.loads(line)["prompt"]: json.loads(line)["response"]
               for line in (benchmarks / REFERENCE).read_text().splitlines()}

    class Replay(LM):
        def generate_until(self, requests):
            return [answers[request.args[0]] for request in requests]

        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

    task_yaml = tmp_path / "ifeval_local.yaml"
    upstream = lm_eval.__path__[0] + "/tasks/ifeval/ifeval.yaml"
    task_yaml.write_text(
        f"include: {upstream}\ntask: ifeval_local\ndataset_path: json\ndataset_kwargs:\n"
        f"  data_files:\n    train: {input_data}\n"
    )
    output = lm_eval.simple_evaluate(model=Replay(), tasks=[str(task_yaml)], limit=limit, log_samples=False)
    return output["results"]["ifeval_local"]


# lm-eval's letter_frequency checker draws a random letter for these two prompts ('#', '!' are not
# letters); we seed it per prompt, a plain lm-eval run does not, so they are left out of the comparison.
RANDOM_VERDICT_KEYS = {1122, 1129}


@pytest.mark.parametrize("data, limit", [
    ("fixtures_dir", 8),  # all the fixture's prompts
    pytest.param("benchmark_data", 40, marks=pytest.mark.needs_data("ifeval/input_data.jsonl", REFERENCE)),
])  # the reference file follows input_data.jsonl's order over its first 339 prompts
def test_ifeval_reference_gpt4_matches_an_independent_lm_eval_run(data, limit, request, tmp_path, nltk_punkt, capsys):
    benchmarks = request.getfixturevalue(data)
    data_dir = tmp_path / "data"
    (data_dir / "ifeval").mkdir(parents=True)
    docs = [json.loads(line) for line in (benchmarks / "ifeval" / "input_data.jsonl").read_text().splitlines()]
    kept = [doc for doc in docs if doc["key"] not in RANDOM_VERDICT_KEYS]
    (data_dir / "ifeval" / "input_data.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in kept))
    kept_prompts = {doc["prompt"] for doc in kept}
    responses = tmp_path / "reference.jsonl"
    responses.write_text("".join(line + "\n" for line in (benchmarks / REFERENCE).read_text().splitlines()
                                 if json.loads(line)["prompt"] in kept_prompts))
    out = tmp_path / "out"
    rc = main(["eval", "--benchmarks", "ifeval", "--responses", str(responses),
               "--data-dir", str(data_dir), "--out", str(out), "--limit", str(limit)])
    assert rc == 0, capsys.readouterr().err
    ours = json.loads((out / "results.json").read_text())["ifeval"]
    theirs = _lm_eval_ifeval_on_reference(benchmarks, data_dir / "ifeval" / "input_data.jsonl", tmp_path, limit)
    assert ours["n_prompts"] == limit
    for key, metric in [("prompt_strict", "prompt_level_strict_acc,none"), ("prompt_loose", "prompt_level_loose_acc,none"),
                        ("inst_strict", "inst_level_strict_acc,none"), ("inst_loose", "inst_level_loose_acc,none")]:
        assert ours[key] == pytest.approx(theirs[metric], abs=1e-12), key


class ScriptedGenerator:
    """Answers each problem from a script keyed by the user turn; records what it was asked."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, conversations, sampling):
        self.calls.append((conversations, sampling))
        return [self.script(conv[-1]["content"]) for conv in conversations]


def test_reasoning_scores_scripted_answers_with_math_verify(tmp_path, fixtures_dir):
    data_dir = tmp_path / "data"
    for task in ("math500", "gsm8k", "aime24"):
        shutil.copytree(fixtures_dir / task, data_dir / task)
    (data_dir / "gpqa_diamond").mkdir()
    (data_dir / "gpqa_diamond" / "gpqa_diamond.csv").write_text(
        "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3,Extra\n"
        "Which is a noble gas?,Argon,Oxygen,Nitrogen,Carbon,x\n"
        "Which is a prime?,Seven,Nine,Four,Six,y\n"
    )
    golds = {}
    for task in ("math500", "gsm8k", "aime24", "gpqa_diamond"):
        for problem in reasoning.LOADERS[task](data_dir / reasoning.DATA[task].relpath)[:4]:
            golds[problem["question"]] = (task, problem)

    def script(question):
        task, problem = golds[question]
        index = list(golds).index(question)
        if task == "gpqa_diamond":
            right = "ABCD"[problem["choices"].index("Argon" if "noble" in question else "Seven")]
            assert right == problem["gold"]
            wrong = "B" if right == "A" else "A"
            return f"It must be option {right}.\n\\boxed{{{right}}}" if index % 2 == 0 else f"Answer: {wrong}"
        # right answer on even positions, a wrong number on odd ones
        return f"So the answer is \\boxed{{{problem['gold']}}}." if index % 2 == 0 else "The answer is \\boxed{-12345}."

    generator = ScriptedGenerator(script)
    metrics = reasoning.run(
        EvalContext(out_dir=tmp_path / "out", data_dir=data_dir, limit=4, generator=generator, model_size="3B")
    )
    order = list(golds.values())
    for task in reasoning.TASKS:
        positions = [i for i, (t, _) in enumerate(order) if t == task]
        expected = sum(1 for i in positions if i % 2 == 0) / len(positions)
        assert metrics[task] == pytest.approx(expected), task
    (conversations, sampling), = generator.calls
    assert conversations[0][0] == {"role": "system", "content": RLVR_SYSTEM_PROMPTS["3B"]}
    assert (sampling.temperature, sampling.top_p) == (0.6, 0.95)
    lines = (tmp_path / "out" / "reasoning" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 4 + 4 + 4 + 2


@pytest.mark.parametrize(
    "task, reply, gold, expected",
    [
        ("math500", "Thus \\boxed{\\frac{14}{3}}.", "\\frac{14}{3}", True),
        ("math500", "Thus \\boxed{\\frac{28}{6}}.", "\\frac{14}{3}", True),
        ("math500", "Thus \\boxed{4.67}.", "\\frac{14}{3}", False),
        ("gsm8k", "She pays $1,800 in total. \\boxed{1800}", "1800", True),
        ("aime24", "\\boxed{204}", "204", True),
        ("aime24", "", "204", False),
    ],
)
def test_math_verify_verdicts(task, reply, gold, expected):
    assert reasoning.is_correct(task, reply, gold) is expected


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("Answer: B", "B"),
        ("Both are gases, but only one is noble.\nAnswer: (B)", "B"),
        ("**Answer:** B", "B"),
        ("**Answer: B**", "B"),
        ("answer: B) Argon", "B"),
        ("The answer is \\boxed{B}", "B"),
        ("\\boxed{B) Argon}", "B"),
        ("\\boxed{\\text{B}}", "B"),
        ("Answer: A\nOn second thought, argon is noble.\nAnswer: B", "B"),  # the last answer counts
        ("\\boxed{A} is tempting, but\nAnswer: B", "B"),
        ("A dog is not relevant", None),  # prose: a capital A is no answer
        ("Answer: A dog is not relevant", None),
        ("Option C looks wrong. Comparing A with B, the first", None),  # reasoning cut off by the length cap
        ("I think the answer is B", None),
        ("\\boxed{B is right}", None),
        ("", None),
    ],
)
def test_gpqa_takes_only_an_anchored_answer(reply, letter):
    assert reasoning.gpqa_choice(reply) == letter
    assert [gold for gold in "ABCD" if reasoning.is_correct("gpqa_diamond", reply, gold)] == ([letter] if letter else [])


def test_gpqa_options_are_shuffled_reproducibly_with_the_gold_letter_tracking_the_answer(tmp_path):
    path = tmp_path / "gpqa.csv"
    rows = "".join(f"Q{i}?,right{i},w{i}a,w{i}b,w{i}c\n" for i in range(12))
    path.write_text("Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n" + rows)
    problems = reasoning.LOADERS["gpqa_diamond"](path)
    assert problems == reasoning.LOADERS["gpqa_diamond"](path)
    for i, problem in enumerate(problems):
        assert problem["choices"]["ABCD".index(problem["gold"])] == f"right{i}"
        assert f"{problem['gold']}) right{i}" in problem["question"]
        assert problem["question"].startswith(reasoning.GPQA_INSTRUCTION + f"\n\nQ{i}?\n\nA) ")
    assert "'Answer: X'" in reasoning.GPQA_INSTRUCTION and reasoning.GPQA_INSTRUCTION in reasoning.PROTOCOL
    assert len({p["gold"] for p in problems}) > 1  # the right answer is not always in one place


@pytest.mark.parametrize("data, anatomy_test_rows, truthfulqa_questions", [
    ("fixtures_dir", 2, 3),
    pytest.param("benchmark_data", 135, 817,
                 marks=pytest.mark.needs_data("arc_challenge/ARC-Challenge-Test.jsonl", "mmlu/test/anatomy_test.csv",
                                              "truthfulqa/mc_task.json")),  # the complete files' sizes
])
def test_openllm_local_files_become_the_hugging_face_fields_lm_eval_expects(data, anatomy_test_rows,
                                                                            truthfulqa_questions, request):
    benchmarks = request.getfixturevalue(data)
    arc = openllm._arc(benchmarks / "arc_challenge")
    first = arc["test"][0]
    raw = json.loads((benchmarks / "arc_challenge" / "ARC-Challenge-Test.jsonl").read_text().splitlines()[0])
    assert first["question"] == raw["question"]["stem"] and first["answerKey"] == raw["answerKey"]
    assert first["choices"]["label"] == [c["label"] for c in raw["question"]["choices"]]
    assert set(arc) == {"test", "validation"}

    mmlu = openllm._mmlu_subject(benchmarks / "mmlu", "anatomy")
    assert len(mmlu["dev"]) == 5 and len(mmlu["test"]) == anatomy_test_rows
    assert all(len(r["choices"]) == 4 and r["answer"] in range(4) for r in mmlu["test"])

    tqa = openllm._truthfulqa(benchmarks / "truthfulqa")["validation"]
    raw = json.loads((benchmarks / "truthfulqa" / "mc_task.json").read_text())
    assert len(tqa) == len(raw) == truthfulqa_questions
    for record, source in zip(tqa, raw):
        for targets in ("mc1_targets", "mc2_targets"):
            assert dict(zip(record[targets]["choices"], record[targets]["labels"])) == source[targets]
        assert sum(record["mc1_targets"]["labels"]) == 1


def test_openllm_uses_lm_eval_task_definitions_with_leaderboard_shots():
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    assert len(openllm._mmlu_subjects(manager)) == 57
    config = openllm._task_config(manager, "arc_challenge", 25, {"test": [], "validation": []})
    assert config["num_fewshot"] == 25 and config["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert config["training_split"] is None and config["validation_split"] == "validation"
    assert {task: (spec.num_fewshot, spec.metric) for task, spec in openllm.LEADERBOARD.items()} == {
        "arc": (25, "acc_norm,none"), "hellaswag": (10, "acc_norm,none"), "mmlu": (5, "acc,none"),
        "truthfulqa": (0, "acc,none"), "winogrande": (5, "acc,none"), "gsm8k": (5, "exact_match,strict-match"),
    }


@pytest.mark.slow
@pytest.mark.needs_data("ifeval/input_data.jsonl", REFERENCE, "ifeval/reference_gpt4/eval_results_loose.jsonl")
def test_ifeval_reference_numbers_in_the_docs_are_what_the_code_computes(tmp_path, benchmark_data, nltk_punkt, capsys):
    """docs/evaluation.md quotes the four accuracies of google's GPT-4 responses; they differ from the
    loose aggregates published with that file in exactly one prompt, key 1122, whose random letter we seed."""
    out = tmp_path / "out"
    rc = main(["eval", "--benchmarks", "ifeval", "--responses", str(benchmark_data / REFERENCE),
               "--data-dir", str(benchmark_data), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())["ifeval"]
    docs = (Path(__file__).resolve().parents[2] / "docs" / "evaluation.md").read_text()
    quoted = ", ".join(f"{key.replace('_', '-')} {result[key]:.4f}"
                       for key in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose"))
    assert quoted in docs and result["n_prompts"] == 540

    keys = {json.loads(line)["prompt"]: json.loads(line)["key"]
            for line in (benchmark_data / "ifeval" / "input_data.jsonl").read_text().splitlines()}
    published = {json.loads(line)["prompt"]: json.loads(line)["follow_instruction_list"]
                 for line in (benchmark_data / "ifeval/reference_gpt4/eval_results_loose.jsonl").read_text().splitlines()}
    ours = [json.loads(line) for line in (out / "ifeval" / "verdicts.jsonl").read_text().splitlines()]
    assert {keys[v["prompt"]] for v in ours if v["inst_level_loose_acc"] != published[v["prompt"]]} == {1122}
