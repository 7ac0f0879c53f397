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

import math
import operator
from typing import Any

import numpy as np

from . import neural_kernels as NK
from . import neural_ridge_kernels as NRK
from .bandit_feedback import check_objective, check_probability, check_reward_range
from .contract import (
    BanditDefaults,
    Decision,
    all_finite,
    check_choice,
    check_integer,
    check_number,
    check_state,
    expect_array,
    refuse_nonfinite,
    refuses_nonfinite,
    restore_rng,
    rng_state,
)
from .exploration import SCHEDULES, FastCBExploration, SquareCBExploration
from .neural import OnlineNeuralRegressor

_GOLDEN = 0x9E3779B97F4A7C15
# NeuralRidgeCB's default ridge penalty per context feature. Rewards of bounded range bound the
# norm of a standardised linear fit whatever d is, so each of its d coefficients has prior variance
# about |w|^2 / d and the Bayes ridge penalty noise^2 * d / |w|^2 grows linearly in d (0.2 * d: 1.8
# at d = 9, 39 at d = 196). docs/learners/neural-bandit.md has the screen that chose it over fixed
# penalties (10, 30, 50) and over 2.5 * sqrt(d).
RIDGE_PER_FEATURE = 0.2
_KEY_MODULUS = 2**63


class RewardScale:
    """The bandit contract's reward rule: ``objective="cost"`` negates, ``reward_range``
    clips, and the span (``high - low``) is the given range's or the running one of the
    rewards seen, starting from [0, 1] so that 0/1 rewards need no scaling.

    >>> scale = RewardScale("cost", None)
    >>> scale.observe(3.0), scale.span(), scale.unit(-3.0)
    (-3.0, 4.0, 0.0)
    """

    def __init__(self, objective: str, reward_range: tuple[float, float] | None):
        check_objective(objective)
        self.sign = 1.0 if objective == "reward" else -1.0
        pair = check_reward_range(reward_range)
        self.fixed = pair is not None
        if pair is not None:
            low, high = pair
            self.low, self.high = (low, high) if objective == "reward" else (-high, -low)
        else:
            self.low, self.high = 0.0, 1.0

    def observe(self, value: float) -> float:
        """The reward to learn for an observed reward (or cost); widens the running range."""
        reward = self.sign * value
        if self.fixed:
            return min(max(reward, self.low), self.high)
        self.low, self.high = min(self.low, reward), max(self.high, reward)
        return reward

    def span(self) -> float:
        return self.high - self.low

    def unit(self, reward: float) -> float:
        """``reward`` mapped to [0, 1] by the current range."""
        return min(max((reward - self.low) / (self.high - self.low), 0.0), 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"reward_low": self.low, "reward_high": self.high}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checkpoints written before the contract have no range: 0/1 rewards, [0, 1]
        if not self.fixed:
            self.low, self.high = float(state.get("reward_low", 0.0)), float(state.get("reward_high", 1.0))


