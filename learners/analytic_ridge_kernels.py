"""Kernels of the analytic (recursive ridge) classifier, AEF-OCL.

State: ``R`` (d x d), the inverse of the regularised Gram matrix
``(gamma I + sum phi phi^T)^{-1}``, and ``W`` (d x C), the ridge weights on one-hot
targets, one column per class in order of first appearance. After any sequence of
updates, whatever the batching, ``W = R sum phi y^T``: the batch ridge solution on
every row seen (the "joint-learning" equivalence of analytic learning).

Three ways to learn a block of rows, all exact in exact arithmetic:

- :func:`sherman_morrison_observe`: one rank-1 update per row (about 3 d^2 + 2 d C
  multiply-adds a row). Each row's arithmetic depends only on the state and that row,
  so the state is bit-identical however the rows were split into micro-batches.
- :func:`cholesky_observe`: one block (Woodbury) update per micro-batch in numba
  loops. ``S = I + Phi R Phi^T = L D L^T``; the forward substitution ``L^{-1} E``
  of the block's errors against the old weights gives every row's *a-priori*
  error, i.e. the prequential predictions and the regret terms, exactly as if the rows
  had been learned one by one.
- :func:`blas_observe` (plain numpy, BLAS calls): the same block update for large ``d``.

``R`` stays exactly symmetric: the rank-1 downdate subtracts ``t t^T`` with
``t = u / sqrt(s)`` (``t_i t_j == t_j t_i`` in floating point), the block downdates
compute the upper triangle and mirror it.

Regret bookkeeping (exact, real rows only): a row's a-priori error ``e = y - W^T phi``
has squared norm ``loss``; with ``s = 1 + phi^T R phi`` the hindsight ridge objective
``J* = min_W sum ||y - W^T phi||^2 + gamma ||W||^2`` grows by ``loss / s``, so
``regret = sum loss - J*`` costs nothing beyond the update.

All numba kernels are pure functions over float64 (and int64 label) arrays; arrays
they update are passed in and changed in place.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@njit(cache=True)
def expand_relu(X: FloatArray, W_buf: FloatArray, out: FloatArray) -> None:
    """Random ReLU expansion ``out[r] = max(0, W_buf @ X[r])`` (no bias), row by row."""
    d = W_buf.shape[0]
    d_in = W_buf.shape[1]
    for r in range(X.shape[0]):
        for i in range(d):
            s = 0.0
            for j in range(d_in):
                s += W_buf[i, j] * X[r, j]
            out[r, i] = s if s > 0.0 else 0.0


@njit(cache=True)
def linear_logits(W: FloatArray, Phi: FloatArray, out: FloatArray) -> None:
    """``out = Phi @ W`` in fixed summation order (no BLAS), so results do not depend on batch size."""
    d = W.shape[0]
    C = W.shape[1]
    for r in range(Phi.shape[0]):
        for c in range(C):
            out[r, c] = 0.0
        for i in range(d):
            p = Phi[r, i]
            if p != 0.0:
                for c in range(C):
                    out[r, c] += p * W[i, c]


@njit(cache=True)
def sherman_morrison_update_one(
    R: FloatArray, W: FloatArray, phi: FloatArray, label: int, logits: FloatArray, u: FloatArray
) -> tuple[float, float]:
    """Learn one row of class ``label``; return ``(loss, s)``.

    ``logits`` (C) receives the a-priori output ``W^T phi`` (the prequential
    prediction); ``u`` (d) is scratch. ``loss = ||onehot - logits||^2`` and
    ``s = 1 + phi^T R phi``.
    """
    d = R.shape[0]
    C = W.shape[1]
    for c in range(C):
        logits[c] = 0.0
    for i in range(d):
        p = phi[i]
        if p != 0.0:
            for c in range(C):
                logits[c] += p * W[i, c]
    # u = R phi as a sweep over R's rows (R is symmetric: every update subtracts t t^T): the
    # inner loop is then an axpy that vectorises, where a dot product per row is a serial
    # floating-point sum. Each u[i] adds the same terms in the same order (j ascending);
    # zero inputs (half of a ReLU expansion) are skipped.
    for i in range(d):
        u[i] = 0.0
    for j in range(d):
        p = phi[j]
        if p != 0.0:
            for i in range(d):
                u[i] += R[j, i] * p
    s = 1.0
    for i in range(d):
        s += phi[i] * u[i]
    loss = 0.0
    for c in range(C):
        e = -logits[c]
        if c == label:
            e += 1.0
        loss += e * e
    # W += (u / s) e^T with e = onehot - logits; R -= t t^T with t = u / sqrt(s)
    for i in range(d):
        k = u[i] / s
        if k != 0.0:
            for c in range(C):
                e = -logits[c]
                if c == label:
                    e += 1.0
                W[i, c] += k * e
    root = np.sqrt(s)
    for i in range(d):
        u[i] = u[i] / root
    for i in range(d):
        ti = u[i]
        if ti != 0.0:
            for j in range(d):
                R[i, j] -= ti * u[j]
    return loss, s


@njit(cache=True)
def sherman_morrison_observe(
    R: FloatArray, W: FloatArray, Phi: FloatArray, labels: IntArray, logits: FloatArray, losses: FloatArray, s_values: FloatArray
) -> None:
    """Prequential block, one rank-1 update per row.

    ``logits[r]`` is row r's output before it is learned, ``losses[r]`` its squared
    one-hot error and ``s_values[r]`` its ``1 + phi^T R phi``.
    """
    u = np.empty(R.shape[0])
    for r in range(Phi.shape[0]):
        loss, s = sherman_morrison_update_one(R, W, Phi[r], labels[r], logits[r], u)
        losses[r] = loss
        s_values[r] = s


@njit(cache=True)
def cholesky_observe(
    R: FloatArray, W: FloatArray, Phi: FloatArray, labels: IntArray, logits: FloatArray, losses: FloatArray, s_values: FloatArray
) -> None:
    """Prequential block with one Woodbury update (numba loops), same outputs as
    :func:`sherman_morrison_observe` up to rounding.

    ``U = R Phi^T``, ``S = I + Phi U = L D L^T`` (unit lower ``L``),
    innovations ``E = L^{-1} (Y - Phi W)`` (row r: the a-priori error of row r),
    ``G = U L^{-T}``; then ``W += G D^{-1} E`` and ``R -= G D^{-1} G^T``.
    """
    d = R.shape[0]
    C = W.shape[1]
    B = Phi.shape[0]
    if B == 0:
        return
    U = np.zeros((B, d))  # row b holds (R phi_b)^T
    for b in range(B):
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += R[i, j] * Phi[b, j]
            U[b, i] = acc
    S = np.empty((B, B))
    for a in range(B):
        for b in range(a + 1):
            acc = 0.0
            for i in range(d):
                acc += Phi[a, i] * U[b, i]
            S[a, b] = acc
            S[b, a] = acc
        S[a, a] += 1.0
    # LDL^T, unit lower L stored below the diagonal of S, D separately
    D = np.empty(B)
    for j in range(B):
        acc = S[j, j]
        for k in range(j):
            acc -= S[j, k] * S[j, k] * D[k]
        D[j] = acc
        for i in range(j + 1, B):
            v = S[i, j]
            for k in range(j):
                v -= S[i, k] * S[j, k] * D[k]
            S[i, j] = v / D[j]
    # a-priori outputs against the old W, then innovations by forward substitution
    E = np.empty((B, C))
    for b in range(B):
        for c in range(C):
            acc = 0.0
            for i in range(d):
                acc += Phi[b, i] * W[i, c]
            E[b, c] = -acc
        E[b, labels[b]] += 1.0
    for b in range(B):
        for k in range(b):
            lbk = S[b, k]
            for c in range(C):
                E[b, c] -= lbk * E[k, c]
        loss = 0.0
        for c in range(C):
            e = E[b, c]
            loss += e * e
            logits[b, c] = -e
        logits[b, labels[b]] += 1.0
        losses[b] = loss
        s_values[b] = D[b]
    # G = U L^{-T}, i.e. rows of G^T = L^{-1} (rows of U): forward substitution
    for b in range(B):
        for k in range(b):
            lbk = S[b, k]
            for i in range(d):
                U[b, i] -= lbk * U[k, i]
    for i in range(d):
        for c in range(C):
            acc = 0.0
            for b in range(B):
                acc += U[b, i] * E[b, c] / D[b]
            W[i, c] += acc
    for b in range(B):
        root = np.sqrt(D[b])
        for i in range(d):
            U[b, i] /= root
    for i in range(d):
        for j in range(i, d):
            acc = 0.0
            for b in range(B):
                acc += U[b, i] * U[b, j]
            R[i, j] -= acc
            if j != i:
                R[j, i] = R[i, j]


@njit(cache=True)
def welford_update(counts: IntArray, means: FloatArray, m2: FloatArray, X: FloatArray, labels: IntArray) -> None:
    """Per-class running mean and sum of squared deviations, one row at a time (Welford)."""
    d_in = X.shape[1]
    for r in range(X.shape[0]):
        c = labels[r]
        counts[c] += 1
        n = counts[c]
        for j in range(d_in):
            delta = X[r, j] - means[c, j]
            means[c, j] += delta / n
            m2[c, j] += delta * (X[r, j] - means[c, j])


@njit(cache=True)
def gram_update(A: FloatArray, M: FloatArray, Phi: FloatArray, labels: IntArray) -> None:
    """``A += phi phi^T`` and ``M[:, label] += phi`` row by row (the generator's sufficient statistics)."""
    d = A.shape[0]
    for r in range(Phi.shape[0]):
        for i in range(d):
            p = Phi[r, i]
            if p != 0.0:
                for j in range(d):
                    A[i, j] += p * Phi[r, j]
                M[i, labels[r]] += p


@njit(cache=True)
def masked_argmax(logits: FloatArray, mask: BoolArray, out: IntArray) -> None:
    """``out[r]`` = arg-max of ``logits[r, c]`` over ``mask[r, c]`` (first on ties), -1 if none."""
    for r in range(logits.shape[0]):
        best = -1
        best_value = 0.0
        for c in range(logits.shape[1]):
            if mask[r, c]:
                v = logits[r, c]
                if best < 0 or v > best_value:
                    best = c
                    best_value = v
        out[r] = best


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows (float64) for integer class indices."""
    Y = np.zeros((labels.shape[0], n_classes))
    Y[np.arange(labels.shape[0]), labels] = 1.0
    return Y


def blas_observe(
    R: FloatArray, W: FloatArray, Phi: FloatArray, labels: IntArray, logits: FloatArray, losses: FloatArray, s_values: FloatArray
) -> None:
    """The block update of :func:`cholesky_observe` with numpy/BLAS calls (in place).

    Uses a Cholesky factor ``S = L_c L_c^T`` (``L_c = L D^{1/2}``); the innovations
    are ``D^{1/2} L_c^{-1} (Y - Phi W)``.
    """
    from scipy.linalg import solve_triangular

    if Phi.shape[0] == 0:
        return
    U = R @ Phi.T  # d x B
    S = Phi @ U
    S = 0.5 * (S + S.T)
    S[np.diag_indices_from(S)] += 1.0
    L = np.linalg.cholesky(S)
    root_d = np.diag(L).copy()
    apriori = Phi @ W
    E = one_hot(labels, W.shape[1]) - apriori
    scaled = solve_triangular(L, E, lower=True)  # D^{-1/2} innovations
    innovations = scaled * root_d[:, None]
    logits[:] = one_hot(labels, W.shape[1]) - innovations
    losses[:] = np.einsum("bc,bc->b", innovations, innovations)
    s_values[:] = root_d * root_d
    H = solve_triangular(L, U.T, lower=True)  # B x d, = L_c^{-1} U^T
    W += H.T @ scaled
    R -= H.T @ H
    R[:] = 0.5 * (R + R.T)


def woodbury_weights(R: FloatArray, W: FloatArray, Phi: FloatArray, labels: IntArray, chunk: int) -> np.ndarray:
    """Weights after also learning ``(Phi, labels)``, without touching ``R`` or ``W``.

    Used for the pseudo-feature generator: the rows are applied in blocks of
    ``chunk`` with BLAS calls on copies; the last block skips the ``R`` downdate.
    """
    from scipy.linalg import solve_triangular

    W_out = W.copy()
    n = Phi.shape[0]
    if n == 0:
        return W_out
    R_work = R if n <= chunk else R.copy()
    for start in range(0, n, chunk):
        block = Phi[start : start + chunk]
        Y = one_hot(labels[start : start + chunk], W.shape[1])
        U = R_work @ block.T
        S = block @ U
        S = 0.5 * (S + S.T)
        S[np.diag_indices_from(S)] += 1.0
        L = np.linalg.cholesky(S)
        scaled = solve_triangular(L, Y - block @ W_out, lower=True)
        H = solve_triangular(L, U.T, lower=True)
        W_out += H.T @ scaled
        if start + chunk < n:
            R_work -= H.T @ H
            R_work[:] = 0.5 * (R_work + R_work.T)
    return W_out


def information_weights(A: FloatArray, M: FloatArray, gamma: float, Phi: FloatArray, labels: IntArray) -> np.ndarray:
    """``(A + gamma I + Phi^T Phi)^{-1} (M + Phi^T Y)`` by one Cholesky solve (BLAS/LAPACK).

    Cheaper than :func:`woodbury_weights` when there are more than about ``d / 4``
    appended rows.
    """
    from scipy.linalg import cho_factor, cho_solve

    G = A + Phi.T @ Phi
    G = 0.5 * (G + G.T)
    G[np.diag_indices_from(G)] += gamma
    rhs = M + Phi.T @ one_hot(labels, M.shape[1])
    return cho_solve(cho_factor(G, lower=True), rhs)


def warm_up() -> None:
    """Compile (or load from cache) every numba kernel of this module on tiny inputs."""
    R = np.eye(3)
    W = np.zeros((3, 2))
    X = np.ones((2, 2))
    W_buf = np.ones((3, 2))
    Phi = np.empty((2, 3))
    expand_relu(X, W_buf, Phi)
    labels = np.array([0, 1], dtype=np.int64)
    logits = np.empty((2, 2))
    losses = np.empty(2)
    s_values = np.empty(2)
    sherman_morrison_observe(R, W, Phi, labels, logits, losses, s_values)
    cholesky_observe(R, W, Phi, labels, logits, losses, s_values)
    linear_logits(W, Phi, logits)
    counts = np.zeros(2, dtype=np.int64)
    welford_update(counts, np.zeros((2, 2)), np.zeros((2, 2)), X, labels)
    gram_update(np.zeros((3, 3)), np.zeros((3, 2)), Phi, labels)
    masked_argmax(logits, np.ones((2, 2), dtype=np.bool_), np.empty(2, dtype=np.int64))
