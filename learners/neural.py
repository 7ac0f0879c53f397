"""Online neural regression: a small fully connected net learned by one step per example."""

from __future__ import annotations

from typing import Any

import numpy as np
from river import base

from . import neural_kernels as NK
from .contract import (
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
    finite_targets,
    refuse_feature_changes,
    refuse_nonfinite,
    restore_rng,
    rng_state,
    warn_ignored_features,
)

ACTIVATIONS = {"tanh": NK.TANH, "softplus": NK.SOFTPLUS, "gelu": NK.GELU, "relu": NK.RELU}
LOSSES = {"squared": NK.SQUARED, "kl": NK.KL}
OPTIMIZERS = {"ogd": NK.OGD, "adabelief": NK.ADABELIEF, "exadam": NK.EXADAM}
DEFAULT_EPS = {"ogd": 0.0, "adabelief": 1e-16, "exadam": 1e-8}
KL_CLAMP = 1e-6


class OnlineNeuralRegressor(SupervisedDefaults, base.MiniBatchRegressor):
    """A fully connected network learned online, one gradient step per example.

    ``depth`` hidden layers of ``width`` units with biases and a smooth activation
    (``tanh`` by default; ``softplus``, ``gelu``, ``relu``) feed one linear output
    ``z``. With ``loss="squared"`` the prediction is ``z`` and the step follows
    ``(y - z)^2``; with ``loss="kl"`` the prediction is ``sigmoid(z)`` clamped to
    ``[1e-6, 1 - 1e-6]`` and the step follows the KL (log) loss of targets in [0, 1]
    (gradient ``sigmoid(z) - y`` in logit space). Each step is online gradient descent
    (its rate capped at ``1 / L`` along the gradient, so a step never moves the
    linearised output past its target whatever the width and feature scale; see
    :mod:`regretflow.learners.neural_kernels`), AdaBelief or EXAdam, optionally
    followed by the projection onto the ball of ``projection_radius`` around the
    initial weights. All arithmetic is float64 in numba kernels
    (:mod:`regretflow.learners.neural_kernels`).

    Initialisation: ``W_l ~ N(0, init_scale^2 / fan_in)`` (``fan_in`` of the first layer
    is the number of features one example has), biases 0, the output weights a
    random unit vector, the output bias 0.

    Regret: the engine reports the progressive-validation (prequential) loss; the
    comparator of online-regression regret is the best network in hindsight, which is
    not computable online, so no exact regret is claimed for this learner alone.

    Parameters
    ----------
    features
        Feature names in the order of the dense rows (``None``: the keys of the first
        dict or the columns of the first frame, sorted by name, so the initial weights
        do not depend on the key order). An absent key or column counts as 0; a key
        first seen after the input layer is built is ignored with a warning (once per
        key): the network's input width is fixed, so declare every feature up front.
    depth, width
        Number of hidden layers and units per hidden layer.
    activation
        ``"tanh"``, ``"softplus"``, ``"gelu"`` or ``"relu"``.
    loss
        ``"squared"`` or ``"kl"``.
    optimizer
        ``"ogd"``, ``"adabelief"`` (non-rectified, eps added into the second moment
        each step) or ``"exadam"`` (``exadam_variant="v2"``, the only one offered:
        no dynamic step size).
    learning_rate, beta1, beta2
        Step size; moment decays of the adaptive optimizers.
    eps
        Optimizer epsilon; ``None``: 1e-16 for AdaBelief (its package default),
        1e-8 for EXAdam.
    projection_radius
        Radius of the ball around the initial weights that every step is projected
        onto; ``None`` disables the projection.
    perturbation
        Scale of the prediction perturbation (0 = off); see
        :mod:`regretflow.learners.neural_kernels`. The exact form in the paper is unverified.
    init_scale
        Gain of the Gaussian initialisation.
    seed
        Seed of the initial weights.
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of ignoring new keys and filling in zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.neural import OnlineNeuralRegressor
    >>> model = OnlineNeuralRegressor(features=["x"], width=16, optimizer="adabelief",
    ...                               learning_rate=0.01, seed=1)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(3000):
    ...     x = rng.uniform(-2, 2)
    ...     model.learn_one({"x": x}, np.sin(x))
    >>> round(model.predict_one({"x": 1.0}), 1), round(float(np.sin(1.0)), 1)
    (0.8, 0.8)
    """

    task = "regression"

    def __init__(
        self,
        features: list[str] | None = None,
        depth: int = 1,
        width: int = 100,
        activation: str = "tanh",
        loss: str = "squared",
        optimizer: str = "ogd",
        learning_rate: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float | None = None,
        exadam_variant: str = "v2",
        projection_radius: float | None = None,
        perturbation: float = 0.0,
        init_scale: float = 1.0,
        seed: int = 0,
        strict: bool = False,
    ):
        self.features = features
        self.depth = depth
        self.width = width
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.exadam_variant = exadam_variant
        self.projection_radius = projection_radius
        self.perturbation = perturbation
        self.init_scale = init_scale
        self.seed = seed
        self.strict = strict
        check_names("features", features)
        check_bool("strict", strict)
        self._warned: set = set()  # new keys already warned about (not state: warnings only)
        self._check_parameters()
        self._features = list(features) if features is not None else None
        self._theta: np.ndarray | None = None
        self.n_updates = 0
        self.n_inputs = 0
        self.fan_in = 0
        if self._features is not None:
            self.allocate(len(self._features), len(self._features))

    @classmethod
    def _unit_test_params(cls):
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {"width": 8}
        yield {"depth": 2, "width": 8, "activation": "relu", "optimizer": "exadam", "learning_rate": 0.001}

    # -- set-up -------------------------------------------------------------------
    def _check_parameters(self) -> None:
        """The network's parameters (the neural bandits pass theirs on under the same names)."""
        check_integer("depth", self.depth, ">= 1")
        check_integer("width", self.width, ">= 1")
        for name, table in (("activation", ACTIVATIONS), ("loss", LOSSES), ("optimizer", OPTIMIZERS)):
            check_choice(name, getattr(self, name), table)
        check_choice("exadam_variant", self.exadam_variant, ("v2",))  # the pinned variant
        check_number("learning_rate", self.learning_rate, ">= 0")
        check_number("beta1", self.beta1, "[0, 1)")
        check_number("beta2", self.beta2, "[0, 1)")
        check_number("eps", self.eps, ">= 0", allow_none=True)
        check_number("projection_radius", self.projection_radius, "> 0", allow_none=True)
        check_number("perturbation", self.perturbation, ">= 0")
        check_number("init_scale", self.init_scale, "> 0")
        check_integer("seed", self.seed, ">= 0")

    def allocate(self, n_inputs: int, fan_in: int) -> None:
        """Draw the initial weights for rows of ``n_inputs`` columns, ``fan_in`` of which an
        example uses (``fan_in < n_inputs`` for block inputs such as the disjoint encoding)."""
        self._check_parameters()
        depth, width = int(self.depth), int(self.width)
        rng = np.random.default_rng(self.seed)
        p = NK.n_parameters(n_inputs, width, depth)
        theta = np.zeros(p)
        theta[: width * n_inputs] = rng.normal(0.0, self.init_scale / np.sqrt(fan_in), width * n_inputs)
        for layer in range(1, depth):
            off = NK.layer_offset(layer, n_inputs, width)
            theta[off : off + width * width] = rng.normal(0.0, self.init_scale / np.sqrt(width), width * width)
        v_off = NK.layer_offset(depth, n_inputs, width)
        v = rng.normal(size=width)
        theta[v_off : v_off + width] = v / np.linalg.norm(v)
        self._theta = theta
        self._theta0 = theta.copy()
        self._grad = np.zeros(p)
        self._first = np.zeros(p)
        self._second = np.zeros(p)
        self.n_inputs = int(n_inputs)
        self.fan_in = int(fan_in)
        self._act = ACTIVATIONS[self.activation]
        self._loss = LOSSES[self.loss]
        self._opt = OPTIMIZERS[self.optimizer]
        self._eps = float(DEFAULT_EPS[self.optimizer] if self.eps is None else self.eps)
        self._radius = float(self.projection_radius) if self.projection_radius is not None else 0.0
        self._rng = rng

    @property
    def n_parameters(self) -> int:
        """Number of weights and biases."""
        return 0 if self._theta is None else int(self._theta.shape[0])

    @property
    def parameters(self) -> np.ndarray:
        """A copy of the flat parameter vector (layout in :mod:`neural_kernels`)."""
        return self._theta.copy()

    def distance_from_init(self) -> float:
        """``||theta - theta0||``."""
        return float(np.linalg.norm(self._theta - self._theta0))

    # -- array path used by the bandits and the engine ------------------------------
    def raw_outputs(self, X: np.ndarray, row_of_item: np.ndarray, col_offsets: np.ndarray, perturb_key: int = 0) -> np.ndarray:
        """Network outputs ``z`` (before any sigmoid) of items given as (row of ``X``,
        column block): see :func:`neural_kernels.predict_items`."""
        out = np.empty(len(row_of_item))
        NK.predict_items(
            self._theta,
            self._theta0,
            X,
            row_of_item,
            col_offsets,
            self.n_inputs,
            int(self.width),
            int(self.depth),
            self._act,
            float(self.perturbation),
            int(perturb_key),
            out,
        )
        return out

    def link(self, z: np.ndarray) -> np.ndarray:
        """Predictions from raw outputs: identity (squared) or clamped sigmoid (KL)."""
        if self._loss == NK.SQUARED:
            return z
        return np.clip(1.0 / (1.0 + np.exp(-z)), KL_CLAMP, 1.0 - KL_CLAMP)

    def learn_item(self, x: np.ndarray, col_offset: int, target: float, perturb_key: int = 0, perturb_item: int = 0) -> float:
        """One gradient step on input ``x`` read at column block ``col_offset``; returns the
        loss before the step."""
        target = float(target)
        if not np.isfinite(target):
            raise ValueError(f"target must be finite, got {target!r}")
        if self._loss == NK.KL and not 0.0 <= target <= 1.0:
            raise ValueError(f"the KL loss needs targets in [0, 1], got {target!r}")
        self.n_updates += 1
        return NK.learn_one(
            self._theta,
            self._theta0,
            self._grad,
            self._first,
            self._second,
            self.n_updates,
            np.ascontiguousarray(x, dtype=np.float64),
            int(col_offset),
            self.n_inputs,
            int(self.width),
            int(self.depth),
            self._act,
            self._loss,
            target,
            KL_CLAMP,
            float(self.perturbation),
            int(perturb_key),
            int(perturb_item),
            self._opt,
            float(self.learning_rate),
            float(self.beta1),
            float(self.beta2),
            self._eps,
            self._radius,
        )

    # -- River API ----------------------------------------------------------------
    def _ensure(self, n: int) -> None:
        if self._theta is None:
            self.allocate(n, n)

    def _admit(self, names) -> None:
        """The feature policy: strict refuses any change, otherwise new keys are ignored, loudly."""
        if self.strict:
            refuse_feature_changes("OnlineNeuralRegressor", names, self._features)
            return
        warn_ignored_features("OnlineNeuralRegressor", names, self._features, self._warned)  # fixed input width

    def learn_one(self, x: dict, y: float) -> None:
        y = float(finite_targets(y)[0])
        check_feature_dict(x)
        if self._features is None:
            self._features = sorted(x, key=str)
        else:
            self._admit(x)
        self._ensure(len(self._features))
        self.learn_item(dict_to_row(x, self._features), 0, y)

    def predict_one(self, x: dict) -> float:
        if self._features is None:
            return 0.0
        self._admit(x)
        self._ensure(len(self._features))
        return float(self.predict_many(dict_to_row(x, self._features)[None, :])[0])

    def _rows(self, X: Any) -> np.ndarray:
        if hasattr(X, "columns"):  # absent columns count as 0
            self._admit(X.columns)
            X = X.reindex(columns=self._features, fill_value=0.0)
        rows = as_matrix(X, self._features)
        self._ensure(rows.shape[1])
        if rows.shape[1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} features, got {rows.shape[1]}")
        return rows

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        rows = self._rows(X)
        n = rows.shape[0]
        out = self.link(self.raw_outputs(rows, np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64)))
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(out, index=X.index)
        return out

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        if self._features is None and hasattr(X, "columns"):
            finite_targets(y)
            as_matrix(X, None)  # refuse non-finite values before the columns are fixed
            self._features = sorted(X.columns, key=str)
        self.observe_many(X, y)

    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> np.ndarray:
        """Predict each row, then learn it; returns the predictions (prequential)."""
        rows = self._rows(X)
        targets = finite_targets(y)
        if targets.shape[0] != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {targets.shape[0]} targets")
        preds = np.empty(rows.shape[0])
        zero = np.zeros(1, dtype=np.int64)
        for i in range(rows.shape[0]):
            preds[i] = self.link(self.raw_outputs(rows[i : i + 1], zero, zero))[0]
            self.learn_item(rows[i], 0, targets[i])
        return preds

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "neural",
            "features": np.array(self._features if self._features is not None else [], dtype=str),
            "n_updates": self.n_updates,
            "n_inputs": self.n_inputs,
            "fan_in": self.fan_in,
        }
        if self._theta is not None:
            state.update(
                theta=self._theta.copy(),
                theta0=self._theta0.copy(),
                first_moment=self._first.copy(),
                second_moment=self._second.copy(),
                **rng_state(self._rng),
            )
        check_state(state, "OnlineNeuralRegressor")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, "OnlineNeuralRegressor")
        names = [str(n) for n in np.asarray(state.get("features", []))]
        self._features = names or None
        self.n_updates = int(state["n_updates"])
        n_inputs = int(state["n_inputs"])
        if n_inputs == 0:
            self._theta = None
            self.n_inputs = self.fan_in = 0
            return
        self.allocate(n_inputs, int(state["fan_in"]))
        shape = self._theta.shape
        for key, attr in (("theta", "_theta"), ("theta0", "_theta0"), ("first_moment", "_first"), ("second_moment", "_second")):
            setattr(self, attr, expect_array(state, key, shape, "OnlineNeuralRegressor"))
        self._rng = restore_rng(state)