# the floats every neural bandit's decide and learn write outside its network: the greedy action's
# probability, the reward scale's running range and the exploration rule's accounts
_DECISION_FLOATS = (
    "_greedy_probability",
    "_scale.low",
    "_scale.high",
    "exploration.cumulative_loss",
    "exploration._last_gamma",
    "exploration._last_exploration_cost",
)


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
        objective: str = "reward",
        reward_range: tuple[float, float] | None = None,
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
        self.objective = objective
        self.reward_range = reward_range
        self.seed = seed
        check_integer("n_actions", n_actions, ">= 1", allow_none=True)
        self._scale = RewardScale(objective, reward_range)
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

    # what decide and learn write besides the network (constructor parameters are checked when set)
    _LEARNED_FLOATS = ("exploration_cost_total", "oracle_loss_total", *_DECISION_FLOATS)

    def nonfinite_state(self) -> str | None:
        """The first learned value holding NaN or +-inf (the network's weights and moments, see
        :meth:`OnlineNeuralRegressor.nonfinite_state`), else None: the engine asks once per
        micro-batch, and a walk over every attribute cost more than the decision itself.

        >>> bandit = NeuralSquareCB(n_actions=2, width=4)
        >>> bandit.nonfinite_state()
        >>> bandit.exploration.cumulative_loss = float("inf"); bandit.nonfinite_state()
        'exploration.cumulative_loss'
        """
        bad = _first_nonfinite_float(self, self._LEARNED_FLOATS)
        if bad is not None:
            return bad
        bad = self.oracle.nonfinite_state()
        return None if bad is None else f"oracle.{bad}"

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

    def _in_objective_units(self, predicted: np.ndarray) -> np.ndarray:
        """Network outputs (rewards mapped to [0, 1]) back in the units of the objective."""
        if self._scale.low == 0.0 and self._scale.high == 1.0:
            return predicted  # 0/1 rewards: already in their units (and bit for bit as before)
        return self._scale.sign * (self._scale.low + self._scale.span() * predicted)

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
        return Decision(action, probabilities, self._in_objective_units(predicted), self._last_decision)

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """One oracle step on the chosen action's observed reward (no importance weighting),
        with or without a preceding :meth:`decide`.

        The network learns the reward mapped to [0, 1] (see :class:`RewardScale`: the
        running range starts at [0, 1], so 0/1 rewards are learned as they are).
        ``probability`` is the logged propensity (validated when given, not used by the
        oracle); ``ticket`` is the matching :meth:`decide`'s ``Decision.ticket`` (-1:
        the latest decision), which selects that decision's perturbation draw.
        """
        rows, row_of, offsets = self._items(context, actions)
        action = int(action)
        if not 0 <= action < self.n_actions_:
            raise ValueError(f"action must be in [0, {self.n_actions_}), got {action}")
        if not math.isfinite(float(reward)):
            raise ValueError(f"reward must be finite, got {reward!r}")
        check_probability(probability)
        reward = self._scale.unit(self._scale.observe(float(reward)))
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
            **self._scale.state_dict(),
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
        self._scale.load_state_dict(state)
        self._rng = restore_rng(state)
        self.exploration.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("exploration.")})
        self.oracle.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("oracle.")})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_actions={self.n_actions}, depth={self.depth}, width={self.width}, "
            f"optimizer={self.optimizer!r}, learning_rate={self.learning_rate}, "
            f"gamma_schedule={self.gamma_schedule!r}, gamma0={self.gamma0}, perturbation={self.perturbation})"
        )


def _first_nonfinite_float(learner: Any, paths: tuple[str, ...]) -> str | None:
    """The first of the float attributes at ``paths`` ("name" or "part.name") that is NaN or +-inf."""
    getter = _FLOAT_GETTERS.get(paths)
    if getter is None:
        getter = _FLOAT_GETTERS[paths] = operator.attrgetter(*paths)
    values = getter(learner) if len(paths) > 1 else (getter(learner),)  # (one name: attrgetter gives the value itself)
    if math.isfinite(sum(values)):  # a NaN or an infinity carries into the sum: the names are for a find only
        return None
    for path, value in zip(paths, values):
        if not math.isfinite(value):
            return path
    return None  # finite values whose sum overflowed


_FLOAT_GETTERS: dict[tuple[str, ...], Any] = {}


