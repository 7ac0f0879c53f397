"""Contextual neural bandits: NeuralSquareCB and NeuralFastCB (Deb et al., ICLR 2024).

Each is an :class:`~regretflow.learners.neural.OnlineNeuralRegressor` (the regression
oracle, one gradient step per feedback) under an inverse-gap-weighting rule from
:mod:`regretflow.learners.exploration` (the exploration layer); the two share no state.

Contexts come in one of two forms, fixed by the first call:

- a shared context ``x`` (``d`` floats) with ``n_actions`` actions, in the disjoint
  encoding of the classification-bandit literature (action ``a`` sees ``x`` in block
  ``a`` of a ``K*d`` input); the ``K*d`` vector is never built, the network reads the
  ``d`` columns of block ``a``;
- per-action feature vectors, ``actions`` of shape ``(K, d)``, one row per action.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import neural_kernels as NK
from .contract import (
    BanditDefaults,
    Decision,
    check_choice,
    check_integer,
    check_state,
    refuse_nonfinite,
    refuses_nonfinite,
    restore_rng,
    rng_state,
)
from .exploration import SCHEDULES, FastCBExploration, SquareCBExploration
from .neural import OnlineNeuralRegressor

_GOLDEN = 0x9E3779B97F4A7C15
_KEY_MODULUS = 2**63


class _NeuralInverseGapBandit(BanditDefaults):
    """Shared machinery of the two neural inverse-gap-weighting bandits."""

    task = "bandit"
    family = ""
    _loss = "squared"
    _rule_class: type = SquareCBExploration

    GAUGES = {
        "exploration_cost": "Predicted reward given up to exploration at the last decision, sum_a p_a (max_b yhat_b - yhat_a)",
        "exploration_cost_cumulative": "Cumulative predicted reward given up to exploration over all decisions",
        "gamma": "Exploration strength gamma of the last decision",
        "greedy_probability": "Probability of the greedy (highest predicted reward) action at the last decision",
        "observed_loss_cumulative": "Sum of 1 - reward over learned feedback (FastCB: the running estimate of L*)",
        "oracle_loss_mean": "Mean loss of the regression oracle on the feedback before each step (prequential)",
        "nonfinite_decisions": "Decisions made uniformly because the network predicted a non-finite reward "
        "(a diverged network; its non-finite weights stay in the state, where the "
        "engine's check finds them)",
        "weight_distance": "Distance ||theta - theta0|| of the network weights from their initialisation",
    }

    def __init__(
        self,
        n_actions: int | None = None,
        depth: int = 1,
        width: int = 100,
        activation: str = "tanh",
        optimizer: str = "ogd",
        learning_rate: float = 0.1,
        gamma_schedule: str = "sqrt",
        gamma0: float = 10.0,
        gamma_exponent: float = 0.5,
        gamma_min: float | None = None,
        projection_radius: float | None = None,
        perturbation: float = 0.0,
        init_scale: float = 1.0,
        seed: int = 0,
    ):
        self.n_actions = n_actions
        self.depth = depth
        self.width = width
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.gamma_schedule = gamma_schedule
        self.gamma0 = gamma0
        self.gamma_exponent = gamma_exponent
        self.gamma_min = gamma_min
        self.projection_radius = projection_radius
        self.perturbation = perturbation
        self.init_scale = init_scale
        self.seed = seed
        check_integer("n_actions", n_actions, ">= 1", allow_none=True)
        check_integer("seed", seed, ">= 0")
        # the rule checks its own constants; its schedule is this class's gamma_schedule
        check_choice("gamma_schedule", gamma_schedule, SCHEDULES)
        net_seed, sample_seed, key_seed = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
        self.oracle = OnlineNeuralRegressor(
            depth=depth,
            width=width,
            activation=activation,
            loss=self._loss,
            optimizer=optimizer,
            learning_rate=learning_rate,
            projection_radius=projection_radius,
            perturbation=perturbation,
            init_scale=init_scale,
            seed=int(net_seed),
        )
        self.oracle._check_parameters()
        self.exploration = self._rule_class(gamma_schedule, gamma0, gamma_exponent, gamma_min)
        self._rng = np.random.default_rng(int(sample_seed))
        self._key_base = int(key_seed) % _KEY_MODULUS
        self.mode = ""  # "disjoint" or "action_features" once the first context is seen
        self.n_actions_ = 0
        self.n_features_ = 0
        self.n_decisions = 0
        self._last_decision = -1  # the default ticket of learn: the latest decision
        self.n_updates = 0
        self.exploration_cost_total = 0.0
        self.oracle_loss_total = 0.0
        self._greedy_probability = 0.0
        self.nonfinite_decisions = 0

    # -- inputs -------------------------------------------------------------------
    def _set_up(self, context: Any, actions: Any) -> None:
        if actions is not None:
            matrix = np.asarray(actions, dtype=np.float64)
            if matrix.ndim != 2 or matrix.shape[0] < 1:
                raise ValueError(f"actions must be a (K, d) matrix, got shape {matrix.shape}")
            self.mode, self.n_actions_, self.n_features_ = "action_features", matrix.shape[0], matrix.shape[1]
            if self.n_actions is not None and self.n_actions != self.n_actions_:
                raise ValueError(f"n_actions={self.n_actions} but actions has {self.n_actions_} rows")
            self.oracle.allocate(self.n_features_, self.n_features_)
        else:
            if self.n_actions is None or int(self.n_actions) < 1:
                raise ValueError("a shared context needs n_actions (>= 1); or pass actions=(K, d) features")
            vector = np.asarray(context, dtype=np.float64).reshape(-1)
            self.mode, self.n_actions_, self.n_features_ = "disjoint", int(self.n_actions), vector.shape[0]
            self.oracle.allocate(self.n_actions_ * self.n_features_, self.n_features_)

    def _items(self, context: Any, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, row of each action, column offset of each action) for the network."""
        if not self.mode:
            self._set_up(context, actions)
        k, d = self.n_actions_, self.n_features_
        if self.mode == "action_features":
            if actions is None:
                raise ValueError("this model was set up with per-action features: pass actions=(K, d)")
            rows = np.ascontiguousarray(actions, dtype=np.float64)
            if rows.shape != (k, d):
                raise ValueError(f"actions must have shape {(k, d)}, got {rows.shape}")
            return rows, np.arange(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
        if actions is not None:
            raise ValueError("this model was set up with a shared context: do not pass actions")
        rows = np.ascontiguousarray(context, dtype=np.float64).reshape(1, -1)
        if rows.shape[1] != d:
            raise ValueError(f"context must have {d} features, got {rows.shape[1]}")
        return rows, np.zeros(k, dtype=np.int64), np.arange(k, dtype=np.int64) * d

    def decision_key(self, decision: int) -> int:
        """The perturbation key of decision number ``decision`` (a function of the seed)."""
        return (self._key_base + int(decision) * _GOLDEN) % _KEY_MODULUS

    # -- bandit API ----------------------------------------------------------------
    def predict_rewards(self, context: Any, actions: Any = None, decision: int | None = None) -> np.ndarray:
        """Predicted reward of every action (no state change)."""
        rows, row_of, offsets = self._items(context, actions)
        key = self.decision_key(self.n_decisions if decision is None else decision)
        return self.oracle.link(self.oracle.raw_outputs(rows, row_of, offsets, key))

    @refuses_nonfinite
    def decide(self, context: Any, actions: Any = None) -> Decision:
        """Choose an action: its index, the probability vector over actions, the predicted
        rewards (for doubly-robust estimates) and, as the ticket, the decision number
        (for :meth:`learn` with late feedback).

        A network that predicts a non-finite reward has diverged: the decision is uniform,
        counted in the ``nonfinite_decisions`` gauge, and the weights are left as they are
        (non-finite) so that the engine's check of the state arrays sees it.
        """
        predicted = self.predict_rewards(context, actions)
        if not np.all(np.isfinite(predicted)):  # a diverged network: explore uniformly, and say so
            self.nonfinite_decisions += 1
        probabilities = self.exploration.probabilities(predicted)
        action = int(NK.sample_index(probabilities, self._rng.random()))
        self._last_decision = self.n_decisions
        self.n_decisions += 1
        self.exploration_cost_total += self.exploration.gauges()["exploration_cost"]
        greedy = int(np.argmax(predicted)) if np.all(np.isfinite(predicted)) else 0
        self._greedy_probability = float(probabilities[greedy])
        return Decision(action, probabilities, predicted, self._last_decision)

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """One oracle step on the chosen action's observed reward (no importance weighting).

        ``probability`` is the logged propensity (validated when given, not used by the
        oracle); ``ticket`` is the matching :meth:`decide`'s ``Decision.ticket`` (-1:
        the latest decision), which selects that decision's perturbation draw.
        """
        rows, row_of, offsets = self._items(context, actions)
        action = int(action)
        if not 0 <= action < self.n_actions_:
            raise ValueError(f"action must be in [0, {self.n_actions_}), got {action}")
        reward = float(reward)
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward!r}")
        if probability is not None and not 0.0 < float(probability) <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {probability!r}")
        decision = self._last_decision if int(ticket) < 0 else int(ticket)
        loss = self.oracle.learn_item(rows[row_of[action]], int(offsets[action]), reward, self.decision_key(max(decision, 0)), action)
        self.exploration.observe(reward)
        self.oracle_loss_total += loss
        self.n_updates += 1

    @refuses_nonfinite
    def act_many(self, contexts: Any, actions: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``act`` row by row: ``contexts`` (n, d) or ``actions`` (n, K, d)."""
        n = len(actions) if actions is not None else len(contexts)
        chosen = np.empty(n, dtype=np.int64)
        probabilities = []
        for i in range(n):
            chosen[i], p = self.act(None if contexts is None else contexts[i], None if actions is None else actions[i])
            probabilities.append(p)
        return chosen, np.array(probabilities)

    @refuses_nonfinite
    def learn_many(self, contexts: Any, chosen: Any, rewards: Any, probabilities: Any, actions: Any = None, tickets: Any = None) -> None:
        """``learn`` row by row (``tickets``: the decisions' tickets, default the latest decision)."""
        for i in range(len(chosen)):
            self.learn(
                None if contexts is None else contexts[i],
                chosen[i],
                rewards[i],
                probabilities[i],
                None if actions is None else actions[i],
                -1 if tickets is None else int(tickets[i]),
            )

    # -- monitoring ---------------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        rule = self.exploration.gauges()
        return {
            "exploration_cost": rule["exploration_cost"],
            "exploration_cost_cumulative": float(self.exploration_cost_total),
            "gamma": rule["gamma"],
            "greedy_probability": float(self._greedy_probability),
            "observed_loss_cumulative": float(self.exploration.cumulative_loss),
            "oracle_loss_mean": float(self.oracle_loss_total / self.n_updates) if self.n_updates else 0.0,
            "nonfinite_decisions": float(self.nonfinite_decisions),
            "weight_distance": self.oracle.distance_from_init() if self.mode else 0.0,
        }

    # -- state --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": self.family,
            "mode": self.mode,
            "n_actions": self.n_actions_,
            "n_features": self.n_features_,
            "n_decisions": self.n_decisions,
            "last_decision": self._last_decision,
            "n_updates": self.n_updates,
            "exploration_cost_total": self.exploration_cost_total,
            "oracle_loss_total": self.oracle_loss_total,
            "last_greedy_probability": self._greedy_probability,
            "nonfinite_decisions": self.nonfinite_decisions,
            "perturbation_key_base": str(self._key_base),
            **rng_state(self._rng),
        }
        for key, value in self.exploration.state_dict().items():
            state[f"exploration.{key}"] = value
        for key, value in self.oracle.state_dict().items():
            state[f"oracle.{key}"] = value
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, type(self).__name__)
        if str(state["family"]) != self.family:
            raise ValueError(f"state of family {state['family']!r} given to {type(self).__name__}")
        self.mode = str(state["mode"])
        self.n_actions_ = int(state["n_actions"])
        self.n_features_ = int(state["n_features"])
        self.n_decisions = int(state["n_decisions"])
        self._last_decision = int(state["last_decision"])
        self.n_updates = int(state["n_updates"])
        self.exploration_cost_total = float(state["exploration_cost_total"])
        self.oracle_loss_total = float(state["oracle_loss_total"])
        self._greedy_probability = float(state["last_greedy_probability"])
        self.nonfinite_decisions = int(state["nonfinite_decisions"])
        self._key_base = int(state["perturbation_key_base"])
        self._rng = restore_rng(state)
        self.exploration.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("exploration.")})
        self.oracle.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("oracle.")})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_actions={self.n_actions}, depth={self.depth}, width={self.width}, "
            f"optimizer={self.optimizer!r}, learning_rate={self.learning_rate}, "
            f"gamma_schedule={self.gamma_schedule!r}, gamma0={self.gamma0}, perturbation={self.perturbation})"
        )


