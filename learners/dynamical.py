"""Dynamical linear bandits: DynLin-UCB for actions whose effect lingers.

An action ``u`` (say a daily budget split over platforms) drives a hidden linear
state, so a reward depends on the actions played before it. For a constant action
the mean reward settles at the steady-state value ``h.u``; the best policy plays the
constant action with the largest ``h.u``. :class:`DynLinUCB` (Mussi, Metelli,
Restelli, ICML 2023) holds each chosen action for an epoch long enough for the
system to settle, regresses only the epoch's last reward on the action, and chooses
the next action optimistically.

The myopic and adversarial baselines the paper compares with live in
:mod:`regretflow.learners.linear_bandits`; all of them share the kernels of
:mod:`regretflow.learners.dynamical_kernels`.

Regret: steady-state pseudo-regret ``sum_t (J* - h.u_t)`` with ``J* = max_k h.u_k``.
A simulator that knows ``h`` gives it exactly (``expected_reward`` in its feedback
events); on live traffic the learner reports its own estimate and a high-probability
envelope as gauges (see :attr:`DynLinUCB.GAUGES`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from . import dynamical_kernels as K
from .bandit_feedback import DEFAULT_EXPLORATION, check_exploration, check_objective, check_probability, floor_probabilities, signed_reward
from .contract import (
    BanditDefaults,
    Decision,
    check_bool,
    check_finite_matrix,
    check_integer,
    check_number,
    check_state,
    expect_array,
    refuse_nonfinite,
    refuses_nonfinite,
    restore_rng,
    rng_state,
)

__all__ = [
    "BudgetPolytope",
    "SystemBounds",
    "DynLinUCB",
    "action_matrix",
    "epoch_schedule",
]


# ---------------------------------------------------------------------------------------
# Action sets
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetPolytope:
    """Budget splits ``{u : lower <= u_i <= upper, sum u <= total}`` and their vertices.

    A UCB index ``h.u + beta ||u||_{V^-1}`` is convex in ``u``, so its maximum over
    the polytope sits at a vertex: the learner only needs the vertices, enumerated
    here exactly (rational arithmetic on the binary values of the bounds).

    Parameters
    ----------
    lower, upper
        Per-coordinate bounds (one value each, or one per coordinate).
    total
        The total budget.
    dim
        Number of coordinates (campaigns, platforms).
    spend_all
        Keep only the face ``sum u = total`` (what the paper's experiments use).

    Examples
    --------
    >>> from regretflow.learners.dynamical import BudgetPolytope
    >>> BudgetPolytope(lower=0.0, upper=1.0, total=1.5, dim=3).vertices().tolist()
    [[0.0, 0.5, 1.0], [0.0, 1.0, 0.5], [0.5, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]]
    >>> len(BudgetPolytope(0.0, 1.0, 1.5, 3, spend_all=False).vertices())
    10
    """

    lower: float | Sequence[float]
    upper: float | Sequence[float]
    total: float
    dim: int
    spend_all: bool = True

    def vertices(self) -> np.ndarray:
        """Vertices in lexicographic order (as ``np.unique(..., axis=0)`` sorts them)."""
        d = int(self.dim)
        if d < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim!r}")
        lo = [Fraction(float(v)) for v in np.broadcast_to(np.asarray(self.lower, dtype=float), (d,))]
        hi = [Fraction(float(v)) for v in np.broadcast_to(np.asarray(self.upper, dtype=float), (d,))]
        total = Fraction(float(self.total))
        if any(a > b for a, b in zip(lo, hi)):
            raise ValueError(f"lower {self.lower!r} exceeds upper {self.upper!r}")
        found: set[tuple[Fraction, ...]] = set()
        # vertices on the budget hyperplane: d-1 coordinates at a bound, one free
        for free in range(d):
            others = [i for i in range(d) if i != free]
            for corner in itertools.product((0, 1), repeat=d - 1):
                u = [Fraction(0)] * d
                for i, side in zip(others, corner):
                    u[i] = hi[i] if side else lo[i]
                u[free] = total - sum(u[i] for i in others)
                if lo[free] <= u[free] <= hi[free]:
                    found.add(tuple(u))
        if not self.spend_all:  # box corners inside the budget
            for corner in itertools.product((0, 1), repeat=d):
                box_corner = tuple(hi[i] if side else lo[i] for i, side in enumerate(corner))
                if sum(box_corner) <= total:
                    found.add(box_corner)
        if not found:
            raise ValueError(f"the budget polytope {self!r} is empty")
        return np.array([[float(v) for v in u] for u in sorted(found)], dtype=np.float64)


def action_matrix(actions: Any, name: str = "actions") -> np.ndarray:
    """The (K, d) float64 matrix of a finite action set.

    ``actions`` is a list of action vectors, a :class:`BudgetPolytope`, or a dict of
    :class:`BudgetPolytope`'s arguments (as a config file gives it); errors start with
    ``name``, the parameter it came in.

    >>> action_matrix({"lower": 0, "upper": 1, "total": 1, "dim": 2}).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    if isinstance(actions, dict):
        unknown = set(actions) - set(_POLYTOPE_FIELDS)
        missing = set(_POLYTOPE_FIELDS[:4]) - set(actions)
        if unknown or missing:
            raise TypeError(
                f"{name}: expected a list of action vectors or a budget polytope with the fields "
                f"{', '.join(_POLYTOPE_FIELDS)}, got {actions!r}"
            )
        actions = BudgetPolytope(**actions)
    if isinstance(actions, BudgetPolytope):
        for field in ("lower", "upper"):
            check_finite_matrix(f"{name}.{field}", getattr(actions, field), 1)
        check_number(f"{name}.total", actions.total)
        check_integer(f"{name}.dim", actions.dim, ">= 1")
        check_bool(f"{name}.spend_all", actions.spend_all)
        try:
            return actions.vertices()
        except ValueError as error:
            raise ValueError(f"{name}: expected a non-empty budget polytope, {error}") from None
    mat = check_finite_matrix(name, actions, 2)
    return np.ascontiguousarray(mat)


_POLYTOPE_FIELDS = ("lower", "upper", "total", "dim", "spend_all")


# ---------------------------------------------------------------------------------------
# System bounds and constants
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemBounds:
    """Upper bounds on the unknown system that the confidence radius needs.

    Parameters
    ----------
    rho_bar
        Bound on the spectral radius of ``A`` (< 1). Too small a value makes epochs
        too short and the regression biased (watch the residual gauges).
    phi_bar
        Bound on ``sup_tau ||A^tau||_2 / rho^tau``.
    omega_norm, theta_norm
        Bounds on ``||omega||_2`` (state-to-reward) and ``||theta||_2`` (action-to-reward).
    b_norm
        Bound on ``||B||_2``.
    noise_sigma
        Standard deviation of the state and reward noise.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.learners.dynamical import SystemBounds
    >>> A = np.diag([0.2, 0.0, 0.1]); B = np.diag([0.45, 0.0, 0.1])
    >>> C = np.diag([1.0, 0.0, 0.1]); D = np.diag([0.0, 0.5, 0.1])
    >>> sb = SystemBounds.from_matrices(A, B, C, D, noise_sigma=0.01)
    >>> round(sb.rho_bar, 6), round(sb.phi_bar, 6), round(sb.omega_norm, 6)
    (0.2, 1.0, 1.004988)
    """

    rho_bar: float
    phi_bar: float
    omega_norm: float
    theta_norm: float
    b_norm: float
    noise_sigma: float

    @classmethod
    def from_matrices(
        cls, A: Any, B: Any, C: Any, D: Any, noise_sigma: float, output_weights: Any = None, phi_horizon: int = 1000
    ) -> SystemBounds:
        """The true values of a known system, computed as the official code does.

        ``rho = max |eig(A)|``; ``Phi = max_{tau=1..phi_horizon-1} ||A^tau||_2 / rho^tau``;
        ``omega = C^T w``, ``theta = D^T w`` with output weights ``w`` (ones).
        """
        A = np.asarray(A, dtype=float)
        C = np.asarray(C, dtype=float)
        D = np.asarray(D, dtype=float)
        w = np.ones(C.shape[0]) if output_weights is None else np.asarray(output_weights, dtype=float)
        rho = float(np.max(np.abs(np.linalg.eigvals(A))))
        phi = 1.0
        if rho > 0:
            power = np.eye(A.shape[0])
            ratios = []
            for tau in range(1, phi_horizon):
                power = power @ A
                scale = rho**tau
                if scale > 0:  # rho^tau underflows for long horizons: those terms are skipped
                    ratios.append(np.linalg.norm(power, 2) / scale)
            phi = float(max(ratios))
        return cls(
            rho_bar=rho,
            phi_bar=phi,
            omega_norm=float(np.linalg.norm(w @ C)),
            theta_norm=float(np.linalg.norm(w @ D)),
            b_norm=float(np.linalg.norm(np.asarray(B, dtype=float), 2)),
            noise_sigma=float(noise_sigma),
        )

    @classmethod
    def coerce(cls, bounds: Any) -> SystemBounds:
        """Checked bounds from a :class:`SystemBounds` or a dict of its fields (a config table)."""
        fields = ("rho_bar", "phi_bar", "omega_norm", "theta_norm", "b_norm", "noise_sigma")
        if isinstance(bounds, dict):
            if set(bounds) != set(fields):
                raise TypeError(f"bounds: expected a table with exactly the fields {', '.join(fields)}, got {bounds!r}")
        elif not isinstance(bounds, cls):
            raise TypeError(f"bounds: expected SystemBounds or a table of its fields, got {bounds!r}")
        get = bounds.get if isinstance(bounds, dict) else lambda name: getattr(bounds, name)
        values: dict[str, float] = {}
        for name in fields:
            value = check_number(f"bounds.{name}", get(name), ">= 0")
            assert value is not None  # None is refused unless allowed
            values[name] = value
        check_number("bounds.rho_bar", values["rho_bar"], "[0, 1)")
        return bounds if isinstance(bounds, cls) else cls(**values)


def dynamical_constants(bounds: SystemBounds, u_norm: float) -> dict[str, float]:
    """``c1``, ``c2`` and the inflated noise variance ``sigma_bar^2`` of the spec (Sec. 3).

    >>> sb = SystemBounds(0.2, 1.0, 1.004988, 0.509902, 0.45, 0.01)
    >>> {k: round(v, 5) for k, v in dynamical_constants(sb, 1.118034).items()}
    {'c1': 1.07521, 'c2': 2.27693, 'sigma_bar_sq': 0.00021}
    """
    rho = abs(bounds.rho_bar)
    if not 0 <= rho < 1:
        raise ValueError(f"rho_bar must be in [0, 1), got {bounds.rho_bar!r}")
    x_bar = u_norm / (1 - rho)
    c1 = bounds.theta_norm + (bounds.omega_norm * bounds.b_norm * bounds.phi_bar) / (1 - rho)
    c2 = u_norm * bounds.omega_norm * bounds.phi_bar * ((u_norm * bounds.b_norm) / (1 - rho) + x_bar)
    sigma_bar_sq = bounds.noise_sigma**2 * (1 + (bounds.omega_norm**2 * bounds.phi_bar**2) / (1 - rho**2))
    return {"c1": c1, "c2": c2, "sigma_bar_sq": sigma_bar_sq}


def epoch_schedule(rho_bar: float, horizon: int, threshold: float = 1e-4) -> np.ndarray:
    """The 0-based rounds ``E_1, E_2, ...`` whose reward is regressed, as the official code lists them.

    With the epoch schedule: up to and including the first ``E_m >= horizon``; when
    every round is an epoch (``rho_bar < threshold``): rounds ``0 .. horizon-1``.

    >>> epoch_schedule(0.2, 15).tolist()
    [1, 2, 3, 4, 6, 8, 10, 12, 14, 16]
    >>> epoch_schedule(0.0, 4).tolist()
    [0, 1, 2, 3]
    """
    log_inv_rho = _log_inv_rho(rho_bar, threshold)
    if log_inv_rho == 0.0:
        return np.arange(int(horizon), dtype=np.int64)
    ends = []
    end = 0
    epoch = 0
    while end < horizon:
        epoch += 1
        end += int(K.epoch_length(epoch, log_inv_rho))
        ends.append(end)
    return np.array(ends, dtype=np.int64)


def _log_inv_rho(rho_bar: float, threshold: float) -> float:
    rho = abs(float(rho_bar))
    if not 0 <= rho < 1:
        raise ValueError(f"rho_bar must be in [0, 1), got {rho_bar!r}")
    return 0.0 if rho < threshold else float(np.log(1 / rho))


def _resolve_lam(lam: Any, horizon: int) -> float:
    if isinstance(lam, str):
        if lam not in ("log_horizon", "log T"):
            raise ValueError(f"lam: expected a number > 0 or 'log_horizon', got {lam!r}")
        return float(np.log(horizon))  # horizon >= 2: log > 0
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, (int, float, np.integer, np.floating)):
        raise TypeError(f"lam: expected a number > 0 or 'log_horizon', got {lam!r}")
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam: expected a number > 0 or 'log_horizon', got {lam!r}")
    return float(lam)


