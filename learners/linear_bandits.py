"""Baselines of the dynamical linear bandit experiments, as the official code runs them.

:class:`ActionVectorLinUCB` and :class:`DiscountedLinUCB` regress every round's reward
on the played action's vector with one shared parameter (they ignore that an action's
effect lingers); :class:`Exp3` and :class:`BatchedExp3` treat the arms as adversarial.
``LinUCB`` is the deprecated former name of :class:`ActionVectorLinUCB` (it is not the
contextual LinUCB of Li et al.: that is
:class:`~regretflow.learners.contextual_baselines.LinUCBDisjoint`). They share the kernels of
:mod:`regretflow.learners.dynamical_kernels` with :class:`~regretflow.learners.dynamical.DynLinUCB`.
Regret is measured as for DynLin-UCB: steady-state pseudo-regret
``sum_t (max_k h.u_k - h.u_t)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from . import dynamical_kernels as K
from .bandit_feedback import DEFAULT_EXPLORATION, RewardRange, check_objective, check_probability, signed_reward
from .contract import (
    BanditDefaults,
    Decision,
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
from .dynamical import (
    SystemBounds,
    _OptimisticLinearBandit,
    _resolve_lam,
    action_matrix,
    check_optimistic_parameters,
    dynamical_constants,
    refuse_other_actions,
)

__all__ = ["ActionVectorLinUCB", "LinUCB", "DiscountedLinUCB", "Exp3", "BatchedExp3"]


class ActionVectorLinUCB(_OptimisticLinearBandit):
    """LinUCB over a finite set of action vectors, one shared parameter: regresses every round's reward.

    The reward is modelled as ``h.u`` for the played action vector ``u`` (no context);
    every round is a decision. (Formerly named ``LinUCB``, config family ``linucb``:
    both still work and warn.)

    Two confidence radii, as in the official experiments:

    - ``radius="oracle"`` (``LinearAgent(linucb=True)``): DynLin-UCB's radius without
      the ``c2`` bias term, ``c1 sqrt(lam) + sqrt(2 sigma_bar^2 (ln(1/delta) + d/2
      ln(1 + t U^2/(d lam))))``, constants from ``bounds``.
    - ``radius="standard"`` (``LinUCBAgent``): the constant
      ``Theta sqrt(lam) + sqrt(2 ln T + d ln(1 + T U^2/(d lam)))`` with ``U =
      norm_bound`` (the official run uses the total budget, 1.5).

    On a system whose actions linger it converges to the myopic arm (the best
    immediate effect), which can have linear steady-state regret.

    Parameters
    ----------
    actions, bounds, horizon, lam, delta, u_norm, beta_scale, seed, exploration, objective
        As for :class:`~regretflow.learners.dynamical.DynLinUCB` (exploration floor 0.01 by default).
    radius
        ``"oracle"`` or ``"standard"``.
    norm_bound
        ``U`` of the standard radius; default ``u_norm``.

    Examples
    --------
    >>> from regretflow.learners.linear_bandits import ActionVectorLinUCB
    >>> bounds = {"rho_bar": 0.0, "phi_bar": 1.0, "omega_norm": 0.0,
    ...           "theta_norm": 1.0, "b_norm": 0.0, "noise_sigma": 0.01}
    >>> learner = ActionVectorLinUCB([[1.0, 0.0], [0.0, 1.0]], bounds, horizon=1000, seed=0)
    >>> for t in range(100):
    ...     arm, _ = learner.act()
    ...     learner.learn(None, arm, [0.2, 0.6][arm])
    >>> learner.act()[0], learner.n_updates
    (1, 100)
    """

    def __init__(
        self,
        actions: Any,
        bounds: Any,
        horizon: int,
        lam: float | str = "log_horizon",
        radius: str = "oracle",
        delta: float | None = None,
        u_norm: float | None = None,
        norm_bound: float | None = None,
        beta_scale: float = 1.0,
        residual_window: float = 1000.0,
        seed: int = 0,
        exploration: float = DEFAULT_EXPLORATION,
        objective: str = "reward",
    ):
        self.actions_spec = actions
        self.bounds = bounds
        self.horizon = horizon
        self.lam = lam
        self.exploration = exploration
        self.objective = objective
        self.radius = radius
        self.delta = delta
        self.u_norm = u_norm
        self.norm_bound = norm_bound
        self.beta_scale = beta_scale
        self.residual_window = residual_window
        self.seed = seed
        check_optimistic_parameters(horizon, delta, u_norm, norm_bound, beta_scale, residual_window, seed)
        check_choice("radius", radius, ("oracle", "standard"))
        sb = SystemBounds.coerce(bounds)
        horizon = int(horizon)
        mat = action_matrix(actions)
        d = mat.shape[1]
        u = float(u_norm) if u_norm is not None else float(np.max(np.linalg.norm(mat, axis=1)))
        lam_value = _resolve_lam(lam, horizon)
        dlt = 1.0 / horizon if delta is None else float(delta)
        if radius == "oracle":
            consts = dynamical_constants(sb, u)
            rule = K.RULE_ORACLE
            params = [beta_scale, consts["c1"], 0.0, consts["sigma_bar_sq"], lam_value, float(np.log(1 / dlt)), u**2, 1.0]
        elif radius == "standard":
            nb = u if norm_bound is None else float(norm_bound)
            const = sb.theta_norm * np.sqrt(lam_value) + np.sqrt(
                2 * np.log(1 / dlt) + d * np.log((d * lam_value + horizon * nb**2) / (d * lam_value))
            )
            rule = K.RULE_CONSTANT
            params = [beta_scale, float(const)]
        else:
            raise ValueError(f"radius must be 'oracle' or 'standard', got {radius!r}")
        self._setup(mat, seed, 0.0, 0, rule, np.array(params), residual_window, lam_value, exploration, objective)

    _former_names = ("LinUCB",)


class LinUCB(ActionVectorLinUCB):
    """Deprecated name of :class:`ActionVectorLinUCB` (and config family ``linucb``): warns, then behaves the same.

    Its checkpoints load into :class:`ActionVectorLinUCB` and back.

    >>> import warnings
    >>> bounds = {"rho_bar": 0.0, "phi_bar": 1.0, "omega_norm": 0.0,
    ...           "theta_norm": 1.0, "b_norm": 0.0, "noise_sigma": 0.01}
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     learner = LinUCB([[1.0, 0.0], [0.0, 1.0]], bounds, horizon=1000)
    >>> caught[0].category.__name__
    'DeprecationWarning'
    """

    _former_names = ("ActionVectorLinUCB",)

    def __init__(
        self,
        actions: Any,
        bounds: Any,
        horizon: int,
        lam: float | str = "log_horizon",
        radius: str = "oracle",
        delta: float | None = None,
        u_norm: float | None = None,
        norm_bound: float | None = None,
        beta_scale: float = 1.0,
        residual_window: float = 1000.0,
        seed: int = 0,
        exploration: float = DEFAULT_EXPLORATION,
        objective: str = "reward",
    ):
        warnings.warn(
            "LinUCB (config family 'linucb') is renamed ActionVectorLinUCB ('action-vector-linucb'): it is a linear bandit "
            "over action vectors with one shared parameter; for the contextual LinUCB use LinUCBDisjoint",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(
            actions, bounds, horizon, lam, radius, delta, u_norm, norm_bound, beta_scale, residual_window, seed, exploration, objective
        )


class DiscountedLinUCB(_OptimisticLinearBandit):
    """Discounted LinUCB (D-LinUCB, Russac et al. 2019) as the official experiments run it.

    - ``statistics="discounted"`` (``DLinUCBAgent``): weighted Gram matrices
      ``V <- gamma V + u u^T + (1-gamma) lam_t I`` and ``Vtilde`` (with ``gamma^2``),
      ``lam_t = gamma^-t lam``, bonus ``beta_t sqrt(u^T V^-1 Vtilde V^-1 u)``, beta_t
      of Russac et al. with ``U = norm_bound``.
    - ``statistics="radius-only"`` (``LinearAgent(dlinucb=True)``, the paper's
      "D-Lin-UCB (lambda = log T)"): undiscounted ridge statistics, and the oracle
      radius of :class:`ActionVectorLinUCB` whose log term grows with the discounted count
      ``t (1 - gamma^(2t)) / (1 - gamma^2)``. This is what the official code runs.

    Parameters
    ----------
    actions, bounds, horizon, lam, delta, u_norm, beta_scale, seed, exploration, objective
        As for :class:`~regretflow.learners.dynamical.DynLinUCB` (exploration floor 0.01 by default).
    discount
        The discount factor gamma in (0, 1).
    statistics
        ``"discounted"`` or ``"radius-only"``.
    norm_bound
        ``U`` of the discounted radius; default ``u_norm``.

    Examples
    --------
    >>> from regretflow.learners.linear_bandits import DiscountedLinUCB
    >>> bounds = {"rho_bar": 0.0, "phi_bar": 1.0, "omega_norm": 0.0,
    ...           "theta_norm": 1.0, "b_norm": 0.0, "noise_sigma": 0.01}
    >>> learner = DiscountedLinUCB([[1.0, 0.0], [0.0, 1.0]], bounds, horizon=1000,
    ...                            discount=0.99, lam=1.0, seed=0)
    >>> for t in range(200):
    ...     arm, _ = learner.act()
    ...     learner.learn(None, arm, [0.2, 0.6][arm])
    >>> learner.act()[0]
    1
    """

    def __init__(
        self,
        actions: Any,
        bounds: Any,
        horizon: int,
        discount: float,
        lam: float | str = 1.0,
        statistics: str = "discounted",
        delta: float | None = None,
        u_norm: float | None = None,
        norm_bound: float | None = None,
        beta_scale: float = 1.0,
        residual_window: float = 1000.0,
        seed: int = 0,
        exploration: float = DEFAULT_EXPLORATION,
        objective: str = "reward",
    ):
        self.actions_spec = actions
        self.bounds = bounds
        self.horizon = horizon
        self.exploration = exploration
        self.objective = objective
        self.discount = discount
        self.lam = lam
        self.statistics = statistics
        self.delta = delta
        self.u_norm = u_norm
        self.norm_bound = norm_bound
        self.beta_scale = beta_scale
        self.residual_window = residual_window
        self.seed = seed
        check_optimistic_parameters(horizon, delta, u_norm, norm_bound, beta_scale, residual_window, seed)
        check_number("discount", discount, "(0, 1)")
        self._discount = float(discount)
        check_choice("statistics", statistics, ("discounted", "radius-only"))
        sb = SystemBounds.coerce(bounds)
        horizon = int(horizon)
        mat = action_matrix(actions)
        u = float(u_norm) if u_norm is not None else float(np.max(np.linalg.norm(mat, axis=1)))
        lam_value = _resolve_lam(lam, horizon)
        dlt = 1.0 / horizon if delta is None else float(delta)
        if statistics == "discounted":
            self._statistics = "discounted"
            nb = u if norm_bound is None else float(norm_bound)
            rule = K.RULE_DISCOUNTED
            params = [beta_scale, sb.theta_norm, sb.noise_sigma, lam_value, float(np.log(1 / dlt)), nb**2, self._discount]
        elif statistics == "radius-only":
            self._statistics = "ridge"
            consts = dynamical_constants(sb, u)
            rule = K.RULE_ORACLE
            params = [beta_scale, consts["c1"], 0.0, consts["sigma_bar_sq"], lam_value, float(np.log(1 / dlt)), u**2, self._discount]
        else:
            raise ValueError(f"statistics must be 'discounted' or 'radius-only', got {statistics!r}")
        self._setup(mat, seed, 0.0, 0, rule, np.array(params), residual_window, lam_value, exploration, objective)


class Exp3(BanditDefaults):
    """Exp3 over a finite action set, optionally on batch means (``batch_size > 1``).

    Probabilities ``p = (1 - gamma) softmax(eta G) + gamma / K``; the reward, mapped
    into [0, 1], is importance-weighted into ``G`` of the played arm. With
    ``batch_size = L`` an arm drawn at round ``jL`` is held for ``L`` rounds and the
    update uses the mean of the batch's rewards (batched Exp3); every round of a
    batch reports the distribution the held arm was drawn from.

    Rewards (``-cost`` with ``objective="cost"``) are mapped into [0, 1] by the first
    rule that applies:

    1. ``reward_range=(low, high)``: ``(y - low) / (high - low)``, clipped to [0, 1];
    2. ``reward_offset`` / ``reward_scale`` (either given): ``(y + offset) / scale``,
       unclipped (the official experiments' affine map);
    3. otherwise the running range: the smallest and largest reward seen so far
       (kept in the state), clipped.

    Defaults follow the official run: ``gamma = min(1, sqrt(K ln K / ((e-1) 2 N / 3)))``
    with ``N = horizon / batch_size`` batches and ``eta = gamma / K``.

    ``learn`` without a preceding ``decide`` (a logged stream), or for another arm
    than the held one, takes ``action`` as the round's arm, importance-weighted by
    ``probability`` when given (the logging policy's), else by this policy's own.

    Parameters
    ----------
    n_arms_or_actions
        The action set (as for DynLin-UCB) or a number of arms.
    horizon
        Planned number of rounds T.
    reward_offset, reward_scale
        Affine map of rewards into roughly [0, 1] (rule 2 above).
    gamma, eta
        Exploration rate and learning rate (defaults above).
    batch_size
        Rounds per batch (1: plain Exp3).
    seed
        Seeds the arm draws.
    reward_range
        ``(low, high)`` of the rewards (rule 1 above).
    objective
        ``"reward"`` (maximise) or ``"cost"`` (minimise).

    Examples
    --------
    >>> from regretflow.learners.linear_bandits import Exp3
    >>> learner = Exp3(3, horizon=5000, seed=0)
    >>> for t in range(5000):
    ...     arm, probs = learner.act()
    ...     learner.learn(None, arm, [0.1, 0.9, 0.5][arm], probs[arm])
    >>> int(np.argmax(learner.act()[1]))
    1
    """

    task = "bandit"
    contextual = False  # its rewards depend on the action only: a context is ignored
    family = "dynamical"
    GAUGES = {
        "exp3_min_probability": "Smallest arm probability of the Exp3 distribution.",
        "exp3_max_probability": "Largest arm probability of the Exp3 distribution.",
    }

    def __init__(
        self,
        n_arms_or_actions: Any,
        horizon: int,
        reward_offset: float | None = None,
        reward_scale: float | None = None,
        gamma: float | None = None,
        eta: float | None = None,
        batch_size: int = 1,
        seed: int = 0,
        reward_range: Any = None,  # a pair (low, high); a config gives a list
        objective: str = "reward",
    ):
        self.n_arms_or_actions = n_arms_or_actions
        self.horizon = horizon
        self.reward_offset = reward_offset
        self.reward_scale = reward_scale
        self.gamma = gamma
        self.eta = eta
        self.batch_size = batch_size
        self.seed = seed
        self.reward_range = reward_range
        self.objective = objective
        check_integer("horizon", horizon, ">= 1")
        check_number("reward_offset", reward_offset, allow_none=True)
        check_number("reward_scale", reward_scale, "> 0", allow_none=True)
        check_number("gamma", gamma, "(0, 1]", allow_none=True)
        check_number("eta", eta, "> 0", allow_none=True)
        self._batch = int(check_integer("batch_size", batch_size, ">= 1") or 1)
        check_integer("seed", seed, ">= 0")
        self._objective = check_objective(objective)
        if isinstance(n_arms_or_actions, (int, np.integer)) and not isinstance(n_arms_or_actions, bool):
            self._actions = np.eye(int(check_integer("n_arms_or_actions", n_arms_or_actions, ">= 2") or 2))
        else:
            self._actions = action_matrix(n_arms_or_actions, "n_arms_or_actions")
            if self._actions.shape[0] < 2:
                raise ValueError(f"n_arms_or_actions: expected at least 2 arms, got {n_arms_or_actions!r}")
        n = self._actions.shape[0]
        n_updates = int(horizon) / self._batch
        g = min(1.0, math.sqrt(n * math.log(n) / ((math.e - 1) * 2 * n_updates / 3))) if gamma is None else float(gamma)
        if not 0 < g <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self._gamma = g
        self._eta = g / n if eta is None else float(eta)
        # the affine map runs in the kernel; a reward range maps before it (offset 0, scale 1)
        affine = reward_range is None and (reward_offset is not None or reward_scale is not None)
        self._range: RewardRange | None = None if affine else RewardRange(reward_range)
        self._offset = float(reward_offset or 0.0) if affine else 0.0
        self._scale = float(reward_scale or 1.0) if affine else 1.0
        self._rng = np.random.default_rng(seed)
        self._istate = np.zeros(K.N_EXP3_ISTATE, dtype=np.int64)
        self._istate[K.E_DUE] = 1
        self._fstate = np.zeros(K.N_EXP3_FSTATE)
        self._G = np.zeros(n)
        self._probs = np.full(n, 1.0 / n)

    @property
    def n_arms(self) -> int:
        return int(self._actions.shape[0])

    @property
    def n_updates(self) -> int:
        return int(self._istate[K.E_UPDATES])

    @property
    def round(self) -> int:
        return int(self._istate[K.E_ROUND])

    @property
    def probabilities(self) -> np.ndarray:
        return self._probs.copy()

    def describe_action(self, action: int) -> list[float]:
        return [float(v) for v in self._actions[int(action)]]

    @refuses_nonfinite
    def decide(self, context: Any = None, actions: Any = None) -> Decision:
        """Arm and the distribution it was drawn from (inside a batch: the batch's draw)."""
        refuse_other_actions(actions, self._actions)
        uniform = self._rng.random() if self._istate[K.E_DUE] == 1 else 0.0
        arm = int(K.exp3_decide(self._istate, self._fstate, self._probs, uniform))
        # the distribution changes only when a batch ends, so inside a batch it is still the draw's
        return Decision(arm, self._probs.copy())

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """The reward of the round's arm, mapped into [0, 1] and importance-weighted (see the class)."""
        value = signed_reward(reward, self._objective)
        given = check_probability(probability)
        refuse_other_actions(actions, self._actions)
        action = int(action)
        if not 0 <= action < self.n_arms:
            raise ValueError(f"action must be in [0, {self.n_arms}), got {action}")
        if self._istate[K.E_DUE] == 1 or action != int(self._istate[K.E_ARM]):
            # a logged round: the round's arm is the one played, weighted by the probability it was played with
            self._istate[K.E_ARM] = action
            self._istate[K.E_DUE] = 0
            self._fstate[K.X_SAMPLED_PROB] = self._probs[action] if given is None else given
        if self._range is not None:
            value = self._range.scale(value)
        K.exp3_learn(
            self._istate, self._fstate, self._G, self._probs, value, self._batch, self._offset, self._scale, self._eta, self._gamma
        )

    def play(self, step: Any, environment: tuple[Any, ...], n_rounds: int) -> np.ndarray:
        """Play ``n_rounds`` against a compiled environment in one jitted loop; return the arms.

        Same contract as :meth:`regretflow.learners.DynLinUCB.play`: ``step(environment,
        u) -> reward`` is numba-jitted, and the learner ends as ``decide`` + ``learn``
        round by round would leave it. With a reward range (fixed or running) or a cost
        objective the rounds run through ``decide`` and ``learn`` in Python.
        """
        n_rounds = int(n_rounds)
        if n_rounds < 0:
            raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
        arms = np.empty(n_rounds, dtype=np.int64)
        if self._range is not None or self._objective == "cost":
            for t in range(n_rounds):
                arm = self.decide().action
                self.learn(None, arm, float(step(environment, self._actions[arm])))
                arms[t] = arm
            return arms
        K.exp3_play(
            step,
            environment,
            self._actions,
            self._rng,
            self._istate,
            self._fstate,
            self._G,
            self._probs,
            self._batch,
            self._offset,
            self._scale,
            self._eta,
            self._gamma,
            arms,
        )
        return arms

    def gauges(self) -> dict[str, float]:
        return {"exp3_min_probability": float(self._probs.min()), "exp3_max_probability": float(self._probs.max())}

    def state_dict(self) -> dict[str, Any]:
        state = {
            "family": self.family,
            "learner": type(self).__name__,
            "actions": self._actions.copy(),
            "istate": self._istate.copy(),
            "fstate": self._fstate.copy(),
            "G": self._G.copy(),
            "probs": self._probs.copy(),
            "n_updates": self.n_updates,
            **(self._range.state_dict() if self._range is not None else {}),
            **rng_state(self._rng),
        }
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        refuse_nonfinite(state, owner)
        n, d = self._actions.shape
        if not np.array_equal(expect_array(state, "actions", (n, d), owner), self._actions):
            raise ValueError(f"{owner}: state was saved with a different action set")
        istate = np.array(state["istate"], dtype=np.int64, copy=True)
        if istate.shape != (K.N_EXP3_ISTATE,):
            raise ValueError(f"{owner}: state['istate'] has shape {istate.shape}")
        self._fstate = expect_array(state, "fstate", (K.N_EXP3_FSTATE,), owner)
        self._G = expect_array(state, "G", (n,), owner)
        self._probs = expect_array(state, "probs", (n,), owner)
        self._istate = istate
        if self._range is not None:
            self._range.load_state_dict(state)
        self._rng = restore_rng(state)


class BatchedExp3(Exp3):
    """Batched Exp3: Exp3 that holds each drawn arm for ``batch_size`` rounds.

    The official code sizes the batch as ``ceil(ln M / ln(1/rho))`` with ``M`` the
    number of DynLin-UCB epochs (:meth:`batch_size_for`). Difference from the
    official ``BatchExp3Agent``: there the batch's reward sum is closed one round
    late (it mixes the last round of one batch into the next); here each update
    uses exactly the rewards of the batch it credits.

    Examples
    --------
    >>> from regretflow.learners.linear_bandits import BatchedExp3
    >>> BatchedExp3.batch_size_for(rho_bar=0.2, horizon=10**6)
    8
    >>> learner = BatchedExp3(3, horizon=3000, batch_size=3, seed=0)
    >>> arms = []
    >>> for t in range(6):
    ...     arm, _ = learner.act(); arms.append(arm); learner.learn(None, arm, 0.5)
    >>> arms[0] == arms[1] == arms[2], arms[3] == arms[4] == arms[5]
    (True, True)
    """

    def __init__(
        self,
        n_arms_or_actions: Any,
        horizon: int,
        batch_size: int,
        reward_offset: float | None = None,
        reward_scale: float | None = None,
        gamma: float | None = None,
        eta: float | None = None,
        seed: int = 0,
        reward_range: Any = None,  # a pair (low, high); a config gives a list
        objective: str = "reward",
    ):
        super().__init__(n_arms_or_actions, horizon, reward_offset, reward_scale, gamma, eta, batch_size, seed, reward_range, objective)

    @staticmethod
    def batch_size_for(rho_bar: float, horizon: int) -> int:
        """``ceil(ln M / ln(1/rho))``, ``M`` the number of DynLin-UCB epochs in ``horizon`` rounds."""
        rho = abs(float(rho_bar))
        if not 0 < rho < 1:
            raise ValueError(f"rho_bar must be in (0, 1), got {rho_bar!r}")
        epochs, total = 0, 0
        while total < horizon:
            epochs += 1
            total += 1 + math.floor(np.log(epochs) / np.log(1 / rho))
        return max(1, math.ceil(np.log(epochs) / np.log(1 / rho)))
