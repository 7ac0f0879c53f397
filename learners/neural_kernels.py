"""Numba kernels of the online neural regressor and of inverse-gap-weighted exploration.

The network is a fully connected net with ``depth`` hidden layers of ``width`` units,
biases, a smooth activation, and one linear output unit::

    h_1 = phi(W_1 x + b_1),  h_l = phi(W_l h_{l-1} + b_l),  z = v . h_depth + c

All parameters live in ONE flat float64 vector ``theta`` (so the optimizers, the
projection and the perturbation are plain loops over it), in this order::

    W_1 (width x n_in, row-major) | b_1 | W_2 | b_2 | ... | W_depth | b_depth | v | c

``n_in`` is the row length of ``W_1``. A forward pass reads the ``len(x)`` columns of
``W_1`` that start at ``col_offset``; the disjoint encoding of a shared context
``x`` for action ``a`` (``x`` in block ``a`` of a ``K*d`` vector, zeros elsewhere) is
therefore ``col_offset = a*d`` with ``n_in = K*d``, and the ``K*d`` vector is never
built. With per-action feature vectors ``col_offset = 0`` and ``n_in = d``.

Activations (``act``): 0 tanh, 1 softplus, 2 GELU (exact, with erf), 3 ReLU.
Losses (``loss_kind``): 0 squared ``(r - z)^2``; 1 KL/log loss of ``sigmoid(z)``
against ``r`` in [0, 1], whose logit-space gradient is ``sigmoid(z) - r``.
Optimizers (``optimizer``): 0 OGD, 1 AdaBelief (non-rectified, eps inside the state,
as in the official package's Algorithm 2 path), 2 EXAdam v2 (no dynamic step size).

The OGD step is capped at ``1 / L``, ``L = curvature * ||dz/dtheta||^2`` the smoothness
of the loss along the step (:func:`capped_ogd_rate`). Without the cap a plain step of
rate ``lr`` changes the output by ``lr * curvature * ||dz/dtheta||^2`` times the error,
and ``||dz/dtheta||^2`` grows with the width (``||h||^2`` of the last hidden layer, about
0.4 per tanh unit) and with the square of the feature scale: at width 100, ``lr = 0.1``
and standardised features the squared-loss step overshot its target about eightfold,
the error grew geometrically and the weights were NaN after ~200 rounds. Capped, a step
moves the linearised output at most onto its target (the "no overshoot" rule of
importance-aware updates, Karampatziakis & Langford 2011), for any width and feature
scale; when ``lr`` is already below ``1 / L`` the step is the plain one.

The prediction perturbation (off when ``perturb_scale == 0``) adds
``perturb_scale / sqrt(p) * <s, theta - theta0>`` to the output, where ``s`` is a
Rademacher vector drawn afresh for each (decision, action) from a counter-based
hash of ``perturb_key``; it is linear in ``theta``, so the learn step adds
``dloss/dz * perturb_scale / sqrt(p) * s`` to the gradient. Its exact form in the
paper is unverified (docs/reproductions.md says what it did).

Every kernel is a pure function over float64 arrays (integers for sizes and flags);
arrays that a kernel updates are passed in and changed in place.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

TANH, SOFTPLUS, GELU, RELU = 0, 1, 2, 3
SQUARED, KL = 0, 1
OGD, ADABELIEF, EXADAM = 0, 1, 2
# First moments below this are set to 0: with the disjoint encoding most coordinates
# get zero gradients for long stretches, their moments decay geometrically, and squares
# of values under ~1e-154 are denormal, which made a step 30x slower. A moment of 1e-150
# moves no float64 weight of ordinary size, so the trajectory is unchanged in practice.
TINY = 1e-150

_MASK_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ARM_SALT = np.uint64(0xD1B54A32D192ED03)


# -- layout -------------------------------------------------------------------------
@njit(cache=True)
def n_parameters(n_in: int, width: int, depth: int) -> int:
    """Length of ``theta`` for a net with ``depth`` hidden layers of ``width`` units."""
    return width * n_in + width + (depth - 1) * (width * width + width) + width + 1


@njit(cache=True)
def layer_offset(layer: int, n_in: int, width: int) -> int:
    """Offset of the weights of hidden layer ``layer`` (0-based); ``layer == depth``: ``v``."""
    if layer == 0:
        return 0
    return width * n_in + width + (layer - 1) * (width * width + width)


# -- activations ---------------------------------------------------------------------
@njit(cache=True)
def activation(s: float, act: int) -> float:
    """phi(s)."""
    if act == TANH:
        return math.tanh(s)
    if act == SOFTPLUS:
        return max(s, 0.0) + math.log1p(math.exp(-abs(s)))
    if act == GELU:
        return 0.5 * s * (1.0 + math.erf(s / math.sqrt(2.0)))
    return s if s > 0.0 else 0.0


@njit(cache=True)
def activation_derivative(s: float, h: float, act: int) -> float:
    """phi'(s), given ``h = phi(s)``."""
    if act == TANH:
        return 1.0 - h * h
    if act == SOFTPLUS:
        return sigmoid(s)
    if act == GELU:
        return 0.5 * (1.0 + math.erf(s / math.sqrt(2.0))) + s * math.exp(-0.5 * s * s) / math.sqrt(2.0 * math.pi)
    return 1.0 if s > 0.0 else 0.0


