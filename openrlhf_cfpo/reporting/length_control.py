"""AlpacaEval 2.0's length-controlled win rate, as alpaca_eval 0.6.6 computes it with
``glm_name="length_controlled_minimal"``, without alpaca_eval, pandas, scikit-learn or the network.

The paper reports AlpacaEval-WR and AlpacaEval-LC side by side (Table 1: RLOO 18.17 raw vs 7.25
length-controlled, CFPO 17.08 vs 11.26): "while raw win rates appear similar, length-controlled
scores reveal a meaningful gap". A judge compares each of a model's responses with a baseline's
(preference p_i = P(model wins), 1, 0 or 0.5 for a tie); the raw win rate is mean(p_i). The
length-controlled one fits a logistic GLM of the preference on the length difference and predicts
the win rate had the lengths been equal. ``length_controlled_minimal`` is the GLM

    logit P(model wins)_i = θ_len · tanh(δ_i / sd(δ)) + θ_0,    δ_i = len(baseline_i) − len(model_i)

(characters; sd with n − 1 in its denominator; no instruction-difficulty term, no regularization
toward gamed baselines), and the length-controlled win rate is σ(θ_0), its prediction at δ = 0.
alpaca_eval fits it (``fit_LogisticRegressionCV``) with scikit-learn's ``LogisticRegressionCV``:
L1 penalty, no extra intercept, liblinear, the 10 values C ∈ logspace(−4, 4, 10), chosen by 5-fold
``GroupKFold`` cross-validation on the mean cross-entropy with the continuous targets p_i, then
refitted on all pairs with the chosen C. For each C this minimizes the convex

    ‖θ‖₁ + C · Σ_i [ −p_i log σ(x_i·θ) − (1 − p_i) log(1 − σ(x_i·θ)) ]

(alpaca_eval writes each pair twice, labels 1 and 0 with weights p_i and 1 − p_i). Here the same
objective is minimized to convergence by proximal Newton steps, the same C grid is searched over
the same folds (``GroupKFold`` with equal-size groups puts pair i in fold (n − 1 − i) mod 5), and
ties in the CV score go to the smaller C, as numpy's argmax does. liblinear stops at a tolerance,
so the two agree to about 1e-3 percentage points, not bitwise; where two C's cross-validate within
liblinear's error of each other they could pick different ones
(tests/integration/test_length_control_vs_alpaca_eval.py compares them on shared cases). One
difference by design: when every length difference is the same (sd(δ) = 0) alpaca_eval divides by
zero; here the GLM is then the intercept alone.
"""

from __future__ import annotations

import itertools
from typing import Dict, Sequence

import numpy as np

N_SPLITS = 5
C_GRID = np.logspace(-4, 4, 10)  # scikit-learn's LogisticRegressionCV(Cs=10)


def _objective(theta: np.ndarray, x: np.ndarray, p: np.ndarray, c: float) -> float:
    """‖θ‖₁ + C · Σ_i cross-entropy(p_i, σ(x_i·θ))."""
    logits = x @ theta
    return float(np.abs(theta).sum() + c * np.sum(p * np.logaddexp(0.0, -logits) + (1 - p) * np.logaddexp(0.0, logits)))


