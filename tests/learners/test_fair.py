"""Fair learners with one-sided feedback: kernels against numpy, the spec's invariants, state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regretflow.learners import fair_kernels as K
from regretflow.learners.fair import (
    FairExp2,
    FairFTPL,
    FullInformationFairExp2,
    OneSidedExp2,
    aggregate_panel,
    greedy_separator,
    linear_threshold_class,
)

RNG = np.random.default_rng(12345)


# -- numpy references ---------------------------------------------------------------
def ref_class(W, b, X):
    return (X @ W.T >= b[None, :]).T.astype(np.float64)


def ref_softmax(cost, eta, mix):
    z = -eta * (cost - cost.min())
    p = np.exp(z) / np.exp(z).sum()
    return (1 - mix) * p + mix / len(cost)


def ref_aggregate(reports, q, m, required):
    k = len(q)
    voters = {}
    for i, l, a in reports:
        if i != l:
            voters.setdefault(frozenset((i, l)), set()).add(a)
    kept = np.zeros((k, k))
    for pair, who in voters.items():
        i, l = sorted(pair)
        if len(who) >= required:
            if q[i] > q[l]:
                kept[i, l] = 1
            elif q[l] > q[i]:
                kept[l, i] = 1
    return kept


def random_instance(N=40, k=6, d=3, seed=0):
    rng = np.random.default_rng(seed)
    W, b = linear_threshold_class(d, n_directions=N // 4, n_offsets=4, seed=seed)
    X = rng.random((k, d))
    return W, b, X


# -- kernels ------------------------------------------------------------------------
def test_kernels_match_numpy_references():
    W, b, X = random_instance()
    V = np.empty((W.shape[0], X.shape[0]))
    K.evaluate_class(W, b, X, V)
    np.testing.assert_array_equal(V, ref_class(W, b, X))
    cost = RNG.normal(size=W.shape[0]) * 10
    p = np.empty(W.shape[0])
    K.softmax_weights(cost, 0.3, 0.05, p)
    np.testing.assert_allclose(p, ref_softmax(cost, 0.3, 0.05), atol=1e-12)
    q = np.empty(X.shape[0])
    K.positive_probabilities(p, V, q)
    np.testing.assert_allclose(q, np.clip(p @ V, 0, 1), atol=1e-12)
    # label parts, fairness parts, cost updates
    dec = (RNG.random(X.shape[0]) < 0.5).astype(np.int64)
    y = np.where(dec == 1, (RNG.random(X.shape[0]) < 0.5).astype(float), -1.0)
    lhat = np.empty(X.shape[0])
    K.importance_label_costs(dec, y, q + 0.1, lhat)
    np.testing.assert_allclose(lhat, np.where(dec == 1, 2 * (1 - y) / (q + 0.1), 0.0), atol=1e-12)
    reps = RNG.integers(1, 9, size=X.shape[0]).astype(float)
    rhat = np.empty(X.shape[0])
    K.resampled_label_costs(dec, y, reps, rhat)
    np.testing.assert_allclose(rhat, np.where(dec == 1, reps * 2 * (1 - y), 0.0), atol=1e-12)
    c0 = cost.copy()
    K.add_label_costs(cost, V, lhat)
    np.testing.assert_allclose(cost, c0 + V @ lhat + (1 - V).sum(axis=1), atol=1e-9)
    kept = (RNG.random((X.shape[0], X.shape[0])) < 0.3).astype(float)
    np.fill_diagonal(kept, 0)
    f = np.empty(X.shape[0])
    K.fairness_costs(kept, 2.5, f)
    np.testing.assert_allclose(f, 2.5 * (kept.sum(axis=1) - kept.sum(axis=0)), atol=1e-12)
    c1 = cost.copy()
    K.add_fairness_costs(cost, V, f)
    np.testing.assert_allclose(cost, c1 + V @ f, atol=1e-9)
    labels = (RNG.random(X.shape[0]) < 0.5).astype(float)
    assert abs(K.expected_errors(q, labels) - (labels + q * (1 - 2 * labels)).sum()) < 1e-12


def test_oracle_kernels_match_numpy():
    W, b, X = random_instance(N=60, k=5)
    S = RNG.random((7, 3))
    VS = ref_class(W, b, S)
    Z = RNG.laplace(size=(50, 7))
    cost = RNG.normal(size=W.shape[0])
    leaders = np.empty(50, dtype=np.int64)
    K.perturbed_leaders(cost, np.ascontiguousarray(VS.T), Z, leaders)
    np.testing.assert_array_equal(leaders, np.argmin(cost[None, :] + Z @ VS.T, axis=1))
    V = ref_class(W, b, X)
    q = np.empty(5)
    K.leader_frequencies(leaders, V, q)
    np.testing.assert_allclose(q, V[leaders].mean(axis=0), atol=1e-12)
    dec = np.array([1, 0, 1, 1, 0])
    reps = np.empty(5)
    K.geometric_repeats(leaders, V, dec, 20, reps)
    for i in range(5):
        if dec[i] == 0:
            assert reps[i] == 0
        else:
            hits = np.nonzero(V[leaders[:20], i])[0]
            assert reps[i] == (hits[0] + 1 if hits.size else 20)


def test_aggregation_kernel_matches_reference_on_random_reports():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        k, m = 6, 4
        q = rng.random(k)
        reports = np.column_stack([rng.integers(0, k, 25), rng.integers(0, k, 25), rng.integers(0, m, 25)])
        for required in range(1, m + 1):
            kept = np.zeros((k, k))
            n = K.aggregate_reports(reports.astype(np.int64), q, m, required, kept)
            ref = ref_aggregate(reports.tolist(), q, m, required)
            np.testing.assert_array_equal(kept, ref)
            assert n == ref.sum()


# -- the spec's unit tests ----------------------------------------------------------------
def test_panel_rule_on_hand_built_reports():
    q = np.array([0.9, 0.2, 0.6, 0.1])
    # pair {0,1}: auditors 0,1,2 (one reports it reversed); {0,3}: auditors 0,1; {2,3}: auditor 2 twice
    reports = [[0, 1, 0], [1, 0, 1], [0, 1, 2], [0, 3, 0], [0, 3, 1], [2, 3, 2], [2, 3, 2]]
    pairs = lambda kept: sorted(map(tuple, np.argwhere(kept).tolist()))  # noqa: E731
    assert pairs(aggregate_panel(reports, q, 3, 1 / 3)) == [(0, 1), (0, 3), (2, 3)]
    assert pairs(aggregate_panel(reports, q, 3, 0.5)) == [(0, 1), (0, 3)]
    assert pairs(aggregate_panel(reports, q, 3, 1.0)) == [(0, 1)]
    # a duplicate report of one auditor counts once: {2,3} has one voter
    assert aggregate_panel([[2, 3, 2], [2, 3, 2]], q, 3, 0.5).sum() == 0
    # oriented by q: the reversed report still yields kept[0, 1]
    assert aggregate_panel([[1, 0, 0]], q, 1, 1.0)[0, 1] == 1


def test_reaggregation_with_larger_gamma_never_adds_pairs():
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.random(5)
        reports = np.column_stack([rng.integers(0, 5, 15), rng.integers(0, 5, 15), rng.integers(0, 5, 15)])
        previous = None
        for gamma in (0.2, 0.4, 0.6, 0.8, 1.0):
            kept = aggregate_panel(reports, q, 5, gamma)
            if previous is not None:
                assert np.all(kept <= previous)
            previous = kept


def test_fairness_costs_sum_to_zero():
    kept = np.zeros((4, 4))
    kept[0, 1] = kept[0, 2] = kept[3, 2] = 1
    f = np.empty(4)
    K.fairness_costs(kept, 1.5, f)
    assert f.tolist() == [3.0, -1.5, -3.0, 1.5]
    assert f.sum() == 0.0


def test_lagrangian_identity():
    rng = np.random.default_rng(5)
    for _ in range(20):
        k, C = 6, rng.random() * 4
        y = (rng.random(k) < 0.5).astype(float)
        q = rng.random(k)
        kept = np.triu((rng.random((k, k)) < 0.3).astype(float), 1)
        kept = np.where(q[:, None] > q[None, :], kept + kept.T, 0.0).clip(0, 1)
        f = np.empty(k)
        K.fairness_costs(kept, C, f)
        lagrangian = float(q @ (1 - 2 * y + f))
        err = K.expected_errors(q, y)
        gaps = sum(q[i] - q[l] for i, l in np.argwhere(kept))
        assert math.isclose(lagrangian, err + C * gaps - y.sum(), abs_tol=1e-12)


def test_importance_estimate_is_nonnegative_and_unbiased():
    W, b, X = random_instance(N=20, k=5, seed=2)
    V = ref_class(W, b, X)
    p = ref_softmax(np.random.default_rng(0).normal(size=W.shape[0]), 1.0, 0.1)
    q = p @ V
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
    draws = np.random.default_rng(1).choice(W.shape[0], size=100_000, p=p)
    decisions = V[draws].astype(np.int64)
    estimates = np.where(decisions == 1, 2 * (1 - y) / q, 0.0)
    assert estimates.min() >= 0.0
    mean, se = estimates.mean(axis=0), estimates.std(axis=0) / math.sqrt(len(draws))
    assert np.all(np.abs(mean - 2 * (1 - y)) <= 3 * se + 1e-12)
    one = np.empty(5)
    K.importance_label_costs(decisions[0], np.where(decisions[0] == 1, y, -1.0), q, one)
    np.testing.assert_allclose(one, estimates[0])


def test_softmax_is_stable_at_huge_costs():
    cost = np.array([1e6, 1e6 + 1, 2e6, 0.0]) + 1e6
    p = np.empty(4)
    K.softmax_weights(cost, 10.0, 0.0, p)
    assert np.all(np.isfinite(p)) and abs(p.sum() - 1) < 1e-12 and p[3] == 1.0


def test_greedy_separator_separates_every_pair_the_candidates_can():
    W, b = linear_threshold_class(3, 10, 6, seed=4)
    candidates = np.random.default_rng(0).random((500, 3))
    S = greedy_separator(W, b, candidates)
    on_candidates = ref_class(W, b, candidates)
    on_S = ref_class(W, b, S)
    distinct_on_candidates = len({row.tobytes() for row in on_candidates})
    assert len({row.tobytes() for row in on_S}) == distinct_on_candidates


# -- learners -----------------------------------------------------------------------------
def stream(n_rounds=60, k=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_rounds):
        X = rng.random((k, d))
        y = (X[:, 0] + 0.2 * rng.normal(size=k) > 0.5).astype(float)
        yield X, y


def drive(model, n_rounds=60, hidden=0.0, order="feedback-first", seed=0):
    """decide, feedback (hidden labels replaced by ``hidden``), audit (pairs from a fixed rule)."""
    out = []
    for X, y in stream(n_rounds, seed=seed):
        panel = model.decide_panel(X)
        dec, q = panel.decisions, panel.probabilities
        labels = np.where(dec == 1, y, hidden)
        reports = [
            (i, l, a) for a in range(3) for i in range(len(q)) for l in range(len(q)) if q[i] - q[l] > 0.5 * abs(X[i, a] - X[l, a]) + 0.05
        ]
        if order == "feedback-first":
            model.learn_panel(dec, labels, q, X)
            model.audit(X, dec, q, reports, panel_size=3)
        else:
            model.audit(X, dec, q, reports, panel_size=3)
            model.learn_panel(dec, labels, q, X)
        out.append((dec.copy(), q.copy()))
    return out


LEARNER_FACTORIES = {
    "exp2": lambda: FairExp2(n_features=3, n_directions=8, n_offsets=5, horizon=60, learning_rate_factor=8.0, seed=3),
    "ftpl": lambda: FairFTPL(
        n_features=3, n_directions=8, n_offsets=5, horizon=60, n_samples=40, max_resamples=6, perturbation_factor=0.05, seed=3
    ),
    "onesided": lambda: OneSidedExp2(n_features=3, n_directions=8, n_offsets=5, horizon=60, seed=3),
}


@pytest.mark.parametrize("name", sorted(LEARNER_FACTORIES))
def test_hidden_labels_are_never_used(name):
    runs = []
    for hidden in (0.0, 1.0, np.nan):
        model = LEARNER_FACTORIES[name]()
        decisions = drive(model, hidden=hidden)
        runs.append((decisions, model.cost_.copy()))
        assert np.all(np.isfinite(model.cost_))
    for decisions, cost in runs[1:]:
        assert cost.tobytes() == runs[0][1].tobytes()
        for (d0, q0), (d1, q1) in zip(runs[0][0], decisions):
            assert d0.tobytes() == d1.tobytes() and q0.tobytes() == q1.tobytes()


@pytest.mark.parametrize("name", ["exp2", "ftpl"])
def test_a_positive_decision_without_a_label_is_refused(name):
    model = LEARNER_FACTORIES[name]()
    X = np.full((5, 3), 0.9)
    panel = model.decide_panel(X)
    dec = panel.decisions
    dec = np.ones(5, dtype=np.int64)
    with pytest.raises(ValueError):
        model.learn_panel(dec, [-1] * 5, np.full(5, 0.5), X)


def test_exp2_feedback_and_audit_commute():
    a, b = LEARNER_FACTORIES["exp2"](), LEARNER_FACTORIES["exp2"]()
    da, db = drive(a, order="feedback-first"), drive(b, order="audit-first")
    np.testing.assert_allclose(a.cost_, b.cost_, rtol=1e-12, atol=1e-9)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(da, db))


def test_exp2_probabilities_are_the_policy_mixture():
    model = LEARNER_FACTORIES["exp2"]()
    drive(model, n_rounds=20)
    X = np.random.default_rng(9).random((5, 3))
    p = model.policy()
    panel = model.decide_panel(X)
    dec, q = panel.decisions, panel.probabilities
    np.testing.assert_allclose(q, p @ ref_class(model.W_, model.b_, X), atol=1e-12)
    assert np.all((q >= 0) & (q <= 1))
    # the decision is one row of the class
    assert any(np.array_equal(dec, row) for row in ref_class(model.W_, model.b_, X).astype(np.int64))


def test_accuracy_only_baseline_ignores_audits():
    with_audits, without = LEARNER_FACTORIES["onesided"](), LEARNER_FACTORIES["onesided"]()
    for X, y in stream(30):
        for model, audit in ((with_audits, True), (without, False)):
            panel = model.decide_panel(X)
            dec, q = panel.decisions, panel.probabilities
            model.learn_panel(dec, np.where(dec == 1, y, -1), q, X)
            if audit:
                model.audit(X, dec, q, [(0, 1, 0), (1, 0, 1), (2, 3, 0), (3, 2, 1)], panel_size=2)
    assert with_audits.cost_.tobytes() == without.cost_.tobytes()
    assert with_audits.audited_rounds == 30


@pytest.mark.parametrize("name", sorted(LEARNER_FACTORIES))
def test_same_seed_same_events_same_state_and_checkpoint_round_trip(name, tmp_path):
    a, b = LEARNER_FACTORIES[name](), LEARNER_FACTORIES[name]()
    drive(a, n_rounds=30)
    drive(b, n_rounds=30)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(np.asarray(sa[key]), np.asarray(sb[key])), key
    np.savez(tmp_path / "s.npz", **{k: np.asarray(v) for k, v in sa.items()})
    loaded = dict(np.load(tmp_path / "s.npz", allow_pickle=False))
    restored = LEARNER_FACTORIES[name]()
    restored.load_state_dict({k: (v.item() if v.ndim == 0 else v) for k, v in loaded.items()})
    tail_a = drive(a, n_rounds=20, seed=1)
    tail_r = drive(restored, n_rounds=20, seed=1)
    assert a.cost_.tobytes() == restored.cost_.tobytes()
    for (d0, q0), (d1, q1) in zip(tail_a, tail_r):
        assert d0.tobytes() == d1.tobytes() and q0.tobytes() == q1.tobytes()
    assert a.gauges() == pytest.approx(restored.gauges(), nan_ok=True)


def test_checkpoint_of_a_different_class_is_refused():
    a = FairExp2(n_features=3, n_directions=8, n_offsets=5)
    b = FairExp2(n_features=3, n_directions=8, n_offsets=6)
    with pytest.raises(ValueError):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("name", sorted(LEARNER_FACTORIES))
def test_gauges_are_declared(name):
    model = LEARNER_FACTORIES[name]()
    drive(model, n_rounds=5)
    g = model.gauges()
    assert set(g) == set(type(model).GAUGES)
    assert all(isinstance(v, float) for v in g.values())
    assert g["rounds_decided"] == 5 and g["audited_rounds"] == 5
    assert 0.0 <= g["positive_decision_rate"] <= 1.0


def test_group_gauges_count_positive_decisions_per_group_feature():
    model = FairExp2(
        features=["score", "female"], weights=[[1.0, 0.0]], offsets=[0.5], groups=["sex=female"], group_features={"sex=female": "female"}
    )
    X = np.array([[0.9, 1.0], [0.1, 1.0], [0.9, 0.0]])
    model.decide_panel(X)
    assert model.group_gauges()["positive_decision_rate"].tolist() == [0.5]
    assert set(model.group_gauges()) == set(FairExp2.GROUP_GAUGES)


def test_fair_learner_reduces_panel_violations_against_the_accuracy_only_baseline():
    """C > 0 trades violations for accuracy on a toy stream where the labels sit on a sharp threshold."""

    def violations(model):
        total = 0
        for X, y in stream(300, seed=7):
            panel = model.decide_panel(X)
            dec, q = panel.decisions, panel.probabilities
            model.learn_panel(dec, np.where(dec == 1, y, -1), q, X)
            reports = [(i, l, 0) for i in range(5) for l in range(5) if q[i] - q[l] > 2 * abs(X[i, 0] - X[l, 0]) + 0.05]
            total += model.audit(X, dec, q, reports, panel_size=1) > 0
        return total

    fair = FairExp2(n_features=3, n_directions=8, n_offsets=9, fairness_weight=3.0, learning_rate=0.3, seed=1)
    plain = OneSidedExp2(n_features=3, n_directions=8, n_offsets=9, learning_rate=0.3, seed=1)
    assert violations(fair) < 0.9 * violations(plain)


def test_full_information_reference_needs_every_label():
    model = FullInformationFairExp2(n_features=3, n_directions=4, n_offsets=3)
    X = np.random.default_rng(0).random((4, 3))
    panel = model.decide_panel(X)
    dec, q = panel.decisions, panel.probabilities
    with pytest.raises(ValueError):
        model.learn_panel(dec, [1, -1, 0, 1], q, X)


def test_cost_bound_sets_the_B_of_the_schedules():
    """``cost_bound`` replaces the worst-case ``B = 2 + 2C(k-1)`` in eta and in FTPL's scale; C is untouched."""
    X = np.random.default_rng(0).random((5, 3))
    common = dict(n_features=3, n_directions=4, n_offsets=3, horizon=10_000, fairness_scale=7.0)
    worst, label = FairExp2(**common), FairExp2(cost_bound=2.0, **common)
    for model in (worst, label):
        model.decide_panel(X)
    C = 7.0 * 10_000**0.25
    assert worst.current_fairness_weight() == label.current_fairness_weight() == pytest.approx(C)
    eta_label = math.sqrt(2 * math.log(worst.n_policies) / (25 * 4 * 10_000))
    assert label.current_learning_rate() == pytest.approx(eta_label, rel=1e-12)
    assert worst.current_learning_rate() == pytest.approx(eta_label * 2 / (2 + 8 * C), rel=1e-12)
    # the accuracy-only learner (C = 0) already runs with B = 2
    plain = OneSidedExp2(n_features=3, n_directions=4, n_offsets=3, horizon=10_000)
    plain.decide_panel(X)
    assert plain.current_learning_rate() == pytest.approx(eta_label, rel=1e-12)
    ftpl = FairFTPL(cost_bound=2.0, perturbation_factor=0.15, n_samples=4, **common)
    ftpl.decide_panel(X)
    assert ftpl.current_perturbation_scale() == pytest.approx(0.15 * 2.0 * math.sqrt(5 * 10_000))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            FairExp2(cost_bound=bad, **common)


