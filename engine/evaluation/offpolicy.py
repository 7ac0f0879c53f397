"""Off-policy value estimates from logged bandit decisions, with bootstrap intervals.

Pure numpy functions over arrays of logged rounds ``i = 0..n-1``:

- ``actions[i]``: the action played (0..K-1);
- ``propensities[i]``: the probability with which the logging policy played it (> 0);
- ``rewards[i]``: the observed reward;
- a target policy as a matrix ``target[i, a]``, the probability that it plays ``a`` in
  round ``i`` (rows sum to 1): :func:`greedy_policy`, :func:`uniform_policy`,
  :func:`constant_policy`, or the logged probability vectors themselves;
- for the doubly-robust estimate, a reward model ``reward_estimates[i, a]``.

Estimators (value = expected reward per round under the target policy):

``ips``
    ``mean_i w_i r_i`` with ``w_i = target[i, a_i] / propensity_i``; unbiased when the
    propensities are right and positive wherever the target plays.
``snips``
    ``sum_i w_i r_i / sum_i w_i``: self-normalised, biased but lower variance.
``dr``
    ``mean_i [ sum_a target[i, a] rhat[i, a] + w_i (r_i - rhat[i, a_i]) ]``: unbiased
    if either the propensities or the reward model are right.

Intervals are percentile bootstrap intervals over rounds (seeded, so the same log
gives the same interval). The engine calls :func:`evaluate_policies` on a log
(``regretflow replay``) and per micro-batch for the per-model metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ESTIMATORS = ("ips", "snips", "dr")


def _check(
    actions_in: ArrayLike, propensities_in: ArrayLike, rewards_in: ArrayLike, target_in: ArrayLike
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    actions = np.asarray(actions_in, dtype=np.int64).reshape(-1)
    propensities = np.asarray(propensities_in, dtype=np.float64).reshape(-1)
    rewards = np.asarray(rewards_in, dtype=np.float64).reshape(-1)
    target = np.asarray(target_in, dtype=np.float64)
    n = actions.shape[0]
    if propensities.shape[0] != n or rewards.shape[0] != n or target.ndim != 2 or target.shape[0] != n:
        raise ValueError(
            f"need n actions, propensities, rewards and an (n, K) target; got {actions.shape}, "
            f"{propensities.shape}, {rewards.shape}, {target.shape}"
        )
    if n and (np.any(propensities <= 0) or np.any(propensities > 1) or not np.all(np.isfinite(propensities))):
        raise ValueError("propensities must be in (0, 1]")
    if n and (actions.min() < 0 or actions.max() >= target.shape[1]):
        raise ValueError(f"actions must be in [0, {target.shape[1]})")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards must be finite")
    return actions, propensities, rewards, target


def importance_weights(actions: ArrayLike, propensities: ArrayLike, target: ArrayLike) -> FloatArray:
    """``w_i = target[i, a_i] / propensity_i``."""
    played = np.asarray(actions, dtype=np.int64)
    target_matrix = np.asarray(target, dtype=np.float64)
    weights: FloatArray = target_matrix[np.arange(played.shape[0]), played] / np.asarray(propensities, dtype=np.float64)
    return weights


def _terms(
    actions: IntArray, propensities: FloatArray, rewards: FloatArray, target: FloatArray, reward_estimates: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Per-round numerator and weight vectors of the three estimators."""
    w = importance_weights(actions, propensities, target)
    wr = w * rewards
    dr: FloatArray | None = None
    if reward_estimates is not None:
        rhat = np.asarray(reward_estimates, dtype=np.float64)
        if rhat.shape != target.shape:
            raise ValueError(f"reward_estimates must have shape {target.shape}, got {rhat.shape}")
        direct = np.einsum("ij,ij->i", target, rhat)
        dr = direct + w * (rewards - rhat[np.arange(actions.shape[0]), actions])
    return w, wr, dr


def ips(actions: ArrayLike, propensities: ArrayLike, rewards: ArrayLike, target: ArrayLike) -> float:
    """Inverse-propensity-score estimate of the target policy's value.

    Examples
    --------
    >>> from regretflow.engine.evaluation.offpolicy import ips, uniform_policy
    >>> ips([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 1.0], uniform_policy(4, 2))
    0.5
    """
    actions, propensities, rewards, target = _check(actions, propensities, rewards, target)
    return float(np.mean(importance_weights(actions, propensities, target) * rewards)) if len(actions) else 0.0


def snips(actions: ArrayLike, propensities: ArrayLike, rewards: ArrayLike, target: ArrayLike) -> float:
    """Self-normalised IPS estimate (``sum w r / sum w``; 0 when no weight is positive)."""
    actions, propensities, rewards, target = _check(actions, propensities, rewards, target)
    w = importance_weights(actions, propensities, target)
    total = w.sum()
    return float(np.dot(w, rewards) / total) if total > 0 else 0.0


