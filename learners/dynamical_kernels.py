"""Numba kernels of the dynamical linear bandit family (DynLin-UCB and its baselines).

Every learner of :mod:`regretflow.learners.dynamical` keeps its state in a few flat
arrays and changes it only through the kernels below, so a whole simulated run
(``engine/experiments/dynamical_bandit.py``) can call the very same kernels in one
jitted loop and reach the same state, bit for bit, as stepping the classes.

State of the optimistic (UCB) learners
--------------------------------------
``Vinv`` (d x d)
    Inverse of the regularised Gram matrix ``V = lam I + sum u u^T`` of the rounds
    that were regressed, kept with Sherman-Morrison rank-one updates.
``b``, ``h`` (d)
    ``sum y u`` and the ridge estimate ``h = Vinv b`` of the steady-state gain.
``istate`` (int64, :data:`N_ISTATE`)
    Round counter, held arm, epoch index, the round that ends the epoch, whether the
    next ``decide`` must choose (``DUE_*``), number of regression updates.
``fstate`` (float64, :data:`N_FSTATE`)
    Monitoring: confidence radius and width of the held action, estimated gap,
    cumulative estimated regret, high-probability regret envelope, the
    exponentially weighted end-of-epoch residual statistics and the settling check
    (difference of the rewards of an epoch's last two rounds, same action held).

Epoch schedule (Mussi et al. 2023, official code): epoch ``m = 1, 2, ...`` lasts
``1 + floor(log m / log(1/rho))`` rounds. With 0-based rounds the first epoch covers
rounds 0..1 (round 0 plays a uniformly drawn arm), the regression uses only the
reward of an epoch's last round, and a new action is chosen on the round after it.
``log_inv_rho = 0`` means "every round is an epoch" (LinUCB); then the first
regression round is round 0.

All kernels are pure functions over float64/int64 arrays; the arrays they update are
passed in and changed in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
# ``step(environment, u) -> reward`` of the closed loops below: a jitted function of the
# environment's tuple of arrays and generators (changed in place) and an action vector.
EnvironmentStep = Callable[[tuple[Any, ...], FloatArray], float]

# -- integer state slots --------------------------------------------------------------
I_ROUND = 0  # 0-based round counter t (rounds fully learned so far)
I_ARM = 1  # arm held in the current round
I_EPOCH = 2  # 1-based index m of the current epoch
I_EPOCH_END = 3  # round E_m that ends the current epoch (its reward is regressed)
I_DUE = 4  # DUE_REPLAY, DUE_UCB or DUE_INITIAL
I_UPDATES = 5  # number of regression updates
I_EPOCH_START = 6  # first round of the current epoch
N_ISTATE = 7

DUE_REPLAY = 0
DUE_UCB = 1
DUE_INITIAL = 2

# -- float monitoring slots ------------------------------------------------------------
F_BETA = 0  # confidence radius beta_t used at the last decision
F_WIDTH = 1  # 2 beta_t ||u||_{M} of the held arm: per-round envelope increment
F_GAP = 2  # estimated gap max_k h.u_k - h.u of the held arm
F_EST_REGRET = 3  # sum over rounds of F_GAP
F_ENVELOPE = 4  # sum over rounds of F_WIDTH
F_RES_MEAN = 5  # exponentially weighted mean of end-of-epoch residuals y - h.u
F_RES_SQ = 6  # exponentially weighted mean of squared residuals
F_RES_COUNT = 7  # number of residuals seen
F_RES_LAST = 8  # last residual
F_PREV_REWARD = 9  # reward of the previous round
F_SET_MEAN = 10  # exponentially weighted mean of y_E - y_{E-1} (last two rounds of an epoch)
F_SET_SQ = 11  # exponentially weighted mean of its square
F_SET_COUNT = 12  # number of such differences seen
N_FSTATE = 13

# -- confidence-radius rules -------------------------------------------------------------
RULE_ORACLE = 0
"""``scale * (c1 sqrt(lam) + c2/sqrt(lam) ln(e(t+1)) + sqrt(2 s2 (ln(1/delta) + d/2 ln(1 + t U^2 g(t) / (d lam)))))``
with ``g(t) = (1 - gamma^(2t)) / (1 - gamma^2)`` when ``gamma < 1`` else 1.
Parameters: ``[scale, c1, c2, s2, lam, ln(1/delta), U^2, gamma]``."""
RULE_CONSTANT = 1
"""``scale * const``. Parameters: ``[scale, const]``."""
RULE_DISCOUNTED = 2
"""Russac et al. (2019): with ``lam_t = gamma^-t lam``,
``scale * (Theta sqrt(lam_t) + sigma sqrt(2 ln(1/delta) + d ln(1 + U^2 (1 - gamma^(2t)) / (d lam_t (1 - gamma^2)))))``.
Parameters: ``[scale, Theta, sigma, lam, ln(1/delta), U^2, gamma]``."""
N_BETA_PARAMS = 8


@njit(cache=True)
def epoch_length(epoch: int, log_inv_rho: float) -> int:
    """Length ``1 + floor(ln m / ln(1/rho))`` of epoch ``m`` (1 if ``log_inv_rho <= 0``)."""
    if log_inv_rho <= 0.0:
        return 1
    return 1 + int(math.floor(math.log(epoch) / log_inv_rho))


@njit(cache=True)
def confidence_radius(t: int, d: int, rule: int, params: FloatArray) -> float:
    """beta_t of rule ``rule`` at 0-based round ``t`` for dimension ``d``."""
    scale = params[0]
    if rule == RULE_CONSTANT:
        return scale * params[1]
    if rule == RULE_ORACLE:
        c1 = params[1]
        c2 = params[2]
        s2 = params[3]
        lam = params[4]
        log_inv_delta = params[5]
        u_sq = params[6]
        gamma = params[7]
        growth = t * u_sq / (d * lam)
        if gamma < 1.0:
            growth = growth * (1.0 - gamma ** (2 * t)) / (1.0 - gamma**2)
        beta = c1 * math.sqrt(lam)
        if c2 != 0.0:
            beta += c2 / math.sqrt(lam) * math.log(math.e * (t + 1))
        beta += math.sqrt(2.0 * s2 * (log_inv_delta + (d / 2.0) * math.log(1.0 + growth)))
        return scale * beta
    # RULE_DISCOUNTED
    theta_norm = params[1]
    sigma = params[2]
    lam = params[3]
    log_inv_delta = params[4]
    u_sq = params[5]
    gamma = params[6]
    lam_t = gamma ** (-t) * lam
    inner = 1.0 + (u_sq * (1.0 - gamma ** (2 * t))) / (d * lam_t * (1.0 - gamma**2))
    beta = theta_norm * math.sqrt(lam_t) + sigma * math.sqrt(2.0 * log_inv_delta + d * math.log(inner))
    return scale * beta


@njit(cache=True)
def ucb_argmax(h: FloatArray, M: FloatArray, actions: FloatArray, beta: float, means: FloatArray, scores: FloatArray) -> int:
    """Optimistic arm ``argmax_k h.u_k + beta sqrt(u_k^T M u_k)``; ties go to the lowest index.

    ``means`` and ``scores`` (K) receive ``h.u_k`` and the optimistic indices.
    """
    n_arms, d = actions.shape
    best = 0
    best_score = -np.inf
    for k in range(n_arms):
        mean = 0.0
        quad = 0.0
        for i in range(d):
            mean += h[i] * actions[k, i]
            s = 0.0
            for j in range(d):
                s += M[i, j] * actions[k, j]
            quad += actions[k, i] * s
        if quad < 0.0:
            quad = 0.0
        score = mean + beta * math.sqrt(quad)
        means[k] = mean
        scores[k] = score
        if score > best_score:
            best_score = score
            best = k
    return best


@njit(cache=True)
def sherman_morrison(Vinv: FloatArray, u: FloatArray, scratch: FloatArray) -> None:
    """``Vinv <- (V + u u^T)^{-1}`` in O(d^2); ``scratch`` (d) receives ``Vinv u``. Kept symmetric."""
    d = u.shape[0]
    quad = 0.0
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += Vinv[i, j] * u[j]
        scratch[i] = s
        quad += u[i] * s
    denom = 1.0 + quad
    for i in range(d):
        for j in range(i, d):
            v = Vinv[i, j] - scratch[i] * scratch[j] / denom
            Vinv[i, j] = v
            Vinv[j, i] = v


@njit(cache=True)
def mat_vec(M: FloatArray, v: FloatArray, out: FloatArray) -> None:
    """``out = M v`` without BLAS."""
    d = v.shape[0]
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += M[i, j] * v[j]
        out[i] = s


@njit(cache=True)
def spd_inverse(V: FloatArray, out: FloatArray, work: FloatArray) -> None:
    """Inverse of a symmetric positive definite ``V`` through its Cholesky factor.

    ``work`` (d x d) receives the lower factor ``L``; ``out`` receives ``V^{-1}``.
    """
    d = V.shape[0]
    for i in range(d):
        for j in range(d):
            work[i, j] = 0.0
    for j in range(d):
        s = V[j, j]
        for k in range(j):
            s -= work[j, k] * work[j, k]
        ljj = math.sqrt(s)
        work[j, j] = ljj
        for i in range(j + 1, d):
            s = V[i, j]
            for k in range(j):
                s -= work[i, k] * work[j, k]
            work[i, j] = s / ljj
    # out = L^{-T} L^{-1}: solve column by column
    for c in range(d):
        # forward: L z = e_c  (z stored in out[:, c])
        for i in range(d):
            s = 1.0 if i == c else 0.0
            for k in range(i):
                s -= work[i, k] * out[k, c]
            out[i, c] = s / work[i, i]
        # backward: L^T x = z
        for i in range(d - 1, -1, -1):
            s = out[i, c]
            for k in range(i + 1, d):
                s -= work[k, i] * out[k, c]
            out[i, c] = s / work[i, i]
    for i in range(d):
        for j in range(i + 1, d):
            v = 0.5 * (out[i, j] + out[j, i])
            out[i, j] = v
            out[j, i] = v


@njit(cache=True)
def _set_decision_monitors(fstate: FloatArray, means: FloatArray, scores: FloatArray, arm: int, beta: float) -> None:
    best_mean = means[0]
    for k in range(1, means.shape[0]):
        if means[k] > best_mean:
            best_mean = means[k]
    fstate[F_BETA] = beta
    fstate[F_GAP] = best_mean - means[arm]
    fstate[F_WIDTH] = 2.0 * (scores[arm] - means[arm])


@njit(cache=True)
def ucb_decide(
    istate: IntArray,
    fstate: FloatArray,
    h: FloatArray,
    M: FloatArray,
    actions: FloatArray,
    beta_rule: int,
    beta_params: FloatArray,
    initial_arm: int,
    means: FloatArray,
    scores: FloatArray,
) -> int:
    """The arm to play in round ``istate[I_ROUND]``; idempotent within a round.

    ``DUE_INITIAL``: take ``initial_arm`` (drawn uniformly by the caller).
    ``DUE_UCB``: choose optimistically with ``M`` (``Vinv`` or, for discounted
    LinUCB, ``Vinv Vtilde Vinv``). ``DUE_REPLAY``: hold the epoch's arm.
    """
    due = istate[I_DUE]
    if due == DUE_REPLAY:
        return istate[I_ARM]
    t = istate[I_ROUND]
    beta = confidence_radius(t, actions.shape[1], beta_rule, beta_params)
    arm = ucb_argmax(h, M, actions, beta, means, scores)
    if due == DUE_INITIAL:
        arm = initial_arm
    istate[I_ARM] = arm
    istate[I_DUE] = DUE_REPLAY
    _set_decision_monitors(fstate, means, scores, arm, beta)
    return arm


@njit(cache=True)
def _ew_record(fstate: FloatArray, value: float, window: float, mean_slot: int, sq_slot: int, count_slot: int) -> None:
    n = fstate[count_slot] + 1.0
    fstate[count_slot] = n
    weight = 1.0 / n
    if weight < 1.0 / window:
        weight = 1.0 / window
    fstate[mean_slot] += weight * (value - fstate[mean_slot])
    fstate[sq_slot] += weight * (value * value - fstate[sq_slot])


@njit(cache=True)
def _record_residual(fstate: FloatArray, residual: float, window: float) -> None:
    _ew_record(fstate, residual, window, F_RES_MEAN, F_RES_SQ, F_RES_COUNT)
    fstate[F_RES_LAST] = residual


@njit(cache=True)
def _advance_round(istate: IntArray, fstate: FloatArray, t: int, log_inv_rho: float) -> None:
    """Close round ``t``: accrue the monitors, move the epoch on if ``t`` ended it."""
    fstate[F_EST_REGRET] += fstate[F_GAP]
    fstate[F_ENVELOPE] += fstate[F_WIDTH]
    if t == istate[I_EPOCH_END]:
        m = istate[I_EPOCH] + 1
        istate[I_EPOCH] = m
        istate[I_EPOCH_END] = t + epoch_length(m, log_inv_rho)
        istate[I_EPOCH_START] = t + 1
        istate[I_DUE] = DUE_UCB
    istate[I_ROUND] = t + 1


@njit(cache=True)
def ucb_learn(
    istate: IntArray,
    fstate: FloatArray,
    Vinv: FloatArray,
    b: FloatArray,
    h: FloatArray,
    actions: FloatArray,
    reward: float,
    log_inv_rho: float,
    residual_window: float,
    scratch: FloatArray,
) -> bool:
    """Feed the reward of round ``istate[I_ROUND]``; regress it only if it ends the epoch.

    Returns True when the regression state changed.
    """
    t = istate[I_ROUND]
    updated = False
    if t == istate[I_EPOCH_END]:
        u = actions[istate[I_ARM]]
        d = u.shape[0]
        pred = 0.0
        for i in range(d):
            pred += h[i] * u[i]
        _record_residual(fstate, reward - pred, residual_window)
        if t - 1 >= istate[I_EPOCH_START]:  # settling check: same action in rounds t-1 and t
            _ew_record(fstate, reward - fstate[F_PREV_REWARD], residual_window, F_SET_MEAN, F_SET_SQ, F_SET_COUNT)
        sherman_morrison(Vinv, u, scratch)
        for i in range(d):
            b[i] += reward * u[i]
        mat_vec(Vinv, b, h)
        istate[I_UPDATES] += 1
        updated = True
    fstate[F_PREV_REWARD] = reward
    _advance_round(istate, fstate, t, log_inv_rho)
    return updated


@njit(cache=True)
def discounted_learn(
    istate: IntArray,
    fstate: FloatArray,
    V: FloatArray,
    Vtilde: FloatArray,
    Vinv: FloatArray,
    M: FloatArray,
    b: FloatArray,
    h: FloatArray,
    actions: FloatArray,
    reward: float,
    lam: float,
    gamma: float,
    residual_window: float,
    work: FloatArray,
    scratch: FloatArray,
) -> bool:
    """D-LinUCB (Russac et al. 2019) update of round ``t`` as the official code runs it.

    ``V <- gamma V + u u^T + (1-gamma) lam_t I``, ``Vtilde <- gamma^2 Vtilde + u u^T +
    (1-gamma^2) lam_t I`` with ``lam_t = gamma^-t lam``, ``b <- gamma b + y u``,
    ``h = V^{-1} b`` and the bonus matrix ``M = V^{-1} Vtilde V^{-1}``. Every round
    is an epoch.
    """
    t = istate[I_ROUND]
    u = actions[istate[I_ARM]]
    d = u.shape[0]
    pred = 0.0
    for i in range(d):
        pred += h[i] * u[i]
    _record_residual(fstate, reward - pred, residual_window)
    lam_t = gamma ** (-t) * lam
    g2 = gamma * gamma
    for i in range(d):
        for j in range(d):
            uu = u[i] * u[j]
            V[i, j] = gamma * V[i, j] + uu
            Vtilde[i, j] = g2 * Vtilde[i, j] + uu
        V[i, i] += (1.0 - gamma) * lam_t
        Vtilde[i, i] += (1.0 - g2) * lam_t
        b[i] = gamma * b[i] + u[i] * reward
    spd_inverse(V, Vinv, work)
    mat_vec(Vinv, b, h)
    # M = Vinv Vtilde Vinv
    for i in range(d):
        for j in range(d):
            s = 0.0
            for k in range(d):
                s += Vtilde[i, k] * Vinv[k, j]
            work[i, j] = s
    for i in range(d):
        for j in range(d):
            s = 0.0
            for k in range(d):
                s += Vinv[i, k] * work[k, j]
            M[i, j] = s
    for i in range(d):
        for j in range(i + 1, d):
            v = 0.5 * (M[i, j] + M[j, i])
            M[i, j] = v
            M[j, i] = v
    istate[I_UPDATES] += 1
    _advance_round(istate, fstate, t, 0.0)
    return True


# -- Exp3 ------------------------------------------------------------------------------
# istate slots for Exp3 / batched Exp3
E_ROUND = 0
E_ARM = 1
E_DUE = 2  # 1: the next decide samples a new arm
E_UPDATES = 3
N_EXP3_ISTATE = 4
# fstate slots
X_REWARD_SUM = 0  # rewards of the current batch so far
X_SAMPLED_PROB = 1  # probability with which the held arm was drawn
N_EXP3_FSTATE = 2


@njit(cache=True)
def exp3_probabilities(G: FloatArray, eta: float, gamma: float, probs: FloatArray) -> None:
    """``probs = (1-gamma) softmax(eta G) + gamma/K`` (the softmax shifted by its maximum)."""
    n_arms = G.shape[0]
    top = eta * G[0]
    for k in range(1, n_arms):
        if eta * G[k] > top:
            top = eta * G[k]
    total = 0.0
    for k in range(n_arms):
        w = math.exp(eta * G[k] - top)
        probs[k] = w
        total += w
    for k in range(n_arms):
        probs[k] = (1.0 - gamma) * probs[k] / total + gamma / n_arms


@njit(cache=True)
def sample_index(probs: FloatArray, uniform: float) -> int:
    """Inverse-CDF draw: the first ``k`` with ``cdf[k] > uniform * cdf[-1]``."""
    n_arms = probs.shape[0]
    total = 0.0
    for k in range(n_arms):
        total += probs[k]
    target = uniform * total
    acc = 0.0
    for k in range(n_arms):
        acc += probs[k]
        if acc > target:
            return k
    return n_arms - 1


@njit(cache=True)
def exp3_decide(istate: IntArray, fstate: FloatArray, probs: FloatArray, uniform: float) -> int:
    """Arm for the current round: a fresh draw from ``probs`` when due, else the held arm."""
    if istate[E_DUE] == 1:
        arm = sample_index(probs, uniform)
        istate[E_ARM] = arm
        istate[E_DUE] = 0
        fstate[X_SAMPLED_PROB] = probs[arm]
        return arm
    return istate[E_ARM]


@njit(cache=True)
def exp3_learn(
    istate: IntArray,
    fstate: FloatArray,
    G: FloatArray,
    probs: FloatArray,
    reward: float,
    batch_size: int,
    offset: float,
    scale: float,
    eta: float,
    gamma: float,
) -> bool:
    """Feed round ``t``'s reward; at a batch end, update with the batch-mean reward.

    The reward is mapped to ``(y + offset) / scale`` and importance-weighted by the
    probability the held arm was drawn with. ``batch_size = 1`` is plain Exp3.
    """
    t = istate[E_ROUND]
    fstate[X_REWARD_SUM] += reward
    updated = False
    if (t + 1) % batch_size == 0:
        mean = fstate[X_REWARD_SUM] / batch_size
        scaled = (mean + offset) / scale
        arm = istate[E_ARM]
        G[arm] += scaled / fstate[X_SAMPLED_PROB]
        exp3_probabilities(G, eta, gamma, probs)
        fstate[X_REWARD_SUM] = 0.0
        istate[E_DUE] = 1
        istate[E_UPDATES] += 1
        updated = True
    istate[E_ROUND] = t + 1
    return updated


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    d = 2
    actions = np.array([[1.0, 0.0], [0.0, 1.0]])
    istate = np.array([0, 0, 1, 1, DUE_INITIAL, 0, 0], dtype=np.int64)
    fstate = np.zeros(N_FSTATE)
    Vinv = np.eye(d)
    b = np.zeros(d)
    h = np.zeros(d)
    means = np.zeros(2)
    scores = np.zeros(2)
    scratch = np.zeros(d)
    params = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.99])
    for rule in (RULE_ORACLE, RULE_CONSTANT):
        confidence_radius(3, d, rule, params)
    confidence_radius(3, d, RULE_DISCOUNTED, np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.99, 0.0]))
    ucb_decide(istate, fstate, h, Vinv, actions, RULE_ORACLE, params, 0, means, scores)
    ucb_learn(istate, fstate, Vinv, b, h, actions, 1.0, 0.5, 100.0, scratch)
    V = np.eye(d)
    Vt = np.eye(d)
    M = np.eye(d)
    work = np.zeros((d, d))
    discounted_learn(istate, fstate, V, Vt, Vinv, M, b, h, actions, 1.0, 1.0, 0.99, 100.0, work, scratch)
    epoch_length(3, 0.5)
    eistate = np.array([0, 0, 1, 0], dtype=np.int64)
    efstate = np.zeros(N_EXP3_FSTATE)
    G = np.zeros(2)
    probs = np.full(2, 0.5)
    exp3_probabilities(G, 0.1, 0.1, probs)
    exp3_decide(eistate, efstate, probs, 0.3)
    exp3_learn(eistate, efstate, G, probs, 1.0, 1, 0.0, 1.0, 0.1, 0.1)


# -- closed loops against a compiled environment ------------------------------------------
# ``step(environment, u) -> reward`` is any jitted function; ``environment`` is its tuple of
# arrays and generators, changed in place. Each loop is the learner's decide/learn pair
# round after round, so it leaves the state that ``act`` + ``learn`` would. Not cached:
# numba cannot key its disk cache on a function-valued argument.
@njit
def ucb_play(
    step: EnvironmentStep,
    environment: tuple[Any, ...],
    actions: FloatArray,
    istate: IntArray,
    fstate: FloatArray,
    Vinv: FloatArray,
    b: FloatArray,
    h: FloatArray,
    beta_rule: int,
    beta_params: FloatArray,
    log_inv_rho: float,
    residual_window: float,
    initial_arm: int,
    arms_out: IntArray,
) -> None:
    n_arms, d = actions.shape
    means = np.empty(n_arms)
    scores = np.empty(n_arms)
    scratch = np.empty(d)
    for r in range(arms_out.shape[0]):
        arm = ucb_decide(istate, fstate, h, Vinv, actions, beta_rule, beta_params, initial_arm, means, scores)
        reward = step(environment, actions[arm])
        ucb_learn(istate, fstate, Vinv, b, h, actions, reward, log_inv_rho, residual_window, scratch)
        arms_out[r] = arm


@njit
def discounted_play(
    step: EnvironmentStep,
    environment: tuple[Any, ...],
    actions: FloatArray,
    istate: IntArray,
    fstate: FloatArray,
    V: FloatArray,
    Vtilde: FloatArray,
    Vinv: FloatArray,
    M: FloatArray,
    b: FloatArray,
    h: FloatArray,
    beta_rule: int,
    beta_params: FloatArray,
    lam: float,
    gamma: float,
    residual_window: float,
    initial_arm: int,
    arms_out: IntArray,
) -> None:
    n_arms, d = actions.shape
    means = np.empty(n_arms)
    scores = np.empty(n_arms)
    scratch = np.empty(d)
    work = np.empty((d, d))
    for r in range(arms_out.shape[0]):
        arm = ucb_decide(istate, fstate, h, M, actions, beta_rule, beta_params, initial_arm, means, scores)
        reward = step(environment, actions[arm])
        discounted_learn(istate, fstate, V, Vtilde, Vinv, M, b, h, actions, reward, lam, gamma, residual_window, work, scratch)
        arms_out[r] = arm


@njit
def exp3_play(
    step: EnvironmentStep,
    environment: tuple[Any, ...],
    actions: FloatArray,
    learner_rng: np.random.Generator,
    istate: IntArray,
    fstate: FloatArray,
    G: FloatArray,
    probs: FloatArray,
    batch_size: int,
    offset: float,
    scale: float,
    eta: float,
    gamma: float,
    arms_out: IntArray,
) -> None:
    for r in range(arms_out.shape[0]):
        uniform = 0.0
        if istate[E_DUE] == 1:
            uniform = learner_rng.random()
        arm = exp3_decide(istate, fstate, probs, uniform)
        reward = step(environment, actions[arm])
        exp3_learn(istate, fstate, G, probs, reward, batch_size, offset, scale, eta, gamma)
        arms_out[r] = arm
