"""Online ridge: kernels against a numpy reference, exactness, stable forgetting, state."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regretflow.learners import OnlineRidge
from regretflow.learners import ridge_kernels as K


def reference_rls(X, y, lam, beta=1.0, trace_cap=None):
    """Plain numpy recursive least squares with the same constant-trace forgetting rule."""
    d = X.shape[1]
    P = np.eye(d) / lam
    w = np.zeros(d)
    cap = d / lam if trace_cap is None else trace_cap
    preds = []
    for x, t in zip(X, y):
        preds.append(w @ x)
        Px = P @ x
        xPx = x @ Px
        b = beta if beta < 1 and np.trace(P - np.outer(Px, Px) / (1 + xPx)) / beta <= cap else 1.0
        k = Px / (b + xPx)
        w = w + k * (t - w @ x)
        P = (P - np.outer(k, Px)) / b
        P = np.triu(P) + np.triu(P, 1).T
    return np.array(preds), w, P


def test_kernel_matches_numpy_reference():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 6)), rng.normal(size=300)
    for beta in (1.0, 0.97):
        model = OnlineRidge(features=[f"f{i}" for i in range(6)], lam=0.5, forgetting=beta, fit_intercept=False)
        preds = model.observe_many(X, y)
        ref_preds, ref_w, ref_P = reference_rls(X, y, 0.5, beta)
        np.testing.assert_allclose(preds, ref_preds, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.weights, ref_w, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.state_dict()["P"], ref_P, rtol=0, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 8), lam=st.floats(0.05, 10.0), seed=st.integers(0, 10_000))
def test_weights_equal_batch_ridge_solution(n, d, lam, seed):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    model = OnlineRidge(features=[str(i) for i in range(d)], lam=lam, fit_intercept=False)
    model.observe_many(X, y)
    exact = np.linalg.solve(lam * np.eye(d) + X.T @ X, X.T @ y)
    np.testing.assert_allclose(model.weights, exact, rtol=1e-9, atol=1e-9)


def test_split_batches_give_identical_bits():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(100, 4)), rng.normal(size=100)
    a, b = OnlineRidge(features=list("abcd")), OnlineRidge(features=list("abcd"))
    a.observe_many(X, y)
    for lo in range(0, 100, 7):
        b.observe_many(X[lo : lo + 7], y[lo : lo + 7])
    assert a.state_dict()["P"].tobytes() == b.state_dict()["P"].tobytes()
    assert a.weights.tobytes() == b.weights.tobytes()


def test_forgetting_stays_bounded_where_plain_rls_winds_up():
    # one direction is never excited: plain RLS with forgetting divides P by beta every
    # step and overflows; the constant-trace rule keeps it bounded.
    n, beta = 200_000, 0.99
    rng = np.random.default_rng(3)
    X = np.zeros((n, 3))
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = 1.0
    y = 2.0 * X[:, 0] + 1.0 + 0.01 * rng.normal(size=n)
    model = OnlineRidge(features=["a", "b", "c"], lam=1.0, forgetting=beta, fit_intercept=False)
    with np.errstate(all="ignore"):
        # the same kernel with the cap disabled is plain RLS with forgetting
        P, w, out = np.eye(3), np.zeros(3), np.empty(20_000)
        K.ridge_observe(P, w, X[:20_000], y[:20_000], beta, np.inf, out)
    assert not np.isfinite(P).all() or np.abs(P).max() > 1e80, "plain RLS should wind up"
    model.observe_many(X, y)
    P = model.state_dict()["P"]
    assert np.isfinite(P).all() and np.trace(P) <= 3.0 + 1e-9
    np.testing.assert_allclose(model.weights[:2], [2.0, 1.0], atol=0.01)


def test_forgetting_tracks_a_drifting_target():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 2))
    y = np.where(np.arange(4000) < 2000, X @ [1.0, -1.0], X @ [-1.0, 1.0])
    forget = OnlineRidge(features=["a", "b"], forgetting=0.98, fit_intercept=False)
    keep = OnlineRidge(features=["a", "b"], fit_intercept=False)
    forget.observe_many(X, y)
    keep.observe_many(X, y)
    assert np.abs(forget.weights - [-1.0, 1.0]).max() < 0.05
    assert np.abs(keep.weights - [-1.0, 1.0]).max() > 0.5


def test_state_round_trips_through_npz_without_pickle():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    model = OnlineRidge(features=["a", "b", "c"], lam=2.0, fit_intercept=True)
    model.observe_many(X, y)
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in model.state_dict().items() if isinstance(v, np.ndarray)})
    buf.seek(0)
    loaded = dict(np.load(buf, allow_pickle=False))
    loaded["n_updates"] = model.n_updates
    clone = OnlineRidge(lam=2.0, fit_intercept=True)
    clone.load_state_dict(loaded)
    X2, y2 = rng.normal(size=(20, 3)), rng.normal(size=20)
    assert model.observe_many(X2, y2).tobytes() == clone.observe_many(X2, y2).tobytes()


def test_load_rejects_wrong_shapes():
    model = OnlineRidge(features=["a", "b"])
    state = model.state_dict()
    state["P"] = np.eye(4)
    with pytest.raises(ValueError, match="shape"):
        OnlineRidge(features=["a", "b"]).load_state_dict(state)


def test_river_api_dicts_and_dataframes():
    import pandas as pd

    model = OnlineRidge(lam=1e-6, fit_intercept=True)
    for x in range(1, 30):
        model.learn_one({"x": float(x)}, 2.0 * x + 1.0)
    assert model.predict_one({"x": 100.0}) == pytest.approx(201.0, abs=1e-3)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    assert list(model.predict_many(frame).round(3)) == [3.0, 5.0]
