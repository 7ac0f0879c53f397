"""OnlineNeuralRegressor: learning, determinism, projection, validation and state round-trips."""

from __future__ import annotations

import io

import numpy as np
import pytest

from regretflow.learners.neural import OnlineNeuralRegressor


def _stream(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.tanh(X @ np.array([1.0, -0.5, 0.25])) * 0.5 + 0.5
    return X, y


def _savez_round_trip(state):
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        return {key: archive[key] if archive[key].ndim else archive[key].item() for key in archive.files}


@pytest.mark.parametrize("optimizer,lr", [("ogd", 0.05), ("adabelief", 0.01), ("exadam", 0.003)])
@pytest.mark.parametrize("loss", ["squared", "kl"])
def test_prequential_loss_falls_with_every_optimizer_and_loss(optimizer, lr, loss):
    X, y = _stream(1500)
    model = OnlineNeuralRegressor(width=16, optimizer=optimizer, learning_rate=lr, loss=loss, seed=0)
    preds = model.observe_many(X, y)
    first, last = np.mean((preds[:200] - y[:200]) ** 2), np.mean((preds[-200:] - y[-200:]) ** 2)
    assert last < 0.5 * first
    if loss == "kl":
        assert np.all((preds > 0) & (preds < 1))


def test_same_seed_and_stream_give_bit_identical_weights():
    X, y = _stream()
    a = OnlineNeuralRegressor(width=8, depth=2, optimizer="adabelief", learning_rate=0.01, seed=3)
    b = OnlineNeuralRegressor(width=8, depth=2, optimizer="adabelief", learning_rate=0.01, seed=3)
    a.observe_many(X, y)
    b.observe_many(X, y)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    c = OnlineNeuralRegressor(width=8, depth=2, optimizer="adabelief", learning_rate=0.01, seed=4)
    c.observe_many(X, y)
    assert not np.array_equal(a.parameters, c.parameters)


def test_weights_stay_in_the_projection_ball_after_every_step():
    X, y = _stream(200)
    model = OnlineNeuralRegressor(width=8, optimizer="ogd", learning_rate=0.5, projection_radius=0.3, seed=0)
    model.allocate(3, 3)
    for x, target in zip(X, y):
        model.learn_item(x, 0, target)
        assert model.distance_from_init() <= 0.3 + 1e-12


def test_state_round_trip_through_savez_continues_bit_for_bit():
    X, y = _stream(200)
    model = OnlineNeuralRegressor(width=8, optimizer="exadam", learning_rate=0.003, perturbation=0.5, seed=1)
    model.observe_many(X[:100], y[:100])
    restored = OnlineNeuralRegressor(width=8, optimizer="exadam", learning_rate=0.003, perturbation=0.5, seed=99)
    restored.load_state_dict(_savez_round_trip(model.state_dict()))
    np.testing.assert_array_equal(model.observe_many(X[100:], y[100:]), restored.observe_many(X[100:], y[100:]))
    np.testing.assert_array_equal(model.parameters, restored.parameters)


def test_river_api_learns_from_dicts_and_keeps_feature_order():
    model = OnlineNeuralRegressor(width=8, learning_rate=0.05, seed=0)
    assert model.predict_one({"a": 1.0, "b": 2.0}) == 0.0  # nothing seen yet
    for i in range(200):
        model.learn_one({"b": 0.0, "a": float(i % 2)}, float(i % 2))
    assert model.predict_one({"a": 1.0, "b": 0.0}) > model.predict_one({"a": 0.0, "b": 0.0}) + 0.5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"activation": "sigmoid"}, "activation"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"exadam_variant": "v1"}, "exadam_variant"),
        ({"projection_radius": 0.0}, "projection_radius"),
        ({"depth": 0}, "depth"),
    ],
)
def test_bad_parameters_are_named_in_the_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineNeuralRegressor(features=["x"], **kwargs)


def test_kl_loss_rejects_targets_outside_unit_interval_without_touching_state():
    model = OnlineNeuralRegressor(features=["x"], loss="kl", width=4)
    before = model.parameters
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.learn_one({"x": 1.0}, 2.0)
    np.testing.assert_array_equal(model.parameters, before)
    assert model.n_updates == 0


@pytest.mark.parametrize("optimizer", ["ogd", "adabelief"])
def test_nonfinite_state_looks_at_what_a_step_wrote_and_only_after_one(monkeypatch, optimizer):
    """The engine asks every micro-batch: the weights and moments are looked at after a step (or a
    restore), not between steps; a step that leaves NaN is reported until the state is replaced."""
    from regretflow.learners import neural_kernels as NK

    model = OnlineNeuralRegressor(features=["a", "b"], width=4, optimizer=optimizer)
    assert model.nonfinite_state() is None
    model.learn_one({"a": 1.0, "b": 2.0}, 0.5)
    assert model.nonfinite_state() is None and not model._unchecked
    real = NK.learn_one

    def step_gone_wrong(theta, *args):
        loss = real(theta, *args)
        theta[3] = np.nan
        return loss

    monkeypatch.setattr(NK, "learn_one", step_gone_wrong)
    model.predict_one({"a": 1.0, "b": 2.0})  # no step, nothing to look at
    assert not model._unchecked
    model.learn_one({"a": 1.0, "b": 2.0}, 0.5)
    assert model.nonfinite_state() == "_theta"
    assert model.nonfinite_state() == "_theta"
    monkeypatch.setattr(NK, "learn_one", real)
    fresh = OnlineNeuralRegressor(features=["a", "b"], width=4, optimizer=optimizer)
    fresh.load_state_dict(OnlineNeuralRegressor(features=["a", "b"], width=4, optimizer=optimizer).state_dict())
    assert fresh._unchecked and fresh.nonfinite_state() is None
