"""Optimistic online mirror descent (Euclidean) as an online least-squares regressor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from river import base

from . import omd_kernels as K
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
from .omd_kernels import FloatArray


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
        Feature names in the order of the dense rows. Declared: the columns are fixed,
        an absent key counts as 0 and an unknown key is ignored with a warning (once per
        key). ``None``: the keys of the first dict (or the columns of the first frame),
        sorted by name, and the model grows: a key first seen later gets a coordinate
        that starts at 0, exactly as if the feature had been 0 so far; an absent key
        counts as 0, as in River.
    diameter
        Diameter ``D`` of the feasible ball (radius ``D / 2``); sets the step scale. With
        ``adaptive_diameter`` it is the starting diameter.
    adaptive_diameter
        Double the diameter (before the round is played) in every round whose played
        point or update would leave the ball, so the ball never caps the weights the data
        needs (on by default; the paper's fixed ball with ``False``). A checkpoint saved
        without this setting loads with a fixed ball.
    grad_bound
        Gradient bound ``G`` in the step size; sets the size of the first steps.
    delta
        Positive constant under the square root of the step size.
    fit_intercept
        Learn an intercept (a constant last feature); on by default, as in River's
        linear models. A state saved without an intercept loads as a model without one.
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or filling in zeros.

    NaN, infinities and None in features or labels are refused with a ValueError before
    anything changes.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.omd import OptimisticOMDRegressor
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(2000, 5))
    >>> y = 8.0 + Z @ np.array([1.0, -1.0, 0.5, 0.0, 2.0]) + 0.1 * rng.normal(size=2000)
    >>> model = OptimisticOMDRegressor(features=list("abcde"))
    >>> preds = model.observe_many(Z, y)
    >>> bool(np.mean((preds[-500:] - y[-500:]) ** 2) < 0.05), model.current_diameter  # the ball grew from 10
    (True, 40.0)

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
        fit_intercept: bool = True,
        strict: bool = False,
        adaptive_diameter: bool = True,
    ):
        self.features = features
        self.diameter = diameter
        self.grad_bound = grad_bound
        self.delta = delta
        self.fit_intercept = fit_intercept
        self.strict = strict
        self.adaptive_diameter = adaptive_diameter
        check_names("features", features)
        check_number("diameter", diameter, "> 0")
        check_number("grad_bound", grad_bound, ">= 0")
        check_number("delta", delta, "> 0")
        check_bool("fit_intercept", fit_intercept)
        check_bool("strict", strict)
        check_bool("adaptive_diameter", adaptive_diameter)
        self.n_updates = 0
        self._adaptive = bool(adaptive_diameter)
        self._diameter = np.array([float(diameter)])  # an array: the adaptive kernel doubles it in place
        self._grad_bound, self._delta = float(grad_bound), float(delta)
        self._allocate(FeatureIndex("OptimisticOMDRegressor", features, strict, intercept=fit_intercept))

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {}
        yield {"diameter": 100.0, "grad_bound": 10.0, "fit_intercept": False, "adaptive_diameter": False}

    def _allocate(self, index: FeatureIndex) -> None:
        self._index = index
        d = index.width
        self._xhat: FloatArray = np.zeros(d)
        self._hint: FloatArray = np.zeros(d)
        self._variation: FloatArray = np.zeros(1)
        self._played: FloatArray = np.zeros(d)
        self._next: FloatArray = np.zeros(d)  # the point the next round plays (derived, not state)

    def _refresh_next(self) -> None:
        K.omd_played_point(
            self._xhat, self._hint, float(self._variation[0]), float(self._diameter[0]), self._grad_bound, self._delta, self._next
        )

    def _grow(self, new: list[str]) -> None:
        """A coordinate whose gradients were all 0 (its feature was 0) is still 0."""
        n_old, k = len(self._index), len(new)
        old = list(range(n_old)) + ([n_old + k] if self._index.intercept else [])  # the intercept stays last
        d = self._xhat.shape[0] + k
        xhat, hint = np.zeros(d), np.zeros(d)
        xhat[old], hint[old] = self._xhat, self._hint
        self._index.extend(new)
        self._xhat, self._hint, self._played = xhat, hint, np.zeros(d)
        self._next = np.zeros(d)
        self._refresh_next()

    @property
    def current_diameter(self) -> float:
        """The ball's diameter now (grown from ``diameter`` when adaptive)."""
        return float(self._diameter[0])

    @property
    def feature_names_in_(self) -> list[str]:
        """The model's features, in the order of :attr:`weights`."""
        return list(self._index.names)

    @property
    def weights(self) -> FloatArray:
        """The point the next round would play (intercept last when the model has one)."""
        played = np.empty_like(self._xhat)
        K.omd_played_point(
            self._xhat, self._hint, float(self._variation[0]), self.current_diameter, float(self.grad_bound), float(self.delta), played
        )
        return played

    # -- River API ----------------------------------------------------------------
    def learn_one(self, x: dict[Any, Any], y: float) -> None:
        target = finite_target(y)
        row = self._index.learn_row(x, self._grow)
        K.omd_learn_one(
            self._xhat,
            self._hint,
            self._variation,
            self._diameter,
            self._adaptive,
            row,
            target,
            self._grad_bound,
            self._delta,
            self._played,
            self._next,
        )
        self.n_updates += 1

    def predict_one(self, x: dict[Any, Any]) -> float:
        return K.played_dot(self._next, self._index.predict_row(x))

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        self.observe_many(X, y)

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        rows = self._index.predict_matrix(X)
        out = np.empty(rows.shape[0])
        K.omd_predict(
            self._xhat, self._hint, float(self._variation[0]), rows, self.current_diameter, float(self.grad_bound), float(self.delta), out
        )
        return as_series(out, X)

    # -- engine path --------------------------------------------------------------
    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> FloatArray:
        """Predict each row, then learn it; returns the predictions (prequential).

        A frame's columns follow the feature policy (a new column grows the model)."""
        rows, targets = self._index.learn_matrix(X, y, self._grow)
        preds = np.empty(rows.shape[0])
        self._learn_rows(rows, targets, preds)
        return preds

    def _learn_rows(self, rows: FloatArray, targets: FloatArray, preds: FloatArray) -> None:
        if self._adaptive:
            K.omd_observe_adaptive(
                self._xhat, self._hint, self._variation, self._diameter, rows, targets, float(self.grad_bound), float(self.delta), preds
            )
        else:
            K.omd_observe(
                self._xhat,
                self._hint,
                self._variation,
                rows,
                targets,
                self.current_diameter,
                float(self.grad_bound),
                float(self.delta),
                preds,
            )
        self.n_updates += rows.shape[0]
        self._refresh_next()

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "omd",
            "features": np.array(self._index.names, dtype=str),
            "n_updates": self.n_updates,
            "fit_intercept": self._index.intercept,
            "adaptive_diameter": self._adaptive,
            "diameter": self.current_diameter,
        }
        if self._index.width:
            state["xhat"] = self._xhat.copy()
            state["hint"] = self._hint.copy()
            state["variation"] = float(self._variation[0])
        check_state(state, "OptimisticOMDRegressor")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, "OptimisticOMDRegressor")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        # the state decides (0.1.0 states carry no flags: their shapes tell, and their ball was fixed)
        if "fit_intercept" in state:
            intercept = bool(state["fit_intercept"])
        elif "xhat" in state:
            intercept = np.asarray(state["xhat"]).shape == (len(names) + 1,)
        else:
            intercept = bool(self.fit_intercept)
        adaptive = bool(state.get("adaptive_diameter", False))
        diameter = check_number("state['diameter']", state.get("diameter", self.diameter), "> 0")
        index = FeatureIndex("OptimisticOMDRegressor", names if self.features is not None else None, self.strict, intercept)
        if not index.declared:  # features that came from the data: the model keeps growing
            index.extend(names)
        d = index.width
        xhat = expect_array(state, "xhat", (d,), "OptimisticOMDRegressor") if "xhat" in state else np.zeros(d)
        hint = expect_array(state, "hint", (d,), "OptimisticOMDRegressor") if "hint" in state else np.zeros(d)
        variation = float(state.get("variation", 0.0))
        self.n_updates = int(state["n_updates"])
        self._allocate(index)
        self._xhat, self._hint, self._variation = xhat, hint, np.array([variation])
        self._adaptive, self._diameter = adaptive, np.array([diameter])
        self._refresh_next()


def warm_up() -> None:
    """Compile (or load from cache) the kernels this learner calls."""
    K.warm_up()
