"""Exploration rules that turn any regressor's predicted rewards into action probabilities.

A thin layer, as in Vowpal Wabbit's reductions: the regression oracle predicts, the
rule here returns a probability vector, and the two never share state. Two rules:

- :class:`SquareCBExploration`: inverse-gap weighting (Foster & Rakhlin 2020), as in
  VW's ``--squarecb``: ``p_a = 1 / (K + gamma (c_a - c_b))`` off the greedy action.
- :class:`FastCBExploration`: reweighted inverse-gap weighting (Foster &
  Krishnamurthy 2021) for costs in [0, 1]:
  ``p_a = c_b / (K c_b + gamma (c_a - c_b))``, which equals SquareCB at ``gamma / c_b``.

Costs are ``1 - predicted reward``. Three ``gamma`` schedules:

``"fixed"``
    ``gamma = gamma0`` every round (the theory's choice needs the horizon).
``"sqrt"``
    VW's anytime schedule ``gamma = gamma0 * n ** gamma_exponent``, ``n`` the number of
    examples learned so far (0 at the first decision, which is therefore uniform).
``"doubling"``
    doubling on the observed cumulative loss ``L = sum (1 - r)``: the epoch's guess
    of ``L*`` is the smallest power of two ``>= L`` (at least 1), and
    ``gamma = max(gamma_min, gamma0 * sqrt(K * guess))``; ``gamma_min`` defaults to
    ``10 K`` (FastCB's floor). It is a practical stand-in for FastCB's
    ``sqrt(K L* / (3 Reg))`` with unknown ``L*``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import neural_kernels as NK
from .contract import check_choice, check_number

SCHEDULES = ("fixed", "sqrt", "doubling")


def squarecb_probabilities(predicted_rewards: np.ndarray, gamma: float) -> np.ndarray:
    """SquareCB (inverse-gap-weighting) probabilities of predicted rewards.

    Examples
    --------
    >>> from regretflow.learners.exploration import squarecb_probabilities
    >>> squarecb_probabilities(np.array([0.2, 0.9, 0.5]), gamma=10.0).round(4).tolist()
    [0.1, 0.7571, 0.1429]
    """
    costs = 1.0 - np.asarray(predicted_rewards, dtype=np.float64)
    out = np.empty(costs.shape[0])
    NK.igw_probabilities(costs, float(gamma), out)
    return out


def fastcb_probabilities(predicted_rewards: np.ndarray, gamma: float) -> np.ndarray:
    """FastCB (reweighted inverse-gap-weighting) probabilities of predicted rewards in [0, 1].

    Examples
    --------
    >>> from regretflow.learners.exploration import fastcb_probabilities
    >>> fastcb_probabilities(np.array([0.2, 0.9, 0.5]), gamma=10.0).round(4).tolist()
    [0.0137, 0.963, 0.0233]
    """
    costs = 1.0 - np.asarray(predicted_rewards, dtype=np.float64)
    out = np.empty(costs.shape[0])
    NK.reweighted_igw_probabilities(costs, float(gamma), out)
    return out


def exploration_cost(probabilities: np.ndarray, predicted_rewards: np.ndarray) -> float:
    """``sum_a p_a (max_b yhat_b - yhat_a)``: predicted reward given up to exploration."""
    predicted = np.asarray(predicted_rewards, dtype=np.float64)
    return float(np.dot(probabilities, predicted.max() - predicted))


class _InverseGapExploration:
    """Shared state and schedules of the two inverse-gap-weighting rules."""

    reweighted = False

    def __init__(self, schedule: str = "sqrt", gamma0: float = 10.0, gamma_exponent: float = 0.5, gamma_min: float | None = None):
        self.schedule = schedule
        self.gamma0 = gamma0
        self.gamma_exponent = gamma_exponent
        self.gamma_min = gamma_min
        check_choice("schedule", schedule, SCHEDULES)
        check_number("gamma0", gamma0, ">= 0")
        check_number("gamma_exponent", gamma_exponent, ">= 0")
        check_number("gamma_min", gamma_min, ">= 0", allow_none=True)
        self.n_learned = 0
        self.cumulative_loss = 0.0
        self._last_gamma = 0.0
        self._last_exploration_cost = 0.0

    def gamma(self, n_actions: int) -> float:
        """The exploration strength for the next decision."""
        if self.schedule == "fixed":
            return float(self.gamma0)
        if self.schedule == "sqrt":
            return float(self.gamma0) * float(self.n_learned) ** float(self.gamma_exponent)
        floor = 10.0 * n_actions if self.gamma_min is None else float(self.gamma_min)
        guess = 2.0 ** math.ceil(math.log2(max(1.0, self.cumulative_loss)))
        return max(floor, float(self.gamma0) * math.sqrt(n_actions * guess))

    def probabilities(self, predicted_rewards: np.ndarray) -> np.ndarray:
        """Action probabilities for predicted rewards (``1 - cost``); records gamma and the
        exploration cost for the gauges."""
        predicted = np.ascontiguousarray(predicted_rewards, dtype=np.float64)
        gamma = self.gamma(predicted.shape[0])
        costs = 1.0 - predicted
        out = np.empty(predicted.shape[0])
        if self.reweighted:
            NK.reweighted_igw_probabilities(costs, gamma, out)
        else:
            NK.igw_probabilities(costs, gamma, out)
        self._last_gamma = gamma
        self._last_exploration_cost = exploration_cost(out, predicted) if np.all(np.isfinite(predicted)) else 0.0
        return out

    def gauges(self) -> dict[str, float]:
        """``gamma`` and ``exploration_cost`` of the latest :meth:`probabilities` call (0 before any)."""
        return {"gamma": float(self._last_gamma), "exploration_cost": float(self._last_exploration_cost)}

    def observe(self, reward: float) -> None:
        """Count one learned example and its loss ``1 - reward``."""
        self.n_learned += 1
        self.cumulative_loss += 1.0 - float(reward)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_learned": self.n_learned,
            "cumulative_loss": self.cumulative_loss,
            "last_gamma": self._last_gamma,
            "last_exploration_cost": self._last_exploration_cost,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_learned = int(state["n_learned"])
        self.cumulative_loss = float(state["cumulative_loss"])
        self._last_gamma = float(state["last_gamma"])
        self._last_exploration_cost = float(state["last_exploration_cost"])


class SquareCBExploration(_InverseGapExploration):
    """SquareCB inverse-gap weighting over any regressor's predicted rewards.

    Off the greedy action ``b`` (lowest index on ties), ``p_a = 1 / (K + gamma gap_a)``
    with ``gap_a = yhat_b - yhat_a``; ``p_b`` takes the rest, so ``p_b >= 1/K`` and the
    exploration cost ``sum p_a gap_a <= (K - 1) / gamma``.

    Parameters
    ----------
    schedule
        ``"fixed"``, ``"sqrt"`` (VW's, the default) or ``"doubling"``; see the module.
    gamma0, gamma_exponent, gamma_min
        Schedule constants (VW's defaults: 10 and 0.5).

    Examples
    --------
    >>> from regretflow.learners.exploration import SquareCBExploration
    >>> rule = SquareCBExploration(gamma0=10.0)
    >>> rule.probabilities(np.array([0.1, 0.8, 0.3])).round(4).tolist()  # nothing learned: uniform
    [0.3333, 0.3333, 0.3333]
    >>> for _ in range(4):
    ...     rule.observe(1.0)
    >>> rule.probabilities(np.array([0.1, 0.8, 0.3])).round(3).tolist(), rule.gauges()["gamma"]
    ([0.059, 0.864, 0.077], 20.0)
    """


class FastCBExploration(_InverseGapExploration):
    """FastCB reweighted inverse-gap weighting, for rewards predicted in [0, 1].

    ``p_a = c_b / (K c_b + gamma (c_a - c_b))`` off the greedy action, with costs
    ``c = 1 - yhat``: when the best predicted loss ``c_b`` goes to 0, so does all
    exploration (the small-loss behaviour). The exploration cost is at most
    ``(K - 1) c_b / gamma``. Default schedule: ``"sqrt"`` as for SquareCB.

    Examples
    --------
    >>> from regretflow.learners.exploration import FastCBExploration
    >>> rule = FastCBExploration(schedule="fixed", gamma0=20.0)
    >>> rule.probabilities(np.array([0.1, 0.99, 0.3])).round(4).tolist()
    [0.0006, 0.9987, 0.0007]
    """

    reweighted = True
