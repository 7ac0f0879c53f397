"""The feedback rules every contextual bandit shares (the one bandit contract).

- ``objective="reward"`` (default) or ``"cost"``: a cost learner maximises ``-cost``,
  so :func:`signed_reward` is the only place that knows the difference.
- A logged probability, when given, must be in (0, 1] (:func:`check_probability`).
- Learners whose algorithm needs rewards in [0, 1] scale them with a :class:`RewardRange`:
  the fixed ``(low, high)`` given at construction (values outside are clipped), else the
  running minimum and maximum of the rewards seen so far, kept in the learner's state.
- UCB and greedy learners mix an exploration floor into their argmax
  (:func:`floor_probabilities`): ``p = (1 - exploration) one_hot(best) + exploration / K``,
  so no action's probability is 0 and their logs support off-policy evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .contract import check_choice, check_number

OBJECTIVES = ("reward", "cost")
DEFAULT_EXPLORATION = 0.01


def check_objective(objective: Any) -> str:
    """``"reward"`` or ``"cost"``, else a ValueError naming the choices.

    >>> check_objective("cost")
    'cost'
    """
    return str(check_choice("objective", objective, OBJECTIVES))


def check_exploration(exploration: Any) -> float:
    """The exploration floor: a number in [0, 1).

    >>> check_exploration(0.05)
    0.05
    """
    value = check_number("exploration", exploration, "[0, 1)")
    assert value is not None
    return value


def signed_reward(reward: Any, objective: str) -> float:
    """The reward the learner maximises: ``reward``, or ``-reward`` for a cost objective.

    Non-finite values raise ValueError (before the learner changes anything).

    >>> signed_reward(2.5, "cost")
    -2.5
    """
    value = float(reward)
    if not math.isfinite(value):
        raise ValueError(f"reward must be a finite number, got {reward!r}")
    return -value if objective == "cost" else value


def check_probability(probability: Any) -> float | None:
    """A logged probability: None, or a number in (0, 1].

    >>> check_probability(None), check_probability(0.25)
    (None, 0.25)
    """
    if probability is None:
        return None
    value = float(probability)
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"probability must be in (0, 1] (or None), got {probability!r}")
    return value


def check_reward_range(bounds: Any) -> tuple[float, float] | None:
    """None, or a pair of finite numbers ``(low, high)`` with ``low < high``.

    >>> check_reward_range([-1, 1])
    (-1.0, 1.0)
    """
    if bounds is None:
        return None
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
        raise TypeError(f"reward_range: expected a pair (low, high), got {bounds!r}")
    pair = list(bounds)
    if len(pair) != 2:
        raise ValueError(f"reward_range: expected a pair (low, high), got {bounds!r}")
    low = check_number("reward_range: low", pair[0])
    high = check_number("reward_range: high", pair[1])
    assert low is not None and high is not None
    if not low < high:
        raise ValueError(f"reward_range: expected low < high, got {bounds!r}")
    return low, high


def floor_probabilities(best: int, n_actions: int, exploration: float) -> np.ndarray:
    """``(1 - exploration) one_hot(best) + exploration / n_actions``.

    >>> floor_probabilities(1, 4, 0.2).round(3).tolist()
    [0.05, 0.85, 0.05, 0.05]
    """
    probabilities = np.full(n_actions, exploration / n_actions)
    probabilities[best] += 1.0 - exploration
    return probabilities


class RewardRange:
    """Maps rewards to [0, 1]: by a fixed ``(low, high)`` (clipping) or a running min/max.

    With ``bounds=None`` the range is the smallest and largest reward seen so far
    (including the one being scaled); until two different rewards have been seen the
    scaled value is 0.5.

    Examples
    --------
    >>> from regretflow.learners.bandit_feedback import RewardRange
    >>> fixed = RewardRange((-1.0, 1.0))
    >>> fixed.scale(0.0), fixed.scale(5.0)
    (0.5, 1.0)
    >>> running = RewardRange(None)
    >>> [running.scale(r) for r in (3.0, 5.0, 4.0)]
    [0.5, 1.0, 0.5]
    """

    def __init__(self, bounds: Any = None):
        pair = check_reward_range(bounds)
        self.fixed = pair is not None
        self.low, self.high = pair if pair is not None else (math.inf, -math.inf)

    def scale(self, reward: float) -> float:
        """``(reward - low) / (high - low)`` in [0, 1]; a running range first takes ``reward`` in."""
        if not self.fixed:
            self.low = min(self.low, reward)
            self.high = max(self.high, reward)
        if not self.high > self.low:
            return 0.5
        return min(1.0, max(0.0, (reward - self.low) / (self.high - self.low)))

    def state_dict(self) -> dict[str, float]:
        # the running range as JSON-safe numbers (no range yet: NaN would be refused by the checkpoint checks)
        seen = self.high >= self.low
        return {"reward_low": self.low if seen else 0.0, "reward_high": self.high if seen else 0.0, "reward_seen": float(seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.fixed or "reward_seen" not in state:
            return  # a checkpoint from before the running range: it starts from the next reward
        if float(state["reward_seen"]):
            self.low, self.high = float(state["reward_low"]), float(state["reward_high"])
        else:
            self.low, self.high = math.inf, -math.inf
