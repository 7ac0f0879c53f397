"""NeuralSquareCB / NeuralFastCB and the linear baselines: contract, determinism, state, learning."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regretflow.learners.contextual_baselines import EpsilonGreedy, LinUCBDisjoint
from regretflow.learners.contract import check_state
from regretflow.learners.neural_bandit import NeuralFastCB, NeuralSquareCB

BANDITS = [NeuralSquareCB, NeuralFastCB]


def _contexts(n, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _best(x):
    return int(x[0] > 0) + int(x[1] > 0)


def _play(bandit, X, actions=None):
    chosen, probs = [], []
    for t, x in enumerate(X):
        a, p = bandit.act(x, None if actions is None else actions[t])
        bandit.learn(x, a, float(a == _best(x)), p[a], None if actions is None else actions[t])
        chosen.append(a)
        probs.append(p)
    return np.array(chosen), np.array(probs)


def _savez_round_trip(state):
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        return {key: archive[key] if archive[key].ndim else archive[key].item() for key in archive.files}


@pytest.mark.parametrize("cls", BANDITS)
def test_same_seed_and_stream_give_identical_decisions_and_state(cls):
    X = _contexts(150)
    a = cls(n_actions=3, width=8, learning_rate=0.05, perturbation=0.3, seed=5)
    b = cls(n_actions=3, width=8, learning_rate=0.05, perturbation=0.3, seed=5)
    ca, pa = _play(a, X)
    cb, pb = _play(b, X)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(pa, pb)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key])


@pytest.mark.parametrize("cls", BANDITS)
def test_checkpoint_restore_mid_stream_continues_bit_for_bit(cls):
    X = _contexts(200, seed=1)
    straight = cls(n_actions=3, width=8, optimizer="adabelief", learning_rate=0.01, perturbation=0.2, seed=2)
    _play(straight, X[:100])
    state = _savez_round_trip(straight.state_dict())
    check_state(state, "test")
    restored = cls(n_actions=3, width=8, optimizer="adabelief", learning_rate=0.01, perturbation=0.2, seed=77)
    restored.load_state_dict(state)
    c1, p1 = _play(straight, X[100:])
    c2, p2 = _play(restored, X[100:])
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(straight.oracle.parameters, restored.oracle.parameters)


@pytest.mark.parametrize("cls", BANDITS)
def test_learns_a_nonlinear_policy_far_better_than_uniform(cls):
    X = _contexts(3000, d=2, seed=3)
    bandit = cls(n_actions=3, width=16, optimizer="adabelief", learning_rate=0.01, seed=0)
    chosen, _ = _play(bandit, X)
    hits = np.mean(chosen[-1000:] == np.array([_best(x) for x in X[-1000:]]))
    assert hits > 0.8  # uniform play: 1/3


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**31 - 1), st.sampled_from(BANDITS))
def test_probabilities_are_non_negative_and_sum_to_one(k, d, seed, cls):
    bandit = cls(n_actions=k, width=4, learning_rate=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        x = rng.normal(size=d) * 10.0
        a, p = bandit.act(x)
        assert p.shape == (k,)
        assert np.all(p >= 0.0)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert 0 <= a < k and p[a] > 0
        bandit.learn(x, a, float(rng.random() < 0.5), p[a])


@pytest.mark.parametrize("cls", BANDITS)
def test_first_decision_is_uniform_under_the_vw_schedule(cls):
    _, p = cls(n_actions=4, width=4).act(np.ones(3))
    np.testing.assert_allclose(p, np.full(4, 0.25))


@pytest.mark.parametrize("cls", BANDITS)
def test_with_zero_learning_rate_probabilities_are_a_function_of_the_context(cls):
    bandit = cls(n_actions=3, width=8, learning_rate=0.0, gamma_schedule="fixed", gamma0=50.0, seed=1)
    x, other = np.array([0.3, -1.0]), np.array([2.0, 0.5])
    _, first = bandit.act(x)
    for _ in range(5):
        a, p = bandit.act(other)
        bandit.learn(other, a, 1.0, p[a])
    _, again = bandit.act(x)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("cls", BANDITS)
def test_perturbation_off_gives_identical_learners_from_identical_initial_weights(cls):
    X = _contexts(50, seed=4)
    a = cls(n_actions=3, width=8, seed=9)
    b = cls(n_actions=3, width=8, seed=9)
    _play(a, X)
    _play(b, X)
    np.testing.assert_array_equal(a.oracle.parameters, b.oracle.parameters)
    c = cls(n_actions=3, width=8, seed=9, perturbation=0.5)
    _play(c, X)
    assert not np.array_equal(a.oracle.parameters, c.oracle.parameters)


def test_late_feedback_uses_the_perturbation_of_its_own_decision():
    X = _contexts(2, seed=6)
    on_time = NeuralSquareCB(n_actions=2, width=4, perturbation=0.5, seed=3)
    late = NeuralSquareCB(n_actions=2, width=4, perturbation=0.5, seed=3)
    a0, p0 = on_time.act(X[0])
    on_time.learn(X[0], a0, 1.0, p0[a0])
    decision = late.decide(X[0])
    b0, q0 = decision.action, decision.probabilities
    late.predict_rewards(X[1])  # another decision's predictions come in between (no state change)
    late.learn(X[0], b0, 1.0, q0[b0], ticket=decision.ticket)
    np.testing.assert_array_equal(on_time.oracle.parameters, late.oracle.parameters)


@pytest.mark.parametrize("cls", BANDITS)
def test_per_action_features_mode(cls):
    rng = np.random.default_rng(0)
    bandit = cls(width=8, optimizer="adabelief", learning_rate=0.02, seed=0)
    hits = 0
    for t in range(1500):
        actions = rng.normal(size=(4, 3))
        a, p = bandit.act(None, actions)
        best = int(np.argmax(actions[:, 0] ** 2))  # nonlinear in the action's features
        bandit.learn(None, a, float(a == best), p[a], actions)
        hits += (a == best) if t >= 1000 else 0
    assert hits / 500 > 0.4  # uniform: 0.25
    with pytest.raises(ValueError, match="per-action features"):
        bandit.act(np.ones(3))


def test_bad_inputs_are_rejected_with_a_reason_and_leave_state_alone():
    bandit = NeuralFastCB(n_actions=3, width=4)
    x = np.ones(2)
    a, p = bandit.act(x)
    before = bandit.state_dict()
    for kwargs, match in [
        ({"action": 3}, "action"),
        ({"reward": float("nan")}, "reward"),
        ({"probability": 0.0}, "probability"),
    ]:
        args = {"action": a, "reward": 1.0, "probability": p[a]} | kwargs
        with pytest.raises(ValueError, match=match):
            bandit.learn(x, args["action"], args["reward"], args["probability"])
    with pytest.raises(ValueError, match="features"):
        bandit.act(np.ones(5))
    after = bandit.state_dict()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    with pytest.raises(ValueError, match="n_actions"):
        NeuralSquareCB().act(np.ones(2))


@pytest.mark.parametrize("cls", BANDITS)
def test_gauges_are_the_declared_ones_and_exploration_cost_obeys_its_bound(cls):
    bandit = cls(n_actions=5, width=8, learning_rate=0.05, gamma_schedule="fixed", gamma0=40.0, seed=0)
    X = _contexts(50, d=3)
    _play(bandit, X)
    gauges = bandit.gauges()
    assert set(gauges) == set(cls.GAUGES)
    assert all(isinstance(v, float) and np.isfinite(v) for v in gauges.values())
    assert gauges["gamma"] == 40.0
    assert 0.0 <= gauges["exploration_cost"] <= 4 / 40.0 + 1e-12
    assert gauges["weight_distance"] > 0.0


def test_fastcb_observed_loss_gauge_counts_one_minus_reward():
    bandit = NeuralFastCB(n_actions=2, width=4)
    for r in (1.0, 0.0, 0.25):
        a, p = bandit.act(np.ones(2))
        bandit.learn(np.ones(2), a, r, p[a])
    assert bandit.gauges()["observed_loss_cumulative"] == pytest.approx(1.75)


# -- baselines -----------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: LinUCBDisjoint(n_actions=3, alpha=0.5), lambda: EpsilonGreedy(n_actions=3, epsilon=0.1, seed=4)])
def test_linear_baselines_are_deterministic_and_round_trip_their_state(make):
    rng = np.random.default_rng(0)
    X = np.hstack([np.ones((300, 1)), rng.normal(size=(300, 2))])
    a, b = make(), make()
    for x in X[:150]:
        for bandit in (a, b):
            act, p = bandit.act(x)
            assert p.sum() == pytest.approx(1.0) and np.all(p >= 0)
            bandit.learn(x, act, float(act == int(x[1] > 0)), p[act])
    restored = make()
    restored.load_state_dict(_savez_round_trip(a.state_dict()))
    for x in X[150:]:
        results = [bandit.act(x) for bandit in (a, b, restored)]
        assert results[0][0] == results[1][0] == results[2][0]
        for bandit, (act, p) in zip((a, b, restored), results):
            bandit.learn(x, act, float(act == int(x[1] > 0)), p[act])
    np.testing.assert_array_equal(a.state_dict()["w"], restored.state_dict()["w"])


def test_linucb_arm_models_are_exact_ridge_solutions():
    rng = np.random.default_rng(1)
    bandit = LinUCBDisjoint(n_actions=2, alpha=1.0, lam=0.5)
    seen = {0: [], 1: []}
    for _ in range(60):
        x = rng.normal(size=3)
        a, p = bandit.act(x)
        r = float(rng.random())
        bandit.learn(x, a, r, p[a])
        seen[a].append((x, r))
    for arm, rows in seen.items():
        if not rows:
            continue
        A = np.array([x for x, _ in rows])
        y = np.array([r for _, r in rows])
        w = np.linalg.solve(0.5 * np.eye(3) + A.T @ A, A.T @ y)
        np.testing.assert_allclose(bandit.state_dict()["w"][arm], w, atol=1e-9)


def test_epsilon_greedy_with_per_action_features_uses_one_shared_model():
    bandit = EpsilonGreedy(epsilon=0.0)
    actions = np.array([[1.0, 0.0], [0.0, 1.0]])
    for _ in range(20):
        a, p = bandit.act(None, actions)
        bandit.learn(None, a, 1.0 if a == 1 else 0.0, p[a], actions)
        bandit.learn(None, 1, 1.0, 1.0, actions)
    assert bandit.act(None, actions)[0] == 1
    assert bandit.state_dict()["w"].shape == (1, 2)


@pytest.mark.parametrize("cls", BANDITS)
def test_contract_learn_before_decide_without_probability_any_reward_and_costs(cls):
    X = _contexts(200)
    by_reward, by_cost = cls(n_actions=3, width=8, seed=1), cls(n_actions=3, width=8, objective="cost", seed=1)
    for x in X:
        by_reward.learn(x, _best(x), -2.55)  # a logged stream: no decide, no probability, a reward outside [0, 1]
        by_cost.learn(x, _best(x), 2.55)
    assert by_reward.state_dict()["reward_low"] == -2.55
    a, b = by_reward.decide(X[0]), by_cost.decide(X[0])
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_allclose(a.predicted_rewards, -b.predicted_rewards)
    clipped = cls(n_actions=3, width=8, reward_range=(0.0, 1.0), seed=1)
    clipped.learn(X[0], 0, 7.0)
    assert clipped.state_dict()["reward_high"] == 1.0


@pytest.mark.parametrize("cls", BANDITS)
def test_state_written_before_the_reward_range_loads_as_zero_one_rewards(cls):
    bandit = cls(n_actions=3, width=8, seed=1)
    _play(bandit, _contexts(20))
    state = bandit.state_dict()
    old = {k: v for k, v in state.items() if k not in ("reward_low", "reward_high")}
    restored = cls(n_actions=3, width=8, seed=1)
    restored.load_state_dict(old)
    assert (restored.state_dict()["reward_low"], restored.state_dict()["reward_high"]) == (0.0, 1.0)


@pytest.mark.parametrize("cls", [NeuralSquareCB, NeuralFastCB])
def test_own_state_check_watches_every_learned_float_the_generic_walk_would(cls):
    """``nonfinite_state`` names the fields it watches instead of walking every attribute: a float the
    bandit, its reward scale or its exploration rule learns and the list forgets fails here."""
    import copy
    import inspect
    import math

    from regretflow.engine.runtime.shard import nonfinite_state as generic_walk
    from tests.conftest import trained_bandit

    bandit = trained_bandit(cls, width=8)
    assert bandit.nonfinite_state() is None and generic_walk(bandit) is None
    constants = set(inspect.signature(cls).parameters) | {"sign"}  # checked when set; sign is +-1 from the objective
    owners = {"": bandit, "_scale.": bandit._scale, "exploration.": bandit.exploration}
    watched = []
    for prefix, owner in owners.items():
        for name, value in vars(owner).items():
            assert not (isinstance(value, np.ndarray) and value.dtype.kind == "f"), f"{prefix}{name}: an array outside the network"
            if type(value) is float and name not in constants:
                watched.append(prefix + name)
                broken = copy.deepcopy(bandit)
                setattr(getattr(broken, prefix[:-1]) if prefix else broken, name, math.nan)
                assert broken.nonfinite_state() == prefix + name
                assert generic_walk(broken) is not None  # (the engine's check reports it too)
    assert sorted(watched) == sorted(cls._LEARNED_FLOATS)
    broken = copy.deepcopy(bandit)
    broken.oracle._theta[0] = math.inf
    broken.oracle._unchecked = True
    assert broken.nonfinite_state() == "oracle._theta"