def doubly_robust(actions: ArrayLike, propensities: ArrayLike, rewards: ArrayLike, target: ArrayLike, reward_estimates: ArrayLike) -> float:
    """Doubly-robust estimate with the reward model ``reward_estimates`` (n x K)."""
    actions, propensities, rewards, target = _check(actions, propensities, rewards, target)
    _, _, dr = _terms(actions, propensities, rewards, target, reward_estimates)
    if dr is None:
        raise ValueError("doubly_robust needs reward_estimates (an n x K reward model)")
    return float(np.mean(dr)) if len(actions) else 0.0


def greedy_policy(reward_estimates: ArrayLike) -> FloatArray:
    """One-hot matrix of each row's highest estimated reward (lowest index on ties)."""
    rhat = np.asarray(reward_estimates, dtype=np.float64)
    out = np.zeros_like(rhat)
    out[np.arange(rhat.shape[0]), np.argmax(rhat, axis=1)] = 1.0
    return out


def uniform_policy(n: int, n_actions: int) -> FloatArray:
    """Every action with probability ``1 / K`` in each of ``n`` rounds."""
    return np.full((int(n), int(n_actions)), 1.0 / n_actions)


def constant_policy(n: int, n_actions: int, action: int) -> FloatArray:
    """Always ``action``."""
    out = np.zeros((int(n), int(n_actions)))
    out[:, int(action)] = 1.0
    return out


def best_constant_action(actions: ArrayLike, propensities: ArrayLike, rewards: ArrayLike, n_actions: int) -> int:
    """The action whose constant policy has the highest SNIPS value on the log."""
    n = len(np.asarray(actions))
    values = [snips(actions, propensities, rewards, constant_policy(n, n_actions, a)) for a in range(n_actions)]
    return int(np.argmax(values))


def bootstrap_interval(
    actions: ArrayLike,
    propensities: ArrayLike,
    rewards: ArrayLike,
    target: ArrayLike,
    reward_estimates: ArrayLike | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 50,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (resampling rounds) of every available estimator."""
    actions, propensities, rewards, target = _check(actions, propensities, rewards, target)
    n = actions.shape[0]
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    w, wr, dr = _terms(actions, propensities, rewards, target, reward_estimates)
    names = ["ips", "snips"] + (["dr"] if dr is not None else [])
    if n == 0:
        return {name: (0.0, 0.0) for name in names}
    rng = np.random.default_rng(seed)
    samples = {name: np.empty(n_bootstrap) for name in names}
    done = 0
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        idx = rng.integers(0, n, size=(size, n))
        sum_wr = wr[idx].sum(axis=1)
        sum_w = w[idx].sum(axis=1)
        samples["ips"][done : done + size] = sum_wr / n
        samples["snips"][done : done + size] = np.divide(sum_wr, sum_w, out=np.zeros(size), where=sum_w > 0)
        if dr is not None:
            samples["dr"][done : done + size] = dr[idx].mean(axis=1)
        done += size
    tail = (1.0 - confidence) / 2.0
    return {name: (float(np.quantile(s, tail)), float(np.quantile(s, 1.0 - tail))) for name, s in samples.items()}


def evaluate_policies(
    actions: ArrayLike,
    propensities: ArrayLike,
    rewards: ArrayLike,
    policies: Mapping[str, ArrayLike],
    reward_estimates: ArrayLike | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """IPS, SNIPS and (with a reward model) DR estimates with bootstrap intervals, per policy.

    Returns ``{policy: {estimator: {"value", "low", "high"}}}``, plus the observed
    mean reward of the log under ``"logged"``.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.engine.evaluation.offpolicy import evaluate_policies, uniform_policy, constant_policy
    >>> rng = np.random.default_rng(0)
    >>> n = 4000
    >>> actions = rng.integers(0, 2, n)                  # logged uniformly: propensity 1/2
    >>> rewards = (actions == 1).astype(float)           # action 1 always pays
    >>> out = evaluate_policies(actions, np.full(n, 0.5), rewards,
    ...                         {"always-1": constant_policy(n, 2, 1), "uniform": uniform_policy(n, 2)})
    >>> out["always-1"]["snips"]["value"], round(out["uniform"]["ips"]["value"], 1)
    (1.0, 0.5)
    >>> out["uniform"]["ips"]["low"] < 0.5 < out["uniform"]["ips"]["high"]
    True
    """
    actions, propensities, rewards, _ = _check(
        actions, propensities, rewards, np.zeros((len(np.asarray(actions)), 1 + int(np.max(actions, initial=0))))
    )
    out: dict[str, dict[str, dict[str, float]]] = {"logged": {"observed": {"value": float(rewards.mean()) if len(rewards) else 0.0}}}
    for name, target in policies.items():
        target = np.asarray(target, dtype=np.float64)
        values = {"ips": ips(actions, propensities, rewards, target), "snips": snips(actions, propensities, rewards, target)}
        if reward_estimates is not None:
            values["dr"] = doubly_robust(actions, propensities, rewards, target, reward_estimates)
        intervals = bootstrap_interval(
            actions, propensities, rewards, target, reward_estimates, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed
        )
        out[name] = {est: {"value": values[est], "low": intervals[est][0], "high": intervals[est][1]} for est in values}
    return out