def check_optimistic_parameters(
    horizon: Any, delta: Any, u_norm: Any, norm_bound: Any, beta_scale: Any, residual_window: Any, seed: Any
) -> None:
    """The parameters DynLin-UCB, LinUCB and Discounted LinUCB share, named as they take them."""
    check_integer("horizon", horizon, ">= 2")
    check_number("delta", delta, "(0, 1)", allow_none=True)
    check_number("u_norm", u_norm, "> 0", allow_none=True)
    check_number("norm_bound", norm_bound, "> 0", allow_none=True)
    check_number("beta_scale", beta_scale, ">= 0")
    check_number("residual_window", residual_window, ">= 1")
    check_integer("seed", seed, ">= 0")


def refuse_other_actions(actions: Any, fixed: np.ndarray) -> None:
    """A learner whose action set is fixed at construction takes ``actions=None`` or that same set."""
    if actions is None:
        return
    given = np.asarray(actions, dtype=np.float64)
    if given.shape != fixed.shape or not np.array_equal(given, fixed):
        raise ValueError("this learner's action set is fixed at construction; pass actions=None")


# ---------------------------------------------------------------------------------------
# The optimistic learners' shared machinery
# ---------------------------------------------------------------------------------------
class _OptimisticLinearBandit(BanditDefaults):
    """State, contract methods and gauges shared by DynLin-UCB and the LinUCB baselines."""

    task = "bandit"
    family = "dynamical"
    _statistics = "ridge"  # or "discounted"
    _former_names: tuple[str, ...] = ()  # class names a checkpoint of this learner may carry
    _discount: float = 1.0  # D-LinUCB's gamma (the discounted statistics only)
    contextual = False  # its rewards depend on the action only: a context is ignored

    GAUGES = {
        "dynlin_epoch": "Current epoch index m (the held action changes only when an epoch ends).",
        "dynlin_regression_samples": "Number of end-of-epoch rewards regressed so far (model version).",
        "dynlin_confidence_radius": "Confidence radius beta_t used at the last decision.",
        "dynlin_estimated_gap": "Estimated steady-state optimality gap of the held action: max_k h_hat.u_k - h_hat.u_t.",
        "dynlin_estimated_regret": "Cumulative estimated steady-state regret: sum over rounds of the estimated gap.",
        "dynlin_regret_envelope": "High-probability envelope on the cumulative steady-state pseudo-regret: "
        "sum over rounds of 2 beta_t ||u_t||_{V^-1} (valid when the system bounds hold).",
        "dynlin_residual_mean": "Exponentially weighted mean of end-of-epoch residuals y - h_hat.u (should drift to 0).",
        "dynlin_residual_rms": "Exponentially weighted root mean square of end-of-epoch residuals.",
        "dynlin_residual_z": "Residual mean over its standard error. Ridge shrinkage biases early residuals "
        "towards the reward's sign; a |z| that stays large after many epochs says the model is wrong.",
        "dynlin_settling_rms": "Exponentially weighted root mean square of y_E - y_{E-1}, the rewards of an epoch's "
        "last two rounds (same action held): only noise once the system has settled by the epoch's end.",
        "dynlin_settling_ratio": "dynlin_settling_rms over the noise floor sqrt(2) sigma_bar; well above 1 after "
        "action switches says rho_bar is too small (epochs end before the system settles) or the bounds are wrong.",
    }

    def _setup(
        self,
        actions: Any,
        seed: int,
        log_inv_rho: float,
        first_epoch_end: int,
        beta_rule: int,
        beta_params: np.ndarray,
        residual_window: float,
        lam: float,
        exploration: float = 0.0,
        objective: str = "reward",
    ) -> None:
        self._exploration = check_exploration(exploration)
        self._objective = check_objective(objective)
        self._actions = action_matrix(actions)
        n_arms, d = self._actions.shape
        self._log_inv_rho = float(log_inv_rho)
        self._beta_rule = int(beta_rule)
        params = np.zeros(K.N_BETA_PARAMS)
        params[: len(beta_params)] = beta_params
        self._beta_params = params
        if not residual_window >= 1:
            raise ValueError(f"residual_window must be >= 1, got {residual_window!r}")
        self._residual_window = float(residual_window)
        self._lam = float(lam)
        # reward-noise variance bound sigma_bar^2 of the oracle radius (0 when unknown)
        self._noise_var = float(self._beta_params[3]) if self._beta_rule == K.RULE_ORACLE else 0.0
        self._rng = np.random.default_rng(seed)
        self._istate = np.zeros(K.N_ISTATE, dtype=np.int64)
        self._istate[K.I_EPOCH] = 1
        self._istate[K.I_EPOCH_END] = first_epoch_end
        self._istate[K.I_DUE] = K.DUE_INITIAL
        self._fstate = np.zeros(K.N_FSTATE)
        self._Vinv = np.eye(d) / lam
        self._b = np.zeros(d)
        self._h = np.zeros(d)
        self._M = self._Vinv if self._statistics == "ridge" else np.eye(d) / lam
        if self._statistics == "discounted":
            self._V = lam * np.eye(d)
            self._Vtilde = lam * np.eye(d)
            self._work = np.zeros((d, d))
        self._means = np.zeros(n_arms)
        self._scores = np.zeros(n_arms)
        self._scratch = np.zeros(d)
        # the distribution the held arm was drawn from at its epoch's decision (round 0: uniform)
        self._probs = np.full(n_arms, 1.0 / n_arms)

    # -- read-only views -----------------------------------------------------------------
    @property
    def actions(self) -> np.ndarray:
        """The (K, d) action matrix, one action vector per row."""
        return self._actions.copy()

    @property
    def n_arms(self) -> int:
        return int(self._actions.shape[0])

    @property
    def round(self) -> int:
        """Number of rounds whose reward has been learned (the next round's 0-based index)."""
        return int(self._istate[K.I_ROUND])

    @property
    def epoch(self) -> int:
        return int(self._istate[K.I_EPOCH])

    @property
    def n_updates(self) -> int:
        """Number of regression updates: the model version."""
        return int(self._istate[K.I_UPDATES])

    @property
    def estimate(self) -> np.ndarray:
        """Current ridge estimate ``h_hat`` of the steady-state gain."""
        return self._h.copy()

    def beta(self, t: int) -> float:
        """Confidence radius at 0-based round ``t``."""
        return float(K.confidence_radius(int(t), self._actions.shape[1], self._beta_rule, self._beta_params))

    def describe_action(self, action: int) -> list[float]:
        """The action vector of arm ``action`` (e.g. the budget per platform)."""
        return [float(v) for v in self._actions[int(action)]]

    # -- bandit contract -----------------------------------------------------------------
    @refuses_nonfinite
    def decide(self, context: Any = None, actions: Any = None) -> Decision:
        """Arm for the current round and the probability vector it was drawn from.

        At an epoch's decision the optimistic arm is played with probability
        ``1 - exploration`` and a uniformly drawn one otherwise (round 0: uniform);
        the arm is then held for the epoch, and every round of the epoch reports the
        distribution of that draw, ``(1 - exploration) one_hot(best) + exploration / K``.
        Deciding again before ``learn`` returns the same arm. ``context`` is ignored.
        """
        self._check_actions(actions)
        due = int(self._istate[K.I_DUE])
        initial = 0
        if due == K.DUE_INITIAL:
            initial = int(self._rng.random() * self.n_arms)
        elif due == K.DUE_UCB and self._exploration > 0.0 and self._rng.random() < self._exploration:
            initial = int(self._rng.random() * self.n_arms)
            self._istate[K.I_DUE] = K.DUE_INITIAL  # the kernel then plays `initial` and still scores every arm
        arm = self._decide_kernel(initial)
        if due != K.DUE_REPLAY:
            self._probs = self._policy_probabilities(due)
        return Decision(arm, self._probs.copy())

    def _decide_kernel(self, initial: int) -> int:
        return int(
            K.ucb_decide(
                self._istate,
                self._fstate,
                self._h,
                self._M,
                self._actions,
                self._beta_rule,
                self._beta_params,
                initial,
                self._means,
                self._scores,
            )
        )

    def _policy_probabilities(self, due: int) -> np.ndarray:
        """The decision's distribution, from the optimistic scores the kernel has just written."""
        if due == K.DUE_INITIAL:
            return np.full(self.n_arms, 1.0 / self.n_arms)
        return floor_probabilities(int(np.argmax(self._scores)), self.n_arms, self._exploration)

    @refuses_nonfinite
    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None:
        """Feed the reward of the current round (every round, in order).

        Only the reward of an epoch's last round changes the regression; the others
        only move the round counter. Without a preceding ``decide`` (a logged stream),
        or with another arm than the held one, the round's arm is ``action``: the
        learner holds it for the rest of the epoch. ``probability`` is checked (None
        or in (0, 1]) and otherwise unused; a cost objective learns ``-reward``.
        """
        value = signed_reward(reward, self._objective)
        check_probability(probability)
        self._check_actions(actions)
        action = int(action)
        if not 0 <= action < self.n_arms:
            raise ValueError(f"action must be in [0, {self.n_arms}), got {action}")
        due = int(self._istate[K.I_DUE])
        if due != K.DUE_REPLAY or action != int(self._istate[K.I_ARM]):
            self._istate[K.I_DUE] = K.DUE_INITIAL
            self._decide_kernel(action)
            if due != K.DUE_REPLAY:
                self._probs = self._policy_probabilities(due)
        self._learn_kernel(value)

    def _learn_kernel(self, reward: float) -> None:
        if self._statistics == "ridge":
            K.ucb_learn(
                self._istate,
                self._fstate,
                self._Vinv,
                self._b,
                self._h,
                self._actions,
                reward,
                self._log_inv_rho,
                self._residual_window,
                self._scratch,
            )
        else:
            K.discounted_learn(
                self._istate,
                self._fstate,
                self._V,
                self._Vtilde,
                self._Vinv,
                self._M,
                self._b,
                self._h,
                self._actions,
                reward,
                self._lam,
                self._discount,
                self._residual_window,
                self._work,
                self._scratch,
            )

    @refuses_nonfinite
    def learn_many(self, contexts: Any, actions: Sequence[int], rewards: Sequence[float], probabilities: Any = None) -> None:
        """Feed several consecutive logged rounds (replay): each is learned as :meth:`learn` learns it."""
        arms = np.asarray(actions, dtype=np.int64).reshape(-1)
        values = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if arms.shape != values.shape:
            raise ValueError(f"{arms.shape[0]} actions but {values.shape[0]} rewards")
        if not np.all(np.isfinite(values)):
            raise ValueError("rewards must be finite numbers")
        for a, r in zip(arms, values):
            self.learn(None, int(a), float(r))

    def play(self, step: Any, environment: tuple[Any, ...], n_rounds: int) -> np.ndarray:
        """Play ``n_rounds`` against a compiled environment in one jitted loop; return the arms.

        ``step(environment, u) -> reward`` must be a numba-jitted function of the
        environment's tuple (changed in place) and the action vector ``u``. The learner
        ends in the state that ``decide`` and ``learn`` round by round would leave, so a
        long simulation costs no Python per round; the first call in a process
        compiles the loop for ``step`` (a few seconds). Call it between rounds (after
        ``learn``), not between ``decide`` and ``learn``.
        :meth:`regretflow.connectors.simulators.linear_dynamical.LinearDynamicalSystem.play`
        is the caller for the dynamical-system simulator. With an exploration floor or a
        cost objective the rounds run through ``decide`` and ``learn`` in Python (the
        jitted loop is the paper's deterministic learner).
        """
        n_rounds = int(n_rounds)
        if n_rounds < 0:
            raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
        arms = np.empty(n_rounds, dtype=np.int64)
        if self._exploration > 0.0 or self._objective == "cost":
            for t in range(n_rounds):
                arm = self.decide().action
                self.learn(None, arm, float(step(environment, self._actions[arm])))
                arms[t] = arm
            return arms
        # round 0's uniform arm comes from the learner's generator, drawn as decide() draws it
        initial = int(self._rng.random() * self.n_arms) if self._istate[K.I_DUE] == K.DUE_INITIAL and n_rounds > 0 else 0
        if self._statistics == "ridge":
            K.ucb_play(
                step,
                environment,
                self._actions,
                self._istate,
                self._fstate,
                self._Vinv,
                self._b,
                self._h,
                self._beta_rule,
                self._beta_params,
                self._log_inv_rho,
                self._residual_window,
                initial,
                arms,
            )
        else:
            K.discounted_play(
                step,
                environment,
                self._actions,
                self._istate,
                self._fstate,
                self._V,
                self._Vtilde,
                self._Vinv,
                self._M,
                self._b,
                self._h,
                self._beta_rule,
                self._beta_params,
                self._lam,
                self._discount,
                self._residual_window,
                initial,
                arms,
            )
        self._probs = self._held_draw_probabilities()
        return arms

    def _held_draw_probabilities(self) -> np.ndarray:
        """After the jitted loop (no floor): uniform while epoch 1's draw is the latest decision, else one-hot."""
        istate = self._istate
        first_draw = istate[K.I_DUE] == K.DUE_INITIAL or istate[K.I_EPOCH] == 1 or (istate[K.I_EPOCH] == 2 and istate[K.I_DUE] == K.DUE_UCB)
        if first_draw:
            return np.full(self.n_arms, 1.0 / self.n_arms)
        return floor_probabilities(int(istate[K.I_ARM]), self.n_arms, 0.0)

    def _check_actions(self, actions: Any) -> None:
        refuse_other_actions(actions, self._actions)

    # -- monitoring ----------------------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        f = self._fstate
        n = f[K.F_RES_COUNT]
        var = max(f[K.F_RES_SQ] - f[K.F_RES_MEAN] ** 2, 0.0)
        n_eff = min(n, self._residual_window)
        z = f[K.F_RES_MEAN] / math.sqrt(var / n_eff) if n_eff > 1 and var > 0 else 0.0
        settling_rms = math.sqrt(max(f[K.F_SET_SQ], 0.0))
        floor = math.sqrt(2.0 * self._noise_var) if self._noise_var > 0 else 0.0
        settling_ratio = settling_rms / floor if floor > 0 else 0.0
        return {
            "dynlin_epoch": float(self._istate[K.I_EPOCH]),
            "dynlin_regression_samples": float(self._istate[K.I_UPDATES]),
            "dynlin_confidence_radius": float(f[K.F_BETA]),
            "dynlin_estimated_gap": float(f[K.F_GAP]),
            "dynlin_estimated_regret": float(f[K.F_EST_REGRET]),
            "dynlin_regret_envelope": float(f[K.F_ENVELOPE]),
            "dynlin_residual_mean": float(f[K.F_RES_MEAN]),
            "dynlin_residual_rms": float(math.sqrt(max(f[K.F_RES_SQ], 0.0))),
            "dynlin_residual_z": float(z),
            "dynlin_settling_rms": float(settling_rms),
            "dynlin_settling_ratio": float(settling_ratio),
        }

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "family": self.family,
            "learner": type(self).__name__,
            "actions": self._actions.copy(),
            "istate": self._istate.copy(),
            "fstate": self._fstate.copy(),
            "Vinv": self._Vinv.copy(),
            "b": self._b.copy(),
            "h": self._h.copy(),
            "beta_rule": self._beta_rule,
            "beta_params": self._beta_params.copy(),
            "log_inv_rho": self._log_inv_rho,
            "n_updates": self.n_updates,
            "exploration": self._exploration,
            "probs": self._probs.copy(),
            **rng_state(self._rng),
        }
        if self._statistics == "discounted":
            state["V"] = self._V.copy()
            state["Vtilde"] = self._Vtilde.copy()
            state["M"] = self._M.copy()
        check_state(state, type(self).__name__)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        refuse_nonfinite(state, owner)
        if str(state.get("learner", owner)) not in (owner, *self._former_names):
            raise ValueError(f"{owner}: state was saved by {state['learner']!r}")
        n_arms, d = self._actions.shape
        saved = expect_array(state, "actions", (n_arms, d), owner)
        if not np.array_equal(saved, self._actions):
            raise ValueError(f"{owner}: state was saved with a different action set")
        for key, value in (("beta_rule", self._beta_rule), ("log_inv_rho", self._log_inv_rho)):
            if key in state and float(state[key]) != float(value):
                raise ValueError(f"{owner}: state has {key}={state[key]!r}, this learner {value!r}")
        istate = np.array(state["istate"], dtype=np.int64, copy=True)
        if istate.shape != (K.N_ISTATE,):
            raise ValueError(f"{owner}: state['istate'] has shape {istate.shape}, expected {(K.N_ISTATE,)}")
        fstate = expect_array(state, "fstate", (K.N_FSTATE,), owner)
        Vinv = expect_array(state, "Vinv", (d, d), owner)
        b = expect_array(state, "b", (d,), owner)
        h = expect_array(state, "h", (d,), owner)
        if self._statistics == "discounted":
            self._V = expect_array(state, "V", (d, d), owner)
            self._Vtilde = expect_array(state, "Vtilde", (d, d), owner)
            self._M = expect_array(state, "M", (d, d), owner)
        if "probs" in state:
            probs = expect_array(state, "probs", (n_arms,), owner)
        elif istate[K.I_DUE] == K.DUE_INITIAL:
            probs = np.full(n_arms, 1.0 / n_arms)
        else:  # saved before the floor existed: the held arm was the deterministic choice
            probs = floor_probabilities(int(istate[K.I_ARM]), n_arms, 0.0)
        self._istate, self._fstate, self._Vinv, self._b, self._h, self._probs = istate, fstate, Vinv, b, h, probs
        if self._statistics == "ridge":
            self._M = self._Vinv
        if "exploration" not in state:
            self._exploration = 0.0  # saved before the floor existed: go on deterministic, as it ran
        self._rng = restore_rng(state)