class NeuralSquareCB(_NeuralInverseGapBandit):
    """NeuSquareCB: SquareCB exploration over an online neural regressor (squared loss).

    The network predicts each action's reward; inverse-gap weighting
    (:class:`~regretflow.learners.exploration.SquareCBExploration`) turns the
    predictions into probabilities; after the feedback the network takes one gradient
    step on the chosen action's observed reward, without importance weighting (as
    VW does). ``gamma`` follows VW's anytime schedule ``gamma0 * sqrt(n)`` by default,
    so the first decision is uniform.

    Regret: against the best action for each context. In a simulator that knows the
    expected rewards ``mu`` the engine computes the pseudo-regret exactly from the
    returned probabilities, ``sum_t (max mu_t - p_t . mu_t)``; on live traffic it
    reports the observed reward and off-policy estimates from the logged propensities.

    Parameters
    ----------
    n_actions
        Number of actions for a shared context (disjoint encoding). ``None`` when
        every call passes per-action features ``actions`` of shape ``(K, d)``.
    depth, width, activation
        Network shape (``depth`` hidden layers of ``width`` units) and activation.
    optimizer, learning_rate
        ``"ogd"``, ``"adabelief"`` or ``"exadam"`` (v2), and its step size.
    gamma_schedule, gamma0, gamma_exponent, gamma_min
        Exploration schedule: ``"sqrt"`` (VW), ``"fixed"`` or ``"doubling"`` (see
        :mod:`regretflow.learners.exploration`).
    projection_radius
        Ball around the initial weights that each step is projected onto (``None``: off).
    perturbation
        Scale of the paper's prediction perturbation (0 = off; its exact form in the
        paper is unverified, see :mod:`regretflow.learners.neural_kernels`).
    init_scale
        Gain of the Gaussian initialisation.
    seed
        Seeds the initial weights, the action sampling and the perturbation draws.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.neural_bandit import NeuralSquareCB
    >>> bandit = NeuralSquareCB(n_actions=3, width=16, learning_rate=0.03, seed=0)
    >>> rng = np.random.default_rng(1)
    >>> rewards = 0.0
    >>> for t in range(2000):
    ...     x = rng.normal(size=2)
    ...     best = int(x[0] > 0) + int(x[1] > 0)          # the right action depends on x
    ...     action, p = bandit.act(x)
    ...     reward = float(action == best)
    ...     bandit.learn(x, action, reward, p[action])
    ...     rewards += reward if t >= 1000 else 0.0
    >>> rewards / 1000 > 0.8, round(float(p.sum()), 12)
    (True, 1.0)
    """

    family = "neural-squarecb"
    _loss = "squared"
    _rule_class = SquareCBExploration


