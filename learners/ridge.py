"""Online ridge regression, the plain learner every other family builds on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from river import base

from . import ridge_kernels as K
from .contract import (
    FeatureIndex,
    SupervisedDefaults,
    as_series,
    check_bool,
    check_names,
    check_number,
    check_state,
    expect_array,
    finite_target,
    refuse_nonfinite,
)
from .ridge_kernels import FloatArray


class OnlineRidge(SupervisedDefaults, base.MiniBatchRegressor):
    """Online ridge regression (recursive least squares) with numba kernels.

    After ``t`` rows the weights are exactly the ridge solution
    ``(lam I + sum x x^T)^{-1} sum y x`` (``forgetting = 1``). With
    ``forgetting < 1`` old rows are discounted geometrically; the constant-trace rule
    (see :mod:`regretflow.learners.ridge_kernels`) keeps the state bounded on
    streams of any length, where plain RLS with forgetting overflows.

    Regret: the engine measures it against the best fixed linear predictor in
    hindsight (least squares on the same rows), which for ``forgetting = 1`` is
    O(d log T).

    Parameters
    ----------
    features
        Feature names in the order of the dense rows. Declared: the columns are fixed,
        an absent key counts as 0 and an unknown key is ignored with a warning (once per
        key). ``None``: the model grows (the River way): the first dict or frame fixes
        its features (sorted by name, so key order never matters), and a key or column
        first seen later gets a coefficient that starts as if the feature had been 0
        until then (``P`` gains ``1 / lam`` on its new diagonal and zeros elsewhere, ``w``
        a 0; exact with ``forgetting = 1``); an absent key counts as 0.
    lam
        Ridge penalty (> 0): the prior is ``w ~ N(0, I / lam)``.
    forgetting
        Forgetting factor in (0, 1]; 1 keeps every row with equal weight.
    fit_intercept
        Learn an intercept (a constant last feature, penalised like the others); on by
        default, as in River's linear models. A checkpoint decides for itself: a state
        saved without an intercept loads as a model without one.
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or filling in zeros.

    NaN, infinities and None in features or labels are refused with a ValueError before
    anything changes.

    Examples
    --------
    >>> from regretflow.learners import OnlineRidge
    >>> model = OnlineRidge(lam=1e-6)
    >>> for x in range(1, 50):
    ...     model.learn_one({"x": x}, 3.0 * x + 1.0)
    >>> round(model.predict_one({"x": 10}), 6)
    31.0
    >>> model.learn_one({"x": 1.0, "z": 2.0}, 8.0)  # a new key: a new coefficient
    >>> model.feature_names_in_
    ['x', 'z']
    """

    task = "regression"

    def __init__(
        self,
        features: list[str] | None = None,
        lam: float = 1.0,
        forgetting: float = 1.0,
        fit_intercept: bool = True,
        strict: bool = False,
    ):
        self.features = features
        self.lam = lam
        self.forgetting = forgetting
        self.fit_intercept = fit_intercept
        self.strict = strict
        check_names("features", features)
        check_number("lam", lam, "> 0")
        check_number("forgetting", forgetting, "(0, 1]")
        check_bool("fit_intercept", fit_intercept)
        check_bool("strict", strict)
        self.n_updates = 0
        self._beta = float(forgetting)
        self._allocate(FeatureIndex("OnlineRidge", features, strict, intercept=fit_intercept))

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {}
        yield {"lam": 0.1, "forgetting": 0.99, "fit_intercept": False}

    # -- set-up -------------------------------------------------------------------
    def _allocate(self, index: FeatureIndex) -> None:
        """The prior state for ``index``'s columns."""
        self._index = index
        d = index.width
        self._P: FloatArray = np.eye(d) / self.lam
        self._w: FloatArray = np.zeros(d)
        self._scratch: FloatArray = np.zeros(d)  # zeros, not np.empty: garbage NaNs would trip the non-finite state scan
        self._trace_cap = d / self.lam

    def _grow(self, new: list[str]) -> None:
        """New coefficients as if their features had been 0 so far: prior block ``I / lam``."""
        n_old, k = len(self._index), len(new)
        old = list(range(n_old)) + ([n_old + k] if self._index.intercept else [])  # the intercept stays last
        d = self._w.shape[0] + k
        P = np.zeros((d, d))
        P[np.ix_(old, old)] = self._P
        P[range(n_old, n_old + k), range(n_old, n_old + k)] = 1.0 / self.lam
        w = np.zeros(d)
        w[old] = self._w
        self._index.extend(new)
        self._P, self._w = P, w
        self._scratch = np.zeros(d)
        self._trace_cap = d / self.lam

    @property
    def weights(self) -> FloatArray:
        """Current weights (the intercept last when the model has one)."""
        return self._w.copy()

    @property
    def feature_names_in_(self) -> list[str]:
        """The model's features, in the order of :attr:`weights`."""
        return list(self._index.names)

    # -- River API ----------------------------------------------------------------
    def learn_one(self, x: dict[Any, Any], y: float) -> None:
        target = finite_target(y)
        row = self._index.learn_row(x, self._grow)
        K.ridge_update_one(self._P, self._w, row, target, self._beta, self._trace_cap, self._scratch)
        self.n_updates += 1

    def predict_one(self, x: dict[Any, Any]) -> float:
        return K.row_dot(self._w, self._index.predict_row(x))

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        self.observe_many(X, y)

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        rows = self._index.predict_matrix(X)
        out = np.empty(rows.shape[0])
        K.linear_predict(self._w, rows, out)
        return as_series(out, X)

    # -- engine path --------------------------------------------------------------
    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> FloatArray:
        """Predict each row, then learn it; returns the predictions (prequential).

        A frame's columns follow the feature policy (a new column grows the model)."""
        rows, targets = self._index.learn_matrix(X, y, self._grow)
        preds = np.empty(rows.shape[0])
        K.ridge_observe(self._P, self._w, rows, targets, self._beta, self._trace_cap, preds)
        self.n_updates += rows.shape[0]
        return preds

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "ridge",
            "features": np.array(self._index.names, dtype=str),
            "n_updates": self.n_updates,
            "fit_intercept": self._index.intercept,
        }
        if self._index.names or self._index.intercept:
            state["P"] = self._P.copy()
            state["w"] = self._w.copy()
        check_state(state, "OnlineRidge")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, "OnlineRidge")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        # the state decides whether the model has an intercept (0.1.0 states have no flag: their shapes tell)
        if "fit_intercept" in state:
            intercept = bool(state["fit_intercept"])
        elif "w" in state:
            intercept = np.asarray(state["w"]).shape == (len(names) + 1,)
        else:
            intercept = bool(self.fit_intercept)
        index = FeatureIndex("OnlineRidge", names if self.features is not None else None, self.strict, intercept)
        if not index.declared:  # features that came from the data: the model keeps growing
            index.extend(names)
        d = index.width
        P = expect_array(state, "P", (d, d), "OnlineRidge") if "P" in state else np.eye(d) / self.lam
        w = expect_array(state, "w", (d,), "OnlineRidge") if "w" in state else np.zeros(d)
        self.n_updates = int(state["n_updates"])
        self._allocate(index)
        self._P, self._w = P, w