def test_class_cache_stays_within_its_bytes_when_k_changes_and_matches_a_fresh_evaluation():
    rng = np.random.default_rng(3)
    model = FairExp2(n_features=3, n_directions=50, n_offsets=20, horizon=100, seed=0)
    model.CLASS_CACHE_BYTES = 200_000
    for k in [1] * 300 + [40] * 30 + [2] * 50:
        X = rng.random((k, 3))
        V = model._class_on(X)
        fresh = ref_class(model.W_, model.b_, X)
        assert np.array_equal(V, fresh) and not V.flags.writeable
        assert model._class_cache_bytes == sum(v.nbytes for v in model._class_cache.values())
        assert model._class_cache_bytes <= model.CLASS_CACHE_BYTES or len(model._class_cache) == 1


def test_class_evaluation_at_exact_ties_does_not_depend_on_the_batch():
    """Scores exactly on an offset: one individual alone and in a batch of many is judged alike."""
    rng = np.random.default_rng(4)
    W = rng.normal(size=(30, 4))
    X = rng.random((200, 4))
    b = np.array([W[n] @ X[n] for n in range(30)])  # policy n's offset is individual n's score
    batch = np.empty((30, 200))
    K.evaluate_class(W, b, X, batch)
    for i in range(30):
        alone = np.empty((30, 1))
        K.evaluate_class(W, b, X[i : i + 1], alone)
        assert np.array_equal(alone[:, 0], batch[:, i])
