"""Numba kernels of the linear contextual-bandit baselines (disjoint LinUCB, epsilon-greedy).

Each arm ``a`` keeps ``P[a] = (lam I + sum x x^T)^{-1}`` and ``w[a] = P[a] sum r x``
over the contexts it was played on; the update is the exact recursive-least-squares
step of :func:`regretflow.learners.ridge_kernels.ridge_update_one` (no forgetting).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from .ridge_kernels import ridge_update_one

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@njit(cache=True)
def disjoint_scores(P: FloatArray, w: FloatArray, x: FloatArray, alpha: float, out: FloatArray) -> None:
    """``out[a] = w[a].x + alpha sqrt(x^T P[a] x)`` for every arm (``alpha = 0``: the mean)."""
    k, d = w.shape
    for a in range(k):
        mean = 0.0
        for i in range(d):
            mean += w[a, i] * x[i]
        width = 0.0
        if alpha != 0.0:
            for i in range(d):
                s = 0.0
                for j in range(d):
                    s += P[a, i, j] * x[j]
                width += x[i] * s
        out[a] = mean + alpha * math.sqrt(max(width, 0.0))


@njit(cache=True)
def shared_scores(P: FloatArray, w: FloatArray, A: FloatArray, alpha: float, out: FloatArray) -> None:
    """``out[a] = w.A[a] + alpha sqrt(A[a]^T P A[a])``: one model over per-action features."""
    k, d = A.shape
    for a in range(k):
        mean = 0.0
        width = 0.0
        for i in range(d):
            mean += w[i] * A[a, i]
            if alpha != 0.0:
                s = 0.0
                for j in range(d):
                    s += P[i, j] * A[a, j]
                width += A[a, i] * s
        out[a] = mean + alpha * math.sqrt(max(width, 0.0))


@njit(cache=True)
def update_arm(P: FloatArray, w: FloatArray, arm: int, x: FloatArray, reward: float, scratch: FloatArray) -> float:
    """Exact ridge update of arm ``arm`` with ``(x, reward)``; returns the prior prediction."""
    return ridge_update_one(P[arm], w[arm], x, reward, 1.0, 0.0, scratch)


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    P = np.stack([np.eye(2), np.eye(2)])
    w = np.zeros((2, 2))
    out = np.zeros(2)
    disjoint_scores(P, w, np.ones(2), 1.0, out)
    shared_scores(P[0], w[0], np.ones((2, 2)), 1.0, out)
    update_arm(P, w, 1, np.ones(2), 1.0, np.zeros(2))
