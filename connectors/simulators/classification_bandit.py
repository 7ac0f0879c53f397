"""A labelled classification dataset replayed as a contextual-bandit stream.

The conversion used by the NeuralTS/NeuralUCB line of work:

1. missing values (NaN) become -1, then every row is scaled to unit Euclidean norm
   (``normalize="l2"``; ``"none"`` keeps the raw values);
2. the rows are shuffled with ``numpy.random.RandomState(seed).permutation`` (one pass,
   no replacement);
3. labels are encoded 0..K-1 in sorted order; K is the number of classes;
4. at round t the learner sees the shared context ``x_t`` (d floats) with K actions
   (the disjoint encoding puts ``x_t`` in block ``a`` of a ``K*d`` vector for action
   ``a``; :meth:`ClassificationBandit.action_features` builds that matrix when a learner
   wants per-action features);
5. the reward of action ``a`` is 1 if ``a`` is the label, else 0; the expected
   rewards are that one-hot vector, so the pseudo-regret of a decision with
   probabilities ``p`` is exactly ``1 - p[label]``.

The stream can also be emitted as the engine's ``decide`` / ``feedback`` event dicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BanditRound:
    """One round: the shared context, the right action, and every action's expected reward."""

    index: int
    context: np.ndarray
    label: int
    expected_rewards: np.ndarray

    def reward(self, action: int) -> float:
        """Realised reward of ``action`` (1 for the right class, else 0)."""
        return 1.0 if int(action) == self.label else 0.0

    def pseudo_regret(self, probabilities: np.ndarray) -> float:
        """``max_a mu_a - sum_a p_a mu_a`` for this round's expected rewards ``mu``."""
        return float(self.expected_rewards.max() - np.dot(probabilities, self.expected_rewards))


class ClassificationBandit:
    """Turns ``(X, y)`` into a seeded contextual-bandit stream with exact expected rewards.

    Parameters
    ----------
    X
        Feature matrix (n x d); NaN means missing.
    y
        Labels (any sortable type).
    seed
        Seed of the shuffle.
    horizon
        Number of rounds (at most n; ``None``: n).
    normalize
        ``"l2"`` (unit-norm rows, the reference conversion) or ``"none"``.
    model
        Model name written into the emitted events.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.connectors.simulators.classification_bandit import ClassificationBandit
    >>> X = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    >>> sim = ClassificationBandit(X, np.array(["b", "a", "b"]), seed=0)
    >>> sim.n_actions, sim.n_features, sim.classes
    (2, 2, ['a', 'b'])
    >>> first = sim.round(0)
    >>> first.context.tolist(), first.label, first.pseudo_regret(np.array([0.25, 0.75]))
    ([0.0, 1.0], 1, 0.25)
    >>> sim.decide_event(0)["features"], sim.feedback_event(0, action=1)
    ([0.0, 1.0], {'id': 'neural-bandit-s0-t0-fb', 'model': 'neural-bandit', 'kind': 'feedback', 'ref': 'neural-bandit-s0-t0', 'reward': 1.0})
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray, seed: int = 0, horizon: int | None = None, normalize: str = "l2", model: str = "neural-bandit"
    ):
        X = np.array(X, dtype=np.float64, copy=True)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be (n, d) with n = len(y); got X {X.shape} and y {y.shape}")
        if normalize not in ("l2", "none"):
            raise ValueError(f"normalize must be 'l2' or 'none', got {normalize!r}")
        X[np.isnan(X)] = -1.0
        if normalize == "l2":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.where(norms > 0, norms, 1.0)
        classes, codes = np.unique(y, return_inverse=True)
        order = np.random.RandomState(seed).permutation(X.shape[0])
        n = X.shape[0] if horizon is None else min(int(horizon), X.shape[0])
        self.seed = seed
        self.model = model
        self.contexts = np.ascontiguousarray(X[order[:n]])
        self.labels = codes[order[:n]].astype(np.int64)
        self.classes = [c.item() for c in classes]
        self.n_actions = len(classes)
        self.n_features = X.shape[1]
        self.horizon = n

    def __len__(self) -> int:
        return self.horizon

    def expected_rewards(self, t: int) -> np.ndarray:
        """One-hot expected rewards of round ``t``."""
        mu = np.zeros(self.n_actions)
        mu[self.labels[t]] = 1.0
        return mu

    def round(self, t: int) -> BanditRound:
        """Round ``t`` (0-based)."""
        return BanditRound(t, self.contexts[t], int(self.labels[t]), self.expected_rewards(t))

    def __iter__(self) -> Iterator[BanditRound]:
        for t in range(self.horizon):
            yield self.round(t)

    def action_features(self, t: int) -> np.ndarray:
        """The disjoint encoding as an explicit (K, K*d) matrix (for learners that need it)."""
        k, d = self.n_actions, self.n_features
        out = np.zeros((k, k * d))
        for a in range(k):
            out[a, a * d : (a + 1) * d] = self.contexts[t]
        return out

    def decision_id(self, t: int) -> str:
        return f"{self.model}-s{self.seed}-t{t}"

    def decide_event(self, t: int) -> dict:
        """The ``decide`` event of round ``t`` (the shared context as dense ``features``);
        ``expected_rewards`` lets the engine compute exact pseudo-regret."""
        return {
            "id": self.decision_id(t),
            "model": self.model,
            "kind": "decide",
            "features": self.contexts[t].tolist(),
            "expected_rewards": self.expected_rewards(t).tolist(),
        }

    def feedback_event(self, t: int, action: int) -> dict:
        """The ``feedback`` event answering round ``t``'s decision (``ref``) that chose ``action``."""
        return {
            "id": f"{self.decision_id(t)}-fb",
            "model": self.model,
            "kind": "feedback",
            "ref": self.decision_id(t),
            "reward": self.round(t).reward(action),
        }