class NeuralSquareCB(_NeuralInverseGapBandit):
    """NeuSquareCB: SquareCB exploration over an online neural regressor (squared loss).

    The network predicts each action's reward; inverse-gap weighting
    (:class:`~regretflow.learners.exploration.SquareCBExploration`) turns the
    predictions into probabilities; after the feedback the network takes one gradient
    step on the chosen action's observed reward, without importance weighting (as
    VW does); ``learn`` works with or without a preceding ``decide`` and without a
    probability. ``gamma`` follows VW's anytime schedule ``gamma0 * sqrt(n)`` by default,
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
    objective, reward_range
        ``objective="cost"`` learns ``-cost``. Any finite reward is accepted: the network
        learns it mapped to [0, 1] by ``reward_range=(low, high)`` when given (values
        outside are clipped), else by the running range of the rewards seen, which starts
        at [0, 1] (so 0/1 rewards are used as they are; kept in the state).
        ``Decision.predicted_rewards`` are in the objective's units.
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

    The KL loss needs targets in [0, 1]: rewards are mapped there by the running range
    (or ``reward_range``), see :class:`NeuralSquareCB`. Parameters as :class:`NeuralSquareCB`.

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


class NeuralRidgeCB(BanditDefaults):
    """Recommended neural contextual bandit: exact ridge plus a residual network, SquareCB exploration.

    The predicted reward of action ``a`` is ``w_a . [s, 1] + net_a(s)``, ``s`` the context
    standardised online (running mean and variance, clipped to ``+-input_clip``), ``w_a``
    the exact ridge solution of action ``a`` (recursive least squares), and ``net`` one
    hidden layer of ``width`` tanh units shared by the actions, with one linear output per
    action, trained on the ridge's residual. The output weights start at 0, so the bandit
    starts as strong as ridge and adds non-linearity as it learns. Each feedback takes one
    Adam step over the current round and the last ``replay`` rounds, with the gradient
    clipped to norm ``grad_clip``. Kernels: :mod:`regretflow.learners.neural_ridge_kernels`.

    Decisions use SquareCB's inverse-gap weighting
    (:class:`~regretflow.learners.exploration.SquareCBExploration`, ``gamma = gamma0 *
    sqrt(n)`` after ``n`` feedbacks) over optimistic scores, the prediction plus
    ``optimism`` times the reward span times the ridge's confidence width
    ``sqrt([s, 1]' A_a^-1 [s, 1])`` (LinUCB's bonus), so every action keeps a positive
    probability and the logged propensities support off-policy evaluation. The cost per round is
    O(K d^2 + replay * d * width), independent of the number of rounds.

    Rewards are any finite reals. The gaps that inverse-gap weighting compares are divided
    by the reward span: ``reward_range[1] - reward_range[0]`` when given (rewards outside
    are clipped to it), else the running span of the rewards seen, ``max(1, seen) -
    min(0, seen)`` (kept in the state), so 0/1 rewards are used as they are.
    ``objective="cost"`` learns ``-cost`` (the lowest cost wins).

    Shared contexts only (``d`` floats with ``n_actions`` actions): per-action feature
    matrices are refused.

    The defaults are the recommendation, chosen once for all six datasets of
    ``regretflow reproduce neural-bandit`` (docs/learners/neural-bandit.md has the
    table and the routes measured).

    Parameters
    ----------
    n_actions
        Number of actions.
    width
        Hidden units of the residual network (0: ridge only).
    ridge
        Ridge penalty of each action's linear part, or ``None`` (the default) for
        ``RIDGE_PER_FEATURE * d`` = 0.2 d, ``d`` the context's dimension: a reward of
        bounded range bounds the fit's norm, so its ``d`` coefficients are each smaller the
        more there are, and the penalty that shrinks them right grows with ``d``.
    learning_rate, grad_clip
        Adam step size of the residual network and the gradient norm cap.
    replay
        Recent rounds replayed with each feedback (a ring buffer; 0: none).
    input_clip
        Standardised inputs are clipped to ``[-input_clip, input_clip]``.
    gamma0, gamma_exponent
        Exploration schedule ``gamma = gamma0 * n ** gamma_exponent``.
    optimism
        Weight of the ridge's confidence width in the scores that inverse-gap weighting
        compares (0: the plain predictions; 0.2 by default).
    objective
        ``"reward"`` (maximise) or ``"cost"`` (minimise).
    reward_range
        ``(low, high)`` of the rewards, or ``None`` for the running span.
    seed
        Seeds the network's initial weights and the action sampling.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.neural_bandit import NeuralRidgeCB
    >>> bandit = NeuralRidgeCB(n_actions=3, seed=0)
    >>> rng = np.random.default_rng(1)
    >>> rewards = 0.0
    >>> for t in range(2000):
    ...     x = rng.normal(size=2)
    ...     best = int(x[0] > 0) + int(x[1] > 0)          # the right action depends on x
    ...     action, p = bandit.act(x)
    ...     bandit.learn(x, action, float(action == best))  # the probability is optional
    ...     rewards += float(action == best) if t >= 1000 else 0.0
    >>> rewards / 1000 > 0.7, bool(p.min() > 0.0)  # uniform play: 1/3; ridge alone: 0.69
    (True, True)
    """

    task = "bandit"
    family = "neural-ridge-cb"

    GAUGES = {
        "exploration_cost": "Predicted reward given up to exploration at the last decision, sum_a p_a (max_b yhat_b - yhat_a)",
        "gamma": "Exploration strength gamma of the last decision",
        "greedy_probability": "Probability of the greedy (highest predicted reward) action at the last decision",
        "oracle_loss_mean": "Mean squared error of the predicted reward on the feedback before each step (prequential)",
        "reward_span": "Reward span that divides the gaps of inverse-gap weighting",
    }

    def __init__(
        self,
        n_actions: int | None = None,
        width: int = 32,
        ridge: float | None = None,
        learning_rate: float = 0.0003,
        grad_clip: float = 1.0,
        replay: int = 4,
        input_clip: float = 3.0,
        gamma0: float = 30.0,
        gamma_exponent: float = 0.5,
        optimism: float = 0.2,
        objective: str = "reward",
        reward_range: tuple[float, float] | None = None,
        seed: int = 0,
    ):
        self.n_actions = n_actions
        self.width = width
        self.ridge = ridge
        self.learning_rate = learning_rate
        self.grad_clip = grad_clip
        self.replay = replay
        self.input_clip = input_clip
        self.gamma0 = gamma0
        self.gamma_exponent = gamma_exponent
        self.optimism = optimism
        self.objective = objective
        self.reward_range = reward_range
        self.seed = seed
        check_integer("n_actions", n_actions, ">= 1", allow_none=True)
        check_integer("width", width, ">= 0")
        check_number("optimism", optimism, ">= 0")
        check_number("ridge", ridge, "> 0", allow_none=True)
        check_number("learning_rate", learning_rate, "> 0")
        check_number("grad_clip", grad_clip, "> 0")
        check_integer("replay", replay, ">= 0")
        check_number("input_clip", input_clip, "> 0")
        check_objective(objective)
        check_integer("seed", seed, ">= 0")
        self._scale = RewardScale(objective, reward_range)
        self.exploration = SquareCBExploration("sqrt", gamma0, gamma_exponent)
        net_seed, sample_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
        self._net_seed = int(net_seed)
        self._rng = np.random.default_rng(int(sample_seed))
        self.n_actions_ = 0
        self.n_features_ = 0
        self.n_decisions = 0
        self.n_updates = 0
        self.loss_total = 0.0
        self._greedy_probability = 0.0
        self._counters = np.zeros(4, dtype=np.int64)
        self._allocate(0, 0)

    # what decide and learn write besides the arrays below (constructor parameters are checked when set)
    _LEARNED_FLOATS = ("loss_total", *_DECISION_FLOATS)
    # the float arrays a learn step writes: the inputs' running moments, the ridge, the network, Adam's
    # moments and the replay buffer (``_predicted``, which decide writes, is checked every time)
    _LEARNED_ARRAYS = ("_mean", "_m2", "_ridge_inverse", "_ridge_w", "_theta", "_first", "_second", "_replay_x", "_replay_reward")
    _predicted: np.ndarray
    _unchecked: bool  # whether a learn step wrote the arrays since the last check

    def nonfinite_state(self) -> str | None:
        """The first learned value holding NaN or +-inf, else None: the engine asks once per micro-batch, and
        a walk over every attribute cost ~20 us, a quarter of a decide and a learn. The arrays are looked at
        only after a learn step wrote them.

        >>> bandit = NeuralRidgeCB(n_actions=2, width=4)
        >>> bandit.learn([0.5, 1.0], 0, 1.0); bandit.nonfinite_state()
        >>> bandit._ridge_w[0, 0] = float("nan")  # as a step gone wrong would leave it
        >>> bandit._unchecked = True; bandit.nonfinite_state()
        '_ridge_w'
        """
        bad = _first_nonfinite_float(self, self._LEARNED_FLOATS)
        if bad is not None:
            return bad
        if not all_finite(self._predicted):
            return "_predicted"
        if self._unchecked:
            for name in self._LEARNED_ARRAYS:
                if not all_finite(np.ascontiguousarray(getattr(self, name)).reshape(-1)):
                    return name  # still unchecked: asked again, it says so again
            self._unchecked = False
        return None

    def _allocate(self, n_actions: int, n_features: int) -> None:
        k, d = n_actions, n_features
        self.n_actions_, self.n_features_ = k, d
        self._unchecked = True  # (new arrays; load_state_dict fills them after this)
        self._mean = np.zeros(d)
        self._m2 = np.zeros(d)
        self._ridge_inverse = np.tile(np.eye(d + 1) / self.ridge_penalty(d), (k, 1, 1)) if k else np.zeros((0, d + 1, d + 1))
        self._ridge_w = np.zeros((k, d + 1))
        p = int(NRK.n_network_parameters(d, self.width, k)) if k else 0
        self._theta = np.zeros(p)
        if k and self.width:
            # hidden layer N(0, 1/d), output weights 0: the bandit starts as plain ridge
            rng = np.random.default_rng(self._net_seed)
            self._theta[: self.width * d] = rng.normal(0.0, 1.0 / np.sqrt(d), self.width * d)
        self._first = np.zeros(p)
        self._second = np.zeros(p)
        self._replay_x = np.zeros((self.replay if k else 0, d))
        self._replay_action = np.zeros(self.replay if k else 0, dtype=np.int64)
        self._replay_reward = np.zeros(self.replay if k else 0)
        self._predicted = np.zeros(k)

    def ridge_penalty(self, n_features: int) -> float:
        """The ridge penalty used for contexts of ``n_features`` floats: ``ridge``, or with
        ``ridge=None`` ``RIDGE_PER_FEATURE * n_features``."""
        if self.ridge is not None:
            return float(self.ridge)
        return RIDGE_PER_FEATURE * n_features

    def _context(self, context: Any, actions: Any) -> np.ndarray:
        if actions is not None:
            raise ValueError("NeuralRidgeCB takes a shared context only (per-action features are not supported)")
        x = np.ascontiguousarray(context, dtype=np.float64).reshape(-1)
        if not self.n_actions_:
            if self.n_actions is None:
                raise ValueError("NeuralRidgeCB needs n_actions (>= 1)")
            if x.shape[0] < 1:
                raise ValueError("the context must have at least one feature")
            self._allocate(int(self.n_actions), x.shape[0])
        if x.shape[0] != self.n_features_:
            raise ValueError(f"context must have {self.n_features_} features, got {x.shape[0]}")
        return x

    def predict_rewards(self, context: Any, actions: Any = None) -> np.ndarray:
        """Predicted reward of every action, in the units of the rewards learned (no state change)."""
        x = self._context(context, actions)
        out = np.empty(self.n_actions_)
        NRK.predict_rewards(x, self._mean, self._m2, self._counters, self._ridge_w, self._theta, self.width, float(self.input_clip), out)
        return out if self.objective == "reward" else -out

    def confidence_widths(self, context: Any, actions: Any = None) -> np.ndarray:
        """Each action's ridge confidence width ``sqrt([s, 1]' A_a^-1 [s, 1])`` (no state change)."""
        x = self._context(context, actions)
        out = np.empty(self.n_actions_)
        NRK.confidence_widths(x, self._mean, self._m2, self._counters, self._ridge_inverse, float(self.input_clip), out)
        return out

    @refuses_nonfinite
    def decide(self, context: Any, actions: Any = None) -> Decision:
        """Choose an action; the ticket is the decision number. ``predicted_rewards`` are
        in the units of the objective (costs when ``objective="cost"``)."""
        x = self._context(context, actions)
        predicted = self._predicted
        NRK.predict_rewards(
            x, self._mean, self._m2, self._counters, self._ridge_w, self._theta, self.width, float(self.input_clip), predicted
        )
        scores = predicted
        if self.optimism > 0.0:  # optimistic scores: directed exploration where the ridge is unsure
            scores = predicted + self.optimism * self._scale.span() * self.confidence_widths(x)
        probabilities = self.exploration.probabilities(scores / self._scale.span())
        action = int(NK.sample_index(probabilities, self._rng.random()))
        self._greedy_probability = float(probabilities[int(np.argmax(scores))])
        ticket = self.n_decisions
        self.n_decisions += 1
        shown = predicted.copy() if self.objective == "reward" else -predicted
        return Decision(action, probabilities, shown, ticket)

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """Learn the reward (or cost) of ``action`` in ``context``, with or without a
        preceding :meth:`decide`. No importance weighting: ``probability`` is checked when
        given and otherwise unused; ``ticket`` is accepted for the common signature."""
        x = self._context(context, actions)
        action = int(action)
        if not 0 <= action < self.n_actions_:
            raise ValueError(f"action must be in [0, {self.n_actions_}), got {action}")
        check_probability(probability)
        target = self._scale.observe(float(reward))
        self.loss_total += float(
            NRK.learn(
                x, action, target, self._mean, self._m2, self._counters, self._ridge_inverse, self._ridge_w,
                self._theta, self._first, self._second, self._replay_x, self._replay_action, self._replay_reward,
                self.width, float(self.input_clip), float(self.learning_rate), 0.9, 0.999, 1e-8, float(self.grad_clip),
            )
        )  # fmt: skip
        self.exploration.observe(0.0)
        self.n_updates += 1
        self._unchecked = True

    def gauges(self) -> dict[str, float]:
        rule = self.exploration.gauges()
        return {
            "exploration_cost": rule["exploration_cost"] * self._scale.span(),
            "gamma": rule["gamma"],
            "greedy_probability": self._greedy_probability,
            "oracle_loss_mean": self.loss_total / self.n_updates if self.n_updates else 0.0,
            "reward_span": self._scale.span(),
        }

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "family": self.family,
            "n_actions": self.n_actions_,
            "n_features": self.n_features_,
            "n_decisions": self.n_decisions,
            "n_updates": self.n_updates,
            "loss_total": self.loss_total,
            "last_greedy_probability": self._greedy_probability,
            "counters": self._counters.copy(),
            "input_mean": self._mean.copy(),
            "input_m2": self._m2.copy(),
            "ridge_inverse": self._ridge_inverse.copy(),
            "ridge_weights": self._ridge_w.copy(),
            "network": self._theta.copy(),
            "adam_first": self._first.copy(),
            "adam_second": self._second.copy(),
            "replay_contexts": self._replay_x.copy(),
            "replay_actions": self._replay_action.copy(),
            "replay_rewards": self._replay_reward.copy(),
            **self._scale.state_dict(),
            **rng_state(self._rng),
        }
        for key, value in self.exploration.state_dict().items():
            state[f"exploration.{key}"] = value
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_nonfinite(state, type(self).__name__)
        if str(state["family"]) != self.family:
            raise ValueError(f"state of family {state['family']!r} given to {type(self).__name__}")
        k, d = int(state["n_actions"]), int(state["n_features"])
        self._allocate(k, d)
        owner = type(self).__name__
        self._counters = expect_array(state, "counters", (4,), owner).astype(np.int64)
        self._mean = expect_array(state, "input_mean", (d,), owner).astype(np.float64)
        self._m2 = expect_array(state, "input_m2", (d,), owner).astype(np.float64)
        self._ridge_inverse = expect_array(state, "ridge_inverse", self._ridge_inverse.shape, owner).astype(np.float64)
        self._ridge_w = expect_array(state, "ridge_weights", self._ridge_w.shape, owner).astype(np.float64)
        self._theta = expect_array(state, "network", self._theta.shape, owner).astype(np.float64)
        self._first = expect_array(state, "adam_first", self._theta.shape, owner).astype(np.float64)
        self._second = expect_array(state, "adam_second", self._theta.shape, owner).astype(np.float64)
        self._replay_x = expect_array(state, "replay_contexts", self._replay_x.shape, owner).astype(np.float64)
        self._replay_action = expect_array(state, "replay_actions", self._replay_action.shape, owner).astype(np.int64)
        self._replay_reward = expect_array(state, "replay_rewards", self._replay_reward.shape, owner).astype(np.float64)
        self.n_decisions = int(state["n_decisions"])
        self.n_updates = int(state["n_updates"])
        self.loss_total = float(state["loss_total"])
        self._greedy_probability = float(state["last_greedy_probability"])
        self._scale.load_state_dict(state)
        self._rng = restore_rng(state)
        self.exploration.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("exploration.")})

    def __repr__(self) -> str:
        return (
            f"NeuralRidgeCB(n_actions={self.n_actions}, width={self.width}, ridge={self.ridge}, learning_rate={self.learning_rate}, "
            f"replay={self.replay}, input_clip={self.input_clip}, gamma0={self.gamma0}, optimism={self.optimism}, objective={self.objective!r})"
        )


def warm_up() -> None:
    """Compile (or load from cache) the kernels these bandits use; the engine calls it at start."""
    NK.warm_up()
    NRK.warm_up()
