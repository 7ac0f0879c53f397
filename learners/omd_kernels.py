"""Numba kernels of optimistic online mirror descent, Euclidean case, for least squares.

Optimistic online gradient descent (Chen, Zhang, Tu, Zhao, Zhang, ICML 2023) on the
loss ``f_t(w) = 0.5 * (w.z_t - y_t)**2`` over the ball ``||w|| <= diameter / 2``,
with the last gradient as the hint and the anytime convex step size
``eta_t = diameter / sqrt(delta + 4 grad_bound**2 + V_{t-1})``, where
``V_t = sum_s ||g_s - M_s||**2``. One round, with the same ``eta_t`` in both
half-steps:

1. play ``w_t = Proj(xhat_t - eta_t M_t)`` and predict ``w_t . z_t``;
2. ``g_t = (w_t . z_t - y_t) z_t`` (the gradient at the played point);
3. ``xhat_{t+1} = Proj(xhat_t - eta_t g_t)``;
4. ``V_t = V_{t-1} + ||g_t - M_t||**2`` and ``M_{t+1} = g_t``.

State per model: ``xhat`` (d), ``hint`` (d) and one slot ``V[k]`` of an array, so
that one array holds the variation of many models (one per group). O(d) per round.

All kernels are pure functions over float64 arrays; the arrays they update are
passed in and changed in place.
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
def omd_step_size(variation: float, diameter: float, grad_bound: float, delta: float) -> float:
    """``diameter / sqrt(delta + 4 grad_bound**2 + variation)``."""
    return diameter / math.sqrt(delta + 4.0 * grad_bound * grad_bound + variation)


@njit(cache=True)
def project_to_ball(v: FloatArray, radius: float) -> None:
    """Scale ``v`` in place onto the ball of ``radius`` if it lies outside."""
    norm_sq = 0.0
    for i in range(v.shape[0]):
        norm_sq += v[i] * v[i]
    if norm_sq > radius * radius:
        scale = radius / math.sqrt(norm_sq)
        for i in range(v.shape[0]):
            v[i] *= scale


@njit(cache=True)
def omd_played_point(
    xhat: FloatArray, hint: FloatArray, variation: float, diameter: float, grad_bound: float, delta: float, played: FloatArray
) -> None:
    """Write the point played this round, ``Proj(xhat - eta hint)``, into ``played``."""
    eta = omd_step_size(variation, diameter, grad_bound, delta)
    for i in range(xhat.shape[0]):
        played[i] = xhat[i] - eta * hint[i]
    project_to_ball(played, 0.5 * diameter)


@njit(cache=True)
def omd_predict_one(
    xhat: FloatArray,
    hint: FloatArray,
    variation: float,
    x: FloatArray,
    diameter: float,
    grad_bound: float,
    delta: float,
    played: FloatArray,
) -> float:
    """The prediction ``w_t . x`` of the played point; changes nothing but ``played``."""
    omd_played_point(xhat, hint, variation, diameter, grad_bound, delta, played)
    pred = 0.0
    for i in range(x.shape[0]):
        pred += played[i] * x[i]
    return pred


@njit(cache=True)
def omd_update_one(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    k: int,
    x: FloatArray,
    y: float,
    diameter: float,
    grad_bound: float,
    delta: float,
    played: FloatArray,
) -> float:
    """One round for the model whose variation is ``variations[k]``; returns its prediction.

    ``played`` is scratch (d); on return it holds the point that was played.
    """
    eta = omd_step_size(variations[k], diameter, grad_bound, delta)
    for i in range(xhat.shape[0]):
        played[i] = xhat[i] - eta * hint[i]
    project_to_ball(played, 0.5 * diameter)
    pred = 0.0
    for i in range(x.shape[0]):
        pred += played[i] * x[i]
    residual = pred - y
    added = 0.0
    for i in range(x.shape[0]):
        grad = residual * x[i]
        diff = grad - hint[i]
        added += diff * diff
        xhat[i] -= eta * grad
        hint[i] = grad
    project_to_ball(xhat, 0.5 * diameter)
    variations[k] += added
    return pred


@njit(cache=True)
def omd_observe(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    X: FloatArray,
    y: FloatArray,
    diameter: float,
    grad_bound: float,
    delta: float,
    preds: FloatArray,
) -> None:
    """Prequential micro-batch for one model (``variations`` has one slot)."""
    played = np.empty(xhat.shape[0])
    for r in range(X.shape[0]):
        preds[r] = omd_update_one(xhat, hint, variations, 0, X[r], y[r], diameter, grad_bound, delta, played)


@njit(cache=True)
def omd_observe_adaptive(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    diameter: FloatArray,
    X: FloatArray,
    y: FloatArray,
    grad_bound: float,
    delta: float,
    preds: FloatArray,
) -> None:
    """Prequential micro-batch with an adaptive ball: ``diameter[0]`` doubles, before the
    round is played, in a round whose update would leave the ball although the step is
    stable for that row (``eta ||x||^2 <= 1``: the update cannot overshoot the row's
    target).

    A fixed ball caps the weights at ``diameter / 2`` whatever the data needs (an
    intercept of 8 behind a scaler, say). An update that leaves the ball with a stable
    step means the data pulls the weights outward, so the ball doubles, O(log) times in
    all; leaving it with an unstable step (or through the optimistic hint) is the early
    overshoot, which the step-size schedule damps on its own: doubling then would only
    enlarge the step. Wherever the ball is large enough the algorithm is the fixed-ball
    one. Row by row, so the result does not depend on how rows are batched.
    """
    played = np.empty(xhat.shape[0])
    for r in range(X.shape[0]):
        preds[r] = omd_adaptive_update_one(xhat, hint, variations, diameter, X[r], y[r], grad_bound, delta, played)


@njit(cache=True)
def omd_adaptive_update_one(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    diameter: FloatArray,
    x: FloatArray,
    y: float,
    grad_bound: float,
    delta: float,
    played: FloatArray,
) -> float:
    """One round of :func:`omd_observe_adaptive`; returns the prediction. ``played`` is scratch (d)."""
    d = xhat.shape[0]
    radius = 0.5 * diameter[0]
    eta = omd_step_size(variations[0], diameter[0], grad_bound, delta)
    x_sq = 0.0
    for i in range(d):
        x_sq += x[i] * x[i]
    if eta * x_sq <= 1.0:
        omd_played_point(xhat, hint, variations[0], diameter[0], grad_bound, delta, played)
        pred = 0.0
        for i in range(d):
            pred += played[i] * x[i]
        residual = pred - y
        norm_sq = 0.0
        for i in range(d):
            v = xhat[i] - eta * residual * x[i]
            norm_sq += v * v
        if norm_sq > radius * radius:
            diameter[0] *= 2.0
    return omd_update_one(xhat, hint, variations, 0, x, y, diameter[0], grad_bound, delta, played)


@njit(cache=True)
def omd_learn_one(
    xhat: FloatArray,
    hint: FloatArray,
    variations: FloatArray,
    diameter: FloatArray,
    adaptive: bool,
    x: FloatArray,
    y: float,
    grad_bound: float,
    delta: float,
    played: FloatArray,
    next_played: FloatArray,
) -> float:
    """One round (adaptive ball or fixed ``diameter[0]``) and the point the next round
    will play, written to ``next_played`` (so a prediction is one dot product); returns
    the round's prediction. ``played`` is scratch (d)."""
    if adaptive:
        pred = omd_adaptive_update_one(xhat, hint, variations, diameter, x, y, grad_bound, delta, played)
    else:
        pred = omd_update_one(xhat, hint, variations, 0, x, y, diameter[0], grad_bound, delta, played)
    omd_played_point(xhat, hint, variations[0], diameter[0], grad_bound, delta, next_played)
    return pred


