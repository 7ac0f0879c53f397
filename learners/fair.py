"""Individually fair learning with one-sided feedback (Bechavod & Roth, ICML 2023).

Each round the learner sees ``k`` individuals, answers for each the probability of a
positive decision under its current randomised policy ``pi_t`` over a finite class of
linear threshold classifiers, and a decision drawn from ``pi_t``. Labels come back
only for positively decided individuals; a panel of auditors then reports the pairs
it judges treated too differently (``pi_t(x_i) - pi_t(x_l) > d_j(x_i, x_l) + alpha``).

The learners minimise regret on the Lagrangian cost of the reconstruction in the
spec (section 3.1): per individual, ``c_i = (1 - 2 y_i) + f_i`` with the fairness part
``f_i = C (#kept pairs favouring i - #kept pairs disfavouring i)``; a pair is kept
when at least ``ceil(gamma m_t)`` of the ``m_t`` panel members flagged it.

- :class:`FairExp2`: exponential weights over the class with the non-negative
  importance-weighted label estimate ``2 (1 - y_i) / q_i`` (spec 3.2).
- :class:`FairFTPL`: follow the perturbed leader with a cost-sensitive classification
  oracle over the class, decision probabilities estimated by resampling leaders,
  label costs by geometric resampling (spec 3.3).
- :class:`OneSidedExp2`: the accuracy-only baseline, Exp2 on the same one-sided
  feedback with no fairness term (audits are counted, never learned from).
- :class:`FullInformationFairExp2`: a simulation reference that sees every label
  (never deploy it behind the engine: the engine drops hidden labels).

Schedules: ``C = fairness_scale T^(1/4)`` and the learning rate (or FTPL's
perturbation scale) from the horizon T, or anytime with t in place of T; the ``B`` in
them is the worst-case cost range ``2 + 2C(k-1)`` unless ``cost_bound`` is given.

Regret: against the best fixed policy of the class on the realised Lagrangian costs
(exact in a simulator: :class:`regretflow.engine.evaluation.fairness_lp.FairRegretTracker`), and
the accuracy regret against the best fixed *fair* mixture of the class, a linear
program (:func:`regretflow.engine.evaluation.fairness_lp.fair_comparator`). Neither needs the
learner's cooperation; the learner exports the counts a deployment can see (gauges).

Reconstruction notice: the paper's pseudo-code was not available; see the spec.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import fair_kernels as K
from .contract import (
    FairDefaults,
    PanelDecision,
    check_finite_matrix,
    check_integer,
    check_names,
    check_number,
    check_state,
    expect_array,
    refuse_nonfinite,
    refuses_nonfinite,
    restore_rng,
    rng_state,
)


def linear_threshold_class(
    n_features: int, n_directions: int = 16, n_offsets: int = 13, offset_range: tuple[float, float] = (-1.0, 1.0), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A grid of linear threshold classifiers ``1[w . x >= b]`` plus all-0 and all-1.

    Directions are seeded Gaussian directions normalised to unit length; offsets are
    ``n_offsets`` evenly spaced values in ``offset_range``.

    Returns
    -------
    (weights, offsets)
        ``(N, n_features)`` and ``(N,)`` with ``N = n_directions n_offsets + 2``;
        the last two rows are all-0 (weight 0, offset 1) and all-1 (weight 0, offset 0).

    Examples
    --------
    >>> W, b = linear_threshold_class(2, n_directions=4, n_offsets=3)
    >>> W.shape, b.shape, b[-2:].tolist()
    ((14, 2), (14,), [1.0, 0.0])
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_directions, n_features))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    offsets = np.linspace(offset_range[0], offset_range[1], n_offsets)
    W = np.repeat(directions, n_offsets, axis=0)
    b = np.tile(offsets, n_directions)
    return (np.vstack([W, np.zeros((2, n_features))]), np.concatenate([b, [1.0, 0.0]]))


def aggregate_panel(violations: Any, probabilities: np.ndarray, panel_size: int | None = None, gamma: float = 0.5) -> np.ndarray:
    """The panel rule of the spec: a (k, k) 0/1 matrix of kept, oriented pairs.

    ``violations`` holds ``(i, l, auditor)`` triples (or ``(i, l)`` pairs, taken as
    already aggregated: each kept). A pair is kept when at least
    ``ceil(gamma * panel_size)`` distinct auditors flag it, and oriented so that
    ``kept[i, l] = 1`` means ``q[i] > q[l]``. ``gamma`` can be varied after the fact on
    the same reports; a larger ``gamma`` never keeps more pairs.

    Examples
    --------
    >>> q = np.array([0.9, 0.1, 0.5])
    >>> reports = [[0, 1, 0], [1, 0, 1], [0, 2, 2], [0, 2, 2]]
    >>> aggregate_panel(reports, q, panel_size=3, gamma=0.5).astype(int).tolist()
    [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    >>> int(aggregate_panel(reports, q, panel_size=3, gamma=1 / 3).sum())
    2
    """
    q = np.ascontiguousarray(probabilities, dtype=np.float64)
    k = q.shape[0]
    reports, panel_size, required = _reports(violations, k, panel_size, gamma)
    kept = np.zeros((k, k))
    K.aggregate_reports(reports, q, panel_size, required, kept)
    return kept


def _reports(violations: Any, k: int, panel_size: int | None, gamma: float) -> tuple[np.ndarray, int, int]:
    """Validated (r, 3) int64 reports, the panel size and the required number of votes."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    arr = np.asarray(violations if violations is not None else [], dtype=np.int64)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"violations must be (i, l) pairs or (i, l, auditor) triples, got shape {arr.shape}")
    if arr.shape[0] and (arr[:, :2].min() < 0 or arr[:, :2].max() >= k):
        raise ValueError(f"a violation names an individual outside 0..{k - 1}")
    if arr.shape[1] == 2:  # already aggregated by the panel: one vote, one voter
        return np.ascontiguousarray(np.hstack([arr, np.zeros((arr.shape[0], 1), dtype=np.int64)])), 1, 1
    if arr.shape[0] and arr[:, 2].min() < 0:
        raise ValueError("auditor indices must be >= 0")
    top = int(arr[:, 2].max()) + 1 if arr.shape[0] else 1
    if panel_size is None:
        panel_size = top
    panel_size = int(panel_size)
    if panel_size < top:
        raise ValueError(f"auditor index {top - 1} is outside a panel of {panel_size}")
    required = max(1, int(math.ceil(gamma * panel_size - 1e-12)))
    return np.ascontiguousarray(arr), panel_size, required


class _FairBase(FairDefaults):
    """Shared bookkeeping of the fair learners: the class, schedules, audits, gauges, state."""

    task = "fair"
    family = ""

    GAUGES = {
        "rounds_decided": "Decide events answered (rounds of k individuals)",
        "positive_decision_rate": "Fraction of all individuals decided positively so far",
        "revealed_accuracy": "Fraction of revealed labels (positive decisions) that were positive: "
        "the accuracy on the individuals whose label the learner saw",
        "revealed_labels": "Labels revealed to the learner (one per positive decision with feedback)",
        "audited_rounds": "Audit events learned",
        "violation_rounds": "Audited rounds with at least one panel violation (the spec's V_T)",
        "violation_pairs": "Panel-violating pairs over all audited rounds",
        "violation_rate": "violation_rounds / audited_rounds",
        "last_round_violations": "Panel-violating pairs in the last audited round",
        "fairness_weight": "Current Lagrange multiplier C on the fairness term",
        "probability_spread": "max_i q_i - min_i q_i at the last decision",
        "leader_cost_estimate": "Smallest cumulative estimated Lagrangian cost over the class",
    }
    GROUP_GAUGES = {
        "positive_decision_rate": "Fraction of the group's individuals decided positively so far "
        "(membership read from the group's 0/1 feature)",
    }

    def __init__(
        self,
        n_features: int | None,
        features: list[str] | None,
        weights: Any,
        offsets: Any,
        n_directions: int,
        n_offsets: int,
        offset_range: Any,
        horizon: int | None,
        fairness_weight: float | None,
        fairness_scale: float,
        gamma: float,
        groups: list[str] | None,
        group_features: dict[str, str] | None,
        seed: int,
        cost_bound: float | None = None,
    ):
        self.n_features = n_features
        self.features = features
        self.weights = weights
        self.offsets = offsets
        self.n_directions = n_directions
        self.n_offsets = n_offsets
        self.offset_range = offset_range
        self.horizon = horizon
        self.fairness_weight = fairness_weight
        self.fairness_scale = fairness_scale
        self.cost_bound = cost_bound
        self.gamma = gamma
        self.groups = groups
        self.group_features = group_features
        self.seed = seed
        self._check_base_parameters()
        if weights is not None:
            W = check_finite_matrix("weights", weights, 2)
            b = check_finite_matrix("offsets", offsets, 1).reshape(-1)
            if W.shape[0] != b.shape[0]:
                raise ValueError(f"offsets: expected one value per row of weights ({W.shape[0]}), got {b.shape[0]}")
        else:
            d = n_features if n_features is not None else (len(features) if features is not None else None)
            if d is None:
                raise ValueError("give weights and offsets, or n_features (or features) for the default grid")
            W, b = linear_threshold_class(int(d), n_directions, n_offsets, tuple(offset_range), seed=0)
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError("weights and offsets must be finite")
        self.W_ = np.ascontiguousarray(W)
        self.b_ = np.ascontiguousarray(b)
        self.n_policies = self.W_.shape[0]
        self.d_ = self.W_.shape[1]
        self._group_columns = self._resolve_groups()
        self._rng = np.random.default_rng(seed)
        self._class_cache: dict[bytes, np.ndarray] = {}  # derived from X alone: not state
        self._class_cache_bytes = 0
        self.cost_ = np.zeros(self.n_policies)
        self.n_updates = 0
        self.k_ = 0
        self.rounds_decided = 0
        self.individuals_decided = 0
        self.positives_decided = 0
        self.revealed_labels = 0
        self.revealed_positive = 0
        self.audited_rounds = 0
        self.violation_rounds = 0
        self.violation_pairs = 0
        self._last_round_violations = 0
        self._last_spread = 0.0
        self.group_seen_ = np.zeros(len(self._group_columns))
        self.group_positive_ = np.zeros(len(self._group_columns))

    # -- set-up -------------------------------------------------------------------
    def _check_base_parameters(self) -> None:
        check_integer("n_features", self.n_features, ">= 1", allow_none=True)
        check_names("features", self.features)
        check_integer("n_directions", self.n_directions, ">= 1")
        check_integer("n_offsets", self.n_offsets, ">= 1")
        bounds = check_finite_matrix("offset_range", self.offset_range, 1)
        if bounds.shape != (2,) or not bounds[0] < bounds[1]:
            raise ValueError(f"offset_range: expected a pair [low, high] with low < high, got {self.offset_range!r}")
        check_integer("horizon", self.horizon, ">= 1", allow_none=True)
        check_number("fairness_weight", self.fairness_weight, ">= 0", allow_none=True)
        check_number("fairness_scale", self.fairness_scale, ">= 0")
        check_number("gamma", self.gamma, "(0, 1]")
        check_names("groups", self.groups)
        mapping = self.group_features
        if mapping is not None and not (
            isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
        ):
            raise TypeError(f"group_features: expected a table of group label -> feature name, got {mapping!r}")
        check_integer("seed", self.seed, ">= 0")
        check_number("cost_bound", self.cost_bound, "> 0", allow_none=True)

    def _resolve_groups(self) -> list[int]:
        if not self.groups:
            return []
        names = list(self.features) if self.features is not None else []
        mapping = dict(self.group_features or {})
        columns = []
        for label in self.groups:
            name = mapping.get(label)
            if name is None:
                candidates = [label, label.split("=", 1)[-1]] if "=" in label else [label]
                name = next((c for c in candidates if c in names), None)
            if name is None or name not in names:
                raise ValueError(f"group {label!r}: no 0/1 feature of that name (map it in group_features)")
            columns.append(names.index(name))
        return columns

    def _individuals(self, actions: Any) -> np.ndarray:
        X = np.ascontiguousarray(actions, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d_:
            raise ValueError(f"expected a (k, {self.d_}) array of individuals, got shape {X.shape}")
        if X.shape[0] < 1:
            raise ValueError("a round needs at least one individual")
        if not np.all(np.isfinite(X)):
            raise ValueError("individual features must be finite")
        if self.k_ == 0:
            self.k_ = X.shape[0]
        return X

    #: Bytes of class matrices kept for decisions awaiting their feedback and audit.
    CLASS_CACHE_BYTES = 8 << 20

    def _class_on(self, X: np.ndarray) -> np.ndarray:
        """``V[n, i] = h_n(x_i)``, remembered for the round's feedback and audit (the same X comes back
        three times per round; evaluating the class is the largest per-round cost of Exp2)."""
        key = X.tobytes()
        V = self._class_cache.get(key)
        if V is None:
            V = np.empty((self.n_policies, X.shape[0]))
            K.evaluate_class(self.W_, self.b_, X, V)
            V.flags.writeable = False  # shared by the round's calls: no kernel may change it
            self._class_cache[key] = V
            self._class_cache_bytes += V.nbytes
            while self._class_cache_bytes > self.CLASS_CACHE_BYTES and len(self._class_cache) > 1:
                oldest = self._class_cache.pop(next(iter(self._class_cache)))  # the oldest decision's
                self._class_cache_bytes -= oldest.nbytes
        return V

    def _round_index(self) -> int:
        """t (1-based) for the anytime schedules: rounds decided so far."""
        return max(1, self.rounds_decided)

    def current_fairness_weight(self) -> float:
        """C: the fixed ``fairness_weight``, else ``fairness_scale * T^(1/4)`` (``t^(1/4)`` without a horizon)."""
        return self.fairness_weight_at(self._round_index())

    def fairness_weight_at(self, rounds_decided: int) -> float:
        """C once ``rounds_decided`` rounds have been decided (the schedule, for monitors replaying it)."""
        if self.fairness_weight is not None:
            return float(self.fairness_weight)
        t = self.horizon if self.horizon is not None else max(1, int(rounds_decided))
        return float(self.fairness_scale) * float(t) ** 0.25

    def _cost_bound(self) -> float:
        """B of the schedules: ``cost_bound`` if given, else ``2 + 2 C (k - 1)``, the worst-case range (spec 3.2)."""
        if self.cost_bound is not None:
            return float(self.cost_bound)
        k = max(self.k_, 1)
        return 2.0 + 2.0 * self.current_fairness_weight() * (k - 1)

    def _record_decision(self, X: np.ndarray, decisions: np.ndarray, q: np.ndarray) -> None:
        self.rounds_decided += 1
        self.individuals_decided += X.shape[0]
        self.positives_decided += int(decisions.sum())
        self._last_spread = float(q.max() - q.min())
        if self._group_columns:
            member = X[:, self._group_columns] > 0.5
            self.group_seen_ += member.sum(axis=0)
            self.group_positive_ += (member & (decisions[:, None] == 1)).sum(axis=0)

    @staticmethod
    def _decisions(decisions: Any, k: int) -> np.ndarray:
        dec = np.asarray(decisions).astype(np.int64).reshape(-1)
        if dec.shape[0] != k or not np.all((dec == 0) | (dec == 1)):
            raise ValueError(f"decisions must be {k} values in {{0, 1}}")
        return np.ascontiguousarray(dec)

    @staticmethod
    def _revealed(labels: Any, decisions: np.ndarray) -> np.ndarray:
        """Labels as float64 where the decision was positive; -1 elsewhere (never read)."""
        hidden_as_minus_one = [(-1 if v is None else v) for v in np.asarray(labels, dtype=object).reshape(-1)]
        raw = np.asarray(hidden_as_minus_one, dtype=np.float64)
        if raw.shape[0] != decisions.shape[0]:
            raise ValueError(f"expected {decisions.shape[0]} labels, got {raw.shape[0]}")
        out = np.full(decisions.shape[0], -1.0)
        positive = decisions == 1
        values = raw[positive]
        if not np.all((values == 0.0) | (values == 1.0)):
            raise ValueError("a positively decided individual needs a 0/1 label")
        out[positive] = values
        return out

    def _count_labels(self, decisions: np.ndarray, y: np.ndarray) -> None:
        positive = decisions == 1
        self.revealed_labels += int(positive.sum())
        self.revealed_positive += int((y[positive] == 1.0).sum())

    # -- audits ---------------------------------------------------------------------
    @refuses_nonfinite(also=("actions",))
    def audit(self, actions: Any, decisions: Any, probabilities: Any, violations: Any, panel_size: int | None = None) -> int:
        """Learn the fairness part of the round's cost from the panel's reports.

        Parameters
        ----------
        actions
            The round's (k, d) individuals, as decided.
        decisions, probabilities
            The decisions and the probabilities ``q`` answered at the decide.
        violations
            ``(i, l, auditor)`` triples, one per auditor per flagged pair (the panel
            rule with ``gamma`` is applied here), or ``(i, l)`` pairs already
            aggregated by the panel (each kept).
        panel_size
            ``m_t``, the number of auditors on the panel (triples only; default: the
            largest auditor index + 1).

        Returns
        -------
        int
            The number of panel-violating pairs kept this round.
        """
        X = self._individuals(actions)
        q = np.ascontiguousarray(probabilities, dtype=np.float64).reshape(-1)
        if q.shape[0] != X.shape[0]:
            raise ValueError(f"expected {X.shape[0]} probabilities, got {q.shape[0]}")
        self._decisions(decisions, X.shape[0])
        reports, m, required = _reports(violations, X.shape[0], panel_size, self.gamma)
        kept = np.zeros((X.shape[0], X.shape[0]))
        n_kept = int(K.aggregate_reports(reports, q, m, required, kept))
        self.audited_rounds += 1
        self.violation_pairs += n_kept
        self.violation_rounds += int(n_kept > 0)
        self._last_round_violations = n_kept
        weight = self._audit_weight()
        if n_kept and weight > 0.0:
            f = np.zeros(X.shape[0])
            K.fairness_costs(kept, weight, f)
            K.add_fairness_costs(self.cost_, self._class_on(X), f)
            self.n_updates += 1
        return n_kept

    def _audit_weight(self) -> float:
        return self.current_fairness_weight()

    # -- monitoring -------------------------------------------------------------------
    def revealed_accuracy(self) -> float:
        """Accuracy on the revealed labels: the fraction of positive decisions whose label was 1 (NaN before any)."""
        return self.revealed_positive / self.revealed_labels if self.revealed_labels else float("nan")

    def gauges(self) -> dict[str, float]:
        return {
            "rounds_decided": float(self.rounds_decided),
            "positive_decision_rate": self.positives_decided / self.individuals_decided if self.individuals_decided else 0.0,
            "revealed_accuracy": self.revealed_accuracy(),
            "revealed_labels": float(self.revealed_labels),
            "audited_rounds": float(self.audited_rounds),
            "violation_rounds": float(self.violation_rounds),
            "violation_pairs": float(self.violation_pairs),
            "violation_rate": self.violation_rounds / self.audited_rounds if self.audited_rounds else 0.0,
            "last_round_violations": float(self._last_round_violations),
            "fairness_weight": self._audit_weight(),
            "probability_spread": self._last_spread,
            "leader_cost_estimate": float(self.cost_.min()),
        }

    def group_gauges(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(self.group_seen_ > 0, self.group_positive_ / np.maximum(self.group_seen_, 1), np.nan)
        return {"positive_decision_rate": rate}

    # -- state ----------------------------------------------------------------------
    # state key -> attribute
    _COUNTERS = {
        name: name
        for name in (
            "n_updates",
            "k_",
            "rounds_decided",
            "individuals_decided",
            "positives_decided",
            "revealed_labels",
            "revealed_positive",
            "audited_rounds",
            "violation_rounds",
            "violation_pairs",
        )
    } | {"last_round_violations": "_last_round_violations"}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"family": self.family, "n_policies": self.n_policies, "last_spread": self._last_spread}
        for key, attribute in self._COUNTERS.items():
            state[key] = int(getattr(self, attribute))
        state["cost"] = self.cost_.copy()
        state["W"] = self.W_.copy()
        state["b"] = self.b_.copy()
        state["group_seen"] = self.group_seen_.copy()
        state["group_positive"] = self.group_positive_.copy()
        state.update(rng_state(self._rng))
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        refuse_nonfinite(state, owner)
        if state.get("family") != self.family:
            raise ValueError(f"{owner}: state of family {state.get('family')!r}, expected {self.family!r}")
        N = int(state["n_policies"])
        W = expect_array(state, "W", (N, self.d_), owner)
        b = expect_array(state, "b", (N,), owner)
        if N != self.n_policies or not (np.array_equal(W, self.W_) and np.array_equal(b, self.b_)):
            raise ValueError(f"{owner}: the checkpoint was written for a different policy class")
        self.cost_ = expect_array(state, "cost", (N,), owner)
        G = len(self._group_columns)
        self.group_seen_ = expect_array(state, "group_seen", (G,), owner)
        self.group_positive_ = expect_array(state, "group_positive", (G,), owner)
        for key, attribute in self._COUNTERS.items():
            setattr(self, attribute, int(state[key]))
        self._last_spread = float(state["last_spread"])
        self._rng = restore_rng(state)


class FairExp2(_FairBase):
    """Exp2 over a finite class of threshold classifiers on the fair Lagrangian cost.

    The deployed policy is ``p = softmax(-eta L)`` over the ``N`` policies, ``L`` their
    cumulative estimated Lagrangian cost; ``decide_panel`` answers ``q_i = sum_n p_n h_n(x_i)``
    exactly (what auditors judge) and decisions of one policy drawn from ``p``.
    ``learn_panel`` adds the label part with the non-negative importance-weighted estimate
    ``2 (1 - y_i) / q_i`` for positive decisions (unbiased for the two-arm cost);
    ``audit`` adds the fairness part, known for every individual. The two parts are
    additive, so feedback and audit may arrive in either order.

    Regret (reconstruction, spec 3.2): Lagrangian regret ``O(k B sqrt(T ln N))`` with
    ``B = 2 + 2 C (k - 1)`` and the tuned ``eta``; with ``C ~ T^(1/4)``, accuracy regret
    against fair mixtures and the number of violating rounds both ``O(T^(3/4))``.
    In practice the worst-case ``B`` makes ``eta`` shrink like ``1 / C`` and the learner
    barely leaves the uniform mixture; ``cost_bound=2`` (with ``fairness_scale`` about
    ``sqrt(k / alpha)``) is what ``regretflow reproduce fair-onesided`` runs, and there
    both regret/T and violations/T shrink with T (see that module for the numbers).

    Parameters
    ----------
    n_features
        Dimension of an individual's feature row (for the default grid).
    features
        Feature names (the engine passes the model's declared features); used for the
        dimension and to find group membership columns.
    weights, offsets
        An explicit class: ``h_n(x) = 1[weights[n] . x >= offsets[n]]``. Default: the
        grid :func:`linear_threshold_class` with ``n_directions``, ``n_offsets`` and
        ``offset_range``.
    horizon
        T, for the tuned schedules ``C = fairness_scale T^(1/4)`` and
        ``eta = sqrt(2 ln N / (k^2 B^2 T))``. ``None``: anytime schedules with ``t``
        (rounds decided so far) in place of T.
    fairness_weight
        A fixed C (overrides the schedule); 0 turns the fairness term off.
    fairness_scale
        ``c_C`` in ``C = c_C T^(1/4)``.
    learning_rate
        A fixed ``eta`` (overrides the schedule).
    learning_rate_factor
        Multiplies the tuned ``eta`` (the theory's worst-case ``B`` makes it small).
    cost_bound
        The ``B`` of the schedules. ``None``: the worst-case range ``2 + 2 C (k - 1)`` of a
        per-coordinate cost (spec 3.2), which makes ``eta`` shrink like ``1 / C``. The
        fairness part is deterministic (no importance weights) and non-zero only on
        rounds with a panel violation, so its share of the Exp2 variance term is about
        ``C^2 E[pairs^2]`` per round rather than ``(k B)^2``; ``cost_bound = 2`` (the
        range of the label part, the accuracy-only learner's ``B``) keeps ``eta`` at the
        accuracy-only rate whatever C is.
    mixing
        Uniform mixing ``gamma_mix`` in [0, 1).
    gamma
        Panel threshold: a pair counts when at least ``ceil(gamma m_t)`` auditors flag it.
    groups, group_features
        Declared group labels and the 0/1 feature that defines each (default: the
        feature named like the label, or like the part after ``=``); the group gauge
        is the positive-decision rate per group.
    seed
        Seed of the policy draws.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.fair import FairExp2
    >>> model = FairExp2(weights=[[1.0], [-1.0]], offsets=[0.5, -0.5], fairness_weight=1.0,
    ...                  learning_rate=0.5, seed=0)
    >>> people = np.array([[0.9], [0.1]])
    >>> decisions, q = (panel := model.decide_panel(people)).decisions, panel.probabilities
    >>> q.tolist()
    [0.5, 0.5]
    >>> for _ in range(30):  # person 0 repays, person 1 would not
    ...     panel = model.decide_panel(people)
    ...     decisions, q = panel.decisions, panel.probabilities
    ...     model.learn_panel(decisions, np.where(decisions == 1, [1.0, 0.0], -1.0), q, people)
    >>> decisions, q = (panel := model.decide_panel(people)).decisions, panel.probabilities
    >>> bool(q[0] > 0.99 and q[1] < 0.01)
    True
    >>> model.audit(people, decisions, q, [[0, 1, 0], [0, 1, 1]], panel_size=3)  # 2 of 3 flag the pair
    1
    >>> model.gauges()["violation_rounds"]
    1.0
    """

    family = "fair_exp2"

    def __init__(
        self,
        n_features: int | None = None,
        features: list[str] | None = None,
        weights: Any = None,
        offsets: Any = None,
        n_directions: int = 16,
        n_offsets: int = 13,
        offset_range: Any = (-1.0, 1.0),
        horizon: int | None = None,
        fairness_weight: float | None = None,
        fairness_scale: float = 1.0,
        learning_rate: float | None = None,
        learning_rate_factor: float = 1.0,
        mixing: float = 0.0,
        gamma: float = 0.5,
        groups: list[str] | None = None,
        group_features: dict[str, str] | None = None,
        seed: int = 0,
        cost_bound: float | None = None,
    ):
        super().__init__(
            n_features,
            features,
            weights,
            offsets,
            n_directions,
            n_offsets,
            offset_range,
            horizon,
            fairness_weight,
            fairness_scale,
            gamma,
            groups,
            group_features,
            seed,
            cost_bound,
        )
        self.learning_rate = learning_rate
        self.learning_rate_factor = learning_rate_factor
        self.mixing = mixing
        check_number("learning_rate", learning_rate, "> 0", allow_none=True)
        check_number("learning_rate_factor", learning_rate_factor, "> 0")
        check_number("mixing", mixing, "[0, 1)")
        self._p = np.zeros(self.n_policies)  # zeros, not empty: the engine scans state for non-finite values

    def current_learning_rate(self) -> float:
        """eta: fixed, else ``sqrt(2 ln N / (k^2 B^2 T))`` (``t`` for T without a horizon)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        t = self.horizon if self.horizon is not None else self._round_index()
        k = max(self.k_, 1)
        return self.learning_rate_factor * math.sqrt(2.0 * math.log(max(self.n_policies, 2)) / (k * k * self._cost_bound() ** 2 * t))

    def policy(self) -> np.ndarray:
        """The current distribution ``p`` over the class."""
        K.softmax_weights(self.cost_, self.current_learning_rate(), float(self.mixing), self._p)
        return self._p.copy()

    @refuses_nonfinite(also=("actions",))  # the individuals' feature rows
    def decide_panel(self, actions: Any) -> PanelDecision:
        """Decide the round's k individuals (rows of ``actions``): the 0/1 decisions of one
        policy drawn from ``p``, and ``q_i``, the probability of a positive decision under
        ``p`` for each individual."""
        X = self._individuals(actions)
        V = self._class_on(X)
        K.softmax_weights(self.cost_, self.current_learning_rate(), float(self.mixing), self._p)
        q = np.empty(X.shape[0])
        K.positive_probabilities(self._p, V, q)
        n = K.draw_index(self._p, float(self._rng.random()))
        decisions = V[n].astype(np.int64)
        self._record_decision(X, decisions, q)
        return PanelDecision(decisions, q)

    @refuses_nonfinite(also=("actions",))  # the individuals' feature rows
    def learn_panel(self, decisions: Any, labels: Any, probabilities: Any, actions: Any) -> None:
        """Learn the label part from the revealed labels (positive decisions only; others are ignored)."""
        X = self._individuals(actions)
        dec = self._decisions(decisions, X.shape[0])
        y = self._revealed(labels, dec)
        q = np.ascontiguousarray(probabilities, dtype=np.float64).reshape(-1)
        if q.shape[0] != X.shape[0] or np.any(q[dec == 1] <= 0.0):
            raise ValueError("probabilities must hold q_i > 0 for every positive decision")
        positive_arm = np.empty(X.shape[0])
        K.importance_label_costs(dec, y, q, positive_arm)
        K.add_label_costs(self.cost_, self._class_on(X), positive_arm)
        self._count_labels(dec, y)
        self.n_updates += 1

    def gauges(self) -> dict[str, float]:
        g = super().gauges()
        p = self.policy()
        g["learning_rate"] = self.current_learning_rate()
        g["effective_policies"] = float(1.0 / np.dot(p, p))
        return g

    GAUGES = {
        **_FairBase.GAUGES,
        "learning_rate": "Current Exp2 learning rate eta",
        "effective_policies": "1 / sum_n p_n^2: how many policies the randomised policy effectively mixes",
    }


class OneSidedExp2(FairExp2):
    """The accuracy-only baseline: Exp2 on the same one-sided feedback, no fairness term.

    Identical to :class:`FairExp2` with ``C = 0`` in the cost; audits are accepted and
    counted in the gauges (so violations can be compared) but never learned from.
    Its learning rate uses ``B = 2``.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.fair import OneSidedExp2
    >>> model = OneSidedExp2(weights=[[1.0], [-1.0]], offsets=[0.5, -0.5], learning_rate=0.5, seed=0)
    >>> people = np.array([[0.9], [0.1]])
    >>> for _ in range(30):
    ...     panel = model.decide_panel(people)
    ...     decisions, q = panel.decisions, panel.probabilities
    ...     model.learn_panel(decisions, np.where(decisions == 1, [1.0, 0.0], -1.0), q, people)
    ...     flagged = model.audit(people, decisions, q, [[0, 1]])  # counted, not learned
    >>> model.current_fairness_weight(), model.gauges()["violation_rounds"] > 0
    (0.0, True)
    """

    family = "one_sided_exp2"

    def __init__(
        self,
        n_features: int | None = None,
        features: list[str] | None = None,
        weights: Any = None,
        offsets: Any = None,
        n_directions: int = 16,
        n_offsets: int = 13,
        offset_range: Any = (-1.0, 1.0),
        horizon: int | None = None,
        learning_rate: float | None = None,
        learning_rate_factor: float = 1.0,
        mixing: float = 0.0,
        gamma: float = 0.5,
        groups: list[str] | None = None,
        group_features: dict[str, str] | None = None,
        seed: int = 0,
    ):
        super().__init__(
            n_features,
            features,
            weights,
            offsets,
            n_directions,
            n_offsets,
            offset_range,
            horizon,
            0.0,
            0.0,
            learning_rate,
            learning_rate_factor,
            mixing,
            gamma,
            groups,
            group_features,
            seed,
        )


class FullInformationFairExp2(FairExp2):
    """Simulation reference: Hedge on the same Lagrangian cost, with every label revealed.

    ``learn_panel`` takes the labels of all k individuals and adds the exact two-arm cost
    ``2 (1 - y_i)`` (no importance weighting). It breaks one-sided feedback on
    purpose, so it is a yardstick for the cost of one-sided feedback, never a model
    to serve behind the engine (which drops hidden labels). Its learning rate is the
    full-information one, ``sqrt(8 ln N / (k^2 B^2 T))``.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.fair import FullInformationFairExp2
    >>> model = FullInformationFairExp2(weights=[[1.0], [-1.0]], offsets=[0.5, -0.5], learning_rate=1.0)
    >>> people = np.array([[0.9], [0.1]])
    >>> decisions, q = (panel := model.decide_panel(people)).decisions, panel.probabilities
    >>> model.learn_panel(decisions, [1, 0], q, people)
    >>> model.cost_.tolist()  # policy 0 decides (1, 0): 0 + 1; policy 1 decides (0, 1): 1 + 2
    [1.0, 3.0]
    """

    family = "full_information_fair_exp2"

    def current_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        t = self.horizon if self.horizon is not None else self._round_index()
        k = max(self.k_, 1)
        return self.learning_rate_factor * math.sqrt(8.0 * math.log(max(self.n_policies, 2)) / (k * k * self._cost_bound() ** 2 * t))

    @refuses_nonfinite(also=("actions",))  # the individuals' feature rows
    def learn_panel(self, decisions: Any, labels: Any, probabilities: Any, actions: Any) -> None:
        X = self._individuals(actions)
        dec = self._decisions(decisions, X.shape[0])
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if y.shape[0] != X.shape[0] or not np.all((y == 0.0) | (y == 1.0)):
            raise ValueError("the full-information reference needs a 0/1 label for every individual")
        K.add_label_costs(self.cost_, self._class_on(X), 2.0 * (1.0 - y))
        self._count_labels(dec, y)
        self.n_updates += 1


class FairFTPL(_FairBase):
    """Oracle-efficient fair learner: follow the perturbed leader over the class.

    Each decision calls a cost-sensitive classification oracle (the policy of least
    cumulative estimated Lagrangian cost) on the history plus fake examples: Laplace
    costs on a separator set of points on which any two policies of the class differ.
    The deployed policy ``pi_t`` is the law of that perturbed leader; it is implicit,
    so ``decide_panel`` estimates ``q_i = pi_t(x_i)`` from ``n_samples`` fresh leaders and
    decides with the first of them. ``learn_panel`` estimates the positive-arm label cost
    ``2 (1 - y_i)`` by geometric resampling, ``K_i 2 (1 - y_i)`` with ``K_i`` the number
    of fresh leaders until one decides i positively (capped at ``max_resamples``).
    Per round: ``n_samples + max_resamples`` oracle calls, each O(N |S|).

    Regret (reconstruction, spec 3.3): ``O(T^(2/3))`` Lagrangian regret with
    ``max_resamples ~ T^(1/3)``; the constants are unverified. Geometric resampling
    uses the leader law at learning time: if other rounds were learned between a
    decision and its feedback, that law has moved a little (a small bias).

    Parameters
    ----------
    separator_points
        A separator set S (rows of individuals). Default: a greedy subset of
        ``n_candidates`` seeded uniform points in ``[0, 1]^d`` that splits the class as
        finely as those points can.
    perturbation_scale
        Laplace scale. ``None``: ``perturbation_factor * B * sqrt(k T)`` (``t`` without a horizon).
    perturbation_factor
        The factor of the default scale.
    n_samples
        Leaders sampled to estimate ``q`` (precision about ``0.5 / sqrt(n_samples)``).
    max_resamples
        Cap of geometric resampling; ``None``: ``ceil(T^(1/3))`` (``t`` without a horizon), at least 2.
    cost_bound
        The ``B`` of the default perturbation scale (default: the worst case ``2 + 2 C (k - 1)``).
    Others
        As :class:`FairExp2`.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.fair import FairFTPL
    >>> model = FairFTPL(weights=[[1.0], [-1.0]], offsets=[0.5, -0.5], separator_points=[[0.9]],
    ...                  perturbation_scale=1.0, fairness_weight=1.0, n_samples=200, max_resamples=20, seed=0)
    >>> people = np.array([[0.9], [0.1]])
    >>> for _ in range(30):
    ...     panel = model.decide_panel(people)
    ...     decisions, q = panel.decisions, panel.probabilities
    ...     model.learn_panel(decisions, np.where(decisions == 1, [1.0, 0.0], -1.0), q, people)
    >>> decisions, q = (panel := model.decide_panel(people)).decisions, panel.probabilities
    >>> decisions.tolist(), q.tolist()
    ([1, 0], [1.0, 0.0])
    """

    family = "fair_ftpl"

    GAUGES = {
        **_FairBase.GAUGES,
        "perturbation_scale": "Current Laplace scale of the perturbation",
        "mean_resamples": "Mean geometric-resampling count K_i over the label estimates so far",
        "oracle_calls": "Calls of the cost-sensitive oracle",
    }

    def __init__(
        self,
        n_features: int | None = None,
        features: list[str] | None = None,
        weights: Any = None,
        offsets: Any = None,
        n_directions: int = 16,
        n_offsets: int = 13,
        offset_range: Any = (-1.0, 1.0),
        separator_points: Any = None,
        n_candidates: int = 2000,
        horizon: int | None = None,
        fairness_weight: float | None = None,
        fairness_scale: float = 1.0,
        perturbation_scale: float | None = None,
        perturbation_factor: float = 1.0,
        n_samples: int = 200,
        max_resamples: int | None = None,
        gamma: float = 0.5,
        groups: list[str] | None = None,
        group_features: dict[str, str] | None = None,
        seed: int = 0,
        cost_bound: float | None = None,
    ):
        super().__init__(
            n_features,
            features,
            weights,
            offsets,
            n_directions,
            n_offsets,
            offset_range,
            horizon,
            fairness_weight,
            fairness_scale,
            gamma,
            groups,
            group_features,
            seed,
            cost_bound,
        )
        self.separator_points = separator_points
        self.n_candidates = n_candidates
        self.perturbation_scale = perturbation_scale
        self.perturbation_factor = perturbation_factor
        self.n_samples = n_samples
        self.max_resamples = max_resamples
        check_integer("n_candidates", n_candidates, ">= 1")
        check_number("perturbation_scale", perturbation_scale, "> 0", allow_none=True)
        check_number("perturbation_factor", perturbation_factor, "> 0")
        check_integer("n_samples", n_samples, ">= 1")
        check_integer("max_resamples", max_resamples, ">= 1", allow_none=True)
        if separator_points is not None:
            S = check_finite_matrix("separator_points", separator_points, 2)
            if S.shape[1] != self.d_:
                raise ValueError(f"separator_points: expected {self.d_} columns, got {S.shape[1]}")
        else:
            pool = np.random.default_rng(seed + 7919).random((int(n_candidates), self.d_))
            S = greedy_separator(self.W_, self.b_, pool)
        self.S_ = np.ascontiguousarray(S)
        self.VS_ = np.empty((self.n_policies, self.S_.shape[0]))
        K.evaluate_class(self.W_, self.b_, self.S_, self.VS_)
        self.VS_T_ = np.ascontiguousarray(self.VS_.T)
        self.oracle_calls = 0
        self.resample_total = 0.0
        self.resample_count = 0

    def current_perturbation_scale(self) -> float:
        if self.perturbation_scale is not None:
            return float(self.perturbation_scale)
        t = self.horizon if self.horizon is not None else self._round_index()
        return float(self.perturbation_factor) * self._cost_bound() * math.sqrt(max(self.k_, 1) * t)

    def current_max_resamples(self) -> int:
        if self.max_resamples is not None:
            return int(self.max_resamples)
        t = self.horizon if self.horizon is not None else self._round_index()
        return max(2, int(math.ceil(t ** (1.0 / 3.0))))

    def _leaders(self, n: int) -> np.ndarray:
        Z = self._rng.laplace(0.0, self.current_perturbation_scale(), size=(n, self.S_.shape[0]))
        leaders = np.empty(n, dtype=np.int64)
        K.perturbed_leaders(self.cost_, self.VS_T_, Z, leaders)
        self.oracle_calls += n
        return leaders

    @refuses_nonfinite(also=("actions",))  # the individuals' feature rows
    def decide_panel(self, actions: Any) -> PanelDecision:
        """Decide with a perturbed leader; ``q`` is the fraction of ``n_samples`` leaders deciding positively."""
        X = self._individuals(actions)
        V = self._class_on(X)
        leaders = self._leaders(int(self.n_samples))
        q = np.empty(X.shape[0])
        K.leader_frequencies(leaders, V, q)
        decisions = V[leaders[0]].astype(np.int64)
        self._record_decision(X, decisions, q)
        return PanelDecision(decisions, q)

    @refuses_nonfinite(also=("actions",))  # the individuals' feature rows
    def learn_panel(self, decisions: Any, labels: Any, probabilities: Any, actions: Any) -> None:
        """Geometric-resampling label costs for the positive decisions (others are ignored)."""
        X = self._individuals(actions)
        dec = self._decisions(decisions, X.shape[0])
        y = self._revealed(labels, dec)
        V = self._class_on(X)
        cap = self.current_max_resamples()
        repeats = np.zeros(X.shape[0])
        if dec.any():
            leaders = self._leaders(cap)
            K.geometric_repeats(leaders, V, dec, cap, repeats)
            self.resample_total += float(repeats.sum())
            self.resample_count += int(dec.sum())
        positive_arm = np.empty(X.shape[0])
        K.resampled_label_costs(dec, y, repeats, positive_arm)
        K.add_label_costs(self.cost_, V, positive_arm)
        self._count_labels(dec, y)
        self.n_updates += 1

    def gauges(self) -> dict[str, float]:
        g = super().gauges()
        g["perturbation_scale"] = self.current_perturbation_scale()
        g["mean_resamples"] = self.resample_total / self.resample_count if self.resample_count else 0.0
        g["oracle_calls"] = float(self.oracle_calls)
        return g

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["S"] = self.S_.copy()
        state["oracle_calls"] = int(self.oracle_calls)
        state["resample_total"] = float(self.resample_total)
        state["resample_count"] = int(self.resample_count)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, type(self).__name__)
        S = expect_array(state, "S", self.S_.shape, type(self).__name__)
        if not np.array_equal(S, self.S_):
            raise ValueError("FairFTPL: the checkpoint was written with a different separator set")
        super().load_state_dict(state)
        self.oracle_calls = int(state["oracle_calls"])
        self.resample_total = float(state["resample_total"])
        self.resample_count = int(state["resample_count"])


def greedy_separator(weights: np.ndarray, offsets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """A separator set for the class chosen greedily from ``candidates``.

    Repeatedly adds the candidate point that splits the current partition of the
    policies (policies agreeing on every chosen point) into the most parts, until
    no candidate splits further. Policies still together agree on every candidate.

    Examples
    --------
    >>> W = np.array([[1.0], [1.0], [0.0]]); b = np.array([0.3, 0.6, 1.0])
    >>> greedy_separator(W, b, np.array([[0.1], [0.5], [0.9]])).tolist()
    [[0.5], [0.9]]
    """
    W = np.ascontiguousarray(weights, dtype=np.float64)
    b = np.ascontiguousarray(offsets, dtype=np.float64)
    C = np.ascontiguousarray(candidates, dtype=np.float64)
    V = np.empty((W.shape[0], C.shape[0]))
    K.evaluate_class(W, b, C, V)
    part = np.zeros(W.shape[0], dtype=np.int64)
    chosen: list[int] = []
    n_parts = 1
    while True:
        keys = part[:, None] * 2 + V.astype(np.int64)
        ordered = np.sort(keys, axis=0)
        parts_after = 1 + (np.diff(ordered, axis=0) != 0).sum(axis=0)
        best = int(np.argmax(parts_after))
        if parts_after[best] <= n_parts:
            break
        chosen.append(best)
        _, part = np.unique(keys[:, best], return_inverse=True)
        part = part.astype(np.int64).reshape(-1)
        n_parts = int(parts_after[best])
    if not chosen:
        chosen = [0]
    return C[chosen].copy()
