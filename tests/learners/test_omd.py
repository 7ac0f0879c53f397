"""OptimisticOMDRegressor: optimistic online gradient descent for least squares (its specification, section 1)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from regretflow.learners import omd_kernels as K
from regretflow.learners.omd import OptimisticOMDRegressor


def reference_omd(Z, Y, diameter=10.0, grad_bound=1.0, delta=1.0):
    """Spec §1.4 in numpy: returns the predictions and the points played."""
    d = Z.shape[1]
    xhat, hint, V = np.zeros(d), np.zeros(d), 0.0
    preds, played = np.empty(len(Y)), np.empty((len(Y), d))

    def proj(v):
        norm = np.linalg.norm(v)
        return v * (diameter / 2 / norm) if norm > diameter / 2 else v

    for t in range(len(Y)):
        eta = diameter / np.sqrt(delta + 4 * grad_bound**2 + V)
        w = proj(xhat - eta * hint)
        played[t] = w
        preds[t] = w @ Z[t]
        grad = (preds[t] - Y[t]) * Z[t]
        xhat = proj(xhat - eta * grad)
        V += np.sum((grad - hint) ** 2)
        hint = grad
    return preds, played


def spec_stream():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(2000, 5))
    Y = Z @ np.array([1.0, -1.0, 0.5, 0.0, 2.0]) + 0.1 * rng.normal(size=2000)
    return Z, Y


def test_spec_test_vector():
    Z, Y = spec_stream()
    model = OptimisticOMDRegressor(features=list("abcde"), fit_intercept=False, adaptive_diameter=False)
    d = 5
    xhat, hint, V = np.zeros(d), np.zeros(d), np.zeros(1)
    played = np.empty(d)
    preds = np.empty(len(Y))
    for t in range(len(Y)):
        preds[t] = K.omd_update_one(xhat, hint, V, 0, Z[t], Y[t], 10.0, 1.0, 1.0, played)
    np.testing.assert_allclose(played, [1.012, -0.980, 0.572, -0.020, 2.011], atol=5e-4)
    assert np.mean((preds[-500:] - Y[-500:]) ** 2) == pytest.approx(0.0211, abs=5e-5)
    np.testing.assert_array_equal(model.observe_many(Z, Y), preds)


def test_kernel_matches_numpy_reference():
    Z, Y = spec_stream()
    Z, Y = Z[:600], Y[:600]
    for diameter, grad_bound in [(10.0, 1.0), (1.0, 3.0)]:
        model = OptimisticOMDRegressor(
            features=list("abcde"), diameter=diameter, grad_bound=grad_bound, fit_intercept=False, adaptive_diameter=False
        )
        preds = model.observe_many(Z, Y)
        ref_preds, ref_played = reference_omd(Z, Y, diameter, grad_bound)
        np.testing.assert_allclose(preds, ref_preds, rtol=0, atol=1e-12)


def test_first_round_is_plain_gradient_descent_from_zero():
    x, y = np.array([0.1, 0.2]), 0.3  # small enough that the step stays inside the ball
    xhat, hint, V, played = np.zeros(2), np.zeros(2), np.zeros(1), np.empty(2)
    pred = K.omd_update_one(xhat, hint, V, 0, x, y, 10.0, 1.0, 1.0, played)
    eta = 10.0 / np.sqrt(1.0 + 4.0)
    assert pred == 0.0
    np.testing.assert_allclose(xhat, eta * y * x)  # -eta * g with g = (0 - y) x
    np.testing.assert_array_equal(hint, -y * x)
    assert V[0] == pytest.approx(np.sum((y * x) ** 2))


def test_both_sequences_stay_in_the_ball():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(500, 4)) * 5
    Y = rng.normal(size=500) * 50
    _, played = reference_omd(Z, Y, diameter=2.0, grad_bound=0.1)
    xhat, hint, V, w = np.zeros(4), np.zeros(4), np.zeros(1), np.empty(4)
    for t in range(500):
        K.omd_update_one(xhat, hint, V, 0, Z[t], Y[t], 2.0, 0.1, 1.0, w)
        assert np.linalg.norm(w) <= 1.0 + 1e-12 and np.linalg.norm(xhat) <= 1.0 + 1e-12
    assert np.all(np.linalg.norm(played, axis=1) <= 1.0 + 1e-12)


def test_predict_changes_nothing_and_equals_the_next_played_prediction():
    Z, Y = spec_stream()
    model = OptimisticOMDRegressor(features=list("abcde"))
    model.observe_many(Z[:100], Y[:100])
    before = model.state_dict()
    predicted = model.predict_many(Z[100:101])
    assert model.state_dict()["variation"] == before["variation"]
    served = model.observe_many(Z[100:101], Y[100:101])
    np.testing.assert_array_equal(predicted, served)


def test_checkpoint_through_npz_then_continue_is_bit_identical():
    Z, Y = spec_stream()
    straight = OptimisticOMDRegressor(features=list("abcde"))
    straight.observe_many(Z[:1000], Y[:1000])
    buffer = io.BytesIO()
    np.savez(buffer, **straight.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        state = {k: saved[k] if saved[k].ndim else saved[k].item() for k in saved.files}
    restored = OptimisticOMDRegressor()
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.observe_many(Z[1000:], Y[1000:]), straight.observe_many(Z[1000:], Y[1000:]))
    assert restored.n_updates == 2000


def test_same_events_give_the_same_state_however_batched():
    Z, Y = spec_stream()
    whole = OptimisticOMDRegressor(features=list("abcde"))
    whole.observe_many(Z, Y)
    split = OptimisticOMDRegressor(features=list("abcde"))
    for start in range(0, 2000, 333):
        split.observe_many(Z[start : start + 333], Y[start : start + 333])
    np.testing.assert_array_equal(whole.weights, split.weights)
