"""Optimistic online mirror descent (Euclidean) as an online least-squares regressor."""

from __future__ import annotations

from typing import Any

import numpy as np
from river import base

from . import omd_kernels as K
from .contract import (
    SupervisedDefaults,
    as_matrix,
    check_bool,
    check_feature_dict,
    check_names,
    check_number,
    check_state,
    dict_to_row,
    expect_array,
    feature_changes,
    finite_targets,
    refuse_feature_changes,
    refuse_nonfinite,
)


class OptimisticOMDRegressor(SupervisedDefaults, base.MiniBatchRegressor):
    """Online least squares by optimistic online gradient descent, O(d) per event.

    The Euclidean case of optimistic online mirror descent (Chen et al., ICML 2023)
    on ``0.5 (w.x - y)^2`` over the ball ``||w|| <= diameter / 2``, with the last
    gradient as the hint and the anytime step size
    ``diameter / sqrt(delta + 4 grad_bound^2 + sum_s ||g_s - M_s||^2)``, the same in
    both half-steps (see :mod:`regretflow.learners.omd_kernels`). It needs no horizon
    and no tuning beyond the scale constants, adapts to how much consecutive
    gradients differ, and costs O(d) where online ridge costs O(d^2): the base
    learner for wide features.

    Regret: against the best fixed weights in the ball (least squares on the same
    rows when that fit lies in the ball), O(sqrt(T)) in the worst case and smaller
    on slowly changing streams.

    Parameters
    ----------
    features
        Feature names in the order of the dense rows (declared: absent keys count as 0,
        unknown keys are ignored). ``None``: the keys of the first dict (or the
        columns of the first frame), sorted by name, and the model grows: a key first
        seen later gets a coordinate that starts at 0, exactly as if the feature had
        been 0 so far; an absent key counts as 0, as in River.
    diameter
        Diameter ``D`` of the feasible ball (radius ``D / 2``); sets the step scale.
    grad_bound
        Gradient bound ``G`` in the step size; sets the size of the first steps.
    delta
        Positive constant under the square root of the step size.
    fit_intercept
        Append a constant feature.
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or filling in zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.omd import OptimisticOMDRegressor
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(2000, 5))
    >>> y = Z @ np.array([1.0, -1.0, 0.5, 0.0, 2.0]) + 0.1 * rng.normal(size=2000)
    >>> model = OptimisticOMDRegressor(features=list("abcde"))
    >>> preds = model.observe_many(Z, y)
    >>> round(float(np.mean((preds[-500:] - y[-500:]) ** 2)), 4)
    0.0211

    References
    ----------
    S. Chen, Y.-J. Zhang, W.-W. Tu, P. Zhao, L. Zhang, "Optimistic Online Mirror
    Descent for Bridging Stochastic and Adversarial Online Convex Optimization",
    ICML 2023, arXiv:2302.04552.
    """

    task = "regression"

    def __init__(
        self,
        features: list[str] | None = None,
        diameter: float = 10.0,
        grad_bound: float = 1.0,
        delta: float = 1.0,
        fit_intercept: bool = False,
        strict: bool = False,
    ):
        self.features = features
        self.diameter = diameter
        self.grad_bound = grad_bound
        self.delta = delta
        self.fit_intercept = fit_intercept
        check_names("features", features)
        check_number("diameter", diameter, "> 0")
        check_number("grad_bound", grad_bound, ">= 0")
        check_number("delta", delta, "> 0")
        check_bool("fit_intercept", fit_intercept)
        check_bool("strict", strict)
        self.strict = strict
        self._features = list(features) if features is not None else None
        self._xhat: np.ndarray | None = None
        self.n_updates = 0
        if self._features is not None:
            self._allocate()

    @classmethod
    def _unit_test_params(cls):
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {}
        yield {"diameter": 100.0, "grad_bound": 10.0, "fit_intercept": True}

    def _allocate(self) -> None:
        d = len(self._features) + (1 if self.fit_intercept else 0)
        self._xhat = np.zeros(d)
        self._hint = np.zeros(d)
        self._variation = np.zeros(1)

    def _ensure(self, names) -> None:
        if self._features is None:
            self._features = sorted(names, key=str)
            self._allocate()

    def _admit(self, names, learning: bool) -> None:
        """The feature policy for the keys of a dict or the columns of a frame."""
        if self.strict:
            refuse_feature_changes("OptimisticOMDRegressor", names, self._features)
        elif learning and self.features is None:
            new, _ = feature_changes(names, self._features)
            if new:
                n_old, k = len(self._features), len(new)
                old = list(range(n_old)) + ([n_old + k] if self.fit_intercept else [])  # the intercept stays last
                d = self._xhat.shape[0] + k
                for name in ("_xhat", "_hint"):  # a coordinate whose gradients were all 0 is still 0
                    grown = np.zeros(d)
                    grown[old] = getattr(self, name)
                    setattr(self, name, grown)
                self._features = self._features + new

    def _rows(self, X: Any) -> np.ndarray:
        if hasattr(X, "columns"):
            X = X.reindex(columns=self._features, fill_value=0.0)
        rows = as_matrix(X, self._features)
        if rows.shape[1] != len(self._features):
            raise ValueError(f"expected {len(self._features)} features, got {rows.shape[1]}")
        if self.fit_intercept:
            rows = np.hstack([rows, np.ones((rows.shape[0], 1))])
        return rows

    @property
    def weights(self) -> np.ndarray:
        """The point the next round would play (intercept last when ``fit_intercept``)."""
        played = np.empty_like(self._xhat)
        K.omd_played_point(
            self._xhat, self._hint, float(self._variation[0]), float(self.diameter), float(self.grad_bound), float(self.delta), played
        )
        return played

    # -- River API ----------------------------------------------------------------
    def learn_one(self, x: dict, y: float) -> None:
        target = finite_targets(y)
        if self._features is None:
            self._ensure(check_feature_dict(x))
        else:
            self._admit(check_feature_dict(x), learning=True)
        self.observe_many(dict_to_row(x, self._features)[None, :], target)

    def predict_one(self, x: dict) -> float:
        if self._features is None:
            return 0.0
        if self.strict:
            self._admit(x, learning=False)
        return float(self.predict_many(dict_to_row(x, self._features)[None, :])[0])

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        if hasattr(X, "columns") and self._features is None:
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the columns are fixed
            self._ensure(X.columns)
        elif hasattr(X, "columns"):
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the model grows
            self._admit(X.columns, learning=True)
        self.observe_many(X, y)

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        if self._features is None:
            out = np.zeros(len(X))
        else:
            if hasattr(X, "columns") and self.strict:
                self._admit(X.columns, learning=False)
            rows = self._rows(X)
            out = np.empty(rows.shape[0])
            K.omd_predict(
                self._xhat,
                self._hint,
                float(self._variation[0]),
                rows,
                float(self.diameter),
                float(self.grad_bound),
                float(self.delta),
                out,
            )
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(out, index=X.index)
        return out

    # -- engine path --------------------------------------------------------------
    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> np.ndarray:
        """Predict each row, then learn it; returns the predictions (prequential)."""
        if self._features is None:
            if not hasattr(X, "columns"):
                raise ValueError("features are unknown: pass features= or a DataFrame")
            self._ensure(X.columns)
        if hasattr(X, "columns") and self.strict:
            self._admit(X.columns, learning=False)
        rows = self._rows(X)
        targets = finite_targets(y)
        if targets.shape[0] != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {targets.shape[0]} targets")
        preds = np.empty(rows.shape[0])
        K.omd_observe(
            self._xhat, self._hint, self._variation, rows, targets, float(self.diameter), float(self.grad_bound), float(self.delta), preds
        )
        self.n_updates += rows.shape[0]
        return preds

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "omd",
            "features": np.array(self._features if self._features is not None else [], dtype=str),
            "n_updates": self.n_updates,
        }
        if self._xhat is not None:
            state["xhat"] = self._xhat.copy()
            state["hint"] = self._hint.copy()
            state["variation"] = float(self._variation[0])
        check_state(state, "OptimisticOMDRegressor")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, "OptimisticOMDRegressor")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        self._features = names or None
        self.n_updates = int(state["n_updates"])
        if self._features is None:
            self._xhat = None
            return
        self._allocate()
        d = self._xhat.shape[0]
        self._xhat = expect_array(state, "xhat", (d,), "OptimisticOMDRegressor")
        self._hint = expect_array(state, "hint", (d,), "OptimisticOMDRegressor")
        self._variation = np.array([float(state["variation"])])


def warm_up() -> None:
    """Compile (or load from cache) the kernels this learner calls."""
    K.warm_up()