def _l1_quadratic_min(hessian: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """argmin_z ½ zᵀHz + linear·z + ‖z‖₁ (H positive definite), exactly: the best of the stationary points
    of each support and sign pattern whose signs agree with the pattern (3^d candidates; d ≤ 2 here)."""
    d = len(linear)
    best, best_value = np.zeros(d), 0.0
    for pattern in itertools.product((-1.0, 0.0, 1.0), repeat=d):
        signs = np.array(pattern)
        support = signs != 0
        if not support.any():
            continue
        z = np.zeros(d)
        z[support] = -np.linalg.solve(hessian[np.ix_(support, support)], linear[support] + signs[support])
        if np.all(z[support] * signs[support] > 0):
            value = 0.5 * z @ hessian @ z + linear @ z + np.abs(z).sum()
            if value < best_value:
                best, best_value = z, value
    return best


def _fit(x: np.ndarray, p: np.ndarray, c: float) -> np.ndarray:
    """θ minimizing ‖θ‖₁ + C·Σ cross-entropy(p_i, σ(x_i·θ)), by proximal Newton steps (each step's L1-penalized
    quadratic model solved exactly) with a backtracking line search, to convergence."""
    theta = np.zeros(x.shape[1])
    value = _objective(theta, x, p, c)
    for _ in range(100):
        q = 1.0 / (1.0 + np.exp(-(x @ theta)))
        gradient = c * (x.T @ (q - p))
        hessian = c * (x.T * (q * (1 - q))) @ x + 1e-12 * np.eye(len(theta))
        step = _l1_quadratic_min(hessian, gradient - hessian @ theta) - theta
        if np.abs(step).max() <= 1e-14:
            break
        decrease = gradient @ step + np.abs(theta + step).sum() - np.abs(theta).sum()  # ≤ 0
        slack = 1e-13 * abs(value)  # rounding in the objective: near the optimum, take the Newton step
        t = 1.0
        while _objective(theta + t * step, x, p, c) > value + 0.25 * t * decrease + slack and t > 1e-10:
            t *= 0.5
        theta = theta + t * step
        value = _objective(theta, x, p, c)
    return theta


def _cross_entropy(x: np.ndarray, p: np.ndarray, theta: np.ndarray) -> float:
    """Mean cross-entropy with continuous targets, predictions clipped to [1e-15, 1 − 1e-15] as alpaca_eval's."""
    q = np.clip(1.0 / (1.0 + np.exp(-(x @ theta))), 1e-15, 1 - 1e-15)
    return float(-np.mean(p * np.log(q) + (1 - p) * np.log(1 - q)))


def length_controlled_win_rate(
    preferences: Sequence[float], model_lengths: Sequence[float], baseline_lengths: Sequence[float]
) -> Dict[str, float]:
    """Raw and length-controlled win rate of a model against a baseline, as fractions in [0, 1].

    preferences: P(model's response beats the baseline's) per prompt: 1 win, 0 loss, 0.5 tie (or a
    judge's probability); model_lengths, baseline_lengths: the two responses' lengths in characters.
    Returns ``win_rate``, ``length_controlled_win_rate`` and the GLM's ``length_coefficient`` θ_len.
    """
    p, model, baseline = (np.asarray(v, dtype=np.float64) for v in (preferences, model_lengths, baseline_lengths))
    if p.ndim != 1 or model.shape != p.shape or baseline.shape != p.shape:
        raise ValueError(
            f"preferences, model_lengths and baseline_lengths must be 1-D and of one length; got shapes {p.shape}, "
            f"{model.shape}, {baseline.shape}"
        )
    if len(p) < N_SPLITS:
        raise ValueError(f"the length-controlled win rate needs at least {N_SPLITS} pairs (5-fold CV); got {len(p)}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("preferences must lie in [0, 1] (1: the model wins, 0: the baseline wins, 0.5: a tie)")
    delta = baseline - model
    sd = delta.std(ddof=1)
    intercept = np.ones_like(delta)
    x = np.stack([np.tanh(delta / sd), intercept] if sd > 0 else [intercept], axis=1)

    fold = (len(p) - 1 - np.arange(len(p))) % N_SPLITS
    cv_scores = [
        -sum(_cross_entropy(x[fold == k], p[fold == k], _fit(x[fold != k], p[fold != k], c)) for k in range(N_SPLITS))
        for c in C_GRID
    ]
    theta = _fit(x, p, C_GRID[int(np.argmax(cv_scores))])
    return {
        "win_rate": float(p.mean()),
        "length_controlled_win_rate": float(1.0 / (1.0 + np.exp(-theta[-1]))),
        "length_coefficient": float(theta[0]) if sd > 0 else 0.0,
    }
