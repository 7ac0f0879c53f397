"""Online neural regression: a small fully connected net learned by one step per example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from river import base

from . import neural_kernels as NK
from .contract import (
    FeatureIndex,
    SupervisedDefaults,
    all_finite,
    as_matrix,
    as_series,
    check_bool,
    check_choice,
    check_integer,
    check_names,
    check_number,
    check_state,
    expect_array,
    finite_target,
    finite_targets,
    refuse_nonfinite,
    restore_rng,
    rng_state,
)
from .neural_kernels import FloatArray

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
        Feature names in the order of the dense rows. Declared: the input layer is
        fixed, an absent key counts as 0 and an unknown key is ignored with a warning
        (once per key). ``None``: the keys of the first dict or the columns of the first
        frame, sorted by name (so the initial weights do not depend on the key order),
        and the network grows: a key first seen later gets an input column whose weights
        are a fresh initial draw (``N(0, init_scale^2 / fan_in)``, from the model's seeded
        generator) with optimizer moments 0, as if the feature had been 0 so far (a zero
        input gets no gradient); an absent key counts as 0, as in River.
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
        features, instead of growing or filling in zeros.

    NaN, infinities and None in features or targets are refused with a ValueError before
    anything changes.

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
        self._check_parameters()
        self._index = FeatureIndex("OnlineNeuralRegressor", features, strict)
        self._theta: FloatArray | None = None
        # whether the weights or moments may have changed since nonfinite_state() last found them finite
        self._unchecked = True
        self.n_updates = 0
        self.n_inputs = 0
        self.fan_in = 0
        if features is not None:
            self.allocate(len(features), len(features))

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
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
        self._unchecked = True

    @property
    def n_parameters(self) -> int:
        """Number of weights and biases."""
        return 0 if self._theta is None else int(self._theta.shape[0])

    @property
    def parameters(self) -> np.ndarray:
        """A copy of the flat parameter vector (layout in :mod:`neural_kernels`)."""
        return self._network().copy()

    def distance_from_init(self) -> float:
        """``||theta - theta0||``."""
        return float(np.linalg.norm(self._network() - self._theta0))

    def nonfinite_state(self) -> str | None:
        """The first of the weights and optimizer moments holding NaN or +-inf, else None (see
        :func:`~regretflow.learners.contract.all_finite`): the engine asks once per micro-batch.

        Only what a step writes is looked at, and only after one: the initial weights are a
        constant, the gradient a scratch buffer (a non-finite one reaches the weights), the
        moments untouched by plain gradient descent, and nothing changes between steps.

        >>> model = OnlineNeuralRegressor(features=["x"], width=4)
        >>> model.learn_one({"x": 1.0}, 0.5); model.nonfinite_state()
        >>> model._theta[0] = np.nan  # as a step gone wrong would leave it
        >>> model._unchecked = True; model.nonfinite_state()
        '_theta'
        """
        if not self._unchecked or self._theta is None:
            return None
        for name in ("_theta",) if self._opt == NK.OGD else ("_theta", "_first", "_second"):
            if not all_finite(getattr(self, name)):
                return name  # still unchecked: asked again, it says so again
        self._unchecked = False
        return None

    def _network(self) -> FloatArray:
        """The parameter vector; a clear error before the first example sized the network."""
        if self._theta is None:
            raise ValueError("OnlineNeuralRegressor: the network has no inputs yet: pass features= or learn an example first")
        return self._theta

    # -- array path used by the bandits and the engine ------------------------------
    def raw_outputs(self, X: np.ndarray, row_of_item: np.ndarray, col_offsets: np.ndarray, perturb_key: int = 0) -> np.ndarray:
        """Network outputs ``z`` (before any sigmoid) of items given as (row of ``X``,
        column block): see :func:`neural_kernels.predict_items`."""
        out = np.empty(len(row_of_item))
        NK.predict_items(
            self._network(),
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
        self._unchecked = True
        return NK.learn_one(
            self._network(),
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
    @property
    def feature_names_in_(self) -> list[str]:
        """The model's features, in the order of the input columns."""
        return list(self._index.names)

    def _grow(self, new: list[str]) -> None:
        """Input columns for ``new`` features, as if each had been 0 so far: its first-layer
        weights are their initial draw (a zero input gets zero gradient) and its optimizer
        moments 0. Exact for OGD; the adaptive optimizers' eps-only moment is left out."""
        if self._theta is None:  # the first dict or frame: the network's initial draw
            self._index.extend(new)
            self.allocate(len(new), len(new))
            return
        width, n_in, k = int(self.width), self.n_inputs, len(new)
        # drawn one feature at a time (k x width, transposed), from the model's own generator
        columns = self._rng.normal(0.0, self.init_scale / np.sqrt(self.fan_in), (k, width)).T

        def widen(flat: FloatArray, added: FloatArray) -> FloatArray:
            first_layer = flat[: width * n_in].reshape(width, n_in)
            return np.concatenate([np.hstack([first_layer, added]).ravel(), flat[width * n_in :]])

        zeros = np.zeros((width, k))
        self._theta = widen(self._theta, columns)
        self._theta0 = widen(self._theta0, columns)
        self._grad, self._first, self._second = widen(self._grad, zeros), widen(self._first, zeros), widen(self._second, zeros)
        self._unchecked = True
        self.n_inputs = n_in + k
        self._index.extend(new)

    def learn_one(self, x: dict[Any, Any], y: float) -> None:
        target = finite_target(y)
        row = self._index.learn_row(x, self._grow)
        if self._theta is None:  # no features at all (an empty dict): nothing to learn from
            return
        self.learn_item(row, 0, target)

    def predict_one(self, x: dict[Any, Any]) -> float:
        row = self._index.predict_row(x)
        if self._theta is None:
            return 0.0
        return float(self.link(self.raw_outputs(row[None, :], self._zero_index, self._zero_index))[0])

    _zero_index = np.zeros(1, dtype=np.int64)

    def _rows(self, X: Any, learning: bool) -> FloatArray:
        if hasattr(X, "columns"):
            new = self._index.admit(X.columns, learning)
            if new:
                as_matrix(X, None)  # refuse non-finite values before the network grows
                self._grow(new)
        if self._index.names or self._index.declared or hasattr(X, "columns"):
            rows = self._index.matrix(X)
        else:  # an unnamed network (arrays only, as the bandits use it): positional inputs
            rows = as_matrix(X, None)
        if self._theta is None:
            self.allocate(rows.shape[1], rows.shape[1])
        if rows.shape[1] != self.n_inputs:
            raise ValueError(f"OnlineNeuralRegressor: expected {self.n_inputs} features, got {rows.shape[1]}")
        return rows

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        if self._theta is None and hasattr(X, "columns"):
            self._index.admit(X.columns, learning=False)
            return as_series(np.zeros(len(X)), X)
        rows = self._rows(X, learning=False)
        n = rows.shape[0]
        out = self.link(self.raw_outputs(rows, np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64)))
        return as_series(out, X)

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        self.observe_many(X, y)

    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> FloatArray:
        """Predict each row, then learn it; returns the predictions (prequential).

        A frame's columns follow the feature policy (a new column grows the network)."""
        targets = finite_targets(y)
        rows = self._rows(X, learning=True)
        if targets.shape[0] != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {targets.shape[0]} targets")
        preds = np.empty(rows.shape[0])
        zero = self._zero_index
        for i in range(rows.shape[0]):
            preds[i] = self.link(self.raw_outputs(rows[i : i + 1], zero, zero))[0]
            self.learn_item(rows[i], 0, targets[i])
        return preds

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": "neural",
            "features": np.array(self._index.names, dtype=str),
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
        index = FeatureIndex("OnlineNeuralRegressor", names if self.features is not None else None, self.strict)
        if not index.declared:  # features that came from the data: the network keeps growing
            index.extend(names)
        n_inputs, fan_in = int(state["n_inputs"]), int(state["fan_in"])
        shape = (NK.n_parameters(n_inputs, int(self.width), int(self.depth)),)
        keys = ("theta", "theta0", "first_moment", "second_moment")
        arrays = [expect_array(state, key, shape, "OnlineNeuralRegressor") for key in keys] if n_inputs else []
        self._index = index  # every check passed: now assign
        self.n_updates = int(state["n_updates"])
        if n_inputs == 0:
            self._theta = None
            self.n_inputs = self.fan_in = 0
            return
        self.allocate(n_inputs, fan_in)
        self._theta, self._theta0, self._first, self._second = arrays
        self._rng = restore_rng(state)
        self._unchecked = True
