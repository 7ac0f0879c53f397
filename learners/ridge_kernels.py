"""Numba kernels of online ridge regression (recursive least squares).

State: ``P`` (d x d, the inverse of the regularised Gram matrix) and ``w`` (d).
With forgetting factor ``beta == 1`` the state after rows ``x_1..x_t`` is exactly
``w = (lam I + sum x x^T)^{-1} sum y x``.

Forgetting (``beta < 1``) divides ``P`` by ``beta`` each step. Plain RLS does so
unconditionally, and in directions the data does not excite ``P`` then grows like
``beta^{-t}`` until it overflows (covariance wind-up: inf/NaN after 1e4-1e5 events).
Here a step forgets only while ``trace(P)`` stays below ``trace_cap`` (the
constant-trace rule), which bounds every eigenvalue of ``P``; with
``trace_cap = d / lam`` the information matrix never falls below what the prior
``lam I`` gave. After each update ``P`` is re-symmetrised, so rounding cannot make it
indefinite.

All kernels are pure functions over float64 arrays; the arrays they update are
passed in and changed in place. The learning kernels release the GIL (``nogil``): a
thread that consumes or decodes the next batch can run beside them (the results are the
same bits either way).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@njit(cache=True, nogil=True)
def ridge_update_one(P: FloatArray, w: FloatArray, x: FloatArray, y: float, beta: float, trace_cap: float, Px: FloatArray) -> float:
    """Learn one row; return the prediction made before learning. ``Px`` is scratch (d)."""
    d = w.shape[0]
    pred = 0.0
    for i in range(d):
        pred += w[i] * x[i]
    xPx = 0.0
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += P[i, j] * x[j]
        Px[i] = s
        xPx += x[i] * s
    # constant-trace rule: forget only if trace(P) after this step stays <= trace_cap
    b = 1.0
    if beta < 1.0:
        trace_after = 0.0
        for i in range(d):
            trace_after += P[i, i] - Px[i] * Px[i] / (1.0 + xPx)
        if trace_after / beta <= trace_cap:
            b = beta
    denom = b + xPx
    err = y - pred
    for i in range(d):
        w[i] += Px[i] / denom * err
    inv_b = 1.0 / b
    for i in range(d):
        ki = Px[i] / denom
        for j in range(i, d):
            v = (P[i, j] - ki * Px[j]) * inv_b
            P[i, j] = v
        # mirror the upper triangle: keeps P exactly symmetric
        for j in range(i):
            P[i, j] = P[j, i]
    return pred


@njit(cache=True, nogil=True)
def ridge_observe(P: FloatArray, w: FloatArray, X: FloatArray, y: FloatArray, beta: float, trace_cap: float, preds: FloatArray) -> None:
    """Prequential micro-batch: ``preds[i]`` is row i's prediction before it is learned."""
    Px = np.empty(w.shape[0])
    for r in range(X.shape[0]):
        preds[r] = ridge_update_one(P, w, X[r], y[r], beta, trace_cap, Px)


@njit(cache=True)
def linear_predict(w: FloatArray, X: FloatArray, out: FloatArray) -> None:
    """``out = X @ w`` without a BLAS call (cheaper than BLAS for small batches)."""
    for r in range(X.shape[0]):
        s = 0.0
        for i in range(w.shape[0]):
            s += X[r, i] * w[i]
        out[r] = s


@njit(cache=True)
def row_dot(w: FloatArray, x: FloatArray) -> float:
    """``w . x`` for one row: the per-event prediction (a numba call costs less than numpy's ``@`` on short rows)."""
    s = 0.0
    for i in range(w.shape[0]):
        s += w[i] * x[i]
    return s


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    P = np.eye(2)
    w = np.zeros(2)
    X = np.ones((1, 2))
    out = np.zeros(1)
    ridge_observe(P, w, X, np.ones(1), 0.99, 2.0, out)
    linear_predict(w, X, out)
    row_dot(w, X[0])
