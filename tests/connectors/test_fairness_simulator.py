"""The Adult fairness simulator, its engine events, the regret tracker and the fair-comparator LP."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

from regretflow.connectors.simulators.fairness import (
    DEFAULT_AUDITORS,
    FAIR_FEATURES,
    AdultPopulation,
    FairnessSimulator,
)
from regretflow.engine.evaluation.fairness_lp import FairRegretTracker, fair_comparator


@pytest.fixture(scope="module")
def population():
    return AdultPopulation.load()


def test_population_is_adult_scaled_to_the_unit_box(population):
    assert population.X.shape == (32561, len(FAIR_FEATURES))
    assert population.X.min() == 0.0 and population.X.max() == 1.0
    assert int(population.y.sum()) == 7841  # >50K in the UCI training file
    male, female = FAIR_FEATURES.index("sex_Male"), FAIR_FEATURES.index("sex_Female")
    assert np.all(population.X[:, male] + population.X[:, female] == 1.0)


def test_schedule_is_seeded_and_panels_are_distinct_auditors(population):
    a, b = FairnessSimulator(population, 50, seed=3), FairnessSimulator(population, 50, seed=3)
    c = FairnessSimulator(population, 50, seed=4)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.panels, b.panels)
    assert not np.array_equal(a.rows, c.rows)
    assert all(len(set(p)) == a.panel_size for p in a.panels)
    assert a.panels.max() < len(DEFAULT_AUDITORS)


def test_reports_are_exactly_the_pairs_beyond_each_panel_members_metric(population):
    sim = FairnessSimulator(population, 20, k=6, seed=1)
    rng = np.random.default_rng(0)
    for t in range(20):
        q = rng.random(6)
        reports = set(sim.reports(t, q))
        X = sim.individuals(t)
        for slot, j in enumerate(sim.panel(t)):
            a = DEFAULT_AUDITORS[j]
            names = [f for f, _ in a.weights]
            w = np.array([wt for _, wt in a.weights]) / sum(wt for _, wt in a.weights)
            cols = [FAIR_FEATURES.index(f) for f in names]
            for i in range(6):
                for l in range(6):
                    d = min(1.0, a.scale * math.sqrt(float(w @ (X[i, cols] - X[l, cols]) ** 2)))
                    assert ((i, l, slot) in reports) == (q[i] - q[l] > d + a.margin)


def test_equal_treatment_is_never_flagged_and_auditors_disagree(population):
    sim = FairnessSimulator(population, 200, seed=2)
    assert all(sim.reports(t, np.full(sim.k, 0.7)) == [] for t in range(20))
    # the pool is inconsistent: on the same rounds the auditors flag different numbers of pairs
    harsh = np.array([1.0, 0.0, 1.0, 0.0, 0.5])
    per_auditor = sum(sim.auditor_violations(t, harsh) for t in range(200))
    assert len(set(per_auditor.tolist())) == len(DEFAULT_AUDITORS)


def test_panel_bound_is_the_required_smallest_distance(population):
    sim = FairnessSimulator(population, 10, seed=0)
    for t in range(10):
        D = np.sort(sim.distances(t, sim.panel(t)), axis=0)
        np.testing.assert_array_equal(sim.panel_bounds(t, 0.5), D[1])  # ceil(0.5 * 3) = 2nd smallest
        np.testing.assert_array_equal(sim.panel_bounds(t, 1.0), D[2])
        np.testing.assert_array_equal(sim.panel_bounds(t, 0.2), D[0])


def test_events_carry_k_individuals_labels_only_for_positive_decisions_and_auditor_triples(population):
    sim = FairnessSimulator(population, 5, k=4, seed=0, model="credit")
    decide = sim.decide_event(2)
    assert decide["kind"] == "decide" and np.array_equal(np.array(decide["actions"]), sim.individuals(2))
    fb = sim.feedback_event(2, np.array([0, 1, 0, 1]))
    y = sim.labels(2)
    assert fb["ref"] == decide["id"] and fb["label"] == [None, int(y[1]), None, int(y[3])]
    q = np.array([1.0, 0.0, 0.0, 0.0])
    audit = sim.audit_event(2, q)
    assert audit["ref"] == decide["id"] and audit["panel_size"] == 3
    assert all(len(v) == 3 and v[0] == 0 for v in audit["violations"])


def test_hypothesis_class_is_seeded_and_beats_constant_policies(population):
    W, b = population.hypothesis_class(8, 7, seed=0)
    W2, b2 = population.hypothesis_class(8, 7, seed=0)
    assert np.array_equal(W, W2) and np.array_equal(b, b2)
    decisions = population.X @ W.T >= b
    errors = (decisions != population.y[:, None].astype(bool)).mean(axis=0)
    assert errors.min() < 0.21 < errors[-2]  # best threshold beats all-0 (0.2408)


# -- regret tracker and LP --------------------------------------------------------------
def test_tracker_lagrangian_regret_is_exact_on_a_two_policy_class():
    tracker = FairRegretTracker([[1.0], [-1.0]], [0.5, -0.5])
    X, y, q = np.array([[0.9], [0.1]]), np.array([1.0, 1.0]), np.array([0.8, 0.3])
    kept = np.array([[0.0, 1.0], [0.0, 0.0]])
    tracker.update(X, y, q, kept, fairness_weight=2.0)
    # costs c = (1 - 2y) + f = (-1 + 2, -1 - 2) = (1, -3); policy 0 decides (1, 0), policy 1 (0, 1)
    assert tracker.policy_lagrangian.tolist() == [1.0, -3.0]
    assert tracker.learner_lagrangian == pytest.approx(0.8 * 1 + 0.3 * -3)
    assert tracker.lagrangian_regret() == pytest.approx(0.8 - 0.9 + 3.0)
    state = tracker.state_dict()
    other = FairRegretTracker([[1.0], [-1.0]], [0.5, -0.5])
    other.load_state_dict(state)
    assert other.lagrangian_regret() == tracker.lagrangian_regret()


def test_lp_comparator_on_a_three_round_toy_equals_the_hand_solution():
    # policies: accept-all, accept-first, reject-all; labels (1, 0) each round
    V = np.array([[1, 1], [1, 0], [0, 0]])
    y = np.array([1.0, 0.0])
    D = [np.array([[0, 0.3], [0.3, 0]]), np.array([[0, 0.5], [0.5, 0]]), np.array([[0, 1.0], [1.0, 0]])]
    best = fair_comparator([V, V, V], [y, y, y], D)
    # accept-first at weight p1 <= 0.3 (tightest round); each round errs 1 - p1
    assert best.errors == pytest.approx(3 * (1 - 0.3))
    assert best.constraints_total == 2  # the bound-1 round is vacuous


def test_row_generation_equals_the_full_lp_and_is_feasible(population):
    sim = FairnessSimulator(population, 120, seed=5)
    W, b = population.hypothesis_class(6, 5, seed=1)
    Vs, Ys, Ds = [], [], []
    for t in range(120):
        Vs.append((sim.individuals(t) @ W.T >= b).T.astype(np.int8))
        Ys.append(sim.labels(t))
        Ds.append(sim.panel_bounds(t, 0.5))
    best = fair_comparator(Vs, Ys, Ds, batch=5)
    N = W.shape[0]
    cost = sum(V.astype(float) @ (1 - 2 * y) for V, y in zip(Vs, Ys))
    rows, bounds = [], []
    for V, D in zip(Vs, Ds):
        for i in range(5):
            for l in range(5):
                if i != l:
                    rows.append(V[:, i].astype(float) - V[:, l])
                    bounds.append(D[i, l])
    full = linprog(cost, A_ub=np.array(rows), b_ub=np.array(bounds), A_eq=np.ones((1, N)), b_eq=[1.0], bounds=(0, None), method="highs")
    assert best.errors == pytest.approx(full.fun + sum(y.sum() for y in Ys), abs=1e-6)
    assert np.all(np.array(rows) @ best.weights <= np.array(bounds) + 1e-7)
    assert best.iterations > 1


def test_nobody_in_the_population_sits_on_a_threshold_of_the_class(population):
    """Scores differ between CPUs in their last bits: no decision may hang on them."""
    W, b = population.hypothesis_class(16, 13, seed=0)
    scores = population.X @ W[:-2].T
    gaps = np.abs(scores - b[None, :-2])
    assert gaps.min() > 1e-9
