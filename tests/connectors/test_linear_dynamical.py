"""The linear dynamical system simulator: official systems, noise, steady state, events."""

from __future__ import annotations

import numpy as np
import pytest

from regretflow.connectors.simulators.linear_dynamical import (
    OFFICIAL_BUDGET_ACTIONS,
    TEST_CASES,
    LinearDynamicalSystem,
    test_case,
)


def reference_rewards(name, seed, arms):
    """The official environment's equations in plain numpy, fed the same noise stream."""
    tc = TEST_CASES[name]
    A, B, C, D = (np.array(tc[k]) for k in "ABCD")
    sigma = tc["noise_sigma"]
    rng = np.random.default_rng(seed)
    x = np.zeros(3)
    out = []
    for k in arms:
        u = OFFICIAL_BUDGET_ACTIONS[k]
        z = rng.standard_normal(6)
        out.append(np.ones(3) @ (C @ x + D @ u + sigma * z[3:]))
        x = A @ x + B @ u + sigma * z[:3]
    return np.array(out)


@pytest.mark.parametrize("name", ["synthetic", "real-data"])
def test_step_matches_the_numpy_system_equations(name):
    sim = test_case(name, seed=5)
    arms = np.random.default_rng(0).integers(0, 6, size=500)
    got = np.array([sim.step(int(k)) for k in arms])
    assert np.allclose(got, reference_rewards(name, 5, arms), rtol=1e-12, atol=1e-12)
    assert sim.t == 500


def test_synthetic_steady_state_matches_the_spec():
    sim = test_case("synthetic")
    assert np.allclose(sim.steady_state_gain, [0.5625, 0.5, 0.111111], atol=1e-6)
    assert np.allclose(sim.steady_state_values, [0.36111, 0.55556, 0.39236, 0.78125, 0.61806, 0.81250], atol=1e-5)
    assert sim.best_action == 5 and sim.best_value == pytest.approx(0.8125)
    assert np.allclose(sim.omega, [1, 0, 0.1]) and np.allclose(sim.theta, [0, 0.5, 0.1])
    myopic = int(np.argmax(sim.actions @ sim.theta))
    assert myopic == 1 and sim.pseudo_regrets[myopic] == pytest.approx(0.2569, abs=1e-4)


def test_real_data_steady_state_matches_the_spec():
    sim = test_case("real-data")
    assert np.allclose(sim.steady_state_gain, [0.251525, -0.036298, 0.106121], atol=1e-6)
    assert np.allclose(sim.steady_state_values, [0.08797, 0.01676, 0.23188, 0.08946, 0.30459, 0.23338], atol=1e-5)
    assert sim.best_action == 4 and sim.best_value == pytest.approx(0.304586, abs=1e-6)
    assert sim.spectral_radius == pytest.approx(0.666891, abs=1e-6)
    myopic = int(np.argmax(sim.actions @ sim.theta))
    assert myopic == 3 and sim.pseudo_regrets[myopic] == pytest.approx(0.2151, abs=1e-4)
    expert = sim.expert_action(TEST_CASES["real-data"]["expert"])
    assert np.allclose(expert, [0.0031, 0.4969, 1.0], atol=1e-4)
    assert sim.best_value - sim.steady_state_value(expert) == pytest.approx(0.2157, abs=1e-4)


def test_holding_an_action_settles_at_its_steady_state_value():
    sim = test_case("real-data", seed=2)
    for k in (0, 4):
        ys = np.array([sim.step(k) for _ in range(20_000)])
        assert abs(ys[1000:].mean() - sim.steady_state_values[k]) < 1e-3


def test_noise_is_seeded_and_drawn_on_the_fly():
    a = [test_case("synthetic", seed=1).step(3)]
    sims = [test_case("synthetic", seed=s) for s in (1, 1, 2)]
    runs = [np.array([s.step(3) for _ in range(100)]) for s in sims]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    assert a[0] == runs[0][0]
    silent = test_case("synthetic", noise_sigma=0.0)
    ys = [silent.step(5) for _ in range(50)]
    assert ys[-1] == pytest.approx(0.8125, abs=1e-12)


