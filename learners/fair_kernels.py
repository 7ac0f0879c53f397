"""Numba kernels of individually fair learning with one-sided feedback.

The finite policy class is a set of ``N`` linear threshold classifiers
``h_n(x) = 1[w_n . x >= b_n]`` (weights ``W``: N x d, offsets ``b``: N). A round
shows ``k`` individuals (``X``: k x d); ``V[n, i] = h_n(x_i)`` is the N x k matrix
of the class on them (0.0 / 1.0 as float64).

The learners keep one float per policy, the cumulative (estimated) Lagrangian cost
``L[n]``, and update it with the two additive parts of the spec
(learners/fair.py documents the setting):

- the label part, two-arm encoding: a positive decision on ``i`` costs
  ``2 (1 - y_i)``, a negative one costs 1 (the difference ``1 - 2 y_i`` is the
  accuracy cost; the shift is the same for every policy);
- the fairness part ``f_i = C (#kept pairs favouring i - #kept pairs disfavouring i)``,
  known for every individual.

All kernels are pure functions over float64 / int64 arrays; arrays they fill are
passed in and changed in place. Randomness is drawn by the caller (numpy Generator)
and passed in, so the learners checkpoint their RNG with the rest of their state.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@njit(cache=True)
def evaluate_class(W: FloatArray, b: FloatArray, X: FloatArray, V: FloatArray) -> None:
    """``V[n, i] = 1.0 if W[n] . X[i] >= b[n] else 0.0``, the same on every CPU.

    The N x k scores come from one BLAS product (about 2x the speed of a dot-product loop at
    N = 1,000, k = d = 10). BLAS kernels differ between CPUs (and between shapes) in
    the last bits, which would flip decisions on individuals sitting exactly on a
    threshold; so every score within rounding distance of its offset is recomputed
    by the fixed-order loop, whose result does not depend on the CPU or on k.
    """
    N, d = W.shape
    k = X.shape[0]
    scores = np.dot(W, np.ascontiguousarray(X.T))
    weight_size = np.zeros(N)
    for n in range(N):
        for j in range(d):
            weight_size[n] += abs(W[n, j])
    feature_size = np.zeros(k)
    for i in range(k):
        for j in range(d):
            feature_size[i] = max(feature_size[i], abs(X[i, j]))
    for n in range(N):
        for i in range(k):
            s = scores[n, i]
            if abs(s - b[n]) <= 1e-12 * (weight_size[n] * feature_size[i] + abs(b[n])):
                s = 0.0
                for j in range(d):
                    s += W[n, j] * X[i, j]
            V[n, i] = 1.0 if s >= b[n] else 0.0


@njit(cache=True)
def softmax_weights(cost: FloatArray, eta: float, mix: float, p: FloatArray) -> None:
    """``p = (1 - mix) softmax(-eta cost) + mix / N`` computed in log space."""
    N = cost.shape[0]
    low = cost[0]
    for n in range(1, N):
        if cost[n] < low:
            low = cost[n]
    total = 0.0
    for n in range(N):
        p[n] = math.exp(-eta * (cost[n] - low))
        total += p[n]
    for n in range(N):
        p[n] = (1.0 - mix) * p[n] / total + mix / N


@njit(cache=True)
def positive_probabilities(p: FloatArray, V: FloatArray, q: FloatArray) -> None:
    """``q[i] = sum_n p[n] V[n, i]``: the probability of a positive decision for individual i."""
    N, k = V.shape
    for i in range(k):
        q[i] = 0.0
    for n in range(N):
        pn = p[n]
        if pn == 0.0:
            continue
        for i in range(k):
            q[i] += pn * V[n, i]
    for i in range(k):  # rounding may leave q a hair outside [0, 1]
        if q[i] > 1.0:
            q[i] = 1.0
        elif q[i] < 0.0:
            q[i] = 0.0


@njit(cache=True)
def draw_index(p: FloatArray, u: float) -> int:
    """Inverse-CDF draw from ``p`` with the uniform ``u`` in [0, 1)."""
    acc = 0.0
    last = 0
    for n in range(p.shape[0]):
        if p[n] > 0.0:
            last = n
        acc += p[n]
        if u < acc:
            return n
    return last


@njit(cache=True)
def aggregate_reports(reports: IntArray, q: FloatArray, panel_size: int, required: int, kept: FloatArray) -> int:
    """Panel rule: keep pair {i, l} when at least ``required`` distinct auditors flag it.

    ``reports`` is an (r, 3) int64 array of ``(i, l, auditor)`` with auditor in
    ``[0, panel_size)``; a pair counts the same in either order and duplicates of one
    auditor count once. A kept pair is oriented by the probabilities: ``kept[i, l] = 1``
    when ``q[i] > q[l]`` (pairs with equal probabilities cannot be violations and are
    dropped). Returns the number of kept pairs.
    """
    k = q.shape[0]
    seen = np.zeros((k, k, panel_size), dtype=np.bool_)
    count = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for l in range(k):
            kept[i, l] = 0.0
    for r in range(reports.shape[0]):
        i = reports[r, 0]
        l = reports[r, 1]
        a = reports[r, 2]
        if i == l:
            continue
        lo = min(i, l)
        hi = max(i, l)
        if not seen[lo, hi, a]:
            seen[lo, hi, a] = True
            count[lo, hi] += 1
    n_kept = 0
    for lo in range(k):
        for hi in range(lo + 1, k):
            if count[lo, hi] >= required and count[lo, hi] > 0:
                if q[lo] > q[hi]:
                    kept[lo, hi] = 1.0
                    n_kept += 1
                elif q[hi] > q[lo]:
                    kept[hi, lo] = 1.0
                    n_kept += 1
    return n_kept


@njit(cache=True)
def fairness_costs(kept: FloatArray, weight: float, f: FloatArray) -> None:
    """``f[i] = weight * (sum_l kept[i, l] - sum_l kept[l, i])``; sums to 0."""
    k = f.shape[0]
    for i in range(k):
        s = 0.0
        for l in range(k):
            s += kept[i, l] - kept[l, i]
        f[i] = weight * s


@njit(cache=True)
def importance_label_costs(decisions: IntArray, labels: IntArray, q: FloatArray, out: FloatArray) -> None:
    """Non-negative estimate of the positive-arm cost ``2 (1 - y_i)``.

    ``out[i] = 2 (1 - y_i) / q[i]`` where ``decisions[i] == 1``, else 0. Labels of
    negatively decided individuals are never read.
    """
    for i in range(decisions.shape[0]):
        if decisions[i] == 1:
            out[i] = 2.0 * (1.0 - labels[i]) / q[i]
        else:
            out[i] = 0.0


@njit(cache=True)
def resampled_label_costs(decisions: IntArray, labels: IntArray, repeats: FloatArray, out: FloatArray) -> None:
    """Geometric-resampling estimate ``out[i] = K_i 2 (1 - y_i)`` where ``decisions[i] == 1``, else 0."""
    for i in range(decisions.shape[0]):
        if decisions[i] == 1:
            out[i] = repeats[i] * 2.0 * (1.0 - labels[i])
        else:
            out[i] = 0.0


@njit(cache=True)
def add_label_costs(cost: FloatArray, V: FloatArray, positive_arm: FloatArray) -> None:
    """``cost[n] += sum_i V[n,i] positive_arm[i] + (1 - V[n,i]) * 1`` (the negative arm costs 1)."""
    N, k = V.shape
    for n in range(N):
        s = 0.0
        for i in range(k):
            if V[n, i] != 0.0:
                s += positive_arm[i]
            else:
                s += 1.0
        cost[n] += s


@njit(cache=True)
def add_fairness_costs(cost: FloatArray, V: FloatArray, f: FloatArray) -> None:
    """``cost[n] += sum_i V[n, i] f[i]``."""
    N, k = V.shape
    for n in range(N):
        s = 0.0
        for i in range(k):
            s += V[n, i] * f[i]
        cost[n] += s


@njit(cache=True)
def perturbed_leaders(cost: FloatArray, VS_T: FloatArray, Z: FloatArray, leaders: IntArray) -> None:
    """The cost-sensitive oracle on perturbed histories, one call per row of ``Z``.

    ``leaders[m] = argmin_n cost[n] + sum_s VS_T[s, n] Z[m, s]``: the policy of least
    cost on the history (summarised by the cumulative costs of the finite class) plus
    the fake examples ``(s, Z[m, s])`` on the separator points; ``VS_T[s, n]`` is
    policy n on separator point s. Ties go to the lowest index.
    """
    # all perturbations at once: one BLAS product, (M x S) (S x N), 4x the speed of the loop
    perturbation = np.dot(Z, VS_T)
    M, N = perturbation.shape
    for m in range(M):
        best = 0
        best_value = cost[0] + perturbation[m, 0]
        for n in range(1, N):
            value = cost[n] + perturbation[m, n]
            if value < best_value:
                best_value = value
                best = n
        leaders[m] = best


@njit(cache=True)
def leader_frequencies(leaders: IntArray, V: FloatArray, q: FloatArray) -> None:
    """``q[i]``: the fraction of the sampled leaders that decide individual i positively."""
    k = V.shape[1]
    for i in range(k):
        q[i] = 0.0
    for m in range(leaders.shape[0]):
        for i in range(k):
            q[i] += V[leaders[m], i]
    for i in range(k):
        q[i] /= leaders.shape[0]


@njit(cache=True)
def geometric_repeats(leaders: IntArray, V: FloatArray, decisions: IntArray, cap: int, repeats: FloatArray) -> None:
    """Geometric resampling: ``repeats[i]`` is the first m (1-based) with ``V[leaders[m-1], i] = 1``.

    Only individuals with ``decisions[i] == 1`` get a count (others 0); a count that
    never succeeds within ``cap`` draws is ``cap``.
    """
    k = V.shape[1]
    for i in range(k):
        repeats[i] = 0.0
        if decisions[i] != 1:
            continue
        repeats[i] = cap
        for m in range(min(cap, leaders.shape[0])):
            if V[leaders[m], i] != 0.0:
                repeats[i] = m + 1
                break


@njit(cache=True)
def expected_errors(q: FloatArray, labels: IntArray) -> float:
    """``sum_i y_i + q_i (1 - 2 y_i)``: expected number of mistakes of the randomised policy."""
    s = 0.0
    for i in range(q.shape[0]):
        s += labels[i] + q[i] * (1.0 - 2.0 * labels[i])
    return s


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    b = np.array([0.5, 0.5, 1.0])
    X = np.array([[0.2, 0.9], [0.8, 0.1]])
    V = np.zeros((3, 2))
    evaluate_class(W, b, X, V)
    p = np.zeros(3)
    cost = np.zeros(3)
    softmax_weights(cost, 0.1, 0.0, p)
    q = np.zeros(2)
    positive_probabilities(p, V, q)
    draw_index(p, 0.5)
    kept = np.zeros((2, 2))
    aggregate_reports(np.array([[0, 1, 0]], dtype=np.int64), q, 1, 1, kept)
    f = np.zeros(2)
    fairness_costs(kept, 1.0, f)
    decisions = np.array([1, 0], dtype=np.int64)
    labels = np.array([1.0, -1.0])
    out = np.zeros(2)
    importance_label_costs(decisions, labels, np.array([0.5, 0.5]), out)
    resampled_label_costs(decisions, labels, np.ones(2), out)
    add_label_costs(cost, V, out)
    add_fairness_costs(cost, V, f)
    leaders = np.zeros(2, dtype=np.int64)
    perturbed_leaders(cost, np.zeros((2, 3)), np.zeros((2, 2)), leaders)
    leader_frequencies(leaders, V, q)
    geometric_repeats(leaders, V, decisions, 2, out)
    expected_errors(q, np.array([1.0, 0.0]))
    V.flags.writeable = False  # the learners share class matrices read-only: compile those signatures too
    positive_probabilities(p, V, q)
    add_label_costs(cost, V, out)
    add_fairness_costs(cost, V, f)
    leader_frequencies(leaders, V, q)
    geometric_repeats(leaders, V, decisions, 2, out)