@njit(cache=True)
def sigmoid(z: float) -> float:
    """Logistic function, stable for large ``|z|``."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# -- perturbation --------------------------------------------------------------------
@njit(cache=True)
def splitmix64(x: np.uint64) -> np.uint64:
    """The splitmix64 finaliser on a uint64 (wrap-around arithmetic)."""
    z = x + _MASK_GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def perturbation_stream_key(key: int, item: int) -> np.uint64:
    """The hash key of the Rademacher vector of one (decision key, action) pair."""
    return splitmix64(np.uint64(key) ^ splitmix64(np.uint64(item) * _ARM_SALT))


@njit(cache=True)
def perturbation_dot(theta: FloatArray, theta0: FloatArray, stream_key: np.uint64) -> float:
    """``<s, theta - theta0>`` for the Rademacher vector ``s`` of ``stream_key``."""
    p = theta.shape[0]
    key = np.uint64(stream_key)
    total = 0.0
    block = -1
    bits = np.uint64(0)
    for i in range(p):
        if i // 64 != block:
            block = i // 64
            bits = splitmix64(key ^ np.uint64(block))
        if (bits >> np.uint64(i % 64)) & np.uint64(1):
            total += theta[i] - theta0[i]
        else:
            total -= theta[i] - theta0[i]
    return total


@njit(cache=True)
def add_perturbation_gradient(grad: FloatArray, stream_key: np.uint64, coefficient: float) -> None:
    """``grad += coefficient * s`` for the Rademacher vector ``s`` of ``stream_key``."""
    key = np.uint64(stream_key)
    block = -1
    bits = np.uint64(0)
    for i in range(grad.shape[0]):
        if i // 64 != block:
            block = i // 64
            bits = splitmix64(key ^ np.uint64(block))
        if (bits >> np.uint64(i % 64)) & np.uint64(1):
            grad[i] += coefficient
        else:
            grad[i] -= coefficient


# -- network -------------------------------------------------------------------------
@njit(cache=True)
def forward_one(
    theta: FloatArray, x: FloatArray, col_offset: int, n_in: int, width: int, depth: int, act: int, pre: FloatArray, post: FloatArray
) -> float:
    """Raw output ``z`` for one input; fills ``pre``/``post`` (depth x width) for backward."""
    d = x.shape[0]
    b_off = width * n_in
    for i in range(width):
        s = theta[b_off + i]
        base = i * n_in + col_offset
        for j in range(d):
            s += theta[base + j] * x[j]
        pre[0, i] = s
        post[0, i] = activation(s, act)
    for layer in range(1, depth):
        w_off = layer_offset(layer, n_in, width)
        b_off = w_off + width * width
        for i in range(width):
            s = theta[b_off + i]
            row = w_off + i * width
            for j in range(width):
                s += theta[row + j] * post[layer - 1, j]
            pre[layer, i] = s
            post[layer, i] = activation(s, act)
    v_off = layer_offset(depth, n_in, width)
    z = theta[v_off + width]
    for i in range(width):
        z += theta[v_off + i] * post[depth - 1, i]
    return z


@njit(cache=True)
def backward_one(
    theta: FloatArray,
    x: FloatArray,
    col_offset: int,
    n_in: int,
    width: int,
    depth: int,
    act: int,
    pre: FloatArray,
    post: FloatArray,
    dz: float,
    grad: FloatArray,
    delta: FloatArray,
    delta_below: FloatArray,
) -> None:
    """``grad = dz * d z / d theta`` (``grad`` is overwritten; ``delta*`` are scratch (width))."""
    grad[:] = 0.0
    backward_touched(theta, x, col_offset, n_in, width, depth, act, pre, post, dz, grad, delta, delta_below)


@njit(cache=True)
def backward_touched(
    theta: FloatArray,
    x: FloatArray,
    col_offset: int,
    n_in: int,
    width: int,
    depth: int,
    act: int,
    pre: FloatArray,
    post: FloatArray,
    dz: float,
    grad: FloatArray,
    delta: FloatArray,
    delta_below: FloatArray,
) -> None:
    """As :func:`backward_one`, but writes only the entries the example touches (the
    ``len(x)`` first-layer columns at ``col_offset``, and every later parameter); the
    other entries of ``grad`` keep whatever they held."""
    v_off = layer_offset(depth, n_in, width)
    top = depth - 1
    for i in range(width):
        grad[v_off + i] = dz * post[top, i]
        delta[i] = dz * theta[v_off + i] * activation_derivative(pre[top, i], post[top, i], act)
    grad[v_off + width] = dz
    for layer in range(depth - 1, 0, -1):
        w_off = layer_offset(layer, n_in, width)
        b_off = w_off + width * width
        for j in range(width):
            delta_below[j] = 0.0
        for i in range(width):
            di = delta[i]
            grad[b_off + i] = di
            row = w_off + i * width
            for j in range(width):
                grad[row + j] = di * post[layer - 1, j]
                delta_below[j] += theta[row + j] * di
        for j in range(width):
            delta[j] = delta_below[j] * activation_derivative(pre[layer - 1, j], post[layer - 1, j], act)
    d = x.shape[0]
    b_off = width * n_in
    for i in range(width):
        di = delta[i]
        grad[b_off + i] = di
        base = i * n_in + col_offset
        for j in range(d):
            grad[base + j] = di * x[j]


@njit(cache=True)
def predict_items(
    theta: FloatArray,
    theta0: FloatArray,
    X: FloatArray,
    row_of_item: IntArray,
    col_offsets: IntArray,
    n_in: int,
    width: int,
    depth: int,
    act: int,
    perturb_scale: float,
    perturb_key: int,
    out: FloatArray,
) -> None:
    """Raw outputs of ``len(out)`` items: item ``k`` is row ``row_of_item[k]`` of ``X`` at
    column block ``col_offsets[k]``, plus its perturbation when ``perturb_scale > 0``."""
    pre = np.empty((depth, width))
    post = np.empty((depth, width))
    scale = perturb_scale / math.sqrt(theta.shape[0])
    for k in range(out.shape[0]):
        z = forward_one(theta, X[row_of_item[k]], col_offsets[k], n_in, width, depth, act, pre, post)
        if perturb_scale > 0.0:
            z += scale * perturbation_dot(theta, theta0, perturbation_stream_key(perturb_key, k))
        out[k] = z


@njit(cache=True)
def loss_and_slope(z: float, target: float, loss_kind: int, clamp: float) -> tuple[float, float]:
    """Loss of raw output ``z`` against ``target`` and its derivative in ``z``."""
    if loss_kind == SQUARED:
        err = z - target
        return err * err, 2.0 * err
    p = sigmoid(z)
    q = min(max(p, clamp), 1.0 - clamp)
    loss = -(target * math.log(q) + (1.0 - target) * math.log(1.0 - q))
    return loss, p - target


# -- optimizers ----------------------------------------------------------------------
@njit(cache=True)
def loss_curvature(loss_kind: int) -> float:
    """An upper bound of the loss's second derivative in ``z``: 2 for ``(r - z)^2``,
    1/4 (the sigmoid's largest slope) for the KL loss."""
    return 2.0 if loss_kind == SQUARED else 0.25


@njit(cache=True)
def capped_ogd_rate(lr: float, slope: float, grad_sq_norm: float, curvature: float) -> float:
    """``min(lr, 1 / (curvature * ||dz/dtheta||^2))`` for ``grad = slope * dz/dtheta``.

    At this rate a step moves the linearised output at most onto the minimiser of the
    loss (see the module docstring); a zero gradient keeps ``lr`` (the step is 0 anyway).
    """
    if grad_sq_norm > 0.0 and lr * curvature * grad_sq_norm > slope * slope:
        return slope * slope / (curvature * grad_sq_norm)
    return lr


@njit(cache=True)
def sq_norm(grad: FloatArray) -> float:
    """``||grad||^2``, summed in index order."""
    total = 0.0
    for k in range(grad.shape[0]):
        total += grad[k] * grad[k]
    return total


@njit(cache=True)
def sq_norm_touched(grad: FloatArray, col_offset: int, d: int, n_in: int, width: int) -> float:
    """``||grad||^2`` over the entries :func:`backward_touched` wrote, in index order
    (so it equals the full sum over a gradient whose other entries are zero, bit for bit)."""
    total = 0.0
    for i in range(width):
        base = i * n_in + col_offset
        for j in range(d):
            total += grad[base + j] * grad[base + j]
    for k in range(width * n_in, grad.shape[0]):
        total += grad[k] * grad[k]
    return total


@njit(cache=True)
def ogd_step(theta: FloatArray, grad: FloatArray, lr: float) -> None:
    """theta -= lr * grad."""
    for i in range(theta.shape[0]):
        theta[i] -= lr * grad[i]


@njit(cache=True)
def ogd_step_touched(theta: FloatArray, grad: FloatArray, lr: float, col_offset: int, d: int, n_in: int, width: int) -> None:
    """OGD on the entries :func:`backward_touched` wrote; bit-identical to :func:`ogd_step`
    on the full gradient, whose other entries are zero (``theta - lr * 0 == theta``)."""
    for i in range(width):
        base = i * n_in + col_offset
        for j in range(d):
            theta[base + j] -= lr * grad[base + j]
    for k in range(width * n_in, theta.shape[0]):
        theta[k] -= lr * grad[k]


@njit(cache=True, error_model="numpy")  # no per-division zero check: lets LLVM vectorise
def adabelief_step(
    theta: FloatArray, grad: FloatArray, m: FloatArray, s: FloatArray, t: int, lr: float, beta1: float, beta2: float, eps: float
) -> None:
    """AdaBelief step ``t`` (from 1), non-rectified, eps added into ``s`` every step."""
    c1 = 1.0 - beta1**t
    c2 = 1.0 - beta2**t
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        mi = mi if abs(mi) >= TINY else 0.0  # long-idle coordinate: no denormal arithmetic
        dev = g - mi
        si = beta2 * s[i] + (1.0 - beta2) * dev * dev + eps
        m[i] = mi
        s[i] = si
        theta[i] -= lr * (mi / c1) / (math.sqrt(si / c2) + eps)


@njit(cache=True, error_model="numpy")  # no per-division zero check: lets LLVM vectorise
def exadam_step(
    theta: FloatArray, grad: FloatArray, m: FloatArray, v: FloatArray, t: int, lr: float, beta1: float, beta2: float, eps: float
) -> None:
    """EXAdam v2 step ``t`` (from 1): cross-moment debiasing and the gradient term."""
    c1 = 1.0 - beta1**t
    c2 = 1.0 - beta2**t
    b1t = beta1**t
    b2t = beta2**t
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        mi = mi if abs(mi) >= TINY else 0.0  # long-idle coordinate: no denormal arithmetic
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        vi = vi if vi >= TINY else 0.0
        m[i] = mi
        v[i] = vi
        d1 = 1.0 + vi / (vi + eps) * b2t
        d2 = 1.0 + mi * mi / (mi * mi + eps) * b1t
        m_tilde = mi / c1 * d1
        v_tilde = vi / c2 * d2
        g_tilde = g / c1 * d1
        theta[i] -= lr * (m_tilde + g_tilde) / (math.sqrt(v_tilde) + eps)


@njit(cache=True)
def project_to_ball(theta: FloatArray, theta0: FloatArray, radius: float) -> float:
    """Project ``theta`` onto the ball of ``radius`` around ``theta0``; return the distance
    before projection."""
    sq = 0.0
    for i in range(theta.shape[0]):
        diff = theta[i] - theta0[i]
        sq += diff * diff
    dist = math.sqrt(sq)
    if dist > radius:
        shrink = radius / dist
        for i in range(theta.shape[0]):
            theta[i] = theta0[i] + shrink * (theta[i] - theta0[i])
    return dist


@njit(cache=True)
def optimizer_step(
    theta: FloatArray,
    grad: FloatArray,
    first: FloatArray,
    second: FloatArray,
    t: int,
    optimizer: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """Dispatch one step of the chosen optimizer."""
    if optimizer == OGD:
        ogd_step(theta, grad, lr)
    elif optimizer == ADABELIEF:
        adabelief_step(theta, grad, first, second, t, lr, beta1, beta2, eps)
    else:
        exadam_step(theta, grad, first, second, t, lr, beta1, beta2, eps)


@njit(cache=True)
def learn_one(
    theta: FloatArray,
    theta0: FloatArray,
    grad: FloatArray,
    first: FloatArray,
    second: FloatArray,
    t: int,
    x: FloatArray,
    col_offset: int,
    n_in: int,
    width: int,
    depth: int,
    act: int,
    loss_kind: int,
    target: float,
    clamp: float,
    perturb_scale: float,
    perturb_key: int,
    perturb_item: int,
    optimizer: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    radius: float,
) -> float:
    """One online gradient step on one example; returns the loss before the step.

    ``t`` is the step number (from 1) for the adaptive optimizers. ``radius <= 0``
    disables the projection. The perturbation, when on, is the one of
    (``perturb_key``, ``perturb_item``), as drawn when the decision was made.
    """
    pre = np.empty((depth, width))
    post = np.empty((depth, width))
    delta = np.empty(width)
    delta_below = np.empty(width)
    z = forward_one(theta, x, col_offset, n_in, width, depth, act, pre, post)
    stream = np.uint64(0)
    scale = 0.0
    if perturb_scale > 0.0:
        scale = perturb_scale / math.sqrt(theta.shape[0])
        stream = perturbation_stream_key(perturb_key, perturb_item)
        z += scale * perturbation_dot(theta, theta0, stream)
    loss, slope = loss_and_slope(z, target, loss_kind, clamp)
    if optimizer == OGD and perturb_scale <= 0.0:
        # sparse path: with the disjoint encoding only one column block of W_1 moves
        backward_touched(theta, x, col_offset, n_in, width, depth, act, pre, post, slope, grad, delta, delta_below)
        sq = sq_norm_touched(grad, col_offset, x.shape[0], n_in, width)
        ogd_step_touched(theta, grad, capped_ogd_rate(lr, slope, sq, loss_curvature(loss_kind)), col_offset, x.shape[0], n_in, width)
    else:
        backward_one(theta, x, col_offset, n_in, width, depth, act, pre, post, slope, grad, delta, delta_below)
        if perturb_scale > 0.0:
            add_perturbation_gradient(grad, stream, slope * scale)
        if optimizer == OGD:
            lr = capped_ogd_rate(lr, slope, sq_norm(grad), loss_curvature(loss_kind))
        optimizer_step(theta, grad, first, second, t, optimizer, lr, beta1, beta2, eps)
    if radius > 0.0:
        project_to_ball(theta, theta0, radius)
    return loss


# -- exploration ---------------------------------------------------------------------
@njit(cache=True)
def igw_probabilities(costs: FloatArray, gamma: float, out: FloatArray) -> int:
    """SquareCB inverse-gap weighting over predicted costs; returns the greedy index.

    ``b = argmin costs`` (lowest index on ties); ``out[a] = 1/(K + gamma*(c_a - c_b))``
    for ``a != b``; ``out[b] = 1 - sum of the others``. Non-finite costs give uniform.
    """
    k = costs.shape[0]
    best = 0
    for a in range(k):
        if not math.isfinite(costs[a]):
            for j in range(k):
                out[j] = 1.0 / k
            return -1
        if costs[a] < costs[best]:
            best = a
    rest = 0.0
    for a in range(k):
        if a != best:
            out[a] = 1.0 / (k + gamma * (costs[a] - costs[best]))
            rest += out[a]
    out[best] = 1.0 - rest
    return best


@njit(cache=True)
def reweighted_igw_probabilities(costs: FloatArray, gamma: float, out: FloatArray) -> int:
    """FastCB reweighted inverse-gap weighting over predicted costs in [0, 1].

    ``out[a] = c_b / (K c_b + gamma (c_a - c_b))`` for ``a != b``; a 0/0 (``c_b = 0``
    and a tie with ``b``, or ``gamma = 0``) counts as ``1/K``. Non-finite costs: uniform.
    """
    k = costs.shape[0]
    best = 0
    for a in range(k):
        if not math.isfinite(costs[a]):
            for j in range(k):
                out[j] = 1.0 / k
            return -1
        if costs[a] < costs[best]:
            best = a
    cb = costs[best]
    rest = 0.0
    for a in range(k):
        if a != best:
            denominator = k * cb + gamma * (costs[a] - cb)
            out[a] = cb / denominator if denominator > 0.0 else 1.0 / k
            rest += out[a]
    out[best] = 1.0 - rest
    return best


@njit(cache=True)
def sample_index(probabilities: FloatArray, u: float) -> int:
    """The index whose cumulative probability first exceeds ``u`` in [0, 1)."""
    total = 0.0
    last = 0
    for a in range(probabilities.shape[0]):
        if probabilities[a] > 0.0:
            last = a
        total += probabilities[a]
        if u < total:
            return a
    return last  # u beyond the rounded total: the last action with positive mass


def warm_up() -> None:
    """Compile (or load from cache) every kernel of this module on tiny inputs."""
    n_in, width, depth = 4, 3, 2
    p = n_parameters(n_in, width, depth)
    theta = np.linspace(-0.5, 0.5, p)
    theta0 = theta.copy()
    X = np.ones((1, 2))
    out = np.zeros(2)
    predict_items(theta, theta0, X, np.zeros(2, dtype=np.int64), np.array([0, 2], dtype=np.int64), n_in, width, depth, TANH, 0.1, 7, out)
    grad = np.zeros(p)
    first = np.zeros(p)
    second = np.zeros(p)
    for optimizer in (OGD, ADABELIEF, EXADAM):
        learn_one(
            theta,
            theta0,
            grad,
            first,
            second,
            1,
            X[0],
            2,
            n_in,
            width,
            depth,
            TANH,
            KL,
            1.0,
            1e-6,
            0.1,
            7,
            1,
            optimizer,
            1e-3,
            0.9,
            0.999,
            1e-8,
            10.0,
        )
    costs = np.array([0.2, 0.5])
    igw_probabilities(costs, 10.0, out)
    reweighted_igw_probabilities(costs, 10.0, out)
    sample_index(out, 0.5)
