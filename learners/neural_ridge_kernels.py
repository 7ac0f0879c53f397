"""Numba kernels of the ridge-plus-residual-network bandit (:class:`~regretflow.learners.neural_bandit.NeuralRidgeCB`).

The predicted reward of action ``a`` for a context ``x`` (``d`` floats) is::

    s = clip((x - mean) / sqrt(var + 1e-8), -input_clip, input_clip)   # online standardisation
    yhat_a = w_a . [s, 1]  +  v_a . tanh(W s + b) + c_a                # exact ridge + residual net

- ``mean``/``var`` are running (Welford) statistics of the learned contexts (``var = 1``
  until two contexts were seen), so raw-scale and unit-norm inputs look alike.
- ``w_a`` is action ``a``'s exact ridge solution on ``[s, 1]``, kept with its inverse
  Gram matrix by recursive least squares (Sherman-Morrison): O(d^2) per feedback.
- the network (one hidden layer of ``width`` tanh units shared by the actions, one
  linear output per action) learns the residual ``r - w_a . [s, 1]``; its output weights
  start at 0, so the bandit starts exactly as ridge and adds non-linearity as it learns.
  Each feedback takes one Adam step on the mean squared residual over the current
  round and the last ``replay`` rounds (a ring buffer), with the gradient clipped to
  Euclidean norm ``grad_clip``.

All sizes are fixed at construction, so the cost per round is O(K d^2 + (replay + 1) d width),
independent of the number of rounds. Network parameters live in one flat vector::

    W (width x d, row-major) | b (width) | V (K x width, row-major) | c (K)

Integer counters (``counters``): 0 contexts in the statistics, 1 Adam steps, 2 next
replay slot, 3 filled replay slots.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

N_SEEN, N_STEPS, REPLAY_NEXT, REPLAY_FILLED = 0, 1, 2, 3
VARIANCE_FLOOR = 1e-8


@njit(cache=True)
def n_network_parameters(d: int, width: int, k: int) -> int:
    """Length of the flat network vector."""
    return width * d + width + k * width + k


@njit(cache=True)
def standardise(x: FloatArray, mean: FloatArray, m2: FloatArray, n_seen: int, input_clip: float, out: FloatArray) -> None:
    """``out = clip((x - mean) / sqrt(var + 1e-8))``; ``var = 1`` before two contexts."""
    for j in range(x.shape[0]):
        var = m2[j] / n_seen if n_seen >= 2 else 1.0
        value = (x[j] - mean[j]) / math.sqrt(var + VARIANCE_FLOOR)
        out[j] = min(max(value, -input_clip), input_clip)


@njit(cache=True)
def update_statistics(x: FloatArray, mean: FloatArray, m2: FloatArray, n_seen: int) -> int:
    """Welford update with ``x``; returns the new count."""
    n = n_seen + 1
    for j in range(x.shape[0]):
        delta = x[j] - mean[j]
        mean[j] += delta / n
        m2[j] += delta * (x[j] - mean[j])
    return n


@njit(cache=True)
def ridge_value(w: FloatArray, s: FloatArray) -> float:
    """``w . [s, 1]``."""
    d = s.shape[0]
    total = float(w[d])
    for j in range(d):
        total += w[j] * s[j]
    return total


@njit(cache=True)
def hidden_layer(theta: FloatArray, s: FloatArray, width: int, hidden: FloatArray) -> None:
    """``hidden = tanh(W s + b)``."""
    d = s.shape[0]
    bias = width * d
    for i in range(width):
        total = theta[bias + i]
        row = i * d
        for j in range(d):
            total += theta[row + j] * s[j]
        hidden[i] = math.tanh(total)


@njit(cache=True)
def network_output(theta: FloatArray, hidden: FloatArray, d: int, width: int, k: int, action: int) -> float:
    """``v_a . hidden + c_a``."""
    v = width * d + width + action * width
    total = theta[width * d + width + k * width + action]
    for i in range(width):
        total += theta[v + i] * hidden[i]
    return total


@njit(cache=True)
def predict_rewards(
    x: FloatArray,
    mean: FloatArray,
    m2: FloatArray,
    counters: IntArray,
    ridge_w: FloatArray,
    theta: FloatArray,
    width: int,
    input_clip: float,
    out: FloatArray,
) -> None:
    """Predicted reward of every action for context ``x`` into ``out`` (no state change)."""
    d = x.shape[0]
    k = out.shape[0]
    s = np.empty(d)
    standardise(x, mean, m2, counters[N_SEEN], input_clip, s)
    hidden = np.empty(width)
    if width > 0:
        hidden_layer(theta, s, width, hidden)
    for a in range(k):
        out[a] = ridge_value(ridge_w[a], s)
        if width > 0:
            out[a] += network_output(theta, hidden, d, width, k, a)


@njit(cache=True)
def ridge_update(inverse: FloatArray, w: FloatArray, s: FloatArray, target: float) -> None:
    """Recursive least squares on ``[s, 1]``: the exact ridge solution after one more example."""
    n = s.shape[0] + 1
    z = np.empty(n)
    z[: n - 1] = s
    z[n - 1] = 1.0
    u = inverse @ z
    denominator = 1.0 + z @ u
    error = target - w @ z
    for i in range(n):
        w[i] += error * u[i] / denominator
        for j in range(n):
            inverse[i, j] -= u[i] * u[j] / denominator


@njit(cache=True)
def add_residual_gradient(
    theta: FloatArray, s: FloatArray, action: int, residual: float, width: int, k: int, weight: float, grad: FloatArray, hidden: FloatArray
) -> float:
    """Add ``weight * d/dtheta (net_a(s) - residual)^2 / 2`` to ``grad``; returns the squared error."""
    d = s.shape[0]
    hidden_layer(theta, s, width, hidden)
    error = network_output(theta, hidden, d, width, k, action) - residual
    slope = weight * error
    v = width * d + width + action * width
    grad[width * d + width + k * width + action] += slope
    for i in range(width):
        grad[v + i] += slope * hidden[i]
        back = slope * theta[v + i] * (1.0 - hidden[i] * hidden[i])
        if back != 0.0:
            grad[width * d + i] += back
            row = i * d
            for j in range(d):
                grad[row + j] += back * s[j]
    return error * error


@njit(cache=True)
def learn(
    x: FloatArray,
    action: int,
    reward: float,
    mean: FloatArray,
    m2: FloatArray,
    counters: IntArray,
    ridge_inverse: FloatArray,
    ridge_w: FloatArray,
    theta: FloatArray,
    first: FloatArray,
    second: FloatArray,
    replay_x: FloatArray,
    replay_action: IntArray,
    replay_reward: FloatArray,
    width: int,
    input_clip: float,
    learning_rate: float,
    beta1: float,
    beta2: float,
    epsilon: float,
    grad_clip: float,
) -> float:
    """One feedback: ridge update of ``action``, one Adam step of the residual network over
    this round and the replayed ones, then the replay buffer and the input statistics.
    Returns the squared error of the prediction before the update."""
    d = x.shape[0]
    k = ridge_w.shape[0]
    s = np.empty(d)
    standardise(x, mean, m2, counters[N_SEEN], input_clip, s)
    hidden = np.empty(width)
    before = ridge_value(ridge_w[action], s)
    if width > 0:
        hidden_layer(theta, s, width, hidden)
        before += network_output(theta, hidden, d, width, k, action)
    ridge_update(ridge_inverse[action], ridge_w[action], s, reward)
    if width > 0:
        grad = np.zeros(theta.shape[0])
        filled = counters[REPLAY_FILLED]
        weight = 1.0 / (filled + 1)
        add_residual_gradient(theta, s, action, reward - ridge_value(ridge_w[action], s), width, k, weight, grad, hidden)
        replayed = np.empty(d)
        for i in range(filled):
            standardise(replay_x[i], mean, m2, counters[N_SEEN], input_clip, replayed)
            a = replay_action[i]
            residual = replay_reward[i] - ridge_value(ridge_w[a], replayed)
            add_residual_gradient(theta, replayed, a, residual, width, k, weight, grad, hidden)
        norm = math.sqrt(np.sum(grad * grad))
        scale = grad_clip / norm if norm > grad_clip else 1.0
        counters[N_STEPS] += 1
        t = counters[N_STEPS]
        correction1 = 1.0 - beta1**t
        correction2 = 1.0 - beta2**t
        for i in range(theta.shape[0]):
            g = grad[i] * scale
            first[i] = beta1 * first[i] + (1.0 - beta1) * g
            second[i] = beta2 * second[i] + (1.0 - beta2) * g * g
            theta[i] -= learning_rate * (first[i] / correction1) / (math.sqrt(second[i] / correction2) + epsilon)
        if replay_x.shape[0] > 0:
            slot = counters[REPLAY_NEXT]
            replay_x[slot] = x
            replay_action[slot] = action
            replay_reward[slot] = reward
            counters[REPLAY_NEXT] = (slot + 1) % replay_x.shape[0]
            counters[REPLAY_FILLED] = min(filled + 1, replay_x.shape[0])
    counters[N_SEEN] = update_statistics(x, mean, m2, counters[N_SEEN])
    return (before - reward) ** 2


def warm_up() -> None:
    """Compile (or load from cache) the kernels on tiny inputs."""
    d, k, width, replay = 2, 2, 3, 2
    mean, m2 = np.zeros(d), np.zeros(d)
    counters = np.zeros(4, dtype=np.int64)
    inverse = np.stack([np.eye(d + 1)] * k)
    w = np.zeros((k, d + 1))
    p = n_network_parameters(d, width, k)
    theta, first, second = np.linspace(-0.1, 0.1, p), np.zeros(p), np.zeros(p)
    out = np.zeros(k)
    x = np.array([0.5, -1.0])
    for _ in range(3):
        predict_rewards(x, mean, m2, counters, w, theta, width, 5.0, out)
        learn(
            x, 1, 1.0, mean, m2, counters, inverse, w, theta, first, second,
            np.zeros((replay, d)), np.zeros(replay, dtype=np.int64), np.zeros(replay), width, 5.0, 1e-3, 0.9, 0.999, 1e-8, 1.0,
        )  # fmt: skip


@njit(cache=True)
def confidence_widths(
    x: FloatArray, mean: FloatArray, m2: FloatArray, counters: IntArray, ridge_inverse: FloatArray, input_clip: float, out: FloatArray
) -> None:
    """``out[a] = sqrt([s, 1]' A_a^-1 [s, 1])``, the ridge's confidence width for each action."""
    d = x.shape[0]
    z = np.empty(d + 1)
    standardise(x, mean, m2, counters[N_SEEN], input_clip, z[:d])
    z[d] = 1.0
    for a in range(out.shape[0]):
        out[a] = math.sqrt(max(z @ (ridge_inverse[a] @ z), 0.0))
