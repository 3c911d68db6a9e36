"""Lab pieces without a model: advantages, masks, rewards, metric averaging, config checks, Figure 1, report text."""

import re
from dataclasses import replace

import pytest
import torch

from openrlhf_cfpo.lab.config import LabConfig, quick, validate
from openrlhf_cfpo.lab.loop import TokenWeightedMeans, compute_advantages
from openrlhf_cfpo.lab.report import COLLAPSE_RULE, findings, objective_vs_ratio_series, summarize_cell
from openrlhf_cfpo.lab.task import EOS_ID, TOKEN_ID, AdditionTask, response_mask


def test_group_norm_advantages_match_eq9_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # two groups of 4
    adv = compute_advantages(rewards, 4, "group_norm")
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # unbiased, as OpenRLHF
    torch.testing.assert_close(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-9), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(adv[4:], torch.tensor([0.25, 0.25, 0.25, -0.75]) / (rewards[4:].std() + 1e-9),
                               rtol=1e-6, atol=1e-6)


def test_rloo_advantages_match_eq10_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # two groups of 3
    adv = compute_advantages(rewards, 3, "rloo")
    # A_i = R_i - mean of the other two
    torch.testing.assert_close(adv, torch.tensor([1.0, -0.5, -0.5, -1.0, 0.5, 0.5]), rtol=0, atol=1e-7)


def test_all_equal_group_gets_zero_advantage():
    for estimator in ("group_norm", "rloo"):
        assert torch.count_nonzero(compute_advantages(torch.ones(8), 4, estimator)) == 0


def test_response_mask_stops_after_first_eos():
    responses = torch.tensor([[1, 2, EOS_ID, 3], [EOS_ID, EOS_ID, 1, 1], [1, 2, 3, 4]])
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(response_mask(responses), expected)


def test_reward_is_exact_sum_then_eos():
    task = AdditionTask(digits=2, eval_size=16)
    problems = task.sample(3, torch.Generator().manual_seed(0))
    rows = []
    for a, b in zip(problems.a.tolist(), problems.b.tolist()):
        answer = [TOKEN_ID[c] for c in str(a + b)] + [EOS_ID]
        rows.append(answer + [EOS_ID] * (task.max_new_tokens - len(answer)))
    right = torch.tensor(rows)
    no_eos = right.clone()
    no_eos[no_eos == EOS_ID] = TOKEN_ID["0"]
    wrong = right.clone()
    wrong[:, 0] = (wrong[:, 0] + 1) % 10
    assert task.rewards(problems, right).tolist() == [1.0, 1.0, 1.0]
    assert task.rewards(problems, no_eos).tolist() == [0.0, 0.0, 0.0]
    assert task.rewards(problems, wrong).tolist() == [0.0, 0.0, 0.0]


def test_heldout_problems_never_in_the_training_pool():
    task = AdditionTask(digits=2, eval_size=256)
    heldout = set((task.heldout.a * 100 + task.heldout.b).tolist())
    assert len(heldout) == 256
    assert heldout.isdisjoint(task.train_ids.tolist())
    assert len(heldout) + len(task.train_ids) == 10**4
    # the split does not depend on the global RNG (the same for every seed)
    torch.manual_seed(123)
    again = AdditionTask(digits=2, eval_size=256)
    assert torch.equal(again.heldout.prompts, task.heldout.prompts)


