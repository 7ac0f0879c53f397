"""Groupwise-regret regression: sleeping experts over per-group online regressors.

Acharya, Arunachaleswaran, Kannan, Roth, Ziani, "Oracle Efficient Algorithms for
Groupwise Regret", ICLR 2024. One external-regret regressor per declared group (plus
``always_on``), each trained only on its group's rounds, mixed by AdaNormalHedge over
the groups awake for each event. The learner then has low regret on every group's
subsequence at once, against the best linear predictor for that group.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from river import base as river_base

from . import groupwise_kernels as K
from . import ridge_kernels
from .contract import (
    Observed,
    SupervisedDefaults,
    as_matrix,
    check_bool,
    check_choice,
    check_feature_dict,
    check_integer,
    check_names,
    check_number,
    check_state,
    dict_to_row,
    expect_array,
    feature_changes,
    finite_targets,
    refuse_feature_changes,
    refuse_nonfinite,
    restore_rng,
    rng_state,
    warn_ignored_features,
)

ALWAYS_ON = "always_on"
SERVE_MODES = ("mixture", "sampled")
# the 0.1.0 parameter `mode` and what each of its values serves now
LEGACY_MODES = {"expected": "sampled", "sample": "sampled", "mixture": "mixture"}
BUILTIN_BASES = ("ridge", "omd")


@dataclass(frozen=True, slots=True)
class GroupwiseObserved(Observed):
    """What :meth:`GroupwiseRegressor.observe` returned: the served predictions and their
    squared losses (what the engine's regret tracker scores), the paper's two quantities
    whatever is served (the expected loss ``p . l`` and the mixed prediction ``p . f`` of
    each row) and, when a draw is served, the drawn expert of each row.

    >>> seen = GroupwiseObserved(np.array([0.5]), np.array([0.25]), np.array([0.2]), np.array([0.4]), np.array([1]), ("a", "always_on"))
    >>> seen.expected_losses, seen.mixture_predictions, seen.answer_fields
    (array([0.2]), array([0.4]), [{'expert': 'always_on'}])
    """

    expected_losses: np.ndarray
    mixture_predictions: np.ndarray
    drawn: np.ndarray | None = None  # index of the served expert per row; None when the mixture is served
    group_names: tuple[str, ...] = ()

    @property
    def answer_fields(self) -> list[dict[str, Any]] | None:
        """Per-row fields an answer record adds: the drawn expert (group name) when a draw is served."""
        if self.drawn is None:
            return None
        return [{"expert": self.group_names[int(g)]} for g in self.drawn]


class GroupwiseRegressor(SupervisedDefaults, river_base.MiniBatchRegressor):
    """Groupwise-regret regressor: AdaNormalHedge over sleeping per-group experts.

    Every declared group, and the ``always_on`` group the learner adds last, owns an
    online regressor (its *expert*) that learns only on the rounds where the group is
    present. For each event AdaNormalHedge puts a distribution ``p`` on the awake
    experts (weights kept in log space: no overflow on long streams); the learner's
    loss on a round is compared with each awake expert's, which gives the per-group
    statistics ``R_g`` (``expert_regret``) that drive the weights.

    Groups intersect freely (an event may be young, female and a smoker at once). A
    group that has never been present keeps its fresh expert and ``R_g = C_g = 0``
    until its first event: its first appearance starts cleanly.

    **What is served is what is scored.** ``serve="mixture"`` (the default) serves the
    deterministic mixed prediction ``p . f``, whose squared loss is never above the
    paper's expected loss ``p . l`` (Jensen). ``serve="sampled"`` is the paper's
    randomised learner: it serves the prediction of one expert drawn from ``p`` (the
    answer record names it in ``expert``). Either way :meth:`observe` reports the
    squared loss of the served prediction, which is what the engine's regret tracker
    scores, and also returns the paper's ``p . l`` and ``p . f`` of every row (the
    reproduction reports ``p . l``, as the paper does). The state update does not
    depend on ``serve``; only the sampled mode draws from the generator.

    :meth:`predict_one` and :meth:`predict_many` always return the mixed prediction
    ``p . f``: a River ``predict_one`` must be a pure function of the state (no
    random draw), and the mixture is the best deterministic point prediction under
    squared loss. A ``predict`` event is therefore scored on the mixture in both modes.

    **Group membership.** Through the engine, :meth:`observe` receives a boolean
    matrix (rows x declared groups, without ``always_on``). Through River's dict API
    a group is present when ``x[group_name]`` is truthy; with pandas frames, when the
    column named like the group is non-zero; with plain arrays and no ``groups``
    argument, when the feature named like the group is non-zero (groups with no
    such feature are asleep).

    **Features.** With ``features=None`` the model takes the keys of the first dict or
    frame, and grows on a key or column first seen later: each expert gets a new
    coefficient that starts as if the feature had been 0 so far (a ridge expert's
    ``P`` gains ``1 / lam`` on its diagonal; an OMD expert's point and hint a 0), and
    an absent key counts as 0, as in River. Declared ``features`` stay fixed (unknown
    keys are ignored with a warning, once per key). ``strict=True`` refuses any change of keys. Experts given as a
    custom ``base`` cannot grow: a new key is then ignored with a warning.

    Regret: the engine measures each group's regret against the best fixed linear
    predictor in hindsight on that group's rounds, using the reported losses
    (``observe(...).losses``, the served prediction's). ``R_g`` (the gauge
    ``expert_regret``) is the learner's regret against group g's own expert in the
    paper's expected loss; it is exact and costs nothing.

    Parameters
    ----------
    features
        Feature names in the order of the dense rows. ``None``: the keys of the first
        dict (or the columns of the first frame), sorted by name, growing later (see
        above). Group flags present in ``x`` are features too when ``features`` is
        ``None`` (the paper gives the group indicators to the model as features).
    groups
        Names of the declared groups (``always_on`` is added by the learner).
    base
        The experts: ``"ridge"`` (online ridge, O(d^2) per awake group and event),
        ``"omd"`` (optimistic online gradient descent, O(d)), or a regressor of this
        package following the learner contract (a prototype cloned for each group;
        Python loop, slower).
    lam
        Ridge penalty of the ``"ridge"`` experts (the paper uses 1).
    serve
        ``"mixture"`` (the mixed prediction ``p . f``) or ``"sampled"`` (one expert
        drawn from ``p``, the paper's learner): what :meth:`observe` serves and scores.
    fit_intercept
        Give every expert a constant feature 1 (penalised like the others), after the
        input features. The paper's runs have none (the reproduction turns it off).
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or counting absent keys as 0.
    clip
        Clip expert predictions to [0, 1] (for targets scaled to [0, 1]); off in the
        paper's runs.
    seed
        Seed of the generator that draws the served expert (``serve="sampled"``).
    omd_diameter, omd_grad_bound, omd_delta
        Step-size constants of the ``"omd"`` experts (ball of radius
        ``omd_diameter / 2``), see :class:`regretflow.learners.omd.OptimisticOMDRegressor`.
    mode
        Deprecated (0.1.0): ``"expected"`` and ``"sample"`` mean ``serve="sampled"``,
        ``"mixture"`` means ``serve="mixture"``.

    Examples
    --------
    Two groups whose targets follow opposite slopes; a single linear model cannot
    fit both, the per-group experts can, and AdaNormalHedge learns to trust them:

    >>> import numpy as np
    >>> from regretflow.learners.groupwise import GroupwiseRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(400, 1))
    >>> in_a = rng.uniform(size=400) < 0.5
    >>> y = np.where(in_a, X[:, 0], 1.0 - X[:, 0])
    >>> model = GroupwiseRegressor(features=["x"], groups=["a", "b"])
    >>> seen = model.observe(X, y, np.column_stack([in_a, ~in_a]))
    >>> bool(np.all(seen.losses == (seen.predictions - y) ** 2))  # what is served is scored
    True
    >>> print(round(float(np.mean(seen.losses[:100])), 4),
    ...       round(float(np.mean(seen.losses[300:])), 4))
    0.0366 0.0006
    >>> model.probabilities([True, False]).round(3)  # a, b, always_on
    array([1., 0., 0.])
    >>> round(model.predict_one({"x": 0.9, "a": True}), 1)
    0.9
    >>> round(model.predict_one({"x": 0.9, "b": True}), 1)
    0.1

    References
    ----------
    K. Acharya, E. R. Arunachaleswaran, S. Kannan, A. Roth, J. Ziani, "Oracle
    Efficient Algorithms for Groupwise Regret", ICLR 2024, arXiv:2310.04652.
    H. Luo, R. E. Schapire, "Achieving All with No Parameters: AdaNormalHedge",
    COLT 2015.
    """

    task = "regression"

    GAUGES: ClassVar[dict[str, str]] = {
        "always_on_expert_regret": "AdaNormalHedge R of the always_on group: cumulative expected loss p.l "
        "minus the always_on expert's cumulative loss",
        "always_on_expert_regret_rate": "always_on R divided by the number of rounds",
    }
    GROUP_GAUGES: ClassVar[dict[str, str]] = {
        "expert_regret": "AdaNormalHedge R_g: cumulative expected loss p.l on group g's rounds minus "
        "the loss of group g's own expert on them (regret against that expert)",
        "expert_regret_rate": "R_g / T_g, with T_g the number of group g's rounds (0 before any)",
    }

    def __init__(
        self,
        features: list[str] | None = None,
        groups: list[str] | None = None,
        base: Any = "ridge",
        lam: float = 1.0,
        serve: str = "mixture",
        fit_intercept: bool = True,
        strict: bool = False,
        clip: bool = False,
        seed: int = 0,
        omd_diameter: float = 10.0,
        omd_grad_bound: float = 1.0,
        omd_delta: float = 1.0,
        mode: str | None = None,
    ):
        self.features = features
        self.groups = groups
        self.base = base
        self.lam = lam
        self.serve = serve
        self.fit_intercept = fit_intercept
        self.strict = strict
        self.clip = clip
        self.seed = seed
        self.omd_diameter = omd_diameter
        self.omd_grad_bound = omd_grad_bound
        self.omd_delta = omd_delta
        self.mode = mode

        self._check_params()
        self._serve = self._served_mode()
        self._intercept = bool(fit_intercept)  # False after loading a 0.1.0 state, which has none
        self._declared = [str(g) for g in (groups or [])]
        self._group_names = self._declared + [ALWAYS_ON]
        self._features = list(features) if features is not None else None
        self._warned: set[Any] = set()  # new keys already warned about (not state: warnings only)
        self._rng = np.random.default_rng(seed)
        self.n_updates = 0
        self._allocated = False
        if self._features is not None:
            self._allocate()

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {"groups": ["ordinal_date"]}
        yield {"groups": ["ordinal_date"], "base": "omd", "serve": "sampled", "fit_intercept": False}
        yield {"groups": ["ordinal_date"], "lam": 0.5, "clip": True}

    # -- set-up -------------------------------------------------------------------
    def _check_params(self) -> None:
        check_names("features", self.features)
        check_choice("serve", self.serve, SERVE_MODES)
        if self.mode is not None:
            check_choice("mode", self.mode, tuple(LEGACY_MODES))
        if isinstance(self.base, str):
            check_choice("base", self.base, BUILTIN_BASES)
        elif not (hasattr(self.base, "observe_many") and hasattr(self.base, "clone")):
            raise TypeError(f"base: expected 'ridge', 'omd' or a regretflow regressor with observe_many and clone, got {self.base!r}")
        check_number("lam", self.lam, "> 0")
        check_bool("fit_intercept", self.fit_intercept)
        check_bool("strict", self.strict)
        check_bool("clip", self.clip)
        check_integer("seed", self.seed, ">= 0")
        check_number("omd_diameter", self.omd_diameter, "> 0")
        check_number("omd_grad_bound", self.omd_grad_bound, ">= 0")
        check_number("omd_delta", self.omd_delta, "> 0")
        names = check_names("groups", self.groups) or []
        if ALWAYS_ON in names:
            raise ValueError(f"groups: expected names other than {ALWAYS_ON!r} (the learner adds it), got {names}")

    def _served_mode(self) -> str:
        if self.mode is None:
            return str(self.serve)
        served = LEGACY_MODES[str(self.mode)]
        warnings.warn(f"GroupwiseRegressor: mode={self.mode!r} is deprecated, use serve={served!r}", DeprecationWarning, stacklevel=3)
        return served

    @property
    def _width(self) -> int:
        """Columns of a dense row: the input features, then the intercept's constant 1."""
        return len(self._features or []) + (1 if self._intercept else 0)

    def _allocate(self) -> None:
        n_groups, d = len(self._group_names), self._width
        self._R = np.zeros(n_groups)
        self._C = np.zeros(n_groups)
        self._counts = np.zeros(n_groups)
        if self.base == "ridge":
            self._P = np.repeat((np.eye(d) / self.lam)[None, :, :], n_groups, axis=0)
            self._theta = np.zeros((n_groups, d))
        elif self.base == "omd":
            self._xhat = np.zeros((n_groups, d))
            self._hint = np.zeros((n_groups, d))
            self._variation = np.zeros(n_groups)
        else:
            self._experts = [self._new_expert() for _ in range(n_groups)]
        self._index_features()
        self._allocated = True

    def _index_features(self) -> None:
        self._feature_index = {name: i for i, name in enumerate(self._features or [])}

    def _new_expert(self) -> Any:
        names = list(self._features or []) + (["intercept"] if self._intercept else [])
        params = {"features": names} if "features" in self.base._get_params() else {}
        return self.base.clone(params)

    def _ensure_features(self, names: Iterable[Any]) -> None:
        if self._features is None:
            self._features = sorted(names, key=str)
            self._allocate()

    def _admit(self, names: Iterable[Any], learning: bool) -> None:
        """The feature policy for the keys of a dict or the columns of a frame."""
        names = list(names)
        assert self._features is not None
        if self.strict:
            refuse_feature_changes("GroupwiseRegressor", names, self._features)
        elif learning and self.features is None:
            if not isinstance(self.base, str):  # a custom expert cannot grow: say so once per key
                warn_ignored_features("GroupwiseRegressor", names, self._features, self._warned)
                return
            new, _ = feature_changes(names, self._features)
            if new:
                self._grow(new)
        elif learning:  # declared features stay fixed: say once per key that it is ignored
            warn_ignored_features("GroupwiseRegressor", names, self._features, self._warned)

    def _grow(self, new: list[Any]) -> None:
        """New coefficients in every expert, as if their features had been 0 so far."""
        assert self._features is not None
        n_old, k = len(self._features), len(new)
        old = list(range(n_old)) + ([n_old + k] if self._intercept else [])  # the intercept stays last
        added = list(range(n_old, n_old + k))
        n_groups, d = len(self._group_names), self._width + k
        if self.base == "ridge":
            P = np.zeros((n_groups, d, d))
            P[np.ix_(range(n_groups), old, old)] = self._P
            P[:, added, added] = 1.0 / self.lam
            theta = np.zeros((n_groups, d))
            theta[:, old] = self._theta
            self._P, self._theta = P, theta
        else:  # omd: a coordinate whose gradients were all 0 is still 0
            xhat, hint = np.zeros((n_groups, d)), np.zeros((n_groups, d))
            xhat[:, old], hint[:, old] = self._xhat, self._hint
            self._xhat, self._hint = xhat, hint
        self._features = self._features + [str(name) for name in new]
        self._index_features()

    @property
    def group_names(self) -> list[str]:
        """All groups in state order: the declared ones, then ``always_on``."""
        return list(self._group_names)

    # -- conversions --------------------------------------------------------------
    def _rows(self, X: Any) -> np.ndarray:
        """Dense rows of an array or frame (absent columns count as 0), the intercept's 1 appended."""
        assert self._features is not None
        if hasattr(X, "columns"):
            X = X.reindex(columns=self._features, fill_value=0.0)
        rows = as_matrix(X, self._features)
        if rows.shape[1] != len(self._features):
            raise ValueError(f"expected {len(self._features)} features, got {rows.shape[1]}")
        return self._with_intercept(rows)

    def _with_intercept(self, rows: np.ndarray) -> np.ndarray:
        if self._intercept:
            return np.ascontiguousarray(np.hstack([rows, np.ones((rows.shape[0], 1))]))
        return rows

    def _dict_row(self, x: dict[str, Any]) -> np.ndarray:
        assert self._features is not None
        return self._with_intercept(dict_to_row(x, self._features)[None, :])

    def _membership(self, X: Any, n_rows: int, groups: Any) -> np.ndarray:
        """Membership of every row in all groups (always_on last), as uint8."""
        A = np.zeros((n_rows, len(self._group_names)), dtype=np.uint8)
        A[:, -1] = 1
        n_declared = len(self._declared)
        if groups is not None:
            G = np.asarray(groups)
            if G.shape != (n_rows, n_declared):
                raise ValueError(
                    f"groups must be a (rows x declared groups) = ({n_rows}, {n_declared}) matrix "
                    f"without {ALWAYS_ON!r}, got shape {G.shape}"
                )
            A[:, :n_declared] = G != 0
        elif hasattr(X, "columns"):
            for j, name in enumerate(self._declared):
                if name in X.columns:
                    A[:, j] = X[name].fillna(0).to_numpy() != 0
        else:
            rows = np.asarray(X)
            for j, name in enumerate(self._declared):
                i = self._feature_index.get(name)
                if i is not None:
                    A[:, j] = rows[:, i] != 0
        return A

    def _membership_one(self, x: dict[str, Any]) -> np.ndarray:
        return np.array([[bool(x.get(name, False)) for name in self._declared]], dtype=bool)

    # -- River API ----------------------------------------------------------------
    def learn_one(self, x: dict, y: float) -> None:
        target = finite_targets(y)
        check_feature_dict(x)
        if self._features is None:
            self._ensure_features(x)
        else:
            self._admit(x, learning=True)
        row = self._dict_row(x)
        self._observe_rows(row, target, self._membership(row, 1, self._membership_one(x)))

    def predict_one(self, x: dict) -> float:
        """The mixed prediction ``p . f`` over the groups present in ``x`` (pure)."""
        if self._features is None:
            return 0.0
        if self.strict:
            self._admit(x, learning=False)
        row = self._dict_row(x)
        return float(self._predict_rows(row, self._membership(row, 1, self._membership_one(x)))[0])

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        if hasattr(X, "columns"):
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the columns are fixed or grown
            if self._features is None:
                self._ensure_features(X.columns)
            else:
                self._admit(X.columns, learning=True)
        self.observe(X, y, groups)

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        """Mixed predictions ``p . f`` (no state change); a Series for a frame."""
        if self._features is None:
            out = np.zeros(len(X))
        else:
            if hasattr(X, "columns") and self.strict:
                self._admit(X.columns, learning=False)
            rows = self._rows(X)
            out = self._predict_rows(rows, self._membership(X, rows.shape[0], groups))
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(out, index=X.index)
        return out

    def _predict_rows(self, rows: np.ndarray, A: np.ndarray) -> np.ndarray:
        out = np.empty(rows.shape[0])
        if self.base == "ridge":
            K.groupwise_ridge_predict(self._theta, self._R, self._C, rows, A, bool(self.clip), out)
        elif self.base == "omd":
            K.groupwise_omd_predict(
                self._xhat,
                self._hint,
                self._variation,
                self._R,
                self._C,
                rows,
                A,
                bool(self.clip),
                float(self.omd_diameter),
                float(self.omd_grad_bound),
                float(self.omd_delta),
                out,
            )
        else:
            p = np.empty(len(self._group_names))
            awake = np.empty(len(self._group_names), dtype=np.int64)
            for r in range(rows.shape[0]):
                m = K.awake_groups(A, r, awake)
                K.anh_probabilities(self._R, self._C, awake, m, p)
                f = np.array([self._experts[g].predict_many(rows[r : r + 1])[0] for g in awake[:m]])
                if self.clip:
                    f = np.clip(f, 0.0, 1.0)
                out[r] = float(np.dot(p[:m], f))
        return out

    # -- engine path --------------------------------------------------------------
    def observe_many(self, X: Any, y: Any, groups: Any = None) -> np.ndarray:
        """Predict each row, then learn it (prequential); returns the served predictions."""
        return self.observe(X, y, groups).predictions

    def observe(self, X: Any, y: Any, groups: Any = None) -> GroupwiseObserved:
        """Predict each row, then learn it (prequential): the served predictions and their
        squared losses (what the engine's regret tracker scores), with the paper's ``p . l``
        and ``p . f`` of every row and, with ``serve="sampled"``, the drawn experts.

        ``groups`` is a boolean matrix (rows x declared groups, without ``always_on``).
        """
        if self._features is None:
            if not hasattr(X, "columns"):
                raise ValueError("features are unknown: pass features= or a DataFrame")
            as_matrix(X, None)
            self._ensure_features(X.columns)
        elif hasattr(X, "columns") and self.strict:
            self._admit(X.columns, learning=False)
        rows = self._rows(X)
        return self._observe_rows(rows, finite_targets(y), self._membership(X, rows.shape[0], groups))

    def _observe_rows(self, rows: np.ndarray, targets: np.ndarray, A: np.ndarray) -> GroupwiseObserved:
        """The prequential run itself: ``A`` is the full membership (always_on last, uint8)."""
        n = rows.shape[0]
        if targets.shape[0] != n:
            raise ValueError(f"{n} rows but {targets.shape[0]} targets")
        sampled = self._serve == "sampled"
        uniforms = np.asarray(self._rng.random(n), dtype=np.float64) if sampled else np.full(n, -1.0)
        served = np.empty(n)
        expected = np.empty(n)
        mixture = np.empty(n)
        drawn = np.full(n, -1, dtype=np.int64)
        clip = bool(self.clip)
        if self.base == "ridge":
            K.groupwise_ridge_observe(
                self._P, self._theta, self._R, self._C, self._counts, rows, targets, A, uniforms, clip, served, expected, mixture, drawn
            )
        elif self.base == "omd":
            K.groupwise_omd_observe(
                self._xhat,
                self._hint,
                self._variation,
                self._R,
                self._C,
                self._counts,
                rows,
                targets,
                A,
                uniforms,
                clip,
                float(self.omd_diameter),
                float(self.omd_grad_bound),
                float(self.omd_delta),
                served,
                expected,
                mixture,
                drawn,
            )
        else:
            self._observe_generic(rows, targets, A, uniforms, served, expected, mixture, drawn)
        self.n_updates += n
        losses = (served - targets) ** 2
        return GroupwiseObserved(served, losses, expected, mixture, drawn if sampled else None, tuple(self._group_names))

    def _observe_generic(
        self,
        rows: np.ndarray,
        targets: np.ndarray,
        A: np.ndarray,
        uniforms: np.ndarray,
        served: np.ndarray,
        expected: np.ndarray,
        mixture: np.ndarray,
        drawn: np.ndarray,
    ) -> None:
        n_groups = len(self._group_names)
        awake = np.empty(n_groups, dtype=np.int64)
        p = np.empty(n_groups)
        f = np.empty(n_groups)
        for r in range(rows.shape[0]):
            m = K.awake_groups(A, r, awake)
            K.anh_probabilities(self._R, self._C, awake, m, p)
            for k in range(m):
                g = awake[k]
                pred = float(self._experts[g].observe_many(rows[r : r + 1], targets[r : r + 1])[0])
                f[k] = min(max(pred, 0.0), 1.0) if self.clip else pred
                self._counts[g] += 1.0
            expected[r], mixture[r], chosen = K.anh_settle(self._R, self._C, awake, m, p, f, targets[r], uniforms[r])
            served[r] = mixture[r] if chosen < 0 else f[chosen]
            drawn[r] = -1 if chosen < 0 else awake[chosen]

    def probabilities(self, groups_row: Any) -> np.ndarray:
        """AdaNormalHedge distribution over all groups (``always_on`` last) for one event.

        ``groups_row`` is the event's membership in the declared groups; sleeping
        groups get probability 0.
        """
        n_groups = len(self._group_names)
        member = np.asarray(groups_row, dtype=bool).reshape(1, -1)
        A = np.zeros((1, n_groups), dtype=np.uint8)
        A[0, :-1] = member[0]
        A[0, -1] = 1
        R = self._R if self._allocated else np.zeros(n_groups)
        C = self._C if self._allocated else np.zeros(n_groups)
        awake = np.empty(n_groups, dtype=np.int64)
        p = np.empty(n_groups)
        m = K.awake_groups(A, 0, awake)
        K.anh_probabilities(R, C, awake, m, p)
        full = np.zeros(n_groups)
        full[awake[:m]] = p[:m]
        return full

    # -- monitoring ---------------------------------------------------------------
    def _stat(self, name: str) -> np.ndarray:
        if not self._allocated:
            return np.zeros(len(self._group_names))
        return getattr(self, name).copy()

    @property
    def expert_regret(self) -> np.ndarray:
        """``R_g`` for every group (``always_on`` last)."""
        return self._stat("_R")

    @property
    def expert_abs_regret(self) -> np.ndarray:
        """``C_g`` for every group (``always_on`` last); ``|R_g| <= C_g``."""
        return self._stat("_C")

    @property
    def group_rounds(self) -> np.ndarray:
        """``T_g``, the number of rounds each group was present (``always_on`` last)."""
        return self._stat("_counts")

    def _regret_rate(self) -> np.ndarray:
        R, T = self.expert_regret, self.group_rounds
        return np.divide(R, T, out=np.zeros_like(R), where=T > 0)

    def gauges(self) -> dict[str, float]:
        return {
            "always_on_expert_regret": float(self.expert_regret[-1]),
            "always_on_expert_regret_rate": float(self._regret_rate()[-1]),
        }

    def group_gauges(self) -> dict[str, np.ndarray]:
        """One value per declared group (the order of the ``groups`` columns)."""
        return {
            "expert_regret": self.expert_regret[:-1],
            "expert_regret_rate": self._regret_rate()[:-1],
        }

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "groupwise",
            "base": self.base if isinstance(self.base, str) else type(self.base).__name__,
            "features": np.array(self._features if self._features is not None else [], dtype=str),
            "groups": np.array(self._declared, dtype=str),
            "fit_intercept": self._intercept,
            "n_updates": self.n_updates,
            **rng_state(self._rng),
        }
        if self._allocated:
            state["R"] = self._R.copy()
            state["C"] = self._C.copy()
            state["counts"] = self._counts.copy()
            if self.base == "ridge":
                state["P"] = self._P.copy()
                state["theta"] = self._theta.copy()
            elif self.base == "omd":
                state["xhat"] = self._xhat.copy()
                state["hint"] = self._hint.copy()
                state["variation"] = self._variation.copy()
            else:
                for g, expert in enumerate(self._experts):
                    for key, value in expert.state_dict().items():
                        state[f"expert{g}.{key}"] = value
        check_state(state, "GroupwiseRegressor")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; groups declared now but absent from it start fresh.

        A state without ``fit_intercept`` (0.1.0) has no intercept and keeps none, so
        it goes on exactly as it would have.
        """
        owner = "GroupwiseRegressor"
        refuse_nonfinite(state, owner)
        expected_base = self.base if isinstance(self.base, str) else type(self.base).__name__
        if str(state.get("base")) != expected_base:
            raise ValueError(f"{owner}: state has base {state.get('base')!r}, this learner {expected_base!r}")
        saved = [str(g) for g in np.asarray(state.get("groups", []))]
        dropped = [g for g in saved if g not in self._declared]
        if dropped:
            raise ValueError(f"{owner}: state has groups {dropped} that are not declared any more")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        self._features = names or None
        self._intercept = bool(state.get("fit_intercept", False))
        self.n_updates = int(state["n_updates"])
        self._rng = restore_rng(state)
        if self._features is None:
            self._allocated = False
            return
        self._allocate()
        d = self._width
        n_saved = len(saved) + 1
        # saved group i (always_on last) goes to slot target[i]; new groups keep fresh state
        target = [self._declared.index(g) for g in saved] + [len(self._group_names) - 1]
        R = expect_array(state, "R", (n_saved,), owner)
        C = expect_array(state, "C", (n_saved,), owner)
        counts = expect_array(state, "counts", (n_saved,), owner)
        self._R[target], self._C[target], self._counts[target] = R, C, counts
        if self.base == "ridge":
            self._P[target] = expect_array(state, "P", (n_saved, d, d), owner)
            self._theta[target] = expect_array(state, "theta", (n_saved, d), owner)
        elif self.base == "omd":
            self._xhat[target] = expect_array(state, "xhat", (n_saved, d), owner)
            self._hint[target] = expect_array(state, "hint", (n_saved, d), owner)
            self._variation[target] = expect_array(state, "variation", (n_saved,), owner)
        else:
            for i, g in enumerate(target):
                prefix = f"expert{i}."
                self._experts[g].load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})


def warm_up() -> None:
    """Compile (or load from cache) the kernels this learner calls."""
    ridge_kernels.warm_up()
    K.warm_up()