@njit(cache=True)
def played_dot(played: FloatArray, x: FloatArray) -> float:
    """``played . x``: one prediction from the point the round will play."""
    s = 0.0
    for i in range(played.shape[0]):
        s += played[i] * x[i]
    return s


@njit(cache=True)
def omd_predict(
    xhat: FloatArray, hint: FloatArray, variation: float, X: FloatArray, diameter: float, grad_bound: float, delta: float, out: FloatArray
) -> None:
    """Predictions of the current played point for every row of ``X`` (no state change)."""
    played = np.empty(xhat.shape[0])
    omd_played_point(xhat, hint, variation, diameter, grad_bound, delta, played)
    for r in range(X.shape[0]):
        s = 0.0
        for i in range(played.shape[0]):
            s += X[r, i] * played[i]
        out[r] = s


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    xhat = np.zeros(2)
    hint = np.zeros(2)
    variations = np.zeros(1)
    X = np.ones((1, 2))
    out = np.zeros(1)
    omd_observe(xhat, hint, variations, X, np.ones(1), 10.0, 1.0, 1.0, out)
    omd_observe_adaptive(xhat, hint, variations, np.array([10.0]), X, np.ones(1), 1.0, 1.0, out)
    omd_adaptive_update_one(xhat, hint, variations, np.array([10.0]), X[0], 1.0, 1.0, 1.0, np.zeros(2))
    omd_learn_one(xhat, hint, variations, np.array([10.0]), True, X[0], 1.0, 1.0, 1.0, np.zeros(2), np.zeros(2))
    played_dot(xhat, X[0])
    omd_predict(xhat, hint, 0.0, X, 10.0, 1.0, 1.0, out)
    omd_predict_one(xhat, hint, 0.0, X[0], 10.0, 1.0, 1.0, np.zeros(2))
