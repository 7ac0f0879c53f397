"""Regret of fair learners where a simulator knows every label and every auditor's metric.

Two yardsticks (papers/fair_onesided.md, section 4):

- :class:`FairRegretTracker`, exact and online, O(N k) per round, O(N) state: the
  learner's expected Lagrangian cost ``sum_t sum_i q_i c_i`` (``c_i = 1 - 2 y_i + f_i``
  with the learner's own panel-kept pairs and multiplier C) against the best fixed
  policy of the class on the same costs, and the same for the expected number of
  mistakes ``sum_i y_i + q_i (1 - 2 y_i)``.
- :func:`fair_comparator`, offline: the fewest expected mistakes of a fixed mixture
  ``p`` of the class that is fair on every round,
  ``sum_n p_n (h_n(x_i) - h_n(x_l)) <= d_t(x_i, x_l) + alpha_prime`` for every pair,
  a linear program solved with HiGHS by row generation (only violated constraints
  are added). Its state is every round, so it is not O(1): it serves simulations
  and checkpoints, never the live path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linprog

from regretflow.learners import fair_kernels as K
from regretflow.learners.contract import check_state, expect_array


class FairRegretTracker:
    """Exact Lagrangian and mistake regret of a randomised fair learner against a finite class.

    Parameters
    ----------
    weights, offsets
        The class ``h_n(x) = 1[weights[n] . x >= offsets[n]]`` (the learner's).
    keep_rounds
        Also keep each round's class matrix, labels and pairs for :func:`fair_comparator`.

    Examples
    --------
    >>> import numpy as np
    >>> tracker = FairRegretTracker([[1.0], [-1.0]], [0.5, -0.5])
    >>> X = np.array([[0.9], [0.1]]); y = np.array([1.0, 0.0])
    >>> tracker.update(X, y, np.array([0.5, 0.5]))   # a coin flip between the two policies
    >>> tracker.learner_errors, tracker.policy_errors.tolist(), tracker.error_regret()
    (1.0, [0.0, 2.0], 1.0)
    """

    def __init__(self, weights: Any, offsets: Any, keep_rounds: bool = False):
        self.W = np.ascontiguousarray(weights, dtype=np.float64)
        self.b = np.ascontiguousarray(offsets, dtype=np.float64).reshape(-1)
        self.keep_rounds = keep_rounds
        N = self.W.shape[0]
        self.policy_errors = np.zeros(N)
        self.policy_lagrangian = np.zeros(N)
        self.learner_errors = 0.0
        self.learner_lagrangian = 0.0
        self.rounds = 0
        self.class_rounds: list[np.ndarray] = []
        self.label_rounds: list[np.ndarray] = []

    def update(self, X: np.ndarray, y: np.ndarray, q: np.ndarray, kept: np.ndarray | None = None,
               fairness_weight: float = 0.0) -> None:
        """Add one round: individuals, true labels, the learner's q, its kept pairs and C."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        V = np.empty((self.W.shape[0], X.shape[0]))
        K.evaluate_class(self.W, self.b, X, V)
        c = 1.0 - 2.0 * y
        if kept is not None and fairness_weight > 0.0:
            f = np.zeros(X.shape[0])
            K.fairness_costs(np.ascontiguousarray(kept, dtype=np.float64), float(fairness_weight), f)
            c = c + f
        self.learner_errors += K.expected_errors(q, y)
        self.learner_lagrangian += float(q @ c)
        self.policy_errors += y.sum() + V @ (1.0 - 2.0 * y)
        self.policy_lagrangian += V @ c
        self.rounds += 1
        if self.keep_rounds:
            self.class_rounds.append(V.astype(np.int8))
            self.label_rounds.append(y.copy())

    def lagrangian_regret(self) -> float:
        """Learner's expected Lagrangian cost minus the best fixed policy's (same costs)."""
        return self.learner_lagrangian - float(self.policy_lagrangian.min()) if self.rounds else 0.0

    def error_regret(self) -> float:
        """Learner's expected mistakes minus the best fixed policy's (no fairness constraint)."""
        return self.learner_errors - float(self.policy_errors.min()) if self.rounds else 0.0

    def state_dict(self) -> dict[str, Any]:
        state = {"policy_errors": self.policy_errors.copy(), "policy_lagrangian": self.policy_lagrangian.copy(),
                 "learner_errors": float(self.learner_errors), "learner_lagrangian": float(self.learner_lagrangian),
                 "rounds": int(self.rounds)}
        check_state(state, "FairRegretTracker")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        N = self.W.shape[0]
        self.policy_errors = expect_array(state, "policy_errors", (N,), "FairRegretTracker")
        self.policy_lagrangian = expect_array(state, "policy_lagrangian", (N,), "FairRegretTracker")
        self.learner_errors = float(state["learner_errors"])
        self.learner_lagrangian = float(state["learner_lagrangian"])
        self.rounds = int(state["rounds"])


class FairComparator:
    """The solution of :func:`fair_comparator`."""

    def __init__(self, errors: float, weights: np.ndarray, constraints_used: int, constraints_total: int,
                 iterations: int):
        self.errors = errors
        self.weights = weights
        self.constraints_used = constraints_used
        self.constraints_total = constraints_total
        self.iterations = iterations

    def __repr__(self) -> str:
        return (f"FairComparator(errors={self.errors:.6g}, constraints_used={self.constraints_used}, "
                f"constraints_total={self.constraints_total}, iterations={self.iterations})")


def fair_comparator(class_rounds: list[np.ndarray], label_rounds: list[np.ndarray], bound_rounds: list[np.ndarray],
                    alpha_prime: float = 0.0, batch: int = 4000, tolerance: float = 1e-9,
                    max_iterations: int = 200) -> FairComparator:
    """Fewest expected mistakes of a fixed mixture of the class that is fair on every round.

    Minimise ``sum_n p_n sum_t sum_i [y_ti + h_n(x_ti)(1 - 2 y_ti)]`` over ``p`` in the
    simplex subject to ``sum_n p_n (h_n(x_ti) - h_n(x_tl)) <= D_t[i, l] + alpha_prime``
    for every round and ordered pair. Constraints with a bound >= 1, or that no mixture
    can break, are dropped; the rest enter by row generation (the ``batch`` most
    violated at a time) until the solution breaks none by more than ``tolerance``.

    Parameters
    ----------
    class_rounds
        Per round, the (N, k) 0/1 matrix ``h_n(x_ti)``.
    label_rounds
        Per round, the k true labels.
    bound_rounds
        Per round, the (k, k) distances ``D_t`` (e.g. the panel's ``d_t^gamma``).

    Examples
    --------
    Two people who must be treated alike (distance 0.2) but have different labels:
    the best fair mixture of "accept both", "accept the first" and "reject both"
    accepts the first with probability at most 0.2 more than the second.

    >>> import numpy as np
    >>> V = np.array([[1, 1], [1, 0], [0, 0]])
    >>> D = np.array([[0.0, 0.2], [0.2, 0.0]])
    >>> best = fair_comparator([V], [np.array([1.0, 0.0])], [D])
    >>> round(best.errors, 6), round(float(best.weights[1]), 6)
    (0.8, 0.2)
    """
    N = class_rounds[0].shape[0]
    cost = np.zeros(N)
    constant = 0.0
    rows, bounds = [], []
    for V, y, D in zip(class_rounds, label_rounds, bound_rounds):
        V = V.astype(np.float64)
        cost += V @ (1.0 - 2.0 * y)
        constant += float(y.sum())
        k = V.shape[1]
        for i in range(k):
            for l in range(k):
                if i == l:
                    continue
                bound = float(D[i, l]) + alpha_prime
                if bound >= 1.0:
                    continue
                row = V[:, i] - V[:, l]
                if row.max() <= bound:
                    continue
                rows.append(row.astype(np.int8))
                bounds.append(bound)
    total = len(rows)
    A_all = np.array(rows, dtype=np.int8).reshape(total, N)
    b_all = np.array(bounds, dtype=np.float64)
    active = np.zeros(total, dtype=bool)
    iterations = 0
    while True:
        iterations += 1
        A = A_all[active].astype(np.float64) if active.any() else None
        res = linprog(cost, A_ub=A, b_ub=b_all[active] if active.any() else None, A_eq=np.ones((1, N)),
                      b_eq=np.array([1.0]), bounds=(0.0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"fair comparator LP failed: {res.message}")
        p = res.x
        if total == 0:
            break
        excess = A_all @ p - b_all if total < 200_000 else _chunked_excess(A_all, b_all, p)
        excess[active] = -np.inf
        violated = np.nonzero(excess > tolerance)[0]
        if violated.size == 0 or iterations >= max_iterations:
            break
        worst = violated[np.argsort(-excess[violated])[:batch]]
        active[worst] = True
    return FairComparator(float(constant + cost @ p), p, int(active.sum()), total, iterations)


def _chunked_excess(A: np.ndarray, b: np.ndarray, p: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    out = np.empty(A.shape[0])
    for start in range(0, A.shape[0], chunk):
        out[start:start + chunk] = A[start:start + chunk] @ p - b[start:start + chunk]
    return out