def test_action_vectors_and_indices_are_interchangeable_and_checked():
    a, b = test_case("synthetic", seed=4), test_case("synthetic", seed=4)
    assert a.step(2) == b.step(OFFICIAL_BUDGET_ACTIONS[2].tolist())
    with pytest.raises(ValueError, match="outside"):
        a.step(6)
    with pytest.raises(ValueError, match="entries"):
        a.step([1.0, 0.5])


def test_unstable_or_inconsistent_systems_are_rejected():
    with pytest.raises(ValueError, match="stable"):
        LinearDynamicalSystem(np.eye(2), np.eye(2), np.eye(2), np.eye(2), 0.1, actions=np.eye(2))
    with pytest.raises(ValueError, match="shapes"):
        LinearDynamicalSystem(np.zeros((2, 2)), np.eye(3), np.eye(2), np.eye(2), 0.1, actions=np.eye(2))


def test_events_alternate_decide_and_feedback_with_exact_steady_state_values():
    sim = test_case("real-data", seed=9)
    twin = test_case("real-data", seed=9)
    stream = sim.events(model="ads", rounds=5)
    seen = []
    for decide in stream:
        assert decide["kind"] == "decide" and decide["model"] == "ads"
        arm = len(seen) % 6
        feedback = stream.send(arm)
        assert feedback["kind"] == "feedback" and feedback["id"] == decide["id"]
        assert feedback["reward"] == twin.step(arm)
        assert feedback["expected_reward"] == pytest.approx(sim.steady_state_values[arm])
        assert feedback["best_expected_reward"] == sim.best_value
        seen.append(decide["id"])
    assert seen == [f"ads-{t}" for t in range(5)]


def test_events_refuse_to_advance_without_an_action():
    stream = test_case("synthetic").events(model="m")
    next(stream)
    with pytest.raises(ValueError, match="send"):
        next(stream)


def test_state_round_trip_through_npz_continues_the_same_rewards(tmp_path):
    sim = test_case("real-data", seed=3)
    for k in range(40):
        sim.step(k % 6)
    path = tmp_path / "sim.npz"
    np.savez(path, **sim.state_dict())
    with np.load(path, allow_pickle=False) as f:
        state = {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}
    copy = test_case("real-data", seed=123)
    copy.load_state_dict(state)
    assert [sim.step(k) for k in range(6)] == [copy.step(k) for k in range(6)]
    assert copy.t == sim.t == 46


def test_a_learner_driven_by_the_event_stream_sees_the_exact_pseudo_regret():
    from regretflow.learners.dynamical import DynLinUCB, SystemBounds

    sim = test_case("synthetic", seed=4)
    twin = test_case("synthetic", seed=4)
    bounds = SystemBounds.from_matrices(sim.A, sim.B, sim.C, sim.D, sim.noise_sigma)
    learner = DynLinUCB(sim.actions, bounds, 10**6, seed=2)
    reference = DynLinUCB(twin.actions, bounds, 10**6, seed=2)
    stream = sim.events(model="ads", rounds=3000)
    regret = 0.0
    for _decide in stream:
        arm, _ = learner.act()
        feedback = stream.send(learner.describe_action(arm))  # the answer carries the budget split
        learner.learn(None, arm, feedback["reward"])
        regret += feedback["best_expected_reward"] - feedback["expected_reward"]
    arms = []
    for _ in range(3000):
        arm, _ = reference.act()
        reference.learn(None, arm, twin.step(arm))
        arms.append(arm)
    assert regret == pytest.approx(twin.pseudo_regrets[arms].sum(), rel=1e-12)
    assert np.array_equal(learner.estimate, reference.estimate)
