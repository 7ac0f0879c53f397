"""AEF-OCL: analytic (recursive ridge) online classifier with a pseudo-feature generator."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from river import base

from . import analytic_ridge_kernels as K
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
    feature_changes,
    refuse_feature_changes,
    refuse_nonfinite,
    warn_ignored_features,
)

GENERATOR_MODES = ("auto", False, "before_answer", "every_n", "timer")
UPDATE_RULES = ("sherman-morrison", "cholesky", "blas", "auto")
# Seed-sequence tags that keep the expansion and generator draws apart.
_EXPANSION_STREAM = 0x45585041
_GROWTH_STREAM = 0x47524F57  # expansion columns of features that appear after the model was built
_GENERATOR_STREAM = 0x50464721
# `update="auto"`: rank-1 numba updates below this expanded dimension, BLAS block updates from it
# on. Measured by tests/benchmarks/bench_analytic_ridge.py --reproduction (3,000 shuttle rows, micro-batches
# of 64, one BLAS thread), with the vectorised rank-1 kernel: at d = 128 rank-1 takes 8 us/event against
# BLAS blocks' 11, at d = 256 26 against 21.
AUTO_BLAS_FROM_DIM = 256
# Probability mixed in from the uniform distribution (see predict_proba_one): keeps
# every class's probability in [1e-6, 1 - 1e-6] with two or more classes known.
PROBA_FLOOR = 1e-6
_LABEL_KINDS = {"bool": bool, "int": int, "str": str}
_KERNELS: dict[str, Callable[..., None]] = {
    "sherman-morrison": K.sherman_morrison_observe,
    "cholesky": K.cholesky_observe,
    "blas": K.blas_observe,
}


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``z`` onto the probability simplex.

    It keeps the arg-max and gives the probability vector nearest, in squared loss,
    to a least-squares estimate of a one-hot target.

    >>> sparsemax(np.array([[0.9, 0.2, -0.3]])).round(3).tolist()
    [[0.85, 0.15, 0.0]]
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if z.shape[1] == 0:
        return z.copy()
    ordered = -np.sort(-z, axis=1)
    cumulative = np.cumsum(ordered, axis=1) - 1.0
    ranks = np.arange(1, z.shape[1] + 1)
    support = ordered - cumulative / ranks > 0
    k = support.sum(axis=1)
    tau = cumulative[np.arange(z.shape[0]), k - 1] / k
    return np.maximum(z - tau[:, None], 0.0)


class AnalyticRidgeClassifier(SupervisedDefaults, base.MiniBatchClassifier):
    """Online analytic classifier (AEF-OCL): exact recursive ridge on one-hot targets.

    Every learned row updates ``R = (gamma I + sum phi phi^T)^{-1}`` and the weights
    ``W = R sum phi y^T`` recursively, so after any stream, in any order and batching,
    the weights equal the batch ridge classifier on all rows seen so far (to rounding).
    ``phi`` is the input row, or a fixed seeded random ReLU expansion of it
    (``expansion_dim > 0``, ``W_buf ~ U(+-1/sqrt(d_in))``, no bias). Classes may
    appear at any time: a new class gets a zero weight column, which is exact.

    The optional pseudo-feature generator (PFG) corrects class imbalance at answer
    time. Per class it keeps the running mean and variance of the input features
    (Welford); at a refresh it tops every seen class up to the largest class count
    with Gaussian pseudo-rows ``mean + std * N(0, I)`` passed through the same
    expansion and computes answer weights ``W_eval`` = ridge on real and pseudo
    rows. Answers between refreshes come from the live state plus the correction
    ``W_eval - W`` of the last refresh, so that each row is answered after every real
    row before it was learned (answering a micro-batch from weights computed before
    it cost the long-tailed digits stream 1.3 points of prequential per-class
    accuracy). The real-data state is never touched, and the draws are keyed by
    ``(seed, n_updates)``, so a refresh is a pure function of the real-data state:
    refreshing twice gives the same model. With the generator on, the model also keeps
    ``A = sum phi phi^T`` and ``M = sum phi y^T`` (another ``d^2`` floats, about ``d^2``
    more work a row), so that a refresh with many pseudo-rows is one Cholesky solve
    ``(A + A_pseudo + gamma I)^{-1} (M + M_pseudo)`` instead of a long recursion.

    Regret: the a-priori squared one-hot loss of the live recursive state, minus the
    loss of the best ridge classifier in hindsight on the same rows, kept exactly
    (see :meth:`hindsight_regret`).

    Parameters
    ----------
    features
        Input feature names in the order of dense rows (declared: absent keys count as
        0, unknown keys are ignored with a warning, once per key). ``None``: the sorted keys of the first dict seen
        (or the columns of the first DataFrame, or ``x0, x1, ...`` for the first
        array), and the model grows on a key or column first seen later, as if the
        feature had been 0 on every row learned so far: without the expansion ``phi``
        gains a coordinate (``R`` gains ``1 / gamma`` on its diagonal, the weights a
        zero row); with it, the random expansion gains an input column, seeded by the
        feature's position, at the scale fixed when the model was built, so the ``phi``
        of past rows and hence the ridge state stay exact (a grown model equals one
        declared with every feature up to that column's random draw). An absent key
        counts as 0, as in River.
    classes
        Labels known in advance, given the first columns in this order (optional;
        other labels are still added as they appear).
    gamma
        Ridge penalty (> 0).
    expansion_dim
        Width ``d`` of the random ReLU expansion; 0 uses the inputs as they are.
    fit_intercept
        Append a constant 1 to ``phi`` (after the expansion).
    generator
        When the pseudo-feature generator refreshes its correction:
        ``"auto"`` (the default) as ``"before_answer"`` while no class has more
        learned rows than ``phi`` has dimensions, then never again (answers from the
        live ridge state, and the generator's extra sums are dropped): the generator
        helps where data are scarce against the dimension (long-tailed digits:
        +4 points held-out, prequential per-class accuracy unchanged) and hurt
        held-out accuracy where every class has thousands of rows (shuttle, rainfall;
        docs/learners/analytic-ridge.md);
        ``False`` never (answers come from the live ridge state);
        ``"before_answer"`` before any answer given after new learning (at the start
        of an ``observe_many`` micro-batch; every ``predict_*`` call) and right after
        a row that brings a new class;
        ``"every_n"`` after every ``refresh_events`` learned rows and whenever a new
        class appears (inside ``observe_many``, at the exact row, so it does not
        depend on the micro-batching); ``"timer"`` before an answer once
        ``refresh_seconds`` have passed since the last refresh, or a new class appeared.
        Between refreshes every row is answered by the live ridge state (all real
        rows before it) plus the correction of the last refresh, ``W_eval - W`` then.
    refresh_events
        Period of ``generator="every_n"``, in learned rows.
    refresh_seconds
        Period of ``generator="timer"``, in seconds of wall-clock time.
    noise
        Multiplier of the pseudo-features' standard deviation (1.0 in the paper).
    update
        How a block of rows is learned: ``"sherman-morrison"`` (one rank-1 update per
        row in numba; the state is bit-identical whatever the micro-batching),
        ``"cholesky"`` (one Woodbury block update per micro-batch in numba loops),
        ``"blas"`` (the same with numpy/BLAS calls) or ``"auto"`` (rank-1 updates
        for single rows and ``d < 256``, BLAS blocks otherwise). The block rules give
        the same state up to rounding (about 1e-13 relative), not bit for bit.
    seed
        Seed of the expansion and of the generator's draws.
    strict
        Refuse (ValueError) any dict or frame whose keys differ from the model's
        features, instead of growing or counting absent keys as 0.

    Attributes
    ----------
    n_updates
        Rows learned (the model version).
    classes_
        Labels seen, in the order of the weight columns.

    Examples
    --------
    >>> from regretflow.learners.analytic_ridge import AnalyticRidgeClassifier
    >>> model = AnalyticRidgeClassifier(features=["x", "y"], gamma=0.1)
    >>> for i in range(30):
    ...     model.learn_one({"x": 1.0, "y": 0.1 * (i % 3)}, "left")
    ...     model.learn_one({"x": 0.1 * (i % 3), "y": 1.0}, "right")
    >>> model.predict_one({"x": 0.9, "y": 0.2})
    'left'
    >>> {k: round(v, 2) for k, v in model.predict_proba_one({"x": 0.2, "y": 1.0}).items()}
    {'left': 0.06, 'right': 0.94}

    With the generator, a rare class keeps its share of the answers:

    >>> model = AnalyticRidgeClassifier(gamma=1.0, expansion_dim=64, generator="before_answer", seed=3)
    >>> rng = np.random.default_rng(0)
    >>> for label, n, centre in (("common", 300, 0.0), ("rare", 6, 1.5)):
    ...     model.learn_many(rng.normal(centre, 1.0, (n, 4)), [label] * n)
    >>> model.predict_many(np.full((1, 4), 1.5)).tolist()
    ['rare']
    >>> round(model.hindsight_regret(), 3) >= 0
    True

    References
    ----------
    H. Zhuang, D. Fang, K. Tong, Y. Liu, Z. Zeng, X. Zhou, C. Chen, "Online Analytic
    Exemplar-Free Continual Learning with Large Models for Imbalanced Autonomous
    Driving Task", IEEE Transactions on Vehicular Technology, 2024 (arXiv 2405.17779).
    """

    task = "classification"

    GAUGES = {
        "analytic_regret": "cumulative squared one-hot loss of the prequential ridge outputs minus the loss of the best ridge classifier in hindsight on the same rows (exact)",
        "analytic_cumulative_loss": "cumulative squared one-hot loss of the prequential ridge outputs (real rows only)",
        "analytic_hindsight_loss": "ridge objective of the best ridge classifier in hindsight on the rows seen (exact)",
        "analytic_answer_regret": "cumulative squared one-hot loss of the answers given (generator weights when on) minus the hindsight ridge loss",
        "analytic_classes_seen": "number of distinct labels learned",
        "analytic_generator_refreshes": "pseudo-feature generator refreshes so far",
        "analytic_generator_pseudo_rows": "pseudo-rows used by the latest generator refresh",
        "analytic_generator_age_events": "rows learned since the answer weights were last refreshed",
    }
    GROUP_GAUGES = {
        "analytic_group_mean_squared_loss": "mean squared one-hot loss of the answers given on the group's rows",
        "analytic_group_rows": "rows of the group observed",
    }

    def __init__(
        self,
        features: list[str] | None = None,
        classes: list | None = None,
        gamma: float = 1.0,
        expansion_dim: int = 0,
        fit_intercept: bool = False,
        generator: bool | str = "auto",
        refresh_events: int = 1000,
        refresh_seconds: float = 60.0,
        noise: float = 1.0,
        update: str = "sherman-morrison",
        seed: int = 0,
        strict: bool = False,
    ):
        self.features = features
        self.classes = classes
        self.gamma = gamma
        self.expansion_dim = expansion_dim
        self.fit_intercept = fit_intercept
        self.generator = generator
        self.refresh_events = refresh_events
        self.refresh_seconds = refresh_seconds
        self.noise = noise
        self.update = update
        self.seed = seed
        self.strict = strict
        self._warned: set[Any] = set()  # ignored keys already warned about (not state: warnings only)
        self._expansion_bound = 0.0
        self._validate()
        self._reset()
        if features is not None:
            self._allocate(list(features))

    # -- set-up ---------------------------------------------------------------------
    def _reset(self) -> None:
        self._features: list[str] | None = None
        self._classes: list = []
        self._class_index: dict = {}
        self._label_kind: str | None = None
        self._W_buf: np.ndarray | None = None
        # empty until the features are known (_allocate)
        self._R: np.ndarray = np.zeros((0, 0))
        self._W: np.ndarray = np.zeros((0, 0))
        self._counts = np.zeros(0, dtype=np.int64)
        self._means: np.ndarray = np.zeros((0, 0))
        self._m2: np.ndarray = np.zeros((0, 0))
        self._A: np.ndarray | None = None  # sum phi phi^T, kept only with the generator
        self._M: np.ndarray | None = None  # sum phi y^T, kept only with the generator
        self._W_eval: np.ndarray | None = None
        # W_eval minus the live W at the last refresh: the generator's correction, added to the live
        # state so that every row is answered after the rows before it were learned
        self._W_delta: np.ndarray | None = None
        self._live_correction = True  # False for a 0.1.0 state, which answered a block from W_eval alone
        self._eval_at = -1
        self._eval_mask = np.zeros(0, dtype=bool)
        self._refreshes = 0
        self._pseudo_rows = 0
        self._refreshed_time = time.monotonic()
        self._cumulative_loss = 0.0
        self._hindsight_loss = 0.0
        self._answer_loss = 0.0
        self._group_loss = np.zeros(0)
        self._group_rows = np.zeros(0, dtype=np.int64)
        self.n_updates = 0

    def _validate(self) -> None:
        check_names("features", self.features)
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not isinstance(self.classes, (list, tuple)):
                raise TypeError(f"classes: expected a list of distinct labels or None, got {self.classes!r}")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes: expected a list of distinct labels or None, got {self.classes!r}")
        check_number("gamma", self.gamma, "> 0")
        check_integer("expansion_dim", self.expansion_dim, ">= 0")
        check_bool("fit_intercept", self.fit_intercept)
        check_choice("generator", self.generator, GENERATOR_MODES)
        check_integer("refresh_events", self.refresh_events, ">= 1")
        check_number("refresh_seconds", self.refresh_seconds, ">= 0")
        check_number("noise", self.noise, ">= 0")
        check_choice("update", self.update, UPDATE_RULES)
        check_integer("seed", self.seed, ">= 0")
        check_bool("strict", self.strict)

    def _allocate(self, features: list[str]) -> None:
        self._validate()
        self._features = list(features)
        d_in = len(self._features)
        if self.expansion_dim > 0:
            rng = np.random.default_rng([int(self.seed), _EXPANSION_STREAM])
            self._expansion_bound = 1.0 / np.sqrt(max(d_in, 1))
            self._W_buf = rng.uniform(-self._expansion_bound, self._expansion_bound, size=(self.expansion_dim, d_in))
        d = self.dim
        self._R = np.eye(d) / float(self.gamma)
        self._W = np.zeros((d, 0))
        if self._generating:
            self._A = np.zeros((d, d))
            self._M = np.zeros((d, 0))
        self._means = np.zeros((0, d_in))
        self._m2 = np.zeros((0, d_in))
        if self.classes is not None:
            for label in self.classes:
                self._add_class(label)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Configurations River's estimator checks run on (``river.checks``)."""
        yield {}
        yield {"expansion_dim": 16, "generator": "every_n", "refresh_events": 50, "update": "cholesky"}
        yield {"generator": False, "fit_intercept": True, "gamma": 0.1, "update": "blas"}

    @property
    def dim(self) -> int:
        """Dimension ``d`` of ``phi`` (expansion width or input width, plus the intercept)."""
        width = self.expansion_dim if self.expansion_dim > 0 else len(self._features or [])
        return width + (1 if self.fit_intercept else 0)

    @property
    def classes_(self) -> list:
        return list(self._classes)

    @property
    def label_kind(self) -> str | None:
        """The kind of class label learned so far (``"bool"``, ``"int"`` or ``"str"``; None before the first);
        a label of another kind is refused."""
        return self._label_kind

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def _generating(self) -> bool:
        """Whether the generator corrects the answers now. ``"auto"``: while no class has
        more learned rows than ``phi`` has dimensions (a pure function of the state; once
        off, off for good, since counts only grow)."""
        if self.generator is False:
            return False
        if self.generator != "auto":
            return True
        return self._counts.size == 0 or int(self._counts.max()) <= self.dim

    def _stop_auto_generator(self) -> None:
        """``"auto"`` past its range: drop the generator's sums and weights (answers from the live state)."""
        if self.generator == "auto" and not self._generating and self._A is not None:
            self._A = self._M = self._W_eval = self._W_delta = None

    @property
    def _is_stochastic(self) -> bool:
        return self.expansion_dim > 0 or self.generator is not False

    def _label_kind_of(self, label: Any) -> str:
        if label is None or (isinstance(label, (float, np.floating)) and not math.isfinite(label)):
            raise ValueError(f"label {label!r} is missing, expected a bool, int or str class")
        if isinstance(label, (bool, np.bool_)):
            return "bool"
        if isinstance(label, (int, np.integer)):
            return "int"
        if isinstance(label, (str, np.str_)):
            return "str"
        raise TypeError(f"labels must be bool, int or str, got {type(label).__name__} ({label!r})")

    def _add_class(self, label: Any) -> int:
        kind = self._label_kind_of(label)
        if self._label_kind is None:
            self._label_kind = kind
        elif kind != self._label_kind:
            raise TypeError(f"label {label!r} is {kind}, but earlier labels were {self._label_kind}")
        label = _LABEL_KINDS[kind](label)
        if label in self._class_index:
            return self._class_index[label]
        index = len(self._classes)
        self._classes.append(label)
        self._class_index[label] = index
        d, d_in = self._W.shape[0], self._means.shape[1]
        self._W = np.ascontiguousarray(np.hstack([self._W, np.zeros((d, 1))]))
        if self._M is not None:
            self._M = np.ascontiguousarray(np.hstack([self._M, np.zeros((d, 1))]))
        self._counts = np.append(self._counts, np.int64(0))
        self._means = np.vstack([self._means, np.zeros((1, d_in))])
        self._m2 = np.vstack([self._m2, np.zeros((1, d_in))])
        return index

    def _ensure_features(self, X: Any) -> None:
        if self._features is not None:
            return
        if isinstance(X, dict):
            # sorted, so that the key order of the first dict does not change the model
            self._allocate(sorted(X, key=lambda name: (type(name).__name__, str(name))))
        elif hasattr(X, "columns"):
            self._allocate(sorted(X.columns, key=lambda name: (type(name).__name__, str(name))))
        else:
            width = np.asarray(X).reshape(len(X), -1).shape[1]
            self._allocate([f"x{i}" for i in range(width)])

    def _matrix(self, X: Any) -> np.ndarray:
        if hasattr(X, "columns") and self.strict:
            self._admit(X.columns, learning=False)
        if hasattr(X, "columns"):  # pandas, as River's *_many pass it
            X = X.reindex(columns=self._features, fill_value=0.0).to_numpy(dtype=np.float64)
        rows = np.ascontiguousarray(X, dtype=np.float64)
        rows = rows.reshape(rows.shape[0], -1) if rows.ndim else rows.reshape(1, -1)
        n_features = len(self._features or [])
        if rows.shape[1] != n_features:
            raise ValueError(f"expected {n_features} features, got {rows.shape[1]}")
        if not np.isfinite(rows).all():
            raise ValueError("features must be finite (no NaN or inf)")
        return rows

    def _phi(self, rows: np.ndarray) -> np.ndarray:
        """Expanded rows ``phi`` (C-contiguous float64)."""
        if self._W_buf is not None:
            out = np.empty((rows.shape[0], self._W_buf.shape[0]))
            K.expand_relu(rows, self._W_buf, out)
        else:
            out = rows
        if self.fit_intercept:
            out = np.hstack([out, np.ones((rows.shape[0], 1))])
        return np.ascontiguousarray(out)

    def _check_labels(self, labels: list[Any]) -> None:
        """Refuse missing labels (ValueError, even after a label of the wrong kind) and mixed kinds."""
        for label in labels:
            if label is None or (isinstance(label, (float, np.floating)) and not math.isfinite(label)):
                self._label_kind_of(label)
        kinds = {self._label_kind_of(label) for label in labels}  # every label checked before any class is added
        known = {self._label_kind} if self._label_kind is not None else set()
        if len(kinds | known) > 1:
            raise TypeError(f"labels mix kinds {sorted(kinds | known)}")

    def _indices(self, y: Any) -> np.ndarray:
        labels = y.tolist() if hasattr(y, "tolist") else list(y)
        self._check_labels(labels)
        lookup = self._class_index.get
        kind = _LABEL_KINDS.get(self._label_kind or "")
        out = np.empty(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            index = lookup(label) if type(label) is kind else None
            out[i] = index if index is not None else self._add_class(label)
        return out

    def _rule(self, n_rows: int) -> str:
        if self.update != "auto":
            return self.update
        if n_rows == 1 or self.dim < AUTO_BLAS_FROM_DIM:
            return "sherman-morrison"
        return "blas"

    # -- generator ------------------------------------------------------------------
    def pseudo_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The pseudo-rows a refresh now would add: ``(inputs, class indices)``.

        Drawn from ``default_rng([seed, tag, n_updates])``, class by class in column
        order: a pure function of the real-data state.
        """
        d_in = len(self._features or [])
        counts = self._counts
        if counts.size == 0 or counts.max() == 0:
            return np.zeros((0, d_in)), np.zeros(0, dtype=np.int64)
        rng = np.random.default_rng([int(self.seed), _GENERATOR_STREAM, int(self.n_updates)])
        peak = int(counts.max())
        blocks, labels = [], []
        for c in range(counts.size):
            n = int(counts[c])
            deficit = peak - n
            if n == 0 or deficit == 0:
                continue
            std = np.sqrt(self._m2[c] / (n - 1)) if n > 1 else np.zeros(d_in)
            blocks.append(self._means[c] + rng.standard_normal((deficit, d_in)) * (std * float(self.noise)))
            labels.append(np.full(deficit, c, dtype=np.int64))
        if not blocks:
            return np.zeros((0, d_in)), np.zeros(0, dtype=np.int64)
        return np.ascontiguousarray(np.vstack(blocks)), np.concatenate(labels)

    def refresh_generator(self) -> None:
        """Recompute the answer weights ``W_eval`` = ridge on real rows plus fresh pseudo-rows.

        The real-data state (``R``, ``W``, class statistics) is left as it was, and
        calling this twice in a row gives the same ``W_eval``.
        """
        if self._features is None or not np.any(self._counts > 0) or not self._generating:
            return
        inputs, labels = self.pseudo_rows()
        pseudo = self._phi(inputs)
        d = self.dim
        if labels.shape[0] > d // 4 and self._A is not None and self._M is not None:
            self._W_eval = K.information_weights(self._A, self._M, float(self.gamma), pseudo, labels)
        else:
            chunk = int(min(2048, max(64, d // 2)))
            self._W_eval = K.woodbury_weights(self._R, self._W, pseudo, labels, chunk)
        self._eval_mask = self._counts > 0
        if self._live_correction:
            self._W_delta = np.ascontiguousarray(self._W_eval - self._W)
        self._eval_at = self.n_updates
        self._pseudo_rows = int(labels.shape[0])
        self._refreshes += 1
        self._refreshed_time = time.monotonic()

    def _refresh_before_answer(self) -> None:
        if not self._generating or self.generator == "every_n" or self._features is None or self._eval_at == self.n_updates:
            return
        if self.generator == "timer":
            new_class = self._W_eval is None or int(self._eval_mask.sum()) != int(np.count_nonzero(self._counts))
            if not new_class and time.monotonic() - self._refreshed_time < self.refresh_seconds:
                return
        self.refresh_generator()

    def _answer_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Weights the answers use and the mask of the class columns they may answer."""
        if self._generating and self._W_delta is not None:
            W = self._W.copy()
            W[:, : self._W_delta.shape[1]] += self._W_delta
            return W, self._counts > 0
        if self._generating and self._W_eval is not None:
            mask = np.zeros(len(self._classes), dtype=bool)
            mask[: self._eval_mask.shape[0]] = self._eval_mask
            return self._W_eval, mask
        return self._W, self._counts > 0

    # -- answers --------------------------------------------------------------------
    def _answer_logits(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (rows x classes, columns beyond the answer weights are 0) and the column mask."""
        self._refresh_before_answer()
        W, mask = self._answer_weights()
        part = np.empty((rows.shape[0], W.shape[1]))
        K.linear_logits(W, self._phi(rows), part)
        logits = np.zeros((rows.shape[0], len(self._classes)))
        logits[:, : W.shape[1]] = part
        return logits, mask

    def decision_function(self, X: Any) -> np.ndarray:
        """Ridge outputs of the answer weights (rows x classes, :attr:`classes_` order).

        Columns of classes the answer weights cannot answer yet are ``-inf``.
        """
        self._ensure_features(X)
        logits, mask = self._answer_logits(self._matrix(X))
        return np.where(mask[None, :], logits, -np.inf)

    def _labels_of(self, indices: np.ndarray) -> np.ndarray:
        """Labels of column indices as an object array, ``None`` for -1."""
        table = np.empty(len(self._classes) + 1, dtype=object)
        table[: len(self._classes)] = self._classes
        return table[indices]  # index -1 picks the trailing None

    def predict_one(self, x: dict, **kwargs: Any) -> Any:
        if self._features is None or not self._classes:
            return None
        if self.strict:
            self._admit(x, learning=False)
        return self._predict_rows(dict_to_row(x, self._features)[None, :])[0]

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        """Class probabilities: sparsemax (simplex projection) of the ridge outputs.

        The outputs estimate the one-hot target by least squares; the probabilities
        are the nearest probability vector to them in squared loss, which keeps the
        arg-max of :meth:`predict_one`. They are then mixed with the uniform
        distribution, ``(1 - C * PROBA_FLOOR) p + PROBA_FLOOR`` over ``C`` known
        classes, so none is exactly 0 or 1 and a log loss stays finite. Known classes
        are the declared ones (``classes``) and the labels learned; with bool labels
        both ``False`` and ``True`` are known from the first label on (the other one
        gets ``PROBA_FLOOR``). The prior, before any row is learned, is uniform over
        the declared classes, and ``{}`` when none are declared (no label is known
        yet, as River's multi-class models answer); a lone known int or str class
        keeps probability 1 (declare ``classes`` to avoid it).
        """
        known = self._classes or list(self.classes or [])  # declared classes before the first row
        if not known:
            return {}
        if self._features is None or not np.any(self._counts > 0):
            return dict.fromkeys(known, 1.0 / len(known))
        if self.strict:
            self._admit(x, learning=False)
        proba = self._proba_rows(dict_to_row(x, self._features)[None, :])[0]
        return self._with_bool_complement(dict(zip(self._classes, proba.tolist())))

    def _with_bool_complement(self, proba: dict[Any, float]) -> dict[Any, float]:
        """A bool model that has seen one of the two labels still gives the other a probability."""
        if self._label_kind == "bool" and len(proba) == 1:
            (label,) = proba
            return {label: 1.0 - PROBA_FLOOR, not label: PROBA_FLOOR}
        return proba

    def _predict_rows(self, rows: np.ndarray) -> list:
        logits, mask = self._answer_logits(rows)
        best = np.empty(rows.shape[0], dtype=np.int64)
        K.masked_argmax(logits, np.ascontiguousarray(np.broadcast_to(mask, logits.shape)), best)
        return self._labels_of(best).tolist()

    def _proba_rows(self, rows: np.ndarray) -> np.ndarray:
        logits, mask = self._answer_logits(rows)
        proba = np.zeros_like(logits)
        proba[:, mask] = sparsemax(logits[:, mask])
        n_classes = proba.shape[1]
        return proba * (1.0 - n_classes * PROBA_FLOOR) + PROBA_FLOOR

    def predict_many(self, X: Any, groups: Any = None) -> Any:
        """Predicted labels (no learning); ``None`` before any class is known."""
        if self._features is None:
            self._ensure_features(X)
        rows = self._matrix(X)
        if not self._classes:
            labels = [None] * rows.shape[0]
        else:
            labels = self._predict_rows(rows)
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(labels, index=X.index, dtype=object)
        return np.array(labels, dtype=object)

    def predict_proba_many(self, X: Any) -> Any:
        """Class probabilities for each row (see :meth:`predict_proba_one`)."""
        import pandas as pd

        if self._features is None:
            self._ensure_features(X)
        rows = self._matrix(X)
        if not np.any(self._counts > 0):  # the prior: uniform over the known (declared) classes
            proba = np.full((rows.shape[0], len(self._classes)), 1.0 / max(len(self._classes), 1))
        else:
            proba = self._proba_rows(rows)
        index = X.index if hasattr(X, "index") else None
        frame = pd.DataFrame(proba, columns=list(self._classes), index=index)
        if self._label_kind == "bool" and len(self._classes) == 1 and np.any(self._counts > 0):
            (label,) = self._classes
            frame = pd.DataFrame({label: 1.0 - PROBA_FLOOR, not label: PROBA_FLOOR}, index=frame.index)
        return frame

    # -- learning -------------------------------------------------------------------
    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> None:
        self._label_kind_of(y)
        check_feature_dict(x)
        if self._features is not None:
            self._admit(x, learning=True)
        self._ensure_features(x)
        assert self._features is not None
        self._observe(dict_to_row(x, self._features)[None, :], [y], None, answer=False)

    def learn_many(self, X: Any, y: Any, groups: Any = None) -> None:
        if self._features is not None and hasattr(X, "columns"):
            self._check_labels(y.tolist() if hasattr(y, "tolist") else list(y))
            as_matrix(X, None)  # refuse non-finite values before the model grows
            self._admit(X.columns, learning=True)
        self._observe(X, y, None, answer=False)

    # -- feature policy -------------------------------------------------------------
    def _admit(self, names: Any, learning: bool) -> None:
        """The feature policy for the keys of a dict or the columns of a frame."""
        assert self._features is not None
        if self.strict:
            refuse_feature_changes("AnalyticRidgeClassifier", names, self._features)
        elif learning and self.features is None:
            new, _ = feature_changes(names, self._features)
            if new:
                self._grow([str(name) for name in new])
        elif learning:  # declared features stay fixed: say once per key that it is ignored
            warn_ignored_features("AnalyticRidgeClassifier", names, self._features, self._warned)

    def _grow(self, new: list[str]) -> None:
        """New input features as if they had been 0 on every row learned so far.

        Without the expansion, ``phi`` gains coordinates (before the intercept): ``R``
        gains ``1 / gamma`` on its diagonal, the weights and sums zero rows. With it,
        ``W_buf`` gains a seeded random column per feature (keyed by its position, at
        the scale fixed when the model was built) and ``phi`` of the past rows is
        unchanged, so the ridge state stays exact. The class statistics gain zeros.
        """
        assert self._features is not None
        n_old, k = len(self._features), len(new)
        if self._W_buf is not None:
            columns = [
                np.random.default_rng([int(self.seed), _GROWTH_STREAM, n_old + i]).uniform(
                    -self._expansion_bound, self._expansion_bound, self.expansion_dim
                )
                for i in range(k)
            ]
            self._W_buf = np.ascontiguousarray(np.column_stack([self._W_buf, *columns]))
        else:
            d_old = self._R.shape[0]
            old = list(range(n_old)) + ([n_old + k] if self.fit_intercept else [])  # the intercept stays last
            added = list(range(n_old, n_old + k))
            R = np.zeros((d_old + k, d_old + k))
            R[np.ix_(old, old)] = self._R
            R[added, added] = 1.0 / float(self.gamma)
            self._R = R
            if self._A is not None:
                A = np.zeros((d_old + k, d_old + k))
                A[np.ix_(old, old)] = self._A
                self._A = A
            for name in ("_W", "_M", "_W_eval", "_W_delta"):
                value = getattr(self, name)
                if value is not None:
                    grown = np.zeros((d_old + k, value.shape[1]))
                    grown[old] = value
                    setattr(self, name, grown)
        self._means = np.hstack([self._means, np.zeros((self._means.shape[0], k))])
        self._m2 = np.hstack([self._m2, np.zeros((self._m2.shape[0], k))])
        self._features = self._features + new

    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> np.ndarray:
        """Prequential block: answer each row, then learn it; returns the answered labels.

        Without the generator, row ``i`` is answered by the ridge state left by rows
        ``< i``, over the classes learned before it (``None`` if there are none). With
        the generator, rows are answered by the latest answer weights, refreshed as
        ``generator`` says. ``groups`` (rows x declared groups, boolean) feeds the
        per-group gauges.
        """
        return self._observe(X, y, groups, answer=True)

    def _observe(self, X: Any, y: Any, groups: np.ndarray | None, answer: bool) -> np.ndarray:
        if self._features is None:  # refuse bad values and labels before the features are fixed
            for label in y.tolist() if hasattr(y, "tolist") else list(y):
                self._label_kind_of(label)
            if hasattr(X, "columns"):
                as_matrix(X, None)
        self._ensure_features(X)
        rows = self._matrix(X)
        n = rows.shape[0]
        if n == 0:
            return np.empty(0, dtype=object)
        if len(y) != n:
            raise ValueError(f"got {n} rows but {len(y)} labels")
        indices = self._indices(y)
        if indices.shape[0] != n:
            raise ValueError(f"got {n} rows but {indices.shape[0]} labels")
        C = len(self._classes)
        learned_before = self._learned_before_rows(indices)  # rows x C, bool
        introduces = ~learned_before[np.arange(n), indices]  # row learns a class for the first time
        phi = self._phi(rows)
        logits = np.empty((n, C))
        answered = np.zeros((n, C))
        answer_mask = learned_before.copy()
        losses = np.empty(n)
        s_values = np.empty(n)
        for start, stop, refresh_after in self._segments(introduces):
            if answer and self._generating:
                self._refresh_before_answer()
            block = phi[start:stop]
            kernel = _KERNELS[self._rule(stop - start)]
            W_eval = self._W_eval
            stale = self._generating and W_eval is not None and not self._live_correction
            if stale and W_eval is not None:  # a 0.1.0 state: the whole range is answered by the weights of the last refresh
                part = np.empty((stop - start, W_eval.shape[1]))
                K.linear_logits(W_eval, block, part)
                answered[start:stop, : W_eval.shape[1]] = part
                answer_mask[start:stop] = False
                answer_mask[start:stop, : W_eval.shape[1]] = self._eval_mask
            kernel(self._R, self._W, block, indices[start:stop], logits[start:stop], losses[start:stop], s_values[start:stop])
            if not stale:
                answered[start:stop] = logits[start:stop]
            if self._W_delta is not None and self._generating:
                # each row: the live state left by the rows before it, plus the balance correction of the last refresh
                part = np.empty((stop - start, self._W_delta.shape[1]))
                K.linear_logits(self._W_delta, block, part)
                answered[start:stop, : self._W_delta.shape[1]] += part
            self.n_updates += stop - start
            if self._A is not None and self._M is not None:
                K.gram_update(self._A, self._M, block, indices[start:stop])
            K.welford_update(self._counts, self._means, self._m2, rows[start:stop], indices[start:stop])
            self._stop_auto_generator()
            if refresh_after:
                self.refresh_generator()
        self._cumulative_loss = _running_sum(self._cumulative_loss, losses)
        self._hindsight_loss = _running_sum(self._hindsight_loss, losses / s_values)
        # loss of the answers: masked outputs count as 0
        errors = np.where(answer_mask, answered, 0.0)
        errors[np.arange(n), indices] -= 1.0
        answer_loss = np.einsum("rc,rc->r", errors, errors)
        self._answer_loss = _running_sum(self._answer_loss, answer_loss)
        if groups is not None:
            self._track_groups(np.asarray(groups, dtype=bool).reshape(n, -1), answer_loss)
        best = np.empty(n, dtype=np.int64)
        K.masked_argmax(answered, answer_mask, best)
        return self._labels_of(best)

    def _learned_before_rows(self, indices: np.ndarray) -> np.ndarray:
        """``out[i, c]``: class ``c`` had a learned row before row ``i`` of this block."""
        n, C = indices.shape[0], len(self._classes)
        learned = np.zeros(C, dtype=bool)
        learned[: self._counts.shape[0]] = self._counts > 0
        first = np.full(C, n, dtype=np.int64)
        classes, positions = np.unique(indices, return_index=True)
        first[classes] = positions
        return learned[None, :] | (np.arange(n)[:, None] > first[None, :])

    def _segments(self, introduces: np.ndarray) -> list[tuple[int, int, bool]]:
        """``(start, stop, refresh after)`` row ranges of a block.

        With ``generator="every_n"`` a refresh follows every row that brings the count
        of learned rows to a multiple of ``refresh_events`` or that learns a class for
        the first time; otherwise the block is one range.
        """
        n = introduces.shape[0]
        if not self._generating or self.generator == "timer" or not self._live_correction:
            return [(0, n, False)]
        if self.generator == "every_n":
            after = self.n_updates + np.arange(1, n + 1)
            introduces = introduces | (after % int(self.refresh_events) == 0)
        cuts = (np.flatnonzero(introduces) + 1).tolist()
        bounds, start = [], 0
        for cut in cuts:
            bounds.append((start, cut, True))
            start = cut
        if start < n:
            bounds.append((start, n, False))
        return bounds

    def _track_groups(self, groups: np.ndarray, answer_loss: np.ndarray) -> None:
        if self._group_loss.shape[0] != groups.shape[1]:
            if self._group_loss.shape[0] == 0:
                self._group_loss = np.zeros(groups.shape[1])
                self._group_rows = np.zeros(groups.shape[1], dtype=np.int64)
            else:
                raise ValueError(f"expected {self._group_loss.shape[0]} group columns, got {groups.shape[1]}")
        for g in range(groups.shape[1]):
            self._group_loss[g] = _running_sum(self._group_loss[g], answer_loss[groups[:, g]])
        self._group_rows += groups.sum(axis=0)

    # -- monitoring -----------------------------------------------------------------
    def hindsight_regret(self) -> float:
        """Regret of the prequential ridge outputs against the best ridge classifier in hindsight.

        ``sum_t ||y_t - W_{t-1}^T phi_t||^2 - min_W (sum_t ||y_t - W^T phi_t||^2 + gamma ||W||^2)``
        over the real rows learned so far (one-hot targets), exact from the recursion.
        """
        return self._cumulative_loss - self._hindsight_loss

    def gauges(self) -> dict[str, float]:
        return {
            "analytic_regret": self.hindsight_regret(),
            "analytic_cumulative_loss": self._cumulative_loss,
            "analytic_hindsight_loss": self._hindsight_loss,
            "analytic_answer_regret": self._answer_loss - self._hindsight_loss,
            "analytic_classes_seen": float(np.count_nonzero(self._counts)),
            "analytic_generator_refreshes": float(self._refreshes),
            "analytic_generator_pseudo_rows": float(self._pseudo_rows),
            "analytic_generator_age_events": float(self.n_updates - max(self._eval_at, 0)),
        }

    def group_gauges(self) -> dict[str, np.ndarray]:
        rows = self._group_rows.astype(np.float64)
        mean = np.divide(self._group_loss, rows, out=np.zeros_like(self._group_loss), where=rows > 0)
        return {"analytic_group_mean_squared_loss": mean, "analytic_group_rows": rows}

    @property
    def weights(self) -> np.ndarray:
        """Live ridge weights ``W`` (d x classes), real rows only."""
        return self._W.copy()

    @property
    def answer_weights(self) -> np.ndarray:
        """Weights the answers currently use (``W_eval`` with the generator, else ``W``)."""
        return self._answer_weights()[0].copy()

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        kind = self._label_kind or "str"
        state: dict[str, Any] = {
            "family": "analytic_ridge",
            "features": np.array(self._features if self._features is not None else [], dtype=str),
            "label_kind": self._label_kind,
            "classes": np.array(self._classes, dtype={"bool": bool, "int": np.int64, "str": str}[kind]),
            "n_updates": int(self.n_updates),
            "seed": int(self.seed),
            "cumulative_loss": float(self._cumulative_loss),
            "hindsight_loss": float(self._hindsight_loss),
            "answer_loss": float(self._answer_loss),
            "eval_at": int(self._eval_at),
            "eval_mask": self._eval_mask.copy(),
            "refreshes": int(self._refreshes),
            "pseudo_rows": int(self._pseudo_rows),
            "group_loss": self._group_loss.copy(),
            "group_rows": self._group_rows.copy(),
            "live_correction": self._live_correction,
        }
        if self._features is not None:
            state.update(
                R=self._R.copy(),
                W=self._W.copy(),
                counts=self._counts.copy(),
                means=self._means.copy(),
                m2=self._m2.copy(),
            )
            if self._W_buf is not None:
                state["W_buf"] = self._W_buf.copy()
                state["expansion_bound"] = float(self._expansion_bound)
            if self._W_eval is not None:
                state["W_eval"] = self._W_eval.copy()
            if self._W_delta is not None:
                state["W_delta"] = self._W_delta.copy()
            if self._A is not None and self._M is not None:
                state["A"] = self._A.copy()
                state["M"] = self._M.copy()
        check_state(state, "AnalyticRidgeClassifier")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = "AnalyticRidgeClassifier"
        refuse_nonfinite(state, owner)
        if state.get("family", "analytic_ridge") != "analytic_ridge":
            raise ValueError(f"{owner}: state of family {state.get('family')!r}")
        if int(state["seed"]) != int(self.seed):
            raise ValueError(f"{owner}: state was made with seed {int(state['seed'])}, this model has seed {self.seed}")
        self._reset()
        names = [str(n) for n in np.asarray(state.get("features", []))]
        kind = state.get("label_kind")
        kind = None if kind is None else str(kind)
        self.n_updates = int(state["n_updates"])
        self._cumulative_loss = float(state["cumulative_loss"])
        self._hindsight_loss = float(state["hindsight_loss"])
        self._answer_loss = float(state["answer_loss"])
        self._group_loss = np.array(state["group_loss"], dtype=np.float64)
        self._group_rows = np.array(state["group_rows"], dtype=np.int64)
        self._live_correction = bool(state.get("live_correction", False))
        if not names:
            return
        self._validate()
        self._features = names
        d_in, d = len(names), self.dim
        labels = [_LABEL_KINDS[kind](v) for v in np.asarray(state["classes"]).tolist()] if kind else []
        C = len(labels)
        self._label_kind = kind
        self._classes = labels
        self._class_index = {label: i for i, label in enumerate(labels)}
        self._R = _expect(state, "R", (d, d), owner)
        self._W = _expect(state, "W", (d, C), owner)
        self._counts = np.array(state["counts"], dtype=np.int64).reshape(C)
        self._means = _expect(state, "means", (C, d_in), owner)
        self._m2 = _expect(state, "m2", (C, d_in), owner)
        if self.expansion_dim > 0:
            self._W_buf = _expect(state, "W_buf", (self.expansion_dim, d_in), owner)
            # a 0.1.0 state never grew: its scale is the one of its width
            self._expansion_bound = float(state.get("expansion_bound", 1.0 / np.sqrt(max(d_in, 1))))
        self._eval_at = int(state["eval_at"])
        self._eval_mask = np.array(state["eval_mask"], dtype=bool).reshape(-1)
        self._refreshes = int(state["refreshes"])
        self._pseudo_rows = int(state["pseudo_rows"])
        if self._generating:
            self._A = _expect(state, "A", (d, d), owner)
            self._M = _expect(state, "M", (d, C), owner)
        if "W_eval" in state:
            self._W_eval = _expect(state, "W_eval", (d, self._eval_mask.shape[0]), owner)
        if "W_delta" in state:
            self._W_delta = _expect(state, "W_delta", (d, self._eval_mask.shape[0]), owner)


def _running_sum(total: float, values: np.ndarray) -> float:
    """``total + values[0] + values[1] + ...`` left to right, so the result does not
    depend on how rows were split into blocks (``ndarray.sum`` adds pairwise)."""
    return float(np.cumsum(np.concatenate([[total], values]))[-1])


def _expect(state: dict[str, Any], key: str, shape: tuple[int, ...], owner: str) -> np.ndarray:
    if key not in state:
        raise KeyError(f"{owner}: state has no {key!r}")
    arr = np.asarray(state[key])
    if arr.shape != shape:
        raise ValueError(f"{owner}: state[{key!r}] has shape {arr.shape}, expected {shape}")
    return np.ascontiguousarray(arr, dtype=np.float64).copy()
