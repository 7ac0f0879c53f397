"""Linear contextual-bandit baselines of the neural-bandit comparison: LinUCB and epsilon-greedy.

Both keep exact ridge regressions (recursive least squares, kernels in
:mod:`regretflow.learners.contextual_baselines_kernels`):

- with a shared context ``x`` and ``n_actions`` actions, one regression per action
  over the contexts it was played on (disjoint LinUCB, Li et al. 2010);
- with per-action features ``actions`` of shape ``(K, d)``, one regression shared by
  all actions over the played action's features.

Regret is measured as for the neural bandits: pseudo-regret from the returned
probability vector when the simulator knows the expected rewards.

Both follow the bandit contract of :mod:`regretflow.learners.bandit_feedback`:
``learn`` works with or without a preceding ``decide`` (a logged stream), a given
probability must be in (0, 1] and is otherwise not needed (ridge regression does not
importance-weight), any finite reward is learned as it is (``objective="cost"``
learns ``-cost``), and their probability vectors never put 0 on an action unless the
exploration is switched off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import contextual_baselines_kernels as CK
from .bandit_feedback import DEFAULT_EXPLORATION, check_exploration, check_objective, check_probability, floor_probabilities, signed_reward
from .contract import (
    BanditDefaults,
    Decision,
    check_integer,
    check_number,
    check_state,
    expect_array,
    refuse_nonfinite,
    refuses_nonfinite,
    restore_rng,
    rng_state,
)


class _RidgeArms(BanditDefaults):
    """Per-arm (or shared) exact ridge state and the shared bandit plumbing."""

    task = "bandit"
    family = ""
    GAUGES = {
        "greedy_probability": "Probability of the greedy (highest estimated reward) action at the last decision",
    }

    def __init__(self, n_actions: int | None, lam: float, seed: int, objective: str = "reward"):
        self.n_actions = n_actions
        self.lam = lam
        self.seed = seed
        self.objective = objective
        check_integer("n_actions", n_actions, ">= 1", allow_none=True)
        check_number("lam", lam, "> 0")
        check_integer("seed", seed, ">= 0")
        self._objective = check_objective(objective)
        self._rng = np.random.default_rng(seed)
        self.mode = ""
        self.n_actions_ = 0
        self.n_features_ = 0
        self.n_updates = 0
        self._greedy_probability = 0.0
        # set up by the first context (or actions) seen: "disjoint" or "action_features"
        self._P = np.zeros((0, 0, 0))
        self._w = np.zeros((0, 0))
        self._scratch = np.zeros(0)

    def _set_up(self, context: Any, actions: Any) -> None:
        if actions is not None:
            matrix = np.asarray(actions, dtype=np.float64)
            if matrix.ndim != 2:
                raise ValueError(f"actions must be a (K, d) matrix, got shape {matrix.shape}")
            self.mode, self.n_actions_, self.n_features_ = "action_features", matrix.shape[0], matrix.shape[1]
            n_models = 1
        else:
            if self.n_actions is None or int(self.n_actions) < 1:
                raise ValueError("a shared context needs n_actions (>= 1); or pass actions=(K, d) features")
            self.mode = "disjoint"
            self.n_actions_ = int(self.n_actions)
            self.n_features_ = np.asarray(context).reshape(-1).shape[0]
            n_models = self.n_actions_
        d = self.n_features_
        self._P = np.repeat((np.eye(d) / self.lam)[None], n_models, axis=0)
        self._w = np.zeros((n_models, d))
        self._scratch = np.zeros(d)

    def _inputs(self, context: Any, actions: Any) -> np.ndarray:
        if not self.mode:
            self._set_up(context, actions)
        if self.mode == "action_features":
            if actions is None:
                raise ValueError("this model was set up with per-action features: pass actions=(K, d)")
            rows = np.ascontiguousarray(actions, dtype=np.float64)
            if rows.shape != (self.n_actions_, self.n_features_):
                raise ValueError(f"actions must have shape {(self.n_actions_, self.n_features_)}, got {rows.shape}")
            return rows
        if actions is not None:
            raise ValueError("this model was set up with a shared context: do not pass actions")
        x = np.ascontiguousarray(context, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n_features_:
            raise ValueError(f"context must have {self.n_features_} features, got {x.shape[0]}")
        return x

    def grow_features(self, n_new: int) -> None:
        """Append ``n_new`` context features, as if they had been 0 in every context so far.

        Exact for ridge: the new coordinates get ``1 / lam`` on the diagonal of every
        arm's inverse Gram matrix, 0 elsewhere and 0 weights. Only for a shared context
        that has been set up (the River adapter grows a model this way when a new key appears).

        >>> import numpy as np
        >>> bandit = LinUCBDisjoint(n_actions=2, exploration=0.0)
        >>> bandit.learn(np.array([1.0]), 0, 1.0)
        >>> bandit.grow_features(1)
        >>> bandit.n_features_, bandit.scores(np.array([1.0, 0.0])).round(3).tolist()
        (2, [0.5, 0.0])
        """
        if self.mode != "disjoint":
            raise ValueError("only a model of a shared context that has seen one can grow features")
        n_new = int(n_new)
        if n_new <= 0:
            return
        n_models, d = self._w.shape
        P = np.zeros((n_models, d + n_new, d + n_new))
        P[:, :d, :d] = self._P
        P[:, np.arange(d, d + n_new), np.arange(d, d + n_new)] = 1.0 / float(self.lam)
        w = np.zeros((n_models, d + n_new))
        w[:, :d] = self._w
        self._P, self._w, self._scratch = P, w, np.zeros(d + n_new)
        self.n_features_ = d + n_new

    def scores(self, context: Any, actions: Any = None, alpha: float = 0.0) -> np.ndarray:
        """Estimated reward of each action, plus ``alpha`` times its confidence width."""
        rows = self._inputs(context, actions)
        out = np.empty(self.n_actions_)
        if self.mode == "action_features":
            CK.shared_scores(self._P[0], self._w[0], rows, float(alpha), out)
        else:
            CK.disjoint_scores(self._P, self._w, rows, float(alpha), out)
        return out

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """Exact ridge update with the played action's reward (``-cost`` for a cost objective).

        Allowed without a preceding ``decide`` (a logged stream); ``probability`` is
        checked (None or in (0, 1]) but not needed: the regression is not importance-weighted.
        """
        value = signed_reward(reward, self._objective)
        check_probability(probability)
        rows = self._inputs(context, actions)
        action = int(action)
        if not 0 <= action < self.n_actions_:
            raise ValueError(f"action must be in [0, {self.n_actions_}), got {action}")
        if self.mode == "action_features":
            CK.update_arm(self._P, self._w, 0, rows[action], value, self._scratch)
        else:
            CK.update_arm(self._P, self._w, action, rows, value, self._scratch)
        self.n_updates += 1

    def gauges(self) -> dict[str, float]:
        return {"greedy_probability": float(self._greedy_probability)}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": self.family,
            "mode": self.mode,
            "n_actions": self.n_actions_,
            "n_features": self.n_features_,
            "n_updates": self.n_updates,
            "last_greedy_probability": self._greedy_probability,
            **rng_state(self._rng),
        }
        if self.mode:
            state["P"] = self._P.copy()
            state["w"] = self._w.copy()
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, type(self).__name__)
        if str(state["family"]) != self.family:
            raise ValueError(f"state of family {state['family']!r} given to {type(self).__name__}")
        self.mode = str(state["mode"])
        self.n_actions_ = int(state["n_actions"])
        self.n_features_ = int(state["n_features"])
        self.n_updates = int(state["n_updates"])
        self._greedy_probability = float(state["last_greedy_probability"])
        self._rng = restore_rng(state)
        if self.mode:
            n_models = 1 if self.mode == "action_features" else self.n_actions_
            d = self.n_features_
            self._P = expect_array(state, "P", (n_models, d, d), type(self).__name__)
            self._w = expect_array(state, "w", (n_models, d), type(self).__name__)
            self._scratch = np.zeros(d)


class LinUCBDisjoint(_RidgeArms):
    """LinUCB with disjoint linear models (Li et al. 2010), numba kernels, with an exploration floor.

    Each action keeps an exact ridge regression of its reward on the context; the
    action with the highest upper confidence bound ``w_a.x + alpha sqrt(x^T A_a^{-1} x)``
    (lowest index on ties) is played with probability ``1 - exploration``, and with
    probability ``exploration`` a uniformly drawn action instead. The probability
    vector is therefore ``(1 - exploration) one_hot(best) + exploration / K``: no
    action has probability 0, so the logs support off-policy evaluation. With
    ``exploration=0`` it is the deterministic LinUCB of the paper (what the
    reproductions run). With per-action features (``actions=(K, d)``) a single
    regression is shared.

    Parameters
    ----------
    n_actions
        Number of actions of a shared context (``None`` with per-action features).
    alpha
        Width multiplier of the confidence bound.
    lam
        Ridge penalty.
    seed
        Seed of the exploration draws.
    exploration
        The exploration floor in [0, 1) (default 0.01). A checkpoint written before
        the floor existed resumes without it, as it was running.
    objective
        ``"reward"`` (maximise) or ``"cost"`` (learn ``-cost``).

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.contextual_baselines import LinUCBDisjoint
    >>> bandit = LinUCBDisjoint(n_actions=2, alpha=0.5)
    >>> rng = np.random.default_rng(0)
    >>> hits = 0
    >>> for t in range(500):
    ...     x = np.array([1.0, rng.normal()])
    ...     best = int(x[1] > 0)
    ...     action, p = bandit.act(x)
    ...     bandit.learn(x, action, float(action == best), p[action])
    ...     hits += action == best
    >>> hits > 400, sorted(p.round(3).tolist())
    (True, [0.005, 0.995])
    """

    family = "linucb-disjoint"

    def __init__(
        self,
        n_actions: int | None = None,
        alpha: float = 1.0,
        lam: float = 1.0,
        seed: int = 0,
        exploration: float = DEFAULT_EXPLORATION,
        objective: str = "reward",
    ):
        super().__init__(n_actions, lam, seed, objective)
        self.alpha = alpha
        self.exploration = exploration
        check_number("alpha", alpha, ">= 0")
        self._exploration = check_exploration(exploration)

    @refuses_nonfinite
    def decide(self, context: Any, actions: Any = None) -> Decision:
        """The highest upper confidence bound, or with probability ``exploration`` a uniform action."""
        ucb = self.scores(context, actions, self.alpha)
        best = int(np.argmax(ucb))
        k = self.n_actions_
        probabilities = floor_probabilities(best, k, self._exploration)
        action = best
        if self._exploration > 0.0 and self._rng.random() < self._exploration:
            action = int(self._rng.integers(k))
        self._greedy_probability = float(probabilities[best])
        return Decision(action, probabilities)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "exploration": self._exploration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "exploration" not in state:
            self._exploration = 0.0  # saved before the floor existed: go on deterministic, as it ran


class EpsilonGreedy(_RidgeArms):
    """Epsilon-greedy over exact ridge regressions (one per action, or shared).

    With probability ``epsilon`` an action is drawn uniformly, otherwise the action
    of highest estimated reward (lowest index on ties); the returned probability
    vector is ``epsilon / K + (1 - epsilon) * one_hot(greedy)``.

    Parameters
    ----------
    n_actions
        Number of actions of a shared context (``None`` with per-action features).
    epsilon
        Exploration probability in [0, 1] (it is this learner's exploration floor).
    lam
        Ridge penalty.
    seed
        Seed of the exploration draws.
    objective
        ``"reward"`` (maximise) or ``"cost"`` (learn ``-cost``).

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.contextual_baselines import EpsilonGreedy
    >>> bandit = EpsilonGreedy(n_actions=3, epsilon=0.1, seed=0)
    >>> action, p = bandit.act(np.array([1.0, 0.0]))
    >>> p.round(4).tolist()
    [0.9333, 0.0333, 0.0333]
    """

    family = "epsilon-greedy"

    def __init__(self, n_actions: int | None = None, epsilon: float = 0.05, lam: float = 1.0, seed: int = 0, objective: str = "reward"):
        super().__init__(n_actions, lam, seed, objective)
        check_number("epsilon", epsilon, "[0, 1]")
        self.epsilon = epsilon

    @refuses_nonfinite
    def decide(self, context: Any, actions: Any = None) -> Decision:
        """Explore with probability ``epsilon``: ``epsilon / K`` on every action, the rest on the greedy one."""
        means = self.scores(context, actions, 0.0)
        greedy = int(np.argmax(means))
        k = self.n_actions_
        probabilities = floor_probabilities(greedy, k, float(self.epsilon))
        explore = self._rng.random() < self.epsilon
        action = int(self._rng.integers(k)) if explore else greedy
        self._greedy_probability = float(probabilities[greedy])
        return Decision(action, probabilities)
