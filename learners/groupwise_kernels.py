"""Numba kernels of the groupwise-regret learner: AdaNormalHedge over sleeping experts.

Each of the N groups (the last one is ``always_on``) owns an online regressor, its
expert, and the AdaNormalHedge statistics ``R_g`` (cumulative regret of the learner
against the expert on the group's rounds) and ``C_g`` (cumulative absolute regret).
For one row with awake set S:

- weights (log space, so that nothing overflows on long streams)::

      alpha_g = [R_g + 1]_+^2 / (3 (C_g + 1)),   beta_g = [R_g - 1]_+^2 / (3 (C_g + 1))
      w_g = exp(alpha_g - max_S alpha) * (-expm1(beta_g - alpha_g))          for g in S

  which is the AdaNormalHedge weight ``(Phi(R+1, C+1) - Phi(R-1, C+1)) / 2`` with
  ``Phi(R, C) = exp([R]_+^2 / (3C))`` up to a factor common to all g; ``p = w / sum w``,
  or uniform over S when every awake ``R_g <= -1`` (all weights are 0);
- each awake expert predicts ``f_g`` and then learns the row (only awake experts);
- ``l_g = (f_g - y)^2``, the reported loss ``lhat = sum_S p_g l_g``, and for g in S
  ``r_g = lhat - l_g``, ``R_g += r_g``, ``C_g += |r_g|``. Sleeping groups do not change.

The per-group experts are online ridge (the kernel of
:mod:`regretflow.learners.ridge_kernels`, reused) or optimistic online gradient
descent (:mod:`regretflow.learners.omd_kernels`). All kernels are pure functions over
float64 arrays (the membership matrix is uint8); the arrays they update are passed
in and changed in place.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from .omd_kernels import omd_predict_one, omd_update_one
from .ridge_kernels import ridge_update_one

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@njit(cache=True)
def anh_probabilities(R: FloatArray, C: FloatArray, awake: IntArray, n_awake: int, p: FloatArray) -> None:
    """AdaNormalHedge distribution over the awake experts.

    ``awake[:n_awake]`` are the awake group indices; ``p[k]`` receives the
    probability of expert ``awake[k]``.
    """
    top = -math.inf
    for k in range(n_awake):
        g = awake[k]
        shifted = R[g] + 1.0
        alpha = shifted * shifted / (3.0 * (C[g] + 1.0)) if shifted > 0.0 else 0.0
        p[k] = alpha
        if alpha > top:
            top = alpha
    total = 0.0
    for k in range(n_awake):
        g = awake[k]
        shifted = R[g] - 1.0
        beta = shifted * shifted / (3.0 * (C[g] + 1.0)) if shifted > 0.0 else 0.0
        alpha = p[k]
        weight = math.exp(alpha - top) * (0.0 - math.expm1(beta - alpha))  # 0.0 - : never -0.0
        p[k] = weight
        total += weight
    if total > 0.0:
        for k in range(n_awake):
            p[k] /= total
    else:
        for k in range(n_awake):
            p[k] = 1.0 / n_awake


@njit(cache=True)
def anh_settle(
    R: FloatArray, C: FloatArray, awake: IntArray, n_awake: int, p: FloatArray, f: FloatArray, y: float, u: float
) -> tuple[float, float, int]:
    """Close a round: update ``R``, ``C`` of the awake experts from their predictions ``f``.

    ``u`` in [0, 1) picks the served expert by inverse CDF over ``p``; ``u < 0`` means
    no draw (mixture mode), and then the served index is -1. Returns
    ``(expected_loss, mixture_prediction, served_position)``: ``p . l``, ``p . f`` and
    the position in ``awake`` of the sampled expert.
    """
    expected = 0.0
    mixture = 0.0
    for k in range(n_awake):
        err = f[k] - y
        expected += p[k] * err * err
        mixture += p[k] * f[k]
    for k in range(n_awake):
        g = awake[k]
        err = f[k] - y
        r = expected - err * err
        R[g] += r
        C[g] += abs(r)
    chosen = -1
    if u >= 0.0:
        cumulative = 0.0
        chosen = n_awake - 1
        for k in range(n_awake):
            cumulative += p[k]
            if u < cumulative:
                chosen = k
                break
    return expected, mixture, chosen


@njit(cache=True)
def awake_groups(A: NDArray[np.uint8], r: int, awake: IntArray) -> int:
    """Write the indices of the groups of row ``r`` of ``A`` into ``awake``; return how many."""
    m = 0
    for g in range(A.shape[1]):
        if A[r, g] != 0:
            awake[m] = g
            m += 1
    return m


@njit(cache=True)
def clip_unit(value: float) -> float:
    """``value`` clipped to [0, 1]."""
    return min(max(value, 0.0), 1.0)


@njit(cache=True)
def groupwise_ridge_observe(
    P: FloatArray,
    theta: FloatArray,
    R: FloatArray,
    C: FloatArray,
    counts: FloatArray,
    X: FloatArray,
    y: FloatArray,
    A: NDArray[np.uint8],
    uniforms: FloatArray,
    clip: bool,
    served: FloatArray,
    expected_loss: FloatArray,
    mixture_pred: FloatArray,
    drawn: IntArray,
) -> None:
    """Prequential micro-batch with online-ridge experts (``P[g]``, ``theta[g]``).

    ``A`` (rows x N, uint8) is the membership including the ``always_on`` column.
    ``uniforms[r] < 0`` serves the mixture for row r, otherwise the sampled expert.
    Fills ``served``, ``expected_loss`` (``p . l``), ``mixture_pred`` (``p . f``) and
    ``drawn`` (the group index of the served expert, -1 for the mixture).
    """
    n_groups = R.shape[0]
    awake = np.empty(n_groups, dtype=np.int64)
    p = np.empty(n_groups)
    f = np.empty(n_groups)
    Px = np.empty(theta.shape[1])
    for r in range(X.shape[0]):
        m = awake_groups(A, r, awake)
        anh_probabilities(R, C, awake, m, p)
        for k in range(m):
            g = awake[k]
            pred = ridge_update_one(P[g], theta[g], X[r], y[r], 1.0, 0.0, Px)
            f[k] = clip_unit(pred) if clip else pred
            counts[g] += 1.0
        expected, mixture, chosen = anh_settle(R, C, awake, m, p, f, y[r], uniforms[r])
        expected_loss[r] = expected
        mixture_pred[r] = mixture
        served[r] = mixture if chosen < 0 else f[chosen]
        drawn[r] = -1 if chosen < 0 else awake[chosen]


@njit(cache=True)
def groupwise_ridge_predict(
    theta: FloatArray, R: FloatArray, C: FloatArray, X: FloatArray, A: NDArray[np.uint8], clip: bool, out: FloatArray
) -> None:
    """Mixture predictions ``p . f`` for every row with ridge experts (no state change)."""
    n_groups = R.shape[0]
    awake = np.empty(n_groups, dtype=np.int64)
    p = np.empty(n_groups)
    for r in range(X.shape[0]):
        m = awake_groups(A, r, awake)
        anh_probabilities(R, C, awake, m, p)
        mixture = 0.0
        for k in range(m):
            g = awake[k]
            pred = 0.0
            for i in range(theta.shape[1]):
                pred += theta[g, i] * X[r, i]
            mixture += p[k] * (clip_unit(pred) if clip else pred)
        out[r] = mixture


@njit(cache=True)
def groupwise_omd_observe(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    R: FloatArray,
    C: FloatArray,
    counts: FloatArray,
    X: FloatArray,
    y: FloatArray,
    A: NDArray[np.uint8],
    uniforms: FloatArray,
    clip: bool,
    diameter: float,
    grad_bound: float,
    delta: float,
    served: FloatArray,
    expected_loss: FloatArray,
    mixture_pred: FloatArray,
    drawn: IntArray,
) -> None:
    """Prequential micro-batch with optimistic-OGD experts (``xhat[g]``, ``hint[g]``); fills
    the same outputs as :func:`groupwise_ridge_observe`."""
    n_groups = R.shape[0]
    awake = np.empty(n_groups, dtype=np.int64)
    p = np.empty(n_groups)
    f = np.empty(n_groups)
    played = np.empty(xhat.shape[1])
    for r in range(X.shape[0]):
        m = awake_groups(A, r, awake)
        anh_probabilities(R, C, awake, m, p)
        for k in range(m):
            g = awake[k]
            pred = omd_update_one(xhat[g], hint[g], variations, g, X[r], y[r], diameter, grad_bound, delta, played)
            f[k] = clip_unit(pred) if clip else pred
            counts[g] += 1.0
        expected, mixture, chosen = anh_settle(R, C, awake, m, p, f, y[r], uniforms[r])
        expected_loss[r] = expected
        mixture_pred[r] = mixture
        served[r] = mixture if chosen < 0 else f[chosen]
        drawn[r] = -1 if chosen < 0 else awake[chosen]


@njit(cache=True)
def groupwise_omd_predict(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    R: FloatArray,
    C: FloatArray,
    X: FloatArray,
    A: NDArray[np.uint8],
    clip: bool,
    diameter: float,
    grad_bound: float,
    delta: float,
    out: FloatArray,
) -> None:
    """Mixture predictions ``p . f`` for every row with optimistic-OGD experts."""
    n_groups = R.shape[0]
    awake = np.empty(n_groups, dtype=np.int64)
    p = np.empty(n_groups)
    played = np.empty(xhat.shape[1])
    for r in range(X.shape[0]):
        m = awake_groups(A, r, awake)
        anh_probabilities(R, C, awake, m, p)
        mixture = 0.0
        for k in range(m):
            g = awake[k]
            pred = omd_predict_one(xhat[g], hint[g], variations[g], X[r], diameter, grad_bound, delta, played)
            mixture += p[k] * (clip_unit(pred) if clip else pred)
        out[r] = mixture


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    n_groups, d = 2, 2
    X = np.ones((1, d))
    y = np.ones(1)
    A = np.ones((1, n_groups), dtype=np.uint8)
    served, expected, mixture, drawn = np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, dtype=np.int64)
    for clip in (False, True):
        P = np.stack([np.eye(d)] * n_groups)
        theta = np.zeros((n_groups, d))
        R, C, counts = np.zeros(n_groups), np.zeros(n_groups), np.zeros(n_groups)
        groupwise_ridge_observe(P, theta, R, C, counts, X, y, A, np.full(1, 0.5), clip, served, expected, mixture, drawn)
        groupwise_ridge_predict(theta, R, C, X, A, clip, served)
        xhat, hint, var = np.zeros((n_groups, d)), np.zeros((n_groups, d)), np.zeros(n_groups)
        groupwise_omd_observe(
            xhat, hint, var, R, C, counts, X, y, A, np.full(1, -1.0), clip, 10.0, 1.0, 1.0, served, expected, mixture, drawn
        )
        groupwise_omd_predict(xhat, hint, var, R, C, X, A, clip, 10.0, 1.0, 1.0, served)
    awake = np.zeros(n_groups, dtype=np.int64)
    anh_probabilities(np.zeros(n_groups), np.zeros(n_groups), awake, n_groups, np.zeros(n_groups))
