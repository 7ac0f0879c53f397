"""The feature policy of the River API: without declared features a model grows on a
new key (as if the feature had been 0 so far) and counts an absent key as 0, as River
does; ``strict=True`` refuses any change; nothing is silent."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from regretflow.learners import AnalyticRidgeClassifier, GroupwiseRegressor, OnlineNeuralRegressor, OnlineRidge, OptimisticOMDRegressor
from tests.learners.test_learner_guards import assert_states_identical


def stream(n: int, seed: int = 0):
    """Dicts with keys a, b, and c from row 200 on; y depends strongly on c."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        x = {"a": rng.normal(), "b": rng.normal()}
        if t >= 200:
            x["c"] = rng.normal()
        yield x, 0.5 * x["a"] - x["b"] + 3.0 * x.get("c", 0.0)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_ridge_grown_on_a_new_key_equals_ridge_that_saw_it_as_zero(fit_intercept):
    grown = OnlineRidge(fit_intercept=fit_intercept)
    declared = OnlineRidge(features=["a", "b", "c"], fit_intercept=fit_intercept)
    for x, y in stream(400):
        grown.learn_one(x, y)
        declared.learn_one(x, y)
    assert grown.feature_names_in_ == ["a", "b", "c"]
    np.testing.assert_allclose(grown.weights, declared.weights, rtol=1e-10, atol=1e-12)


def test_a_late_informative_key_is_learned():
    model = OnlineRidge()
    errors = []
    for t, (x, y) in enumerate(stream(600)):
        if t >= 400:
            errors.append(abs(model.predict_one(x) - y))
        model.learn_one(x, y)
    assert np.mean(errors) < 0.05  # ignoring c would leave |3c| ~ 2.4 on average


def test_omd_grown_on_a_new_key_equals_omd_that_saw_it_as_zero():
    grown = OptimisticOMDRegressor()
    declared = OptimisticOMDRegressor(features=["a", "b", "c"])
    for x, y in stream(400):
        grown.learn_one(x, y)
        declared.learn_one(x, y)
    assert np.array_equal(grown.weights, declared.weights)


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor])
def test_learn_many_grows_on_new_columns_and_fills_absent_ones_with_zero(cls):
    rows = list(stream(400))
    by_frames, by_dicts = cls(), cls()
    for start in range(0, 400, 50):
        chunk = rows[start : start + 50]
        frame = pd.DataFrame([x for x, _ in chunk])
        if start == 300:
            frame = frame.drop(columns=["a"])  # absent: 0
            chunk = [({k: v for k, v in x.items() if k != "a"}, y) for x, y in chunk]
        by_frames.learn_many(frame, pd.Series([y for _, y in chunk]))
        for x, y in chunk:
            by_dicts.learn_one(x, y)
    np.testing.assert_allclose(by_frames.weights, by_dicts.weights, rtol=1e-9, atol=1e-12)
    probe = pd.DataFrame({"b": [1.0], "c": [2.0]})  # no "a": it counts as 0
    assert by_frames.predict_many(probe)[0] == pytest.approx(by_frames.predict_one({"b": 1.0, "c": 2.0}))


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor, OnlineNeuralRegressor])
@pytest.mark.parametrize("change", ["new key", "missing key"])
def test_strict_refuses_any_change_of_keys_and_keeps_its_state(cls, change):
    model = cls(strict=True)
    for x, y in stream(50):
        model.learn_one(x, y)
    before = model.state_dict()
    x = {"a": 1.0, "b": 2.0, "z": 3.0} if change == "new key" else {"a": 1.0}
    for call in (
        lambda: model.learn_one(x, 1.0),
        lambda: model.predict_one(x),
        lambda: model.learn_many(pd.DataFrame([x]), pd.Series([1.0])),
        lambda: model.predict_many(pd.DataFrame([x])),
    ):
        with pytest.raises(ValueError, match="strict=True"):
            call()
    assert_states_identical(before, model.state_dict())


