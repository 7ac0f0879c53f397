"""Online ridge regression, the plain learner every other family builds on."""

from __future__ import annotations

from typing import Any

import numpy as np
from river import base

from . import ridge_kernels as K
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
        Feature names in the order of the dense rows (declared: absent keys count as 0,
        unknown keys are ignored; the engine checks names itself). ``None``: taken
        from the first dict or frame learned (sorted by name), and the model grows: a key or column
        first seen later gets a new coefficient that starts as if the feature had been
        0 until then (``P`` gains ``1 / lam`` on its diagonal, ``w`` a 0; exact with
        ``forgetting = 1``), and an absent key counts as 0, as in River.
    lam
        Ridge penalty (> 0): the prior is ``w ~ N(0, I / lam)``.
    forgetting
        Forgetting factor in (0, 1]; 1 keeps every row with equal weight.
    fit_intercept
        Append a constant feature (penalised like the others).
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or filling in zeros.

    Examples
    --------
    >>> from regretflow.learners import OnlineRidge
    >>> model = OnlineRidge(features=["x"], lam=1e-6)
    >>> for x in range(1, 50):
    ...     model.learn_one({"x": x}, 3.0 * x)
    >>> round(model.predict_one({"x": 10}), 6)
    30.0
    """

    task = "regression"

    def __init__(
        self,
        features: list[str] | None = None,
        lam: float = 1.0,
        forgetting: float = 1.0,
        fit_intercept: bool = False,
        strict: bool = False,
    ):
        self.features = features
        self.lam = lam
        self.forgetting = forgetting
        self.fit_intercept = fit_intercept
        check_names("features", features)
        check_number("lam", lam, "> 0")
        check_number("forgetting", forgetting, "(0, 1]")
        check_bool("fit_intercept", fit_intercept)
        check_bool("strict", strict)
        self.strict = strict
        self._features = list(features) if features is not None else None
        self._P: np.ndarray | None = None
        self._w: np.ndarray | None = None
        self.n_updates = 0
        if self._features is not None:
            self._allocate(len(self._features))

    @classmethod
    def _unit_test_params(cls):
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {}
        yield {"lam": 0.1, "forgetting": 0.99, "fit_intercept": True}

    # -- set-up -------------------------------------------------------------------
    def _allocate(self, n_features: int) -> None:
        d = n_features + (1 if self.fit_intercept else 0)
        self._P = np.eye(d) / self.lam
        self._w = np.zeros(d)
        self._scratch = np.zeros(d)  # zeros, not np.empty: garbage NaNs would trip the non-finite state scan
        self._trace_cap = d / self.lam

    def _admit(self, names, learning: bool) -> None:
        """The feature policy for the keys of a dict or the columns of a frame."""
        if self.strict:
            refuse_feature_changes("OnlineRidge", names, self._features)
        elif learning and self.features is None:
            new, _ = feature_changes(names, self._features)
            if new:
                self._grow(new)

    def _grow(self, new: list) -> None:
        """New coefficients as if their features had been 0 so far: prior block ``I / lam``."""
        n_old, k = len(self._features), len(new)
        old = list(range(n_old)) + ([n_old + k] if self.fit_intercept else [])  # the intercept stays last
        d = self._w.shape[0] + k
        P = np.zeros((d, d))
        P[np.ix_(old, old)] = self._P
        P[range(n_old, n_old + k), range(n_old, n_old + k)] = 1.0 / self.lam
        w = np.zeros(d)
        w[old] = self._w
        self._features = self._features + list(new)
        self._P, self._w = P, w
        self._scratch = np.zeros(d)
        self._trace_cap = d / self.lam

    def _rows(self, X: Any) -> np.ndarray:
        if hasattr(X, "columns"):  # absent columns count as 0, unknown ones are not the model's
            X = X.reindex(columns=self._features, fill_value=0.0)
        X = as_matrix(X, self._features)
        if X.shape[1] != len(self._features):
            raise ValueError(f"expected {len(self._features)} features, got {X.shape[1]}")
        if self.fit_intercept:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        return X

    def _ensure(self, x: dict) -> None:
        if self._features is None:
            self._features = sorted(x, key=str)  # so that the first dict's key order does not matter
            self._allocate(len(self._features))

    @property
    def weights(self) -> np.ndarray:
        """Current weights (the intercept last when ``fit_intercept``)."""
        return self._w.copy()

    # -- River API ----------------------------------------------------------------
    def learn_one(self, x: dict, y: float) -> None:
        target = float(finite_targets(y)[0])
        if self._features is None:
            self._ensure(check_feature_dict(x))
        else:
            self._admit(check_feature_dict(x), learning=True)
        K.ridge_update_one(self._P, self._w, self._row(x), target, float(self.forgetting), self._trace_cap, self._scratch)
        self.n_updates += 1

    def predict_one(self, x: dict) -> float:
        if self._features is None:
            return 0.0
        if self.strict:
            self._admit(x, learning=False)
        return float(self._row(x) @ self._w)

    def _row(self, x: dict) -> np.ndarray:
        """One dict as a dense row (the single-event path skips the batch machinery)."""
        row = dict_to_row(x, self._features)
        return np.append(row, 1.0) if self.fit_intercept else row

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        if self._features is None and hasattr(X, "columns"):
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the columns are fixed
            self._features = sorted(X.columns, key=str)
            self._allocate(len(self._features))
        elif hasattr(X, "columns"):
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the model grows
            self._admit(X.columns, learning=True)
        self.observe_many(X, y)

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        if self._features is None:
            return self._series(np.zeros(len(X)), X)
        if hasattr(X, "columns") and self.strict:
            self._admit(X.columns, learning=False)
        rows = self._rows(X)
        out = np.empty(rows.shape[0])
        K.linear_predict(self._w, rows, out)
        return self._series(out, X)

    @staticmethod
    def _series(out: np.ndarray, X: Any) -> Any:
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(out, index=X.index)
        return out

    # -- engine path --------------------------------------------------------------
    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> np.ndarray:
        """Predict each row, then learn it; returns the predictions (prequential)."""
        if self._features is None:
            raise ValueError("features are unknown: pass features= or learn a dict or a DataFrame first")
        if hasattr(X, "columns") and self.strict:
            self._admit(X.columns, learning=False)
        rows = self._rows(X)
        targets = finite_targets(y)
        if targets.shape[0] != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {targets.shape[0]} targets")
        preds = np.empty(rows.shape[0])
        K.ridge_observe(self._P, self._w, rows, targets, float(self.forgetting), self._trace_cap, preds)
        self.n_updates += rows.shape[0]
        return preds

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "family": "ridge",
            "features": np.array(self._features if self._features is not None else [], dtype=str),
            "n_updates": self.n_updates,
        }
        if self._P is not None:
            state["P"] = self._P.copy()
            state["w"] = self._w.copy()
        check_state(state, "OnlineRidge")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, "OnlineRidge")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        self._features = names or None
        self.n_updates = int(state["n_updates"])
        if self._features is None:
            self._P = self._w = None
            return
        self._allocate(len(self._features))
        d = self._w.shape[0]
        self._P = expect_array(state, "P", (d, d), "OnlineRidge")
        self._w = expect_array(state, "w", (d,), "OnlineRidge")
