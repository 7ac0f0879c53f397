"""Every regretflow bandit as a river.bandit policy (learners/river_bandit.py)."""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import pytest
import river.bandit.envs  # noqa: F401  (registers River's gym environments)
from river import bandit, stats

from regretflow.learners import LEARNERS, EpsilonGreedy, Exp3, LinUCBDisjoint
from regretflow.learners.river_bandit import RiverBandit

ARMS = ["news", "sport", "weather"]
ARM_VECTORS = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
BOUNDS = {"rho_bar": 0.5, "phi_bar": 1.0, "omega_norm": 1.0, "theta_norm": 1.0, "b_norm": 1.0, "noise_sigma": 0.1}
BANDITS = {
    "neural-squarecb": {"n_actions": 3, "width": 4},
    "neural-fastcb": {"n_actions": 3, "width": 4},
    "neural-ridge-cb": {"n_actions": 3, "width": 4},
    "linucb-disjoint": {"n_actions": 3},
    "epsilon-greedy": {"n_actions": 3},
    "dynlin-ucb": {"actions": ARM_VECTORS, "bounds": BOUNDS, "horizon": 1000},
    "action-vector-linucb": {"actions": ARM_VECTORS, "bounds": BOUNDS, "horizon": 1000},
    "d-linucb": {"actions": ARM_VECTORS, "bounds": BOUNDS, "horizon": 1000, "discount": 0.99},
    "exp3": {"n_arms_or_actions": 3, "horizon": 1000},
    "batched-exp3": {"n_arms_or_actions": 3, "horizon": 1000, "batch_size": 3},
}


def logged_history(n: int, seed: int = 0) -> list[tuple[list[str], dict, str, float]]:
    """A uniform logging policy over string arms; the key 'mobile' appears half-way, 'hour' is sometimes absent."""
    rng = random.Random(seed)
    history = []
    for t in range(n):
        ctx = {"hour": rng.random()} if rng.random() < 0.9 else {}
        if t >= n // 2:
            ctx["mobile"] = float(rng.random() < 0.5)
        arm = rng.choice(ARMS)
        best = "news" if ctx.get("hour", 0.0) < 0.5 else "sport"
        history.append((ARMS, ctx, arm, float(arm == best)))
    return history


def test_every_bandit_family_is_covered_here():
    assert set(BANDITS) == {f for f, cls in LEARNERS.items() if cls.task == "bandit" and f != "linucb"}


@pytest.mark.parametrize("family", sorted(BANDITS))
def test_every_bandit_runs_in_river_evaluate_offline_with_string_arms_and_changing_dicts(family):
    learner = LEARNERS[family](**BANDITS[family])
    # a learner that cannot grow its inputs is told every key up front
    policy = RiverBandit(learner, features=None if hasattr(learner, "grow_features") else ["hour", "mobile"])
    total, n_used = bandit.evaluate_offline(policy, logged_history(300))
    assert n_used > 50 and isinstance(total, stats.Sum)
    assert set(policy.arm_ids) == set(ARMS)
    assert policy.feature_names == ["hour", "mobile"]


@pytest.mark.parametrize("family", sorted(BANDITS))
def test_every_bandit_runs_in_river_evaluate_on_a_gym_environment(family):
    params = dict(BANDITS[family])
    if "n_actions" in params:
        params["n_actions"] = 10
    elif "actions" in params:
        params["actions"] = np.eye(10).tolist()
    else:
        params["n_arms_or_actions"] = 10
    # clicks: a reward of 1 when the testbed's Gaussian reward is positive (every learner takes 0/1 rewards)
    env = gym.wrappers.TransformReward(gym.make("river_bandits/KArmedTestbed-v0", max_episode_steps=60), lambda r: float(r > 0))
    trace = list(bandit.evaluate([RiverBandit(LEARNERS[family](**params))], env, n_episodes=2, seed=1))
    assert len(trace) == 2 * 60 and all(np.isfinite(step["reward"]) for step in trace)


def test_linucb_through_the_adapter_beats_river_random_policy_offline():
    ours, _ = bandit.evaluate_offline(RiverBandit(LinUCBDisjoint(n_actions=3, alpha=0.3)), logged_history(3000, seed=2), stats.Mean())
    random_, _ = bandit.evaluate_offline(bandit.RandomPolicy(seed=0), logged_history(3000, seed=2), stats.Mean())
    assert ours.get() > random_.get() + 0.15


def test_a_new_key_grows_the_model_as_if_it_had_been_zero_so_far():
    grown = RiverBandit(LinUCBDisjoint(n_actions=3, exploration=0.0))
    declared = RiverBandit(LinUCBDisjoint(n_actions=3, exploration=0.0), features=["hour", "mobile"])
    for arms, ctx, arm, reward in logged_history(200):
        for policy in (grown, declared):
            policy.pull(arms, context=ctx)
            policy.update(arm, reward, context=ctx)
    a, b = grown.learner.state_dict(), declared.learner.state_dict()
    assert np.array_equal(a["P"], b["P"]) and np.array_equal(a["w"], b["w"])


def test_a_learner_that_cannot_grow_says_so():
    policy = RiverBandit(LEARNERS["neural-fastcb"](n_actions=3, width=4))
    policy.pull(ARMS, context={"a": 1.0})
    with pytest.raises(ValueError, match="features="):
        policy.pull(ARMS, context={"a": 1.0, "b": 2.0})


def test_only_offered_arms_are_pulled_with_the_renormalised_probability():
    policy = RiverBandit(EpsilonGreedy(n_actions=3, epsilon=0.3, seed=0))
    for arm in ARMS:
        policy.update(arm, 0.0, context={"x": 1.0})  # learn before any pull: every arm id gets its index
    policy.update("weather", 1.0, context={"x": 1.0})
    seen = set()
    for _ in range(200):
        arm = policy.pull(["news", "sport"], context={"x": 1.0})
        seen.add(arm)
        # epsilon-greedy's distribution is (0.1, 0.1, 0.8) with 'weather' greedy: offered mass 0.2, so 1/2 each
        assert policy.pulled_probability == pytest.approx(0.5)
    assert seen == {"news", "sport"}


def test_more_arm_ids_than_actions_and_bad_contexts_are_refused_without_a_state_change():
    policy = RiverBandit(LinUCBDisjoint(n_actions=2))
    policy.update("a", 1.0, context={"x": 1.0})
    before = policy.learner.state_dict()
    with pytest.raises(ValueError, match="2 actions"):
        policy.pull(["a", "b", "c"], context={"x": 1.0})
    with pytest.raises(ValueError, match="finite"):
        policy.update("a", 1.0, context={"x": float("nan")})
    with pytest.raises(ValueError, match="finite"):
        policy.update("a", float("inf"), context={"x": 1.0})
    after = policy.learner.state_dict()
    assert all(np.array_equal(before[k], after[k]) if isinstance(before[k], np.ndarray) else before[k] == after[k] for k in before)


def test_river_positional_update_and_clone_give_the_same_policy():
    one = RiverBandit(Exp3(3, horizon=500, seed=4))
    two = one.clone()
    for t, (arms, ctx, _, _) in enumerate(logged_history(100)):
        a, b = one.pull(arms, context=ctx), two.pull(arms, context=ctx)
        assert a == b
        one.update(a, float(t % 2), context=ctx)
        two.update(b, ctx, float(t % 2))  # River's ContextualPolicy form: (arm, context, reward)
    assert np.array_equal(one.learner.probabilities, two.learner.probabilities)
    assert one._n == two._n == 100
