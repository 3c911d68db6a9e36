"""The lab's length-controlled win rate (openrlhf_cfpo.reporting.length_control) against alpaca_eval 0.6.6's
own ``get_length_controlled_winrate(..., glm_name="length_controlled_minimal")`` on shared cases."""

import warnings

import numpy as np
import pandas as pd
import pytest

from openrlhf_cfpo.reporting.length_control import length_controlled_win_rate


@pytest.fixture
def alpaca_glm(tmp_path, monkeypatch):
    """alpaca_eval's GLM function, offline: ``_get_featurized_data`` downloads df_gamed.csv (HF dataset
    tatsu-lab/alpaca_eval) for its instruction difficulties, which ``length_controlled_minimal`` reads but
    does not use. A stand-in with one zero difficulty per instruction index sits in an HF cache layout."""
    import alpaca_eval.constants
    from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate

    revision = "0" * 40
    repo = tmp_path / "datasets--tatsu-lab--alpaca_eval"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    pd.DataFrame({"model": "stand_in", "index": np.arange(1000), "instruction_difficulty": 0.0}).to_csv(
        repo / "snapshots" / revision / "df_gamed.csv", index=False)
    monkeypatch.setattr(alpaca_eval.constants, "DEFAULT_CACHE_DIR", str(tmp_path))
    return get_length_controlled_winrate


def shared_case(seed, n, length_effect, tie_rate, probabilities):
    """Judge preferences P(model wins) that depend on the length difference, with ties, or the judge's own
    probabilities when ``probabilities``; lengths in characters."""
    rng = np.random.default_rng(seed)
    model, baseline = rng.integers(3, 30, n), rng.integers(3, 30, n)
    p_win = 1 / (1 + np.exp(-(0.3 + length_effect * np.tanh((model - baseline) / 10))))
    preferences = p_win if probabilities else (rng.random(n) < p_win).astype(float)
    return np.where(rng.random(n) < tie_rate, 0.5, preferences), model, baseline


@pytest.mark.parametrize("case", [
    dict(seed=1, n=140, length_effect=0.8, tie_rate=0.1, probabilities=True),
    dict(seed=4, n=220, length_effect=0.8, tie_rate=0.1, probabilities=False),
    dict(seed=2, n=512, length_effect=2.0, tie_rate=0.1, probabilities=False),
    dict(seed=3, n=512, length_effect=2.0, tie_rate=0.0, probabilities=True),
])
def test_length_controlled_win_rate_matches_alpaca_eval(alpaca_glm, case):
    preferences, model, baseline = shared_case(**case)
    annotations = pd.DataFrame({
        "preference": np.where(preferences == 0.5, 1.5, 1 + preferences),  # alpaca_eval: 2 model, 1 baseline, 1.5 tie
        "output_1": ["x" * n for n in baseline], "output_2": ["x" * n for n in model],
        "index": np.arange(len(model)), "generator_1": "baseline", "generator_2": "model", "annotator": "judge",
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9 on alpaca_eval's `penalty="l1"`
        theirs = alpaca_glm(annotations, glm_name="length_controlled_minimal", save_weights_dir=None,
                            is_warn_extreme_changes=False)
    ours = length_controlled_win_rate(preferences, model, baseline)
    assert 100 * ours["win_rate"] == pytest.approx(theirs["win_rate"], abs=1e-9)
    # liblinear stops at a tolerance; ours runs to convergence (module docstring)
    assert 100 * ours["length_controlled_win_rate"] == pytest.approx(theirs["length_controlled_winrate"], abs=5e-3)
    assert abs(theirs["length_controlled_winrate"] - theirs["win_rate"]) > 0.3  # the length control does something