class NeuralFastCB(_NeuralInverseGapBandit):
    """NeuFastCB: FastCB exploration over an online neural regressor (KL loss, sigmoid output).

    As :class:`NeuralSquareCB`, but the network's output goes through a sigmoid
    (clamped to ``[1e-6, 1 - 1e-6]``), the step follows the KL (log) loss of the
    reward in [0, 1], and the exploration is FastCB's reweighted inverse-gap weighting
    (:class:`~regretflow.learners.exploration.FastCBExploration`): exploration fades
    as the best predicted loss goes to 0, the first-order (small-loss) behaviour.
    ``observed_loss_cumulative`` (a gauge) is the running estimate of ``L*``.

    Rewards must lie in [0, 1]. Parameters as :class:`NeuralSquareCB`.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.neural_bandit import NeuralFastCB
    >>> bandit = NeuralFastCB(n_actions=3, width=16, learning_rate=0.1, gamma0=10.0, seed=0)
    >>> rng = np.random.default_rng(1)
    >>> rewards = 0.0
    >>> for t in range(2000):
    ...     x = rng.normal(size=2)
    ...     best = int(x[0] > 0) + int(x[1] > 0)
    ...     action, p = bandit.act(x)
    ...     reward = float(action == best)
    ...     bandit.learn(x, action, reward, p[action])
    ...     rewards += reward if t >= 1000 else 0.0
    >>> rewards / 1000 > 0.8, bandit.gauges()["gamma"] > 100
    (True, True)
    """

    family = "neural-fastcb"
    _loss = "kl"
    _rule_class = FastCBExploration

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        if not 0.0 <= float(reward) <= 1.0:
            raise ValueError(f"NeuralFastCB needs rewards in [0, 1], got {reward!r}")
        super().learn(context, action, reward, probability, actions, ticket)


def warm_up() -> None:
    """Compile (or load from cache) the kernels these bandits use; the engine calls it at start."""
    NK.warm_up()
