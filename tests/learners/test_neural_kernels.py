"""The neural-bandit kernels against plain numpy references, finite differences and test vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regretflow.learners import neural_kernels as NK

ACTS = {
    NK.TANH: (np.tanh, lambda s: 1.0 - np.tanh(s) ** 2),
    NK.SOFTPLUS: (lambda s: np.logaddexp(0.0, s), lambda s: 1.0 / (1.0 + np.exp(-s))),
    NK.GELU: (
        lambda s: 0.5 * s * (1.0 + np.vectorize(math.erf)(s / math.sqrt(2.0))),
        lambda s: 0.5 * (1.0 + np.vectorize(math.erf)(s / math.sqrt(2.0))) + s * np.exp(-0.5 * s * s) / math.sqrt(2.0 * math.pi),
    ),
    NK.RELU: (lambda s: np.maximum(s, 0.0), lambda s: (s > 0).astype(float)),
}
MASK = (1 << 64) - 1


# -- numpy reference ----------------------------------------------------------------
def unpack(theta, n_in, width, depth):
    """The flat parameter vector as a list of (W, b) and (v, c)."""
    layers, off = [], 0
    fan_in = n_in
    for _ in range(depth):
        W = theta[off : off + width * fan_in].reshape(width, fan_in)
        off += width * fan_in
        b = theta[off : off + width]
        off += width
        layers.append((W, b))
        fan_in = width
    v = theta[off : off + width]
    c = theta[off + width]
    assert off + width + 1 == theta.size
    return layers, v, c


def reference_forward(theta, x_dense, n_in, width, depth, act):
    phi = ACTS[act][0]
    layers, v, c = unpack(theta, n_in, width, depth)
    h = x_dense
    for W, b in layers:
        h = phi(W @ h + b)
    return float(v @ h + c)


def reference_gradient(theta, x_dense, n_in, width, depth, act):
    """d z / d theta by explicit backpropagation in numpy."""
    phi, dphi = ACTS[act]
    layers, v, c = unpack(theta, n_in, width, depth)
    pres, posts = [], [x_dense]
    h = x_dense
    for W, b in layers:
        s = W @ h + b
        h = phi(s)
        pres.append(s)
        posts.append(h)
    grads = []
    delta = v * dphi(pres[-1])
    for layer in range(depth - 1, -1, -1):
        grads.append((np.outer(delta, posts[layer]), delta.copy()))
        if layer > 0:
            delta = (layers[layer][0].T @ delta) * dphi(pres[layer - 1])
    grads.reverse()
    flat = []
    for gW, gb in grads:
        flat += [gW.ravel(), gb]
    flat += [posts[-1], np.array([1.0])]
    return np.concatenate(flat)


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_rademacher(key, item, p):
    stream = splitmix64(key ^ splitmix64((item * 0xD1B54A32D192ED03) & MASK))
    signs = np.empty(p)
    for i in range(p):
        bits = splitmix64(stream ^ (i // 64))
        signs[i] = 1.0 if (bits >> (i % 64)) & 1 else -1.0
    return signs


def random_net(rng, n_in, width, depth):
    return rng.normal(0.0, 0.7, NK.n_parameters(n_in, width, depth))


# -- network -------------------------------------------------------------------------
@pytest.mark.parametrize("act", [NK.TANH, NK.SOFTPLUS, NK.GELU, NK.RELU])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_and_backward_match_numpy_reference(act, depth):
    rng = np.random.default_rng(depth * 10 + act)
    n_in, width = 5, 7
    theta = random_net(rng, n_in, width, depth)
    x = rng.normal(size=n_in)
    pre, post = np.empty((depth, width)), np.empty((depth, width))
    z = NK.forward_one(theta, x, 0, n_in, width, depth, act, pre, post)
    assert z == pytest.approx(reference_forward(theta, x, n_in, width, depth, act), abs=1e-9)
    grad = np.empty_like(theta)
    NK.backward_one(theta, x, 0, n_in, width, depth, act, pre, post, 1.0, grad, np.empty(width), np.empty(width))
    np.testing.assert_allclose(grad, reference_gradient(theta, x, n_in, width, depth, act), rtol=0, atol=1e-9)


@pytest.mark.parametrize("act", [NK.TANH, NK.SOFTPLUS, NK.GELU])
@pytest.mark.parametrize("loss_kind", [NK.SQUARED, NK.KL])
def test_loss_gradient_matches_central_finite_differences(act, loss_kind):
    rng = np.random.default_rng(3)
    n_in, width, depth = 4, 6, 2
    theta = rng.normal(0.0, 0.4, NK.n_parameters(n_in, width, depth))  # away from saturation
    x = rng.normal(size=n_in)
    target = 0.3

    def loss(th):
        z = reference_forward(th, x, n_in, width, depth, act)
        return NK.loss_and_slope(z, target, loss_kind, 1e-12)[0]

    pre, post = np.empty((depth, width)), np.empty((depth, width))
    z = NK.forward_one(theta, x, 0, n_in, width, depth, act, pre, post)
    _, slope = NK.loss_and_slope(z, target, loss_kind, 1e-12)
    grad = np.empty_like(theta)
    NK.backward_one(theta, x, 0, n_in, width, depth, act, pre, post, slope, grad, np.empty(width), np.empty(width))
    h = 1e-5
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (loss(up) - loss(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8 * np.abs(numeric).max())


def test_kl_loss_gradient_is_logit_space_and_loss_is_cross_entropy():
    loss, slope = NK.loss_and_slope(0.4, 0.7, NK.KL, 1e-6)
    p = 1.0 / (1.0 + math.exp(-0.4))
    assert slope == pytest.approx(p - 0.7, abs=1e-15)
    assert loss == pytest.approx(-(0.7 * math.log(p) + 0.3 * math.log(1 - p)), abs=1e-12)
    # far in the tail the clamp bounds the loss, the gradient stays the logit-space one
    loss, slope = NK.loss_and_slope(-60.0, 1.0, NK.KL, 1e-6)
    assert loss == pytest.approx(-math.log(1e-6), rel=1e-12)
    assert slope == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("depth", [1, 2])
def test_disjoint_block_path_equals_dense_kd_input(depth):
    rng = np.random.default_rng(11)
    k, d, width = 4, 3, 5
    n_in = k * d
    theta = random_net(rng, n_in, width, depth)
    x = rng.normal(size=d)
    out = np.empty(k)
    NK.predict_items(
        theta, theta, x[None, :], np.zeros(k, dtype=np.int64), np.arange(k, dtype=np.int64) * d, n_in, width, depth, NK.TANH, 0.0, 0, out
    )
    pre, post = np.empty((depth, width)), np.empty((depth, width))
    for a in range(k):
        dense = np.zeros(n_in)
        dense[a * d : (a + 1) * d] = x
        z_dense = NK.forward_one(theta, dense, 0, n_in, width, depth, NK.TANH, pre, post)
        assert out[a] == pytest.approx(z_dense, abs=1e-12)
        g_dense = np.empty_like(theta)
        NK.backward_one(theta, dense, 0, n_in, width, depth, NK.TANH, pre, post, 1.0, g_dense, np.empty(width), np.empty(width))
        NK.forward_one(theta, x, a * d, n_in, width, depth, NK.TANH, pre, post)
        g_block = np.empty_like(theta)
        NK.backward_one(theta, x, a * d, n_in, width, depth, NK.TANH, pre, post, 1.0, g_block, np.empty(width), np.empty(width))
        np.testing.assert_allclose(g_block, g_dense, rtol=0, atol=1e-12)


# -- perturbation --------------------------------------------------------------------
def test_perturbation_matches_reference_rademacher_vector():
    rng = np.random.default_rng(5)
    p = 200
    theta, theta0 = rng.normal(size=p), rng.normal(size=p)
    key, item = 123456789, 3
    signs = reference_rademacher(key, item, p)
    stream = NK.perturbation_stream_key(key, item)
    assert NK.perturbation_dot(theta, theta0, stream) == pytest.approx(float(signs @ (theta - theta0)), abs=1e-12)
    grad = np.zeros(p)
    NK.add_perturbation_gradient(grad, stream, 0.25)
    np.testing.assert_array_equal(grad, 0.25 * signs)
    # different actions of one decision draw different vectors
    assert not np.array_equal(signs, reference_rademacher(key, item + 1, p))


def test_perturbation_term_is_in_the_output_and_its_gradient_in_the_step():
    rng = np.random.default_rng(8)
    n_in, width, depth = 3, 4, 1
    theta0 = random_net(rng, n_in, width, depth)
    theta = theta0 + 0.1 * rng.normal(size=theta0.size)
    x = rng.normal(size=n_in)
    scale, key = 0.5, 42
    p = theta.size
    signs = reference_rademacher(key, 0, p)
    out = np.empty(1)
    NK.predict_items(
        theta, theta0, x[None, :], np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), n_in, width, depth, NK.TANH, scale, key, out
    )
    z_ref = reference_forward(theta, x, n_in, width, depth, NK.TANH) + scale / math.sqrt(p) * signs @ (theta - theta0)
    assert out[0] == pytest.approx(z_ref, abs=1e-12)
    # one OGD step: theta - rate * slope * g, g = dz/dtheta + scale/sqrt(p) * s, at the
    # rate capped at 1 / (2 ||g||^2) (2: the squared loss's curvature)
    lr, target = 0.1, 0.2
    g = reference_gradient(theta, x, n_in, width, depth, NK.TANH) + scale / math.sqrt(p) * signs
    rate = min(lr, 1.0 / (2.0 * g @ g))
    expected = theta - rate * 2 * (z_ref - target) * g
    stepped = theta.copy()
    NK.learn_one(
        stepped,
        theta0,
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
        1,
        x,
        0,
        n_in,
        width,
        depth,
        NK.TANH,
        NK.SQUARED,
        target,
        1e-6,
        scale,
        key,
        0,
        NK.OGD,
        lr,
        0.9,
        0.999,
        0.0,
        0.0,
    )
    np.testing.assert_allclose(stepped, expected, rtol=0, atol=1e-12)


# -- optimizers: test vectors of the optimizers' specifications ---------------------------------
C = np.array([1.0, -2.0, 0.5])


def _trajectory(step, eps, n=3):
    theta, m, s = np.zeros(3), np.zeros(3), np.zeros(3)
    out = []
    for t in range(1, n + 1):
        step(theta, theta - C, m, s, t, 1e-3, 0.9, 0.999, eps)
        out.append(theta.copy())
    return out


def test_adabelief_matches_the_spec_test_vector():
    got = _trajectory(NK.adabelief_step, 1e-16)
    expected = [
        [0.0011111111, -0.0011111111, 0.0011111111],
        [0.0022790782, -0.0022790971, 0.0022790401],
        [0.0035045492, -0.0035046248, 0.0035043964],
    ]
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=0, atol=1e-10)  # spec prints 10 decimals


def test_exadam_v2_matches_the_spec_test_vector():
    got = _trajectory(NK.exadam_step, 1e-8)
    expected = [
        [0.0159524212, -0.0159524782, 0.0159521933],
        [0.0251900935, -0.0252222376, 0.0251244252],
        [0.0322460987, -0.0323119655, 0.0321113345],
    ]
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=0, atol=1e-10)


def numpy_adabelief(theta, g, m, s, t, lr, b1, b2, eps):
    m[:] = b1 * m + (1 - b1) * g
    s[:] = b2 * s + (1 - b2) * (g - m) ** 2 + eps
    theta -= lr * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)


def numpy_exadam(theta, g, m, v, t, lr, b1, b2, eps):
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    d1 = 1 + v / (v + eps) * b2**t
    d2 = 1 + m * m / (m * m + eps) * b1**t
    num = m / (1 - b1**t) * d1 + g / (1 - b1**t) * d1
    theta -= lr * num / (np.sqrt(v / (1 - b2**t) * d2) + eps)


@pytest.mark.parametrize("kernel,reference,eps", [(NK.adabelief_step, numpy_adabelief, 1e-16), (NK.exadam_step, numpy_exadam, 1e-8)])
def test_adaptive_optimizers_match_numpy_on_random_gradients(kernel, reference, eps):
    rng = np.random.default_rng(2)
    a = [rng.normal(size=50), np.zeros(50), np.zeros(50)]
    b = [x.copy() for x in a]
    for t in range(1, 40):
        g = rng.normal(size=50) * 10.0 ** rng.integers(-3, 3)
        kernel(a[0], g, a[1], a[2], t, 1e-2, 0.9, 0.999, eps)
        reference(b[0], g, b[1], b[2], t, 1e-2, 0.9, 0.999, eps)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_adabelief_is_invariant_to_gradient_scale():
    theta_a, theta_b = np.zeros(3), np.zeros(3)
    ma, sa, mb, sb = np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)
    for t in range(1, 20):
        NK.adabelief_step(theta_a, theta_a - C, ma, sa, t, 1e-3, 0.9, 0.999, 1e-16)
        NK.adabelief_step(theta_b, 1e3 * (theta_b - C), mb, sb, t, 1e-3, 0.9, 0.999, 1e-16)
    np.testing.assert_allclose(theta_a, theta_b, rtol=1e-9)


def test_projection_keeps_theta_in_the_ball_and_leaves_inner_points():
    rng = np.random.default_rng(4)
    theta0 = rng.normal(size=20)
    theta = theta0 + 5.0 * rng.normal(size=20)
    distance = NK.project_to_ball(theta, theta0, 1.5)
    assert distance > 1.5
    assert np.linalg.norm(theta - theta0) == pytest.approx(1.5, abs=1e-12)
    inner = theta0 + 0.01
    before = inner.copy()
    NK.project_to_ball(inner, theta0, 1.5)
    np.testing.assert_array_equal(inner, before)


# -- exploration kernels against numpy -----------------------------------------------
def numpy_igw(costs, gamma):
    k = len(costs)
    b = int(np.argmin(costs))
    p = 1.0 / (k + gamma * (costs - costs[b]))
    p[b] = 0.0
    p[b] = 1.0 - p.sum()
    return p


def test_igw_kernels_match_numpy_formulas():
    rng = np.random.default_rng(6)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        costs = rng.uniform(0.0, 1.0, k)
        gamma = float(rng.uniform(0, 500))
        out = np.empty(k)
        NK.igw_probabilities(costs, gamma, out)
        np.testing.assert_allclose(out, numpy_igw(costs, gamma), rtol=0, atol=1e-12)
        NK.reweighted_igw_probabilities(costs, gamma, out)
        np.testing.assert_allclose(out, numpy_igw(costs, gamma / costs.min()), rtol=0, atol=1e-9)


def test_sample_index_inverts_the_cumulative_distribution():
    p = np.array([0.2, 0.0, 0.5, 0.3])
    assert [NK.sample_index(p, u) for u in (0.0, 0.19, 0.2, 0.69, 0.7, 0.999)] == [0, 0, 2, 2, 3, 3]
    assert NK.sample_index(np.array([0.5, 0.5 - 1e-12, 0.0]), 1.0 - 1e-13) == 1  # never a zero-mass action


def test_warm_up_compiles_every_kernel():
    NK.warm_up()


@pytest.mark.parametrize("depth", [1, 2])
def test_sparse_ogd_step_is_bit_identical_to_the_dense_step(depth):
    rng = np.random.default_rng(12)
    k, d, width = 5, 4, 6
    n_in = k * d
    theta0 = random_net(rng, n_in, width, depth)
    sparse, dense = theta0.copy(), theta0.copy()
    grad_sparse = rng.normal(size=theta0.size)  # stale garbage must not matter
    pre, post = np.empty((depth, width)), np.empty((depth, width))
    for step in range(30):
        x = rng.normal(size=d)
        arm = int(rng.integers(k))
        target = float(rng.random() < 0.5)
        NK.learn_one(
            sparse,
            theta0,
            grad_sparse,
            np.zeros(1),
            np.zeros(1),
            step + 1,
            x,
            arm * d,
            n_in,
            width,
            depth,
            NK.TANH,
            NK.KL,
            target,
            1e-6,
            0.0,
            0,
            arm,
            NK.OGD,
            0.3,
            0.9,
            0.999,
            0.0,
            0.0,
        )
        z = NK.forward_one(dense, x, arm * d, n_in, width, depth, NK.TANH, pre, post)
        _, slope = NK.loss_and_slope(z, target, NK.KL, 1e-6)
        grad = np.empty_like(dense)
        NK.backward_one(dense, x, arm * d, n_in, width, depth, NK.TANH, pre, post, slope, grad, np.empty(width), np.empty(width))
        rate = NK.capped_ogd_rate(0.3, slope, NK.sq_norm(grad), NK.loss_curvature(NK.KL))
        NK.ogd_step(dense, grad, rate)
        np.testing.assert_array_equal(sparse, dense)


@pytest.mark.parametrize("feature_scale,lr,capped", [(1.0, 1e-4, False), (1.0, 0.1, True), (1e4, 0.1, True)])
def test_ogd_rate_is_capped_so_a_step_never_moves_the_output_past_its_target(feature_scale, lr, capped):
    rng = np.random.default_rng(5)
    n_in, width, depth = 6, 100, 1
    theta = random_net(rng, n_in, width, depth)
    x = feature_scale * rng.normal(size=n_in)
    target = 1.0
    z = reference_forward(theta, x, n_in, width, depth, NK.TANH)
    g = reference_gradient(theta, x, n_in, width, depth, NK.TANH)
    slope = 2.0 * (z - target)
    rate = NK.capped_ogd_rate(lr, slope, NK.sq_norm(slope * g), NK.loss_curvature(NK.SQUARED))
    linear_change = rate * slope * (g @ g)  # first-order change of z under the step
    assert abs(linear_change) <= abs(z - target) * (1 + 1e-12)
    assert (rate < lr) == capped
    if capped:  # at the cap the linearised output lands on the target
        assert linear_change == pytest.approx(z - target, rel=1e-9)
