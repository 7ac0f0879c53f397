"""Inverse-gap-weighting rules: probability-vector properties, VW's formula, schedules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regretflow.learners.exploration import (
    FastCBExploration,
    SquareCBExploration,
    exploration_cost,
    fastcb_probabilities,
    squarecb_probabilities,
)

rewards_vectors = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=12).map(np.array)
any_reward_vectors = st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=1, max_size=12).map(np.array)
# gamma = 0 (pure greedy) or large enough that the bounds (k-1)/gamma stay finite and can fail
gammas = st.one_of(st.just(0.0), st.floats(1e-9, 1e6, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(any_reward_vectors, gammas)
def test_squarecb_probabilities_are_a_distribution_favouring_the_greedy_action(predicted, gamma):
    p = squarecb_probabilities(predicted, gamma)
    k = len(predicted)
    assert np.all(p >= 0.0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    greedy = int(np.argmin(1.0 - predicted))  # the rules work on costs 1 - yhat (ties: lowest index)
    assert p[greedy] >= 1.0 / k - 1e-12
    assert p[greedy] == pytest.approx(p.max(), abs=1e-12)
    gaps = predicted.max() - predicted
    if gamma > 0:
        assert np.all(np.delete(p * gaps, greedy) <= 1.0 / gamma + 1e-12)
        assert exploration_cost(p, predicted) <= (k - 1) / gamma + 1e-9


@settings(max_examples=300, deadline=None)
@given(rewards_vectors, gammas)
def test_fastcb_probabilities_are_a_distribution_with_a_small_loss_cost_bound(predicted, gamma):
    p = fastcb_probabilities(predicted, gamma)
    k = len(predicted)
    assert np.all(p >= 0.0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    greedy = int(np.argmin(1.0 - predicted))
    assert p[greedy] >= 1.0 / k - 1e-12
    best_cost = 1.0 - predicted.max()
    if gamma > 0 and best_cost > 0:
        assert exploration_cost(p, predicted) <= (k - 1) * best_cost / gamma + 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 0.999), min_size=2, max_size=10).map(np.array), st.floats(0.0, 1e4))
def test_fastcb_equals_squarecb_at_gamma_over_best_cost(predicted, gamma):
    best_cost = 1.0 - predicted.max()
    np.testing.assert_allclose(
        fastcb_probabilities(predicted, gamma), squarecb_probabilities(predicted, gamma / best_cost), rtol=1e-9, atol=1e-12
    )


def test_squarecb_matches_vw_formula_with_lowest_index_ties():
    predicted = np.array([0.3, 0.9, 0.9, 0.1])  # actions 1 and 2 tie: 1 is greedy
    gamma = 7.0
    p = squarecb_probabilities(predicted, gamma)
    assert p[2] == pytest.approx(1.0 / 4.0)  # a tie with the greedy action has gap 0
    assert p[0] == pytest.approx(1.0 / (4 + gamma * 0.6))
    assert p[3] == pytest.approx(1.0 / (4 + gamma * 0.8))
    assert p[1] == pytest.approx(1.0 - p[0] - p[2] - p[3])


def test_gamma_zero_or_equal_predictions_give_uniform():
    np.testing.assert_allclose(squarecb_probabilities(np.array([0.2, 0.7, 0.4]), 0.0), np.full(3, 1 / 3))
    np.testing.assert_allclose(squarecb_probabilities(np.full(4, 0.5), 100.0), np.full(4, 0.25))
    np.testing.assert_allclose(fastcb_probabilities(np.full(4, 0.5), 100.0), np.full(4, 0.25))
    np.testing.assert_allclose(fastcb_probabilities(np.full(4, 1.0), 100.0), np.full(4, 0.25))  # 0/0 handled


def test_fastcb_is_greedy_when_the_best_predicted_loss_is_zero():
    p = fastcb_probabilities(np.array([0.2, 1.0, 0.5]), 10.0)
    np.testing.assert_array_equal(p, [0.0, 1.0, 0.0])


def test_non_finite_predictions_give_uniform():
    np.testing.assert_allclose(squarecb_probabilities(np.array([0.2, np.nan]), 10.0), [0.5, 0.5])
    np.testing.assert_allclose(fastcb_probabilities(np.array([np.inf, 0.1, 0.3]), 10.0), np.full(3, 1 / 3))


def test_sqrt_schedule_follows_vw_and_starts_uniform():
    rule = SquareCBExploration(schedule="sqrt", gamma0=10.0, gamma_exponent=0.5)
    np.testing.assert_allclose(rule.probabilities(np.array([0.9, 0.1])), [0.5, 0.5])
    assert rule.gauges()["gamma"] == 0.0
    for _ in range(9):
        rule.observe(1.0)
    rule.probabilities(np.array([0.9, 0.1]))
    assert rule.gauges()["gamma"] == pytest.approx(30.0)


def test_fixed_schedule_ignores_the_count():
    rule = SquareCBExploration(schedule="fixed", gamma0=25.0)
    rule.observe(0.0)
    assert rule.gamma(3) == 25.0


def test_doubling_schedule_doubles_with_the_observed_loss_and_has_a_floor():
    rule = FastCBExploration(schedule="doubling", gamma0=10.0)
    assert rule.gamma(4) == pytest.approx(max(40.0, 10.0 * np.sqrt(4 * 1)))
    for _ in range(100):
        rule.observe(0.0)  # loss 1 each
    assert rule.cumulative_loss == 100.0
    assert rule.gamma(4) == pytest.approx(10.0 * np.sqrt(4 * 128))  # epoch guess 128 >= 100
    rule.observe(0.5)
    assert rule.gamma(4) == pytest.approx(10.0 * np.sqrt(4 * 128))  # same epoch


def test_unknown_schedule_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="schedule"):
        SquareCBExploration(schedule="cosine")


def test_exploration_state_round_trip():
    rule = FastCBExploration(schedule="doubling")
    for r in (0.0, 1.0, 0.3):
        rule.observe(r)
    rule.probabilities(np.array([0.2, 0.6]))
    again = FastCBExploration(schedule="doubling")
    again.load_state_dict(rule.state_dict())
    assert again.state_dict() == rule.state_dict()
    assert again.gamma(2) == rule.gamma(2)
