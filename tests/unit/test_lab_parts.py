"""Lab pieces without a model: advantages, masks, rewards, metric averaging, config checks, Figure 1,
the statistics over seeds (aggregate, paired differences, verdict) and the report text."""

import re
from dataclasses import replace

import pytest
import torch

from openrlhf_cfpo.lab.config import LabConfig, quick, stream_seed, validate
from openrlhf_cfpo.lab.loop import TokenWeightedMeans, compute_advantages
from openrlhf_cfpo.lab.report import (
    COLLAPSE_RULE, EQUIVALENCE_MARGIN, FINAL_WINDOW, aggregate, fragile, objective_vs_ratio_series, paired,
    paired_table, precision_lines, results_table, summarize_cell, undecided_between, verdict, verdict_paragraph,
)
from openrlhf_cfpo.lab.task import EOS_ID, TOKEN_ID, AdditionTask, response_mask
from openrlhf_cfpo.reporting.intervals import t_interval


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
        (dict(batch_ratios=(1, 3)), "--batch-ratio must divide the rollout batch of 128 responses"),
        (dict(batch_ratios=(2, 2)), "--batch-ratio lists a value twice ([2, 2]); give each once"),
        (dict(batch_ratios=(0,)), "--batch-ratio must all be >= 1"),
        (dict(seeds=(0, 1, 0)), "--seeds lists a value twice ([0, 1, 0]); give each once"),
        (dict(seeds=(-1,)), "--seeds must all be >= 0"),
        (dict(seeds=()), "--seeds is empty"),
        (dict(iterations_list=(4, 4)), "--iterations lists a value twice"),
        (dict(advantage="gae"), "--advantage must be one of group_norm, rloo"),
        (dict(kl_coef=-1.0), "--kl-coef must be >= 0"),
        (dict(device="tpu"), "--device must be cpu or cuda"),
        (dict(digits=1, eval_size=26), "eval_size must be between 1 and a quarter of the 100 problems"),
    ],
)
def test_validate_names_the_flag(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
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


def _history(objective, iterations, accuracies, seed=0, batch_ratio=1):
    return [
        {"objective": objective, "iterations": iterations, "batch_ratio": batch_ratio, "seed": seed, "step": i + 1,
         "accuracy": acc, "reward_mean": acc, "entropy": 0.5, "clip_ratio": 0.01 * iterations, "ratio_max": 1.1}
        for i, acc in enumerate(accuracies)
    ]


def test_collapse_flag_follows_the_stated_rule():
    stable = summarize_cell(_history("cfpo", 16, [0.3, 0.5, 0.6, 0.55]), initial_accuracy=0.3)
    fallen = summarize_cell(_history("ppo", 16, [0.3, 0.6, 0.4, 0.29]), initial_accuracy=0.3)
    below_start = summarize_cell(_history("ppo", 8, [0.1, 0.12]), initial_accuracy=0.3)
    assert not stable["collapsed"] and fallen["collapsed"] and below_start["collapsed"]
    assert (fallen["peak_accuracy"], fallen["peak_step"], fallen["final_accuracy"]) == (0.6, 2, 0.29)
    assert "0.5 x the best held-out accuracy" in COLLAPSE_RULE


def test_t_interval_matches_the_formula_and_degenerates_honestly():
    mean, (low, high) = t_interval([0.1, 0.2, 0.6])
    sd = ((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + (0.6 - 0.3) ** 2) ** 0.5 / 2 ** 0.5
    half = 4.302652729911275 * sd / 3 ** 0.5  # t(0.975, df=2), from tables
    assert mean == pytest.approx(0.3) and (low, high) == (pytest.approx(0.3 - half), pytest.approx(0.3 + half))
    assert t_interval([0.0, 0.0, 0.0]) == (0.0, (0.0, 0.0))  # no spread: exactly [0, 0]
    assert t_interval([0.25]) == (0.25, None)  # one seed: no interval
    with pytest.raises(ValueError):
        t_interval([])


def _cells(finals):
    """Summaries of cells with final accuracies {(objective, iterations, seed): final}; start 0.3."""
    return [summarize_cell(_history(o, k, [0.3, final], seed=seed), 0.3) for (o, k, seed), final in finals.items()]


FINALS = {
    **{(o, 1, seed): acc for o in ("ppo", "cfpo") for seed, acc in enumerate((0.5, 0.4, 0.45))},  # identical runs
    ("ppo", 16, 0): 0.20, ("ppo", 16, 1): 0.25, ("ppo", 16, 2): 0.10,
    ("cfpo", 16, 0): 0.40, ("cfpo", 16, 1): 0.35, ("cfpo", 16, 2): 0.30,  # +20, +10, +20
    ("ppo", 4, 0): 0.50, ("ppo", 4, 1): 0.40, ("ppo", 4, 2): 0.45,
    ("cfpo", 4, 0): 0.55, ("cfpo", 4, 1): 0.30, ("cfpo", 4, 2): 0.45,  # +5, -10, 0
    ("ppo", 8, 0): 0.50, ("ppo", 8, 1): 0.40, ("ppo", 8, 2): 0.45,
    ("cfpo", 8, 0): 0.40, ("cfpo", 8, 1): 0.31, ("cfpo", 8, 2): 0.34,  # -10, -9, -11
}


def test_aggregate_is_the_mean_and_t_interval_over_seeds():
    rows = {(r["objective"], r["iterations"]): r for r in aggregate(_cells(FINALS))}
    row = rows[("ppo", 16)]
    assert (row["n_seeds"], row["seeds"]) == (3, [0, 1, 2])
    mean, interval = t_interval([0.20, 0.25, 0.10])
    assert row["final_accuracy_mean"] == mean and row["final_accuracy_ci"] == list(interval)
    assert row["max_clip_ratio_mean"] == pytest.approx(0.16) and row["max_clip_ratio_ci"] == pytest.approx([0.16, 0.16])
    assert row["n_collapsed"] == 1  # only 0.10 ends below 0.5 x the best (the start, 0.3)


def test_paired_differences_per_seed_with_verdicts():
    rows = {r["iterations"]: r for r in paired(_cells(FINALS))}
    # iterations 1: the objectives coincide, so every difference is exactly 0 and so is the interval
    assert rows[1]["diffs"] == [0.0, 0.0, 0.0] and rows[1]["diff_ci"] == [0.0, 0.0]
    assert (rows[1]["diff_mean"], rows[1]["verdict"], rows[1]["cfpo_ahead"]) == (0.0, "identical", 0)
    assert rows[16]["diffs"] == pytest.approx([0.2, 0.1, 0.2]) and rows[16]["cfpo_ahead"] == 3
    mean, interval = t_interval(rows[16]["diffs"])
    assert rows[16]["diff_mean"] == mean and rows[16]["diff_ci"] == list(interval) and interval[0] > 0
    assert rows[16]["verdict"] == "ahead"
    assert rows[4]["verdict"] == "indistinguishable" and rows[4]["cfpo_ahead"] == 1
    assert rows[8]["verdict"] == "behind" and rows[8]["diff_ci"][1] < 0
    # a seed that ran only one objective is left out of the pairing
    partial = _cells({("ppo", 2, 0): 0.3, ("cfpo", 2, 0): 0.4, ("ppo", 2, 1): 0.5})
    (row,) = paired(partial)
    assert (row["seeds"], row["n_seeds"], row["diff_ci"], row["verdict"]) == ([0], 1, None, "one seed")


def test_report_table_and_verdict_are_computed_from_the_numbers():
    cells = _cells(FINALS)
    summary = {"cells": cells, "aggregate": aggregate(cells), "paired": paired(cells),
               "warmup": [{"seed": s, "heldout_accuracy": a} for s, a in enumerate((0.3, 0.28, 0.32))]}
    table = results_table(summary, batch_ratio=1).splitlines()
    assert table[2].startswith("| Warm-up policy (start) | 30.0 ± 5.0 |")  # mean 30, t(2) x 2/sqrt(3) = 4.97
    assert table[3] == "| *GRPO / PPO-clip training* | | | | | |"
    ppo16 = next(line for line in table if line.startswith("| + PPO-clip-iteration 16 |"))
    mean, (low, high) = t_interval([0.20, 0.25, 0.10])
    assert ppo16.startswith(f"| + PPO-clip-iteration 16 | {100 * mean:.1f} ± {100 * (high - mean):.1f} |")
    assert ppo16.endswith("| 1/3 |")  # collapsed seeds
    text = verdict_paragraph(summary)
    # +2.3 clears 0 by less than the half-width (14.3): another sample of three seeds may not
    assert "CFPO ends ahead at iterations 16 (+16.7 points, [+2.3, +31.0]; fragile: an edge lies within one " \
        "half-width (±14.3) of 0" in text
    assert "CFPO ends behind at iterations 8 (-10.0 points" in text
    # [-32.1, +28.8]: past the margin on both sides, so it cannot tell any of the three apart
    assert rows_by_it(summary)[4]["undecided_between"] == ["ahead", "behind", "equivalent"]
    assert 'indistinguishable: the interval contains 0 and reaches past ±5 on both sides, so it cannot tell ' \
        '"ahead", "behind" and "equivalent" apart (more seeds needed) at iterations 4 (-1.7 points' in text
    assert "no difference at iterations 1 (every seed's difference is exactly 0; with one iteration" in text
    assert "ppo-it16-br1-seed2" in text
    # precision: one line per iteration count, the half-width in points and the seeds behind it
    lines = {line.split(",")[0]: line for line in precision_lines(summary)}
    half16 = t_interval([0.2, 0.1, 0.2])[1][1] - t_interval([0.2, 0.1, 0.2])[0]
    assert lines["- iterations 16"] == (f"- iterations 16, batch ratio 1: 3 seed(s), half-width ±{100 * half16:.1f} "
                                        f"points, so the smallest detectable difference is {100 * half16:.1f} points")
    assert "half-width ±0.0 points" in lines["- iterations 1"]
    one_seed = {**summary, "paired": paired(_cells({("ppo", 2, 0): 0.3, ("cfpo", 2, 0): 0.4}))}
    assert precision_lines(one_seed) == ["- iterations 2, batch ratio 1: 1 seed(s), no interval (one seed), so no "
                                         "difference is detectable"]


def rows_by_it(summary):
    return {p["iterations"]: p for p in summary["paired"]}


@pytest.mark.parametrize("interval, between", [
    ((-0.073, 0.001), ["behind", "equivalent"]),  # docs/lab.md's 4 iterations: reaches past -5 only
    ((-0.004, 0.088), ["ahead", "equivalent"]),  # 16 iterations: reaches past +5 only
    ((-0.09, 0.08), ["ahead", "behind", "equivalent"]),
])
def test_an_indistinguishable_interval_names_the_verdicts_it_cannot_tell_apart(interval, between):
    assert verdict([interval[0], interval[1]], interval) == "indistinguishable"
    assert undecided_between(interval) == between


def test_a_verdict_whose_edge_is_within_one_half_width_of_its_boundary_is_fragile():
    assert fragile("ahead", (0.011, 0.050)) and not fragile("ahead", (0.03, 0.05))  # 1.1 < 1.95; 3.0 > 1.0
    assert fragile("behind", (-0.05, -0.01)) and not fragile("behind", (-0.06, -0.05))
    assert fragile("equivalent", (-0.049, 0.021)) and not fragile("equivalent", (-0.01, 0.01))
    assert not fragile("indistinguishable", (-0.1, 0.1)) and not fragile("identical", (0.0, 0.0))
    cells = _cells({("ppo", 2, s): 0.40 for s in range(4)} | {
        ("cfpo", 2, 0): 0.43, ("cfpo", 2, 1): 0.41, ("cfpo", 2, 2): 0.42, ("cfpo", 2, 3): 0.42})
    (row,) = paired(cells)
    assert row["verdict"] == "ahead" and row["fragile"] and row["diff_ci"][0] < row["half_width"]
    text = verdict_paragraph({"cells": cells, "paired": [row]})
    assert f"fragile: an edge lies within one half-width (±{100 * row['half_width']:.1f}) of 0" in text
    assert "| ahead (fragile) |" in paired_table({"paired": [row]})


def test_equivalent_verdict_needs_an_interval_inside_the_margin_around_zero():
    close = _cells({("ppo", 2, s): 0.40 for s in range(4)} | {
        ("cfpo", 2, 0): 0.41, ("cfpo", 2, 1): 0.39, ("cfpo", 2, 2): 0.40, ("cfpo", 2, 3): 0.405})
    (row,) = paired(close)
    assert row["diff_ci"][0] < 0 < row["diff_ci"][1] and row["half_width"] < EQUIVALENCE_MARGIN
    assert row["verdict"] == "equivalent"
    summary = {"cells": close, "paired": [row]}
    assert "equivalent within 5 points (the interval contains 0 and lies inside ±5) at iterations 2" in \
        verdict_paragraph(summary)
    # the same mean with a wider spread reaches past the margin: not enough seeds to call it equivalent
    wide = _cells({("ppo", 2, s): 0.40 for s in range(4)} | {
        ("cfpo", 2, 0): 0.45, ("cfpo", 2, 1): 0.35, ("cfpo", 2, 2): 0.40, ("cfpo", 2, 3): 0.42})
    assert paired(wide)[0]["verdict"] == "indistinguishable"


def test_final_accuracy_averages_the_last_tenth_of_the_steps():
    accuracies = [0.3] * 80 + [0.5] * 10 + [0.4 + 0.01 * i for i in range(10)]
    cell = summarize_cell(_history("cfpo", 4, accuracies), initial_accuracy=0.3)
    assert cell["final_accuracy"] == pytest.approx(sum(0.4 + 0.01 * i for i in range(10)) / 10)
    assert cell["last_step_accuracy"] == pytest.approx(0.49) and cell["peak_accuracy"] == 0.5
    assert "last tenth" in FINAL_WINDOW


def test_cli_defaults_are_labconfigs_and_flags_override_them():
    from openrlhf_cfpo.cli.lab import build_config
    from openrlhf_cfpo.cli.main import build_parser

    parse = lambda *argv: build_parser().parse_args(["lab", *argv])  # noqa: E731
    assert build_config(parse()) == LabConfig()
    assert build_config(parse("--quick")) == quick(LabConfig())
    config = build_config(
        parse("--quick", "--steps", "7", "--eps", "0.1", "--iterations", "2, 8", "--objectives", "cfpo",
              "--seeds", "3,1", "--batch-ratio", "1,4")
    )
    assert config == replace(quick(LabConfig()), steps=7, eps_low=0.1, eps_high=0.1, iterations_list=(2, 8),
                             objectives=("cfpo",), seeds=(3, 1), batch_ratios=(1, 4))
    # the bracketed defaults in --help document LabConfig's values
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["lab"].format_help().split())
    from openrlhf_cfpo.lab.rlhf_config import RLHFConfig

    defaults, rlhf = LabConfig(), RLHFConfig()
    assert rlhf.objectives == defaults.objectives and rlhf.seeds == defaults.seeds and rlhf.lr == defaults.lr
    for shown in (",".join(defaults.objectives),
                  f"[rlvr {','.join(map(str, defaults.iterations_list))}; rlhf {','.join(map(str, rlhf.iterations_list))}]",
                  f"[rlvr {','.join(map(str, defaults.batch_ratios))}; rlhf {','.join(map(str, rlhf.batch_ratios))}]",
                  ",".join(map(str, defaults.seeds)) + "]", f"[{defaults.advantage}]",
                  f"[rlvr {defaults.steps}, rlhf {rlhf.steps};", f"[{defaults.eps_low}]",
                  f"[{','.join(f'{b:g}' for b in rlhf.kl_coefs)}]", f"[{defaults.kl_coef:g}]"):
        assert shown in help_text, shown
    assert float(re.search(r"learning rate \[([^\]]+)\]", help_text).group(1)) == defaults.lr
    assert build_config(parse("--setting", "rlhf")) == rlhf
    assert build_config(parse("--setting", "rlhf", "--kl-coef", "0.1, 0", "--seeds", "2")) == replace(
        rlhf, kl_coefs=(0.1, 0.0), seeds=(2,))


def test_cells_cover_the_grid_in_sweep_order_and_seeds_get_separate_streams():
    config = replace(LabConfig(), iterations_list=(1, 4), batch_ratios=(1, 2), seeds=(0, 1))
    names = [cell.name for cell in config.cells()]
    assert len(names) == len(set(names)) == 2 * 2 * 2 * 2
    assert names[:4] == ["ppo-it1-br1-seed0", "cfpo-it1-br1-seed0", "ppo-it1-br1-seed1", "cfpo-it1-br1-seed1"]
    assert names[-1] == "cfpo-it4-br2-seed1"
    streams = [stream_seed(seed, stream) for seed in range(4)
               for stream in ("init", "warmup_data", "rl", "prompts", "sampling", "shuffle")]
    assert len(set(streams)) == len(streams) and all(0 <= s < 2**63 for s in streams)