@pytest.mark.parametrize(
    "make",
    [lambda: GroupwiseRegressor(base=OnlineRidge())],  # ridge, OMD, the network, groupwise and analytic ridge grow
    ids=["groupwise-custom-base"],
)
def test_a_learner_that_cannot_grow_warns_once_about_each_key_it_ignores(make):
    model = make()
    y = 1 if isinstance(model, AnalyticRidgeClassifier) else 1.0
    model.learn_one({"a": 1.0, "b": 2.0}, y)
    with pytest.warns(UserWarning, match=r"ignores features it was not built with: \['z'\]"):
        model.learn_one({"a": 1.0, "b": 2.0, "z": 1.0}, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn_one({"a": 1.0, "b": 2.0, "z": 1.0}, y)  # already said
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        model.learn_many(pd.DataFrame({"a": [1.0], "b": [2.0], "w": [3.0]}), pd.Series([y]))


def test_neural_first_dict_key_order_does_not_change_the_model():
    one, other = OnlineNeuralRegressor(width=4), OnlineNeuralRegressor(width=4)
    one.learn_one({"a": 1.0, "b": 2.0}, 1.0)
    other.learn_one({"b": 2.0, "a": 1.0}, 1.0)
    assert_states_identical(one.state_dict(), other.state_dict())


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor, OnlineNeuralRegressor])
def test_declared_features_ignore_unknown_keys_with_one_warning_and_never_grow(cls):
    model = cls(features=["a"])
    with pytest.warns(UserWarning, match=r"ignores features it was not built with: \['z'\]"):
        model.learn_one({"a": 1.0, "z": 5.0}, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn_one({"a": 1.0, "z": 5.0}, 2.0)  # already said
        model.predict_one({"a": 1.0, "z": 5.0})
    assert model.feature_names_in_ == ["a"]


def test_neural_grows_a_column_that_starts_as_if_its_feature_had_been_zero():
    model = OnlineNeuralRegressor(width=6, seed=3)  # OGD: a zero error moves nothing
    rows = list(stream(400))
    for x, y in rows[:200]:
        model.learn_one(x, y)
    before = model.state_dict()
    probe = {"a": 0.3, "b": -1.2}
    expected = model.predict_one(probe)
    model.learn_one({**probe, "c": 0.0}, expected)  # grows; zero error and a zero input: no step moves the old weights
    assert model.feature_names_in_ == ["a", "b", "c"] and model.n_inputs == 3
    assert model.predict_one({**probe, "c": 0.0}) == expected == model.predict_one(probe)
    theta, theta0 = model.state_dict()["theta"], model.state_dict()["theta0"]
    new_column = slice(2, 6 * 3, 3)  # W_1 is width x n_in, row-major: column 2 of each row
    assert np.array_equal(theta[new_column], theta0[new_column]) and np.all(theta[new_column] != 0.0)
    assert not np.any(model.state_dict()["first_moment"][new_column])
    assert before["theta"].shape[0] + 6 == theta.shape[0]


def test_neural_learns_a_late_informative_key():
    grown, fixed = OnlineNeuralRegressor(width=16, seed=0), OnlineNeuralRegressor(features=["a", "b"], width=16, seed=0)
    errors: dict[str, list[float]] = {"grown": [], "fixed": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the declared model warns about c once
        for t, (x, y) in enumerate(stream(3000)):
            for name, model in (("grown", grown), ("fixed", fixed)):
                if t >= 2500:
                    errors[name].append(abs(model.predict_one(x) - y))
                model.learn_one(x, y)
    assert np.mean(errors["grown"]) < 0.5 * np.mean(errors["fixed"])


def test_neural_growth_is_deterministic_and_survives_a_checkpoint():
    rows = list(stream(300))
    one, two = OnlineNeuralRegressor(width=4, seed=1), OnlineNeuralRegressor(width=4, seed=1)
    for x, y in rows[:250]:
        one.learn_one(x, y)
    two.load_state_dict(one.state_dict())
    for x, y in rows[250:]:
        one.learn_one(x, y)
        two.learn_one({k: x[k] for k in reversed(list(x))}, y)  # key order does not matter
    assert_states_identical(one.state_dict(), two.state_dict())


@pytest.mark.parametrize("cls", [OnlineRidge, OptimisticOMDRegressor, OnlineNeuralRegressor])
def test_observe_many_on_frames_follows_the_feature_policy(cls):
    rows = list(stream(400))
    model = cls()
    for start in (0, 200):  # c appears in the second frame
        frame = pd.DataFrame([x for x, _ in rows[start : start + 200]])
        model.observe_many(frame, np.array([y for _, y in rows[start : start + 200]]))
    assert model.feature_names_in_ == ["a", "b", "c"]


def test_observe_many_without_any_features_says_so():
    with pytest.raises(ValueError, match="features are unknown"):
        OnlineRidge().observe_many(np.ones((2, 2)), np.ones(2))