class DynLinUCB(_OptimisticLinearBandit):
    """DynLin-UCB: optimistic bandit for actions whose effect lingers (Mussi et al., 2023).

    Holds each chosen action for epoch ``m`` of ``1 + floor(ln m / ln(1/rho_bar))``
    rounds, regresses only the epoch's last reward on the action (ridge, kept with
    Sherman-Morrison updates), and then plays
    ``argmax_k h_hat.u_k + beta_t ||u_k||_{V^-1}`` with the paper's radius
    ``beta_t = c1 sqrt(lam) + c2/sqrt(lam) ln(e(t+1)) + sqrt(2 sigma_bar^2 (ln(1/delta)
    + d/2 ln(1 + t U^2/(d lam))))``, ``t`` the round counter. Round 0 plays a
    uniformly drawn arm. Ties go to the lowest arm index.

    Regret: steady-state pseudo-regret ``sum_t (max_k h.u_k - h.u_t)``,
    O~(d sqrt(T) / (1 - rho)^{3/2}) when the bounds hold. The learner exports its
    estimate and a high-probability envelope (:attr:`GAUGES`); a simulator gives the
    exact value.

    Parameters
    ----------
    actions
        The finite action set: a list of action vectors, a :class:`BudgetPolytope`
        (its vertices) or a dict of its arguments.
    bounds
        :class:`SystemBounds` (or a dict of its fields): upper bounds on the system.
    horizon
        Planned number of rounds T; enters only through ``lam = ln T`` and
        ``delta = 1/T`` (the defaults). Running longer is allowed.
    lam
        Ridge regulariser: a positive number or ``"log_horizon"`` (the paper's best
        variant; ``1`` is the other published one).
    delta
        Confidence level; default ``1 / horizon``.
    u_norm
        Bound on ``||u||_2``; default the largest norm in the action set.
    beta_scale
        Multiplies beta_t (1 = the paper's value).
    epoch_threshold
        Below this ``rho_bar`` every round is an epoch (plain LinUCB with this radius).
    residual_window
        Effective window (in epochs) of the residual gauges.
    seed
        Seeds round 0's uniform draw and the exploration draws.
    exploration
        Exploration floor in [0, 1) (default 0.01): at each epoch's decision a
        uniformly drawn arm replaces the optimistic one with this probability, so
        every arm keeps a positive probability in the logs (off-policy evaluation).
        0 is the paper's deterministic learner (the reproductions use it). A
        checkpoint written before the floor existed resumes without it.
    objective
        ``"reward"`` (maximise) or ``"cost"`` (learn ``-cost``).

    Examples
    --------
    >>> from regretflow.learners.dynamical import DynLinUCB, SystemBounds
    >>> bounds = SystemBounds(rho_bar=0.5, phi_bar=1.0, omega_norm=1.0,
    ...                       theta_norm=0.5, b_norm=0.5, noise_sigma=0.01)
    >>> learner = DynLinUCB([[1.0, 0.0], [0.0, 1.0]], bounds, horizon=1000, seed=1)
    >>> h = [0.2, 0.6]                 # a static system: reward = h.u
    >>> for t in range(200):
    ...     arm, probs = learner.act()
    ...     learner.learn(None, arm, h[arm])
    >>> learner.act()[0], learner.describe_action(1), learner.epoch
    (1, [0.0, 1.0], 43)
    """

    def __init__(
        self,
        actions: Any,
        bounds: Any,
        horizon: int,
        lam: float | str = "log_horizon",
        delta: float | None = None,
        u_norm: float | None = None,
        beta_scale: float = 1.0,
        epoch_threshold: float = 1e-4,
        residual_window: float = 1000.0,
        seed: int = 0,
        exploration: float = DEFAULT_EXPLORATION,
        objective: str = "reward",
    ):
        self.actions_spec = actions
        self.bounds = bounds
        self.horizon = horizon
        self.lam = lam
        self.delta = delta
        self.u_norm = u_norm
        self.beta_scale = beta_scale
        self.epoch_threshold = epoch_threshold
        self.residual_window = residual_window
        self.seed = seed
        self.exploration = exploration
        self.objective = objective
        check_optimistic_parameters(horizon, delta, u_norm, None, beta_scale, residual_window, seed)
        check_number("epoch_threshold", epoch_threshold, "[0, 1)")
        sb = SystemBounds.coerce(bounds)
        horizon = int(horizon)
        mat = action_matrix(actions)
        u = float(u_norm) if u_norm is not None else float(np.max(np.linalg.norm(mat, axis=1)))
        lam_value = _resolve_lam(lam, horizon)
        dlt = 1.0 / horizon if delta is None else float(delta)
        consts = dynamical_constants(sb, u)
        self.constants_ = consts
        log_inv_rho = _log_inv_rho(sb.rho_bar, epoch_threshold)
        params = [beta_scale, consts["c1"], consts["c2"], consts["sigma_bar_sq"], lam_value, float(np.log(1 / dlt)), u**2, 1.0]
        self._setup(
            mat,
            seed,
            log_inv_rho,
            1 if log_inv_rho > 0 else 0,
            K.RULE_ORACLE,
            np.array(params),
            residual_window,
            lam_value,
            exploration,
            objective,
        )

    @classmethod
    def from_system(
        cls, A: Any, B: Any, C: Any, D: Any, noise_sigma: float, actions: Any, horizon: int, output_weights: Any = None, **kwargs: Any
    ) -> DynLinUCB:
        """DynLin-UCB with the true system's values as bounds (the paper's experiments)."""
        return cls(actions, SystemBounds.from_matrices(A, B, C, D, noise_sigma, output_weights), horizon, **kwargs)
