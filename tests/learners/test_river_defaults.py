"""The defaults a River user expects: an intercept in the regressors, an OMD ball that
does not cap standardised data, and checkpoints that keep the behaviour they were saved
with whatever the new defaults."""

from __future__ import annotations

import numpy as np
import pytest
from river import compose, preprocessing

from regretflow.learners import OnlineRidge, OptimisticOMDRegressor
from tests.learners.test_learner_guards import assert_states_identical


def shifted_stream(n: int, d: int = 8, offset: float = 8.0, seed: int = 0) -> tuple[list[dict[str, float]], list[float]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=3.0, scale=2.0, size=(n, d))
    y = offset + (X - 3.0) @ rng.normal(size=d) / np.sqrt(d) + 0.1 * rng.normal(size=n)
    return [{f"x{i}": float(v) for i, v in enumerate(row)} for row in X], y.tolist()


def late_mae(model, dicts, targets, tail: int = 500) -> float:
    errors = []
    for t, (x, y) in enumerate(zip(dicts, targets, strict=True)):
        if t >= len(dicts) - tail:
            errors.append(abs(model.predict_one(x) - y))
        model.learn_one(x, y)
    return float(np.mean(errors))


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor])
def test_behind_a_standard_scaler_the_default_intercept_fits_the_mean(cls):
    dicts, targets = shifted_stream(3000)
    with_default = late_mae(compose.Pipeline(preprocessing.StandardScaler(), cls()), dicts, targets)
    without = late_mae(compose.Pipeline(preprocessing.StandardScaler(), cls(fit_intercept=False)), dicts, targets)
    assert with_default < 0.2 < 4.0 < without  # without an intercept the mean (8) is out of reach


def test_the_adaptive_ball_grows_to_what_the_data_needs_and_no_further():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(4000, 16))
    w = rng.normal(size=16) / 4.0
    for offset, grown in ((0.0, False), (30.0, True)):
        y = offset + Z @ w + 0.1 * rng.normal(size=4000)
        adaptive = OptimisticOMDRegressor(features=[f"f{i}" for i in range(16)])
        fixed = OptimisticOMDRegressor(features=[f"f{i}" for i in range(16)], adaptive_diameter=False)
        preds, fixed_preds = adaptive.observe_many(Z, y), fixed.observe_many(Z, y)
        assert (adaptive.current_diameter > 10.0) == grown
        assert adaptive.current_diameter < 4 * 2 * np.hypot(offset, np.linalg.norm(w)) + 10.0  # not runaway
        late = np.mean(np.abs(preds[-1000:] - y[-1000:]))
        assert late < 0.2
        if not grown:  # the ball was big enough: exactly the fixed-ball algorithm
            assert preds.tobytes() == fixed_preds.tobytes()
        else:
            assert np.mean(np.abs(fixed_preds[-1000:] - y[-1000:])) > 10.0


def test_adaptive_ball_does_not_depend_on_batching():
    rng = np.random.default_rng(2)
    Z, y = rng.normal(size=(600, 4)), 20.0 + rng.normal(size=600)
    whole, split = OptimisticOMDRegressor(features=list("abcd")), OptimisticOMDRegressor(features=list("abcd"))
    whole.observe_many(Z, y)
    for start in range(0, 600, 7):
        split.observe_many(Z[start : start + 7], y[start : start + 7])
    assert_states_identical(whole.state_dict(), split.state_dict())


def old_state(model) -> dict:
    """A state as 0.1.0 wrote it: no intercept or ball flags."""
    return {k: v for k, v in model.state_dict().items() if k not in ("fit_intercept", "adaptive_diameter", "diameter")}


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor])
def test_a_state_saved_without_an_intercept_loads_as_a_model_without_one(cls):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(200, 3)), 15.0 + rng.normal(size=200)
    params = {"adaptive_diameter": False} if cls is OptimisticOMDRegressor else {}
    saved = cls(features=list("abc"), fit_intercept=False, **params)
    saved.observe_many(X, y)
    restored = cls(features=list("abc"))  # today's defaults: intercept (and, for OMD, an adaptive ball)
    restored.load_state_dict(old_state(saved))
    assert restored.weights.shape == (3,)
    X2, y2 = rng.normal(size=(100, 3)), 15.0 + rng.normal(size=100)
    assert saved.observe_many(X2, y2).tobytes() == restored.observe_many(X2, y2).tobytes()


def test_a_state_saved_with_an_intercept_keeps_it_under_any_constructor_setting():
    saved = OnlineRidge(features=["a"])
    saved.learn_one({"a": 1.0}, 5.0)
    restored = OnlineRidge(features=["a"], fit_intercept=False)
    restored.load_state_dict(saved.state_dict())
    assert restored.predict_one({"a": 2.0}) == saved.predict_one({"a": 2.0})
    assert_states_identical(saved.state_dict(), restored.state_dict())