def test_token_weighted_means_weight_by_tokens_and_keep_extremes():
    means = TokenWeightedMeans()
    means.add(10, {"clip_ratio": 0.0, "entropy": 1.0}, ratio_max=1.5, ratio_min=0.9)
    means.add(30, {"clip_ratio": 0.4, "entropy": 2.0}, ratio_max=1.1, ratio_min=0.7)
    result = means.result()
    assert result["clip_ratio"] == pytest.approx((10 * 0.0 + 30 * 0.4) / 40)
    assert result["entropy"] == pytest.approx((10 * 1.0 + 30 * 2.0) / 40)
    assert (result["ratio_max"], result["ratio_min"]) == (1.5, 0.7)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(iterations_list=(1, 0)), "--iterations must all be >= 1"),
        (dict(objectives=("ppo", "grpo")), "unknown objective 'grpo'"),
        (dict(eps_low=0.0), "eps_low must be > 0"),
        (dict(eps_high=-0.1), "eps_high must be > 0"),
        (dict(batch_ratio=3), "--batch-ratio must be >= 1 and divide the rollout batch of 128"),
        (dict(advantage="gae"), "--advantage must be one of group_norm, rloo"),
        (dict(kl_coef=-1.0), "--kl-coef must be >= 0"),
        (dict(device="tpu"), "--device must be cpu or cuda"),
        (dict(digits=1, eval_size=26), "eval_size must be between 1 and a quarter of the 100 problems"),
    ],
)
def test_validate_names_the_flag(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(replace(LabConfig(), **change))


def test_defaults_and_quick_preset_are_valid_and_roundtrip():
    for config in (LabConfig(), quick(LabConfig())):
        validate(config)
        assert LabConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown lab config keys: bogus"):
        LabConfig.from_dict({"bogus": 1})


def test_figure1_series_have_the_papers_shape():
    ratio, series = objective_vs_ratio_series(eps=0.2, points=201)
    r = torch.tensor(ratio, dtype=torch.float64)
    at = lambda x: int(torch.argmin((r - x).abs()))  # noqa: E731
    for sign in ("+", "-"):
        a = 1.0 if sign == "+" else -1.0
        # at r = 1 both gradients equal A (on-policy equivalence)
        assert series[f"PPO-clip dJ/dr, A={sign}1"][at(1.0)] == pytest.approx(a)
        assert series[f"CFPO dJ/dr, A={sign}1"][at(1.0)] == pytest.approx(a)
    # outside the trust region in the direction A pushes, PPO's gradient vanishes, CFPO's restores
    assert series["PPO-clip dJ/dr, A=+1"][at(1.4)] == 0.0
    assert series["CFPO dJ/dr, A=+1"][at(1.4)] == pytest.approx(1 - 0.4 / 0.2)
    assert series["PPO-clip dJ/dr, A=-1"][at(0.6)] == 0.0
    # CFPO's surrogate is maximal at r* = 1 + sign(A) * eps
    for sign, r_star in (("+", 1.2), ("-", 0.8)):
        values = series[f"CFPO J, A={sign}1"]
        assert ratio[max(range(len(values)), key=values.__getitem__)] == pytest.approx(r_star)


def _history(objective, iterations, accuracies):
    return [
        {"objective": objective, "iterations": iterations, "batch_ratio": 1, "seed": 0, "step": i + 1,
         "accuracy": acc, "reward_mean": acc, "entropy": 0.5, "clip_ratio": 0.01 * iterations, "ratio_max": 1.1}
        for i, acc in enumerate(accuracies)
    ]


def test_collapse_flag_follows_the_stated_rule():
    stable = summarize_cell(_history("cfpo", 16, [0.3, 0.5, 0.6, 0.55]), initial_accuracy=0.3, wall_time_s=1.0)
    fallen = summarize_cell(_history("ppo", 16, [0.3, 0.6, 0.4, 0.29]), initial_accuracy=0.3, wall_time_s=1.0)
    below_start = summarize_cell(_history("ppo", 8, [0.1, 0.12]), initial_accuracy=0.3, wall_time_s=1.0)
    assert not stable["collapsed"] and fallen["collapsed"] and below_start["collapsed"]
    assert (fallen["peak_accuracy"], fallen["peak_step"], fallen["final_accuracy"]) == (0.6, 2, 0.29)
    assert "0.5 x the best held-out accuracy" in COLLAPSE_RULE


def test_findings_paragraph_is_computed_from_the_numbers():
    def summary(ppo16_final):
        cells = [
            summarize_cell(_history("ppo", 1, [0.4, 0.5]), 0.3, 1.0),
            summarize_cell(_history("cfpo", 1, [0.4, 0.5]), 0.3, 1.0),
            summarize_cell(_history("ppo", 16, [0.6, ppo16_final]), 0.3, 1.0),
            summarize_cell(_history("cfpo", 16, [0.5, 0.6]), 0.3, 1.0),
        ]
        return {"cells": cells, "collapse_rule": COLLAPSE_RULE, "eval_size": 256,
                "warmup": {"heldout_accuracy": 0.3}}

    collapsed = findings(summary(0.1))
    assert "Cells ending 3+ points below the warm-up policy (30.0%): ppo-it16 (-20.0)." in collapsed
    assert "All cells share seed 0" in collapsed
    assert ("ppo ends at 50.0% held-out accuracy with 1 iteration(s) and 10.0% with 16 (lower by 40.0 points)"
            in collapsed)
    assert "CFPO ends ahead of PPO-clip at iterations 16 (+50.0)" in collapsed
    assert "within 3 points of it at iterations 1" in collapsed
    assert "collapse rule" in collapsed and "ppo-it16." in collapsed
    level = findings(summary(0.6))
    assert "No cell meets the collapse rule" in level
    assert "within 3 points of it at iterations 1, 16" in level
    assert "No cell ends 3+ points below the warm-up policy (30.0%)." in level


def test_cli_defaults_are_labconfigs_and_flags_override_them():
    from openrlhf_cfpo.cli.lab import build_config
    from openrlhf_cfpo.cli.main import build_parser

    parse = lambda *argv: build_parser().parse_args(["lab", *argv])  # noqa: E731
    assert build_config(parse()) == LabConfig()
    assert build_config(parse("--quick")) == quick(LabConfig())
    config = build_config(
        parse("--quick", "--steps", "7", "--eps", "0.1", "--iterations", "2, 8", "--objectives", "cfpo")
    )
    assert config == replace(quick(LabConfig()), steps=7, eps_low=0.1, eps_high=0.1, iterations_list=(2, 8),
                             objectives=("cfpo",))
    # the bracketed defaults in --help document LabConfig's values
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["lab"].format_help().split())
    defaults = LabConfig()
    for shown in (",".join(defaults.objectives), ",".join(map(str, defaults.iterations_list)),
                  f"[{defaults.batch_ratio}]", f"[{defaults.advantage}]", f"[{defaults.steps};",
                  f"[{defaults.eps_low}]"):
        assert shown in help_text
    assert float(re.search(r"learning rate \[([^\]]+)\]", help_text).group(1)) == defaults.lr
