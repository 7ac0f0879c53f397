"""Regret of fair learners where a simulator knows every label and every auditor's metric.

Two yardsticks (docs/learners/fair-onesided.md and learners/fair.py explain the setting):

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
- :class:`FairnessMonitor` combines both for a simulator driving a learner, with the
  violations every auditor's own metric finds: the daemon exports it
  (``regretflow_simulator_*``) and ``regretflow reproduce fair-onesided`` measures with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linprog

from regretflow.learners import fair_kernels as K
from regretflow.learners.contract import check_state, expect_array
from regretflow.learners.fair import aggregate_panel

if TYPE_CHECKING:
    from regretflow.connectors.simulators.fairness import FairnessSimulator

FloatArray = NDArray[np.float64]


class FairRegretTracker:
    """Exact Lagrangian and mistake regret of a randomised fair learner against a finite class.

    Parameters
    ----------
    weights, offsets
        The class ``h_n(x) = 1[weights[n] . x >= offsets[n]]`` (the learner's).

    Examples
    --------
    >>> import numpy as np
    >>> tracker = FairRegretTracker([[1.0], [-1.0]], [0.5, -0.5])
    >>> X = np.array([[0.9], [0.1]]); y = np.array([1.0, 0.0])
    >>> tracker.update(X, y, np.array([0.5, 0.5]))   # a coin flip between the two policies
    >>> tracker.learner_errors, tracker.policy_errors.tolist(), tracker.error_regret()
    (1.0, [0.0, 2.0], 1.0)
    """

    def __init__(self, weights: ArrayLike, offsets: ArrayLike) -> None:
        self.W = np.ascontiguousarray(weights, dtype=np.float64)
        self.b = np.ascontiguousarray(offsets, dtype=np.float64).reshape(-1)
        N = self.W.shape[0]
        self.policy_errors = np.zeros(N)
        self.policy_lagrangian = np.zeros(N)
        self.learner_errors = 0.0
        self.learner_lagrangian = 0.0
        self.rounds = 0

    def update(self, X: ArrayLike, y: ArrayLike, q: ArrayLike, kept: ArrayLike | None = None, fairness_weight: float = 0.0) -> None:
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

    def lagrangian_regret(self) -> float:
        """Learner's expected Lagrangian cost minus the best fixed policy's (same costs)."""
        return self.learner_lagrangian - float(self.policy_lagrangian.min()) if self.rounds else 0.0

    def error_regret(self) -> float:
        """Learner's expected mistakes minus the best fixed policy's (no fairness constraint)."""
        return self.learner_errors - float(self.policy_errors.min()) if self.rounds else 0.0

    def state_dict(self) -> dict[str, Any]:
        state = {
            "policy_errors": self.policy_errors.copy(),
            "policy_lagrangian": self.policy_lagrangian.copy(),
            "learner_errors": float(self.learner_errors),
            "learner_lagrangian": float(self.learner_lagrangian),
            "rounds": int(self.rounds),
        }
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

    def __init__(self, errors: float, weights: FloatArray, constraints_used: int, constraints_total: int, iterations: int) -> None:
        self.errors = errors
        self.weights = weights
        self.constraints_used = constraints_used
        self.constraints_total = constraints_total
        self.iterations = iterations

    def __repr__(self) -> str:
        return (
            f"FairComparator(errors={self.errors:.6g}, constraints_used={self.constraints_used}, "
            f"constraints_total={self.constraints_total}, iterations={self.iterations})"
        )


def fair_comparator(
    class_rounds: Sequence[NDArray[np.integer[Any]]],
    label_rounds: Sequence[FloatArray],
    bound_rounds: Sequence[FloatArray],
    alpha_prime: float = 0.0,
    batch: int = 4000,
    tolerance: float = 1e-9,
    max_iterations: int = 200,
) -> FairComparator:
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
        res = linprog(
            cost,
            A_ub=A,
            b_ub=b_all[active] if active.any() else None,
            A_eq=np.ones((1, N)),
            b_eq=np.array([1.0]),
            bounds=(0.0, None),
            method="highs",
        )
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


def _chunked_excess(A: NDArray[np.int8], b: FloatArray, p: FloatArray, chunk: int = 100_000) -> FloatArray:
    out = np.empty(A.shape[0])
    for start in range(0, A.shape[0], chunk):
        out[start : start + chunk] = A[start : start + chunk] @ p - b[start : start + chunk]
    return out


class FairnessMonitor:
    """What a fairness simulator measures of the learner it drives: the truth the engine never sees.

    The engine's own gauges stop at what a deployment can see (decisions, revealed
    labels, the panel's reports). A simulator also knows every label and every
    auditor's metric; this monitor turns that into per-round figures for ``/metrics``:

    - the pairs each auditor of the whole pool would flag under its own metric and
      margin (sat on the panel or not), and the panel's violations;
    - the exact Lagrangian regret against the best fixed policy of the class
      (:class:`FairRegretTracker`), every round;
    - the accuracy regret against the best fixed *fair* mixture of the class (the LP
      of :func:`fair_comparator`), re-solved when the round count doubles and at the
      last round, while the rounds are at most ``lp_max_rounds``. Beyond that the LP
      is not solved (its constraints grow with T): ``comparator_available`` says 0,
      the last solution keeps its round count, and the Lagrangian regret, an upper
      bound on it (spec section 3.1), keeps updating.

    The LP needs no stored rounds: the simulator's schedule is seeded, so rounds
    ``0..t-1`` are recomputed from ``t``. State (for checkpoints) is O(N + pool). The
    solve runs on the caller's thread: a simulated run pauses for it (about 1.4 s at
    10,000 rounds, 6-8 s and 0.9 GB at 100,000). Restored from a checkpoint written without monitor
    state (an older release), the LP stays off: the rounds before the restart are unknown.

    The multiplier of round ``t`` is ``fairness_weight(t + 1)``: the closed loop keeps
    one decision in flight, so when round t's audit reaches the learner it has decided
    t + 1 rounds. Scrapes read an immutable snapshot taken after each update, never
    half-updated figures.

    Parameters
    ----------
    sim
        A :class:`~regretflow.connectors.simulators.fairness.FairnessSimulator`.
    weights, offsets
        The learner's class.
    gamma
        The learner's panel threshold.
    fairness_weight
        ``C`` after ``t`` decisions, as the learner's schedule gives it (a callable of t).
    lp_max_rounds, lp_first
        Largest round count for the LP, and the first count it is solved at.
    last_round
        The run's final round count, if known: the LP is also solved there.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.connectors.simulators.fairness import FairnessSimulator
    >>> from regretflow.learners.fair import linear_threshold_class
    >>> sim = FairnessSimulator(n_rounds=8, k=4, seed=0)
    >>> W, b = linear_threshold_class(sim.n_features, n_directions=4, n_offsets=3)
    >>> monitor = FairnessMonitor(sim, W, b, fairness_weight=lambda t: 1.0, lp_first=4, last_round=8)
    >>> for t in range(8):
    ...     monitor.observe(t, np.full(4, 0.5))  # everyone treated alike
    >>> g = monitor.gauges()
    >>> g["rounds"], g["panel_violation_rounds"], g["fair_regret_rounds"], g["comparator_available"]
    (8.0, 0.0, 8.0, 1.0)
    >>> bool(g["fair_regret"] >= -1e-9)  # a coin flip for everyone is fair, never better than the best fair mixture
    True
    """

    #: Exported as ``regretflow_simulator_<name>{model}``.
    GAUGES = {
        "rounds": "Rounds the fairness simulator has played against the model",
        "expected_mistakes": "The model's expected mistakes on the true labels, hidden ones included: "
        "sum over rounds and individuals of y + q (1 - 2 y)",
        "lagrangian_regret": "Exact regret on the fair Lagrangian cost (C from the model's schedule) against "
        "the best fixed policy of its class",
        "mistake_regret_unconstrained": "Expected mistakes minus those of the best fixed policy of the class, fair or not",
        "fair_regret": "Expected mistakes minus those of the best fixed fair mixture of the class (the LP), "
        "as of regretflow_simulator_fair_regret_rounds rounds (NaN before the first solve)",
        "fair_regret_rounds": "Rounds covered by the last fair-comparator LP solve",
        "fair_comparator_mistakes": "Expected mistakes of the best fixed fair mixture of the class on those rounds",
        "comparator_available": "1 while the fair-comparator LP is still solved (rounds <= lp_max_rounds); "
        "0 after: lagrangian_regret, an upper bound, keeps updating",
        "lp_seconds": "Wall time of the last fair-comparator LP solve",
        "panel_violation_rounds": "Rounds in which the sitting panel reported at least one violating pair (gamma rule)",
        "panel_violation_pairs": "Panel-violating pairs over all rounds (gamma rule)",
    }
    #: Exported as ``regretflow_simulator_auditor_<name>{model, auditor}``, for every auditor of the pool.
    AUDITOR_GAUGES = {
        "violation_pairs": "Pairs the auditor's own metric and margin flag on the answered probabilities, "
        "whether it sat on the panel or not (cumulative)",
        "violation_rounds": "Rounds in which the auditor's own metric flags at least one pair",
        "last_round_pairs": "Pairs the auditor's own metric flags in the last round",
    }

    def __init__(
        self,
        sim: FairnessSimulator,
        weights: ArrayLike,
        offsets: ArrayLike,
        gamma: float = 0.5,
        fairness_weight: Callable[[int], float] = lambda t: 0.0,
        lp_max_rounds: int = 100_000,
        lp_first: int = 250,
        last_round: int | None = None,
    ) -> None:
        self.sim = sim
        self.gamma = float(gamma)
        self.fairness_weight = fairness_weight
        self.lp_max_rounds = int(lp_max_rounds)
        self.lp_first = max(1, int(lp_first))
        self.last_round = last_round
        self.tracker = FairRegretTracker(weights, offsets)
        self.auditor_names = [a.name for a in sim.auditors]
        M = len(self.auditor_names)
        self.auditor_pairs = np.zeros(M)
        self.auditor_rounds = np.zeros(M)
        self.auditor_last = np.zeros(M)
        self.panel_violation_rounds = 0
        self.panel_violation_pairs = 0
        self.fair_regret = float("nan")
        self.fair_regret_rounds = 0
        self.comparator_mistakes = float("nan")
        self.lp_seconds = 0.0
        self.in_order = True
        self._publish()

    def observe(self, t: int, probabilities: ArrayLike, reports: list[tuple[int, int, int]] | None = None) -> None:
        """Round ``t`` was answered with these probabilities (rounds come in order); ``reports``:
        the panel's, if already computed (default: computed from ``probabilities``)."""
        q = np.asarray(probabilities, dtype=np.float64)
        self.in_order &= t == self.tracker.rounds
        if reports is None:
            reports = self.sim.reports(t, q)
        kept = aggregate_panel(reports, q, self.sim.panel_size, self.gamma)
        n_kept = int(kept.sum())
        self.panel_violation_rounds += int(n_kept > 0)
        self.panel_violation_pairs += n_kept
        flagged = np.asarray(self.sim.auditor_violations(t, q), dtype=np.float64)
        self.auditor_pairs += flagged
        self.auditor_rounds += flagged > 0
        self.auditor_last = flagged
        self.tracker.update(self.sim.individuals(t), self.sim.labels(t), q, kept, float(self.fairness_weight(t + 1)))
        rounds = self.tracker.rounds
        if self._lp_due(rounds):
            self.solve()
        else:
            self._publish()

    def _lp_due(self, rounds: int) -> bool:
        """At ``lp_first`` times a power of two, at ``lp_max_rounds`` and at the last round."""
        if not self.comparator_available():
            return False
        doublings, rest = divmod(rounds, self.lp_first)
        return rounds in (self.last_round, self.lp_max_rounds) or (rest == 0 and doublings & (doublings - 1) == 0)

    def comparator_available(self) -> bool:
        """Whether the LP can be solved for the rounds so far (in order, at most ``lp_max_rounds``)."""
        return self.in_order and self.tracker.rounds <= self.lp_max_rounds

    def comparator(self) -> FairComparator:
        """The best fixed fair mixture of the class on every round so far (the LP, rounds recomputed)."""
        V = np.empty((self.tracker.W.shape[0], self.sim.k))
        class_rounds, labels, bounds = [], [], []
        for t in range(self.tracker.rounds):
            K.evaluate_class(self.tracker.W, self.tracker.b, np.ascontiguousarray(self.sim.individuals(t)), V)
            class_rounds.append(V.astype(np.int8))
            labels.append(self.sim.labels(t))
            bounds.append(self.sim.panel_bounds(t, self.gamma))
        return fair_comparator(class_rounds, labels, bounds)

    def solve(self) -> None:
        """Solve the fair-comparator LP on every round so far; set the fair regret."""
        import time

        started = time.perf_counter()
        best = self.comparator()
        self.comparator_mistakes = best.errors
        self.fair_regret = self.tracker.learner_errors - best.errors
        self.fair_regret_rounds = self.tracker.rounds
        self.lp_seconds = time.perf_counter() - started
        self._publish()

    def _publish(self) -> None:
        """Replace the snapshot scrapes read (one reference assignment: atomic for the reader)."""
        self._snapshot = (self._gauges(), self._auditor_gauges())

    def gauges(self) -> dict[str, float]:
        """Per-model figures (names without the ``regretflow_simulator_`` prefix), as of the last update."""
        return self._snapshot[0]

    def auditor_gauges(self) -> dict[str, dict[str, float]]:
        """Per auditor of the pool: flagged pairs (cumulative and last round) and rounds with any."""
        return self._snapshot[1]

    def _gauges(self) -> dict[str, float]:
        return {
            "rounds": float(self.tracker.rounds),
            "expected_mistakes": float(self.tracker.learner_errors),
            "lagrangian_regret": float(self.tracker.lagrangian_regret()),
            "mistake_regret_unconstrained": float(self.tracker.error_regret()),
            "fair_regret": float(self.fair_regret),
            "fair_regret_rounds": float(self.fair_regret_rounds),
            "fair_comparator_mistakes": float(self.comparator_mistakes),
            "comparator_available": float(self.comparator_available()),
            "lp_seconds": float(self.lp_seconds),
            "panel_violation_rounds": float(self.panel_violation_rounds),
            "panel_violation_pairs": float(self.panel_violation_pairs),
        }

    def _auditor_gauges(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "violation_pairs": float(self.auditor_pairs[j]),
                "violation_rounds": float(self.auditor_rounds[j]),
                "last_round_pairs": float(self.auditor_last[j]),
            }
            for j, name in enumerate(self.auditor_names)
        }

    def state_dict(self) -> dict[str, Any]:
        state = {f"tracker_{k}": v for k, v in self.tracker.state_dict().items()}
        state.update(
            auditor_pairs=self.auditor_pairs.copy(),
            auditor_rounds=self.auditor_rounds.copy(),
            auditor_last=self.auditor_last.copy(),
            panel_violation_rounds=int(self.panel_violation_rounds),
            panel_violation_pairs=int(self.panel_violation_pairs),
            # NaN until the first solve: arrays, since checkpoint scalars are strict JSON
            fair_regret=np.array([self.fair_regret]),
            comparator_mistakes=np.array([self.comparator_mistakes]),
            fair_regret_rounds=int(self.fair_regret_rounds),
            lp_seconds=float(self.lp_seconds),
            in_order=int(self.in_order),
        )
        check_state(state, "FairnessMonitor")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict({k[len("tracker_") :]: v for k, v in state.items() if k.startswith("tracker_")})
        M = len(self.auditor_names)
        for name in ("auditor_pairs", "auditor_rounds", "auditor_last"):
            setattr(self, name, expect_array(state, name, (M,), "FairnessMonitor"))
        self.panel_violation_rounds = int(state["panel_violation_rounds"])
        self.panel_violation_pairs = int(state["panel_violation_pairs"])
        self.fair_regret = float(expect_array(state, "fair_regret", (1,), "FairnessMonitor")[0])
        self.fair_regret_rounds = int(state["fair_regret_rounds"])
        self.comparator_mistakes = float(expect_array(state, "comparator_mistakes", (1,), "FairnessMonitor")[0])
        self.lp_seconds = float(state["lp_seconds"])
        self.in_order = bool(state["in_order"])
        self._publish()
