"""Any regretflow bandit as a ``river.bandit`` policy: arbitrary arm ids, dict contexts.

:class:`RiverBandit` wraps a bandit learner (one of ``regretflow.learners``' bandit
families) so that River's bandit tools drive it: ``pull(arm_ids, context=dict)`` and
``update(arm_id, reward, context=dict)`` (River's positional ``update(arm_id, context,
reward)``, which ``river.bandit.evaluate_offline`` uses, works too), inside
``river.bandit.evaluate`` and ``river.bandit.evaluate_offline``.

- **Arms.** Arm ids (strings, ints, anything hashable) get the learner's action indexes
  in the order they are first seen, up to the learner's number of actions. When a pull
  offers only some of the known arms, the learner's decision is kept if it is offered,
  else an offered arm is drawn from the learner's probabilities renormalised over the
  offered arms; so the pulled arm's probability is exactly ``p_a / sum_offered p``
  (uniform when that sum is 0).
- **Contexts.** A dict becomes a row with the feature policy of the supervised
  learners: a new key grows the model (``grow_features``: new coefficients start as if
  the feature had been 0 so far, exact for the ridge-based learners), a missing key
  counts as 0. New keys join in name order. With ``intercept=True`` (default) the row
  starts with a constant 1, so a context-free environment (``river.bandit.evaluate``
  pulls without a context) still has one feature. A learner that cannot grow (no
  ``grow_features``) raises ValueError on a new key after its first decision: declare
  the keys with ``features=[...]``. Non-numeric or non-finite values raise before
  anything changes. Learners without a context (``contextual = False``: DynLin-UCB,
  Exp3, ...) get none.
- **Feedback.** ``update`` hands the learner the probability with which the adapter
  pulled the arm (when the update is for the last pull), so importance-weighting
  learners see the true propensity; River's per-arm reward statistics are kept too
  (``policy.ranking``, ``policy._n`` as ``evaluate_offline`` reads it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from river import bandit

__all__ = ["RiverBandit"]


class RiverBandit(bandit.base.ContextualPolicy):
    """A regretflow bandit learner as a ``river.bandit`` contextual policy.

    Parameters
    ----------
    learner
        An unfitted bandit learner (``LinUCBDisjoint(n_actions=K)``, ``NeuralFastCB(...)``,
        ``DynLinUCB(...)``, ...); its number of actions caps the number of arm ids.
        ``clone()`` (which ``river.bandit.evaluate`` calls per episode) copies it as given.
    features
        Context keys declared up front (their column order); more keys may still grow it.
    intercept
        Put a constant 1 first in every row.
    seed
        Seeds the draw among offered arms when the learner's choice is not offered.
    burn_in
        River's burn-in: each arm is pulled this many times first.

    Examples
    --------
    >>> import random
    >>> from regretflow.learners import LinUCBDisjoint
    >>> from regretflow.learners.river_bandit import RiverBandit
    >>> policy = RiverBandit(LinUCBDisjoint(n_actions=3, alpha=0.5))
    >>> rng = random.Random(0)
    >>> clicks = 0
    >>> for t in range(600):
    ...     context = {"hour": rng.random()}
    ...     arm = policy.pull(["news", "sport", "weather"], context=context)
    ...     best = "news" if context["hour"] < 0.5 else "sport"
    ...     reward = float(arm == best)
    ...     policy.update(arm, reward, context=context)
    ...     clicks += reward
    >>> clicks > 450, policy.pulled_probability > 0
    (True, True)
    """

    def __init__(self, learner: Any, features: Iterable[str] | None = None, intercept: bool = True, seed: int = 0, burn_in: int = 0):
        super().__init__(reward_obj=None, reward_scaler=None, burn_in=burn_in)
        self.learner = learner
        self.features = None if features is None else list(features)
        self.intercept = intercept
        self.seed = seed
        self._capacity = _number_of_actions(learner)
        self._contextual = bool(getattr(learner, "contextual", True))
        self._arm_index: dict[Hashable, int] = {}
        self._columns: dict[str, int] = {}
        self._names: list[str] = []
        if self.features is not None:
            self._admit(self.features, in_order=True)
        self._width_seen = 0  # the row width the learner was last handed
        self._rng = np.random.default_rng(seed)
        self._last: tuple[Hashable, float, int] | None = None  # arm id, its probability, the decision's ticket
        self._pulled_probability = 0.0

    # -- River's interface ------------------------------------------------------------------
    def _pull(self, arm_ids: list[Any], context: dict[str, Any] | None) -> Any:  # type: ignore[override]
        offered = list(arm_ids)
        if not offered:
            raise ValueError("pull() needs at least one arm id")
        row = self._row(context)
        indexes = [self._index_of(arm) for arm in offered]
        decision = self.learner.decide(row if self._contextual else None)
        probabilities = np.asarray(decision.probabilities, dtype=np.float64)
        weights = probabilities[indexes]
        mass = float(weights.sum())
        chosen = int(decision.action)
        if chosen in indexes:
            position = indexes.index(chosen)
        elif mass > 0.0:
            position = int(self._rng.choice(len(indexes), p=weights / mass))
        else:
            position = int(self._rng.integers(len(indexes)))
        probability = float(weights[position] / mass) if mass > 0.0 else 1.0 / len(indexes)
        self._last = (offered[position], probability, int(getattr(decision, "ticket", -1)))
        self._pulled_probability = probability
        return offered[position]

    def update(self, arm_id: Any, *reward_args: Any, context: dict[str, Any] | None = None, **reward_kwargs: Any) -> None:
        """Learn ``reward`` for ``arm_id`` in ``context``: ``update(arm, reward, context=...)``
        or River's positional ``update(arm, context, reward)``."""
        if context is None and len(reward_args) == 2 and (reward_args[0] is None or isinstance(reward_args[0], dict)):
            context, reward_args = reward_args[0], reward_args[1:]
        if len(reward_args) != 1:
            raise TypeError(f"update() takes one reward after the arm id, got {len(reward_args)}")
        reward = float(reward_args[0])
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward_args[0]!r}")
        row = self._row(context)
        index = self._index_of(arm_id)
        probability, ticket = None, -1
        if self._last is not None and self._last[0] == arm_id:
            probability, ticket = self._last[1], self._last[2]
        self._last = None
        self.learner.learn(row if self._contextual else None, index, reward, probability, ticket=ticket)
        bandit.base.Policy.update(self, arm_id, reward, **reward_kwargs)  # River's per-arm statistics

    # -- arms and rows ----------------------------------------------------------------------
    @property
    def pulled_probability(self) -> float:
        """The probability with which the latest ``pull`` chose its arm (0 before any)."""
        return self._pulled_probability

    @property
    def arm_ids(self) -> list[Hashable]:
        """The arm ids seen so far, in the order of the learner's action indexes."""
        return list(self._arm_index)

    @property
    def feature_names(self) -> list[str]:
        """Context keys in column order (after the intercept, if any)."""
        return list(self._names)

    def _index_of(self, arm_id: Hashable) -> int:
        index = self._arm_index.get(arm_id)
        if index is None:
            if len(self._arm_index) >= self._capacity:
                raise ValueError(
                    f"arm {arm_id!r} would be arm number {len(self._arm_index) + 1}, but the learner has "
                    f"{self._capacity} actions (known arms: {list(self._arm_index)})"
                )
            index = self._arm_index[arm_id] = len(self._arm_index)
        return index

    def _admit(self, keys: Iterable[str], in_order: bool = False) -> None:
        new = [k for k in keys if k not in self._columns]
        for name in new if in_order else sorted(new, key=str):
            self._columns[name] = len(self._names) + int(self.intercept)
            self._names.append(name)

    def _row(self, context: dict[str, Any] | None) -> np.ndarray:
        context = {} if context is None else context
        if not isinstance(context, dict):
            raise TypeError(f"context must be a dict of feature values (or None), got {type(context).__name__}")
        for key, value in context.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
                raise ValueError(f"context[{key!r}] must be a finite number, got {value!r}")
        self._admit(context)
        width = len(self._names) + int(self.intercept)
        if not self._contextual:
            return np.zeros(0)  # the learner has no context: the keys are only checked and recorded
        if width == 0:
            raise ValueError("an empty context without an intercept gives the learner no feature: use intercept=True")
        if self._width_seen and width > self._width_seen:
            grow = getattr(self.learner, "grow_features", None)
            if grow is None:
                raise ValueError(
                    f"{type(self.learner).__name__} cannot grow its inputs for the new keys "
                    f"{self._names[self._width_seen - int(self.intercept) :]}: declare every context key with features=[...]"
                )
            grow(width - self._width_seen)
        self._width_seen = width
        row = np.zeros(width)
        if self.intercept:
            row[0] = 1.0
        for key, value in context.items():
            row[self._columns[key]] = float(value)
        return row


def _number_of_actions(learner: Any) -> int:
    for name in ("n_arms", "n_actions"):
        value = getattr(learner, name, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
            return int(value)
    raise ValueError(f"{type(learner).__name__} has no fixed number of actions (n_actions / n_arms): the adapter needs one")
