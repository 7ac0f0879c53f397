"""The one contextual-bandit contract (learners/bandit_feedback.py), for the linear and dynamical bandits.

``learn`` with or without ``decide``; a probability that is None or in (0, 1]; any
finite reward, ``objective="cost"`` learning ``-cost``; non-finite input refused
before any state changes; an exploration floor on the UCB learners so that no action
has probability 0; checkpoints from before the floor resume as they ran.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from regretflow.learners import LEARNERS
from regretflow.learners.linear_bandits import ActionVectorLinUCB, Exp3, LinUCB

ARMS = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
BOUNDS = {"rho_bar": 0.5, "phi_bar": 1.0, "omega_norm": 1.0, "theta_norm": 1.0, "b_norm": 1.0, "noise_sigma": 0.1}
SMALL = {
    "linucb-disjoint": {"n_actions": 3},
    "epsilon-greedy": {"n_actions": 3},
    "dynlin-ucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 1000},
    "action-vector-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 1000},
    "d-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 1000, "discount": 0.99},
    "exp3": {"n_arms_or_actions": 3, "horizon": 1000},
    "batched-exp3": {"n_arms_or_actions": 3, "horizon": 1000, "batch_size": 3},
}
FLOORED = ("linucb-disjoint", "dynlin-ucb", "action-vector-linucb", "d-linucb")


def make(family: str, **extra):
    return LEARNERS[family](**SMALL[family], **extra)


def context(t: int) -> np.ndarray:
    return np.array([1.0, np.sin(t), np.cos(3 * t)])


def reward(t: int, action: int) -> float:
    return float(np.sin(t + action)) * 3.0 - 1.0  # any real number, negative too


def play(learner, rounds: int, start: int = 0) -> list[np.ndarray]:
    seen = []
    for t in range(start, start + rounds):
        action, probabilities = learner.act(context(t))
        seen.append(probabilities)
        learner.learn(context(t), action, reward(t, action), probabilities[action])
    return seen


def states_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_learn_from_a_logged_stream_without_decide(family):
    learner = make(family)
    for t in range(30):
        learner.learn(context(t), t % 3, reward(t, t % 3))  # no decide, no probability
    learner.learn(context(30), 1, 0.5, 0.25)  # a logging policy's probability
    action, probabilities = learner.act(context(31))
    assert abs(probabilities.sum() - 1.0) < 1e-12 and probabilities[action] > 0
    assert learner.n_updates > 0


@pytest.mark.parametrize("family", sorted(SMALL))
@pytest.mark.parametrize(
    "bad",
    [
        {"reward": float("nan")},
        {"reward": float("inf")},
        {"probability": 0.0},
        {"probability": 1.5},
        {"probability": float("nan")},
        {"action": 3},
    ],
)
def test_bad_feedback_is_refused_before_any_state_changes(family, bad):
    learner = make(family)
    play(learner, 5)
    learner.act(context(5))
    before = learner.state_dict()
    feedback = {"context": context(5), "action": 0, "reward": 1.0, "probability": None, **bad}
    with pytest.raises(ValueError):
        learner.learn(**feedback)
    assert states_equal(before, learner.state_dict())


@pytest.mark.parametrize("family", sorted(SMALL))
def test_a_cost_objective_learns_exactly_what_the_negated_reward_teaches(family):
    by_cost, by_reward = make(family, objective="cost"), make(family)
    for t in range(60):
        a, p = by_cost.act(context(t))
        b, q = by_reward.act(context(t))
        assert a == b and np.array_equal(p, q)
        by_cost.learn(context(t), a, -reward(t, a), p[a])
        by_reward.learn(context(t), b, reward(t, b), q[b])
    assert states_equal(by_cost.state_dict(), by_reward.state_dict())


@pytest.mark.parametrize("family", [*FLOORED, "epsilon-greedy", "exp3", "batched-exp3"])
def test_no_action_ever_has_probability_zero_with_the_defaults(family):
    learner = make(family)
    assert min(float(p.min()) for p in play(learner, 300)) > 0.0


@pytest.mark.parametrize("family", FLOORED)
def test_exploration_zero_is_the_deterministic_learner(family):
    learner = make(family, exploration=0.0)
    later = play(learner, 300)[50:]
    assert all(sorted(p.tolist()) == [0.0, 0.0, 1.0] for p in later)


@pytest.mark.parametrize("family", FLOORED)
def test_a_checkpoint_from_before_the_floor_resumes_without_it(family):
    old = make(family, exploration=0.0)
    play(old, 40)
    state = {k: v for k, v in old.state_dict().items() if k not in ("exploration", "probs")}
    resumed = make(family)  # today's default floor ...
    resumed.load_state_dict(state)
    assert [p.tolist() for p in play(resumed, 40, start=40)] == [p.tolist() for p in play(old, 40, start=40)]  # ... not applied


def test_exp3_maps_rewards_by_its_range_rule():
    fixed = Exp3(3, horizon=100, reward_range=(-1.0, 1.0), seed=0)
    affine = Exp3(3, horizon=100, reward_offset=1.0, reward_scale=2.0, seed=0)
    for t in range(30):
        for learner in (fixed, affine):
            learner.learn(None, t % 3, 0.5 * np.sin(t))  # inside the range: both maps agree
    assert np.allclose(fixed.probabilities, affine.probabilities, rtol=1e-12)
    running = Exp3(3, horizon=100, seed=0)
    for t in range(30):
        running.learn(None, t % 3, 1000.0 + 10.0 * (t % 3))  # far outside [0, 1]: the running range copes
    assert int(np.argmax(running.probabilities)) == 2
    resumed = Exp3(3, horizon=100, seed=0)
    resumed.load_state_dict(running.state_dict())
    assert resumed._range.low == 1000.0 and resumed._range.high == 1020.0


def test_the_old_linucb_name_warns_and_its_checkpoints_load_both_ways():
    with pytest.warns(DeprecationWarning, match="ActionVectorLinUCB"):
        old = LinUCB(ARMS, BOUNDS, 1000, seed=1)
    with pytest.warns(DeprecationWarning):
        LEARNERS["linucb"](ARMS, BOUNDS, 1000)
    new = ActionVectorLinUCB(ARMS, BOUNDS, 1000, seed=1)
    play(old, 20)
    play(new, 20)
    assert states_equal(
        {k: v for k, v in old.state_dict().items() if k != "learner"}, {k: v for k, v in new.state_dict().items() if k != "learner"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ActionVectorLinUCB(ARMS, BOUNDS, 1000).load_state_dict(old.state_dict())
    with pytest.warns(DeprecationWarning):
        LinUCB(ARMS, BOUNDS, 1000).load_state_dict(new.state_dict())


def test_configs_take_the_new_keys_and_the_old_family_name_warns():
    from regretflow.engine.config import parse_config
    from regretflow.engine.learner_factory import build_learner

    def model(learner: str, params: dict) -> dict:
        return {"models": {"m": {"learner": learner, "params": params}}}

    spec = parse_config(model("exp3", {"n_arms_or_actions": 3, "horizon": 100, "reward_range": [-5, 5], "objective": "cost"})).models["m"]
    assert build_learner(spec)._range.high == 5.0
    with pytest.raises(ValueError, match="exploration"):
        parse_config(model("action-vector-linucb", {"actions": ARMS, "bounds": BOUNDS, "horizon": 100, "exploration": 1.0}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_config(model("action-vector-linucb", {"actions": ARMS, "bounds": BOUNDS, "horizon": 100, "exploration": 0.0}))
    with pytest.warns(DeprecationWarning):
        parse_config(model("linucb", {"actions": ARMS, "bounds": BOUNDS, "horizon": 100}))
