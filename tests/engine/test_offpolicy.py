"""Off-policy estimators: unbiasedness on simulated logs, exactness cases, intervals, validation."""

from __future__ import annotations

import numpy as np
import pytest

from regretflow.engine.evaluation.offpolicy import (
    best_constant_action,
    bootstrap_interval,
    constant_policy,
    doubly_robust,
    evaluate_policies,
    greedy_policy,
    importance_weights,
    ips,
    snips,
    uniform_policy,
)


def _log(n=20000, k=3, seed=0):
    """A logging policy that prefers action 0, Bernoulli rewards with known means."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    means = np.stack([0.2 + 0.0 * x, x, 1.0 - x], axis=1)  # action 1 best for x > .5, action 2 below
    logging = np.tile(np.array([0.6, 0.2, 0.2]), (n, 1))
    actions = np.array([rng.choice(k, p=row) for row in logging])
    rewards = (rng.random(n) < means[np.arange(n), actions]).astype(float)
    return actions, logging[np.arange(n), actions], rewards, means


def test_ips_snips_and_dr_recover_the_value_of_the_optimal_policy():
    actions, propensities, rewards, means = _log()
    target = greedy_policy(means)
    truth = float(np.mean(np.sum(target * means, axis=1)))  # 0.75
    assert ips(actions, propensities, rewards, target) == pytest.approx(truth, abs=0.02)
    assert snips(actions, propensities, rewards, target) == pytest.approx(truth, abs=0.02)
    noisy_model = means + 0.1  # a biased reward model: DR still unbiased through the weights
    assert doubly_robust(actions, propensities, rewards, target, noisy_model) == pytest.approx(truth, abs=0.02)


def test_dr_with_the_true_reward_model_and_no_reward_noise_is_exact():
    rng = np.random.default_rng(1)
    n, k = 500, 4
    means = rng.random((n, k))
    actions = rng.integers(0, k, n)
    rewards = means[np.arange(n), actions]  # noiseless
    target = uniform_policy(n, k)
    assert doubly_robust(actions, np.full(n, 0.25), rewards, target, means) == pytest.approx(means.mean(), abs=1e-12)


def test_evaluating_the_logging_policy_gives_the_observed_mean_for_ips_weights_of_one():
    rng = np.random.default_rng(2)
    n, k = 1000, 3
    logging = rng.dirichlet(np.ones(k), size=n)
    actions = np.array([rng.choice(k, p=p) for p in logging])
    propensities = logging[np.arange(n), actions]
    rewards = rng.random(n)
    np.testing.assert_allclose(importance_weights(actions, propensities, logging), 1.0)
    assert ips(actions, propensities, rewards, logging) == pytest.approx(rewards.mean(), abs=1e-12)
    assert snips(actions, propensities, rewards, logging) == pytest.approx(rewards.mean(), abs=1e-12)


def test_bootstrap_intervals_cover_the_estimate_are_seeded_and_shrink_with_more_data():
    actions, propensities, rewards, means = _log(4000, seed=3)
    target = greedy_policy(means)
    first = bootstrap_interval(actions, propensities, rewards, target, means, n_bootstrap=100, seed=7)
    again = bootstrap_interval(actions, propensities, rewards, target, means, n_bootstrap=100, seed=7)
    assert first == again
    for name, estimate in (
        ("ips", ips(actions, propensities, rewards, target)),
        ("snips", snips(actions, propensities, rewards, target)),
        ("dr", doubly_robust(actions, propensities, rewards, target, means)),
    ):
        low, high = first[name]
        assert low < estimate < high
    small = bootstrap_interval(actions[:400], propensities[:400], rewards[:400], target[:400], n_bootstrap=100)
    assert (small["ips"][1] - small["ips"][0]) > (first["ips"][1] - first["ips"][0])


def test_evaluate_policies_reports_every_estimator_for_every_policy():
    actions, propensities, rewards, means = _log(3000, seed=4)
    n = len(actions)
    out = evaluate_policies(
        actions,
        propensities,
        rewards,
        {"greedy": greedy_policy(means), "uniform": uniform_policy(n, 3), "always-0": constant_policy(n, 3, 0)},
        reward_estimates=means,
        n_bootstrap=50,
    )
    assert set(out) == {"logged", "greedy", "uniform", "always-0"}
    assert out["logged"]["observed"]["value"] == pytest.approx(rewards.mean())
    for name in ("greedy", "uniform", "always-0"):
        assert set(out[name]) == {"ips", "snips", "dr"}
        for values in out[name].values():
            assert values["low"] <= values["value"] <= values["high"]
    assert out["always-0"]["snips"]["value"] == pytest.approx(0.2, abs=0.03)
    assert out["greedy"]["dr"]["value"] > out["uniform"]["dr"]["value"] > out["always-0"]["dr"]["value"]


def test_best_constant_action_picks_the_best_on_average():
    actions, propensities, rewards, _ = _log(5000, seed=5)
    assert best_constant_action(actions, propensities, rewards, 3) in (1, 2)  # both average 0.5 > 0.2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"propensities": [0.0, 0.5]}, "propensities"),
        ({"propensities": [1.5, 0.5]}, "propensities"),
        ({"actions": [0, 3]}, "actions"),
        ({"rewards": [np.nan, 1.0]}, "rewards"),
        ({"rewards": [1.0]}, "need n"),
    ],
)
def test_invalid_logs_are_rejected_with_the_reason(kwargs, match):
    args = {"actions": [0, 1], "propensities": [0.5, 0.5], "rewards": [1.0, 0.0]} | kwargs
    with pytest.raises(ValueError, match=match):
        ips(args["actions"], args["propensities"], args["rewards"], uniform_policy(2, 2))
