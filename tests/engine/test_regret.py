"""Regret trackers: exact against direct computation on the raw rows."""

import numpy as np
import pytest

from regretflow.engine.evaluation.regret import BanditRegret, ClassAccuracy, HindsightRegret, comparator_loss


def pinv_sse(X, y, cutoff=1e-10):
    """Reference: min-norm least squares through an SVD with a relative cutoff, residual on the rows."""
    if len(X) == 0:
        return 0.0
    theta = np.linalg.pinv(X, rcond=np.sqrt(cutoff)) @ y
    return float(((X @ theta - y) ** 2).sum())


def test_per_group_regret_equals_direct_computation():
    rng = np.random.default_rng(0)
    n, d = 400, 5
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    member = rng.random((n, 2)) < [0.3, 0.6]
    losses = rng.random(n)
    t = HindsightRegret(d, ["g0", "g1"])
    for lo in range(0, n, 37):  # any batching
        t.update(X[lo : lo + 37], y[lo : lo + 37], losses[lo : lo + 37], member[lo : lo + 37])
    s = t.summary()
    for label, mask in (("all", np.ones(n, bool)), ("g0", member[:, 0]), ("g1", member[:, 1])):
        assert s[label]["count"] == mask.sum()
        assert s[label]["loss"] == pytest.approx(losses[mask].sum(), rel=1e-12)
        assert s[label]["comparator_loss"] == pytest.approx(pinv_sse(X[mask], y[mask]), abs=1e-8)
        assert s[label]["regret"] == pytest.approx(losses[mask].sum() - pinv_sse(X[mask], y[mask]), abs=1e-8)


def test_collinear_one_hot_features_use_the_pseudo_inverse():
    rng = np.random.default_rng(1)
    n = 300
    cat = rng.integers(0, 3, size=n)
    onehot = np.eye(3)[cat]
    X = np.hstack([onehot, onehot.sum(axis=1, keepdims=True), rng.normal(size=(n, 1))])  # exactly singular
    y = cat * 0.5 + X[:, 4] + 0.1 * rng.normal(size=n)
    t = HindsightRegret(5, [])
    t.update(X, y, np.zeros(n), None)
    assert t.summary()["all"]["comparator_loss"] == pytest.approx(pinv_sse(X, y), abs=1e-8)


def test_lag_one_fits_the_comparator_on_all_but_the_last_row():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    t = HindsightRegret(3, [], lag=1)
    t.update(X, y, np.ones(30), None)
    assert t.summary()["all"]["comparator_loss"] == pytest.approx(pinv_sse(X[:-1], y[:-1]), abs=1e-9)


def test_ridge_comparator_reports_loss_without_penalty():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    theta = np.linalg.solve(X.T @ X + 2.0 * np.eye(3), X.T @ y)
    expected = float(((X @ theta - y) ** 2).sum())
    assert comparator_loss(X.T @ X, X.T @ y, float(y @ y), 2.0, 1e-10) == pytest.approx(expected, rel=1e-10)


def test_state_round_trip_gives_the_same_summary():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    t = HindsightRegret(2, ["g"])
    t.update(X, y, np.ones(20), X[:, :1] > 0)
    u = HindsightRegret(2, ["g"])
    u.load_state_dict(t.state_dict())
    assert u.summary() == t.summary()


def test_bandit_estimates_match_direct_formulas():
    rng = np.random.default_rng(5)
    n, k = 5000, 3
    probs = rng.dirichlet(np.ones(k), size=n) * 0.7 + 0.3 / k
    actions = np.array([rng.choice(k, p=p) for p in probs])
    p_chosen = probs[np.arange(n), actions]
    means = np.array([0.2, 0.5, 0.7])
    rewards = (rng.random(n) < means[actions]).astype(float)
    t = BanditRegret(k)
    for lo in range(0, n, 500):
        sl = slice(lo, lo + 500)
        t.update(actions[sl], p_chosen[sl], rewards[sl], np.full(len(actions[sl]), k))
    s = t.summary()
    w_uniform = (1.0 / k) / p_chosen
    assert s["uniform"]["ips"] == pytest.approx(np.mean(w_uniform * rewards), rel=1e-12)
    assert s["uniform"]["snips"] == pytest.approx(np.sum(w_uniform * rewards) / np.sum(w_uniform), rel=1e-12)
    assert s["best_constant"]["action"] == 2
    w2 = (actions == 2) / p_chosen
    assert s["best_constant"]["ips"] == pytest.approx(np.mean(w2 * rewards), rel=1e-12)
    # the interval is an honest one: the true value 0.7 lies inside, the width shrinks like 1/sqrt(n)
    assert s["best_constant"]["snips_low"] < 0.7 < s["best_constant"]["snips_high"]
    assert s["uniform"]["ips_low"] < means.mean() < s["uniform"]["ips_high"]


def test_pseudo_regret_is_exact():
    t = BanditRegret(2)
    t.record_decision(np.array([0.2, 0.9]), 0)
    t.record_decision(np.array([0.2, 0.9]), 1)
    t.record_decision(None, 0)
    assert t.summary()["pseudo_regret"] == pytest.approx(0.7)
    assert t.summary()["pseudo_count"] == 2


def test_class_accuracy_caps_class_labels():
    t = ClassAccuracy(["g"], max_classes=2)
    t.update(["a", "b", "c", "d"], ["a", "x", "c", "d"], np.array([[True], [False], [True], [False]]))
    s = t.summary()
    assert sorted(s["per_class"]) == ["_other_", "a", "b"]
    assert s["per_class"]["_other_"] == {"count": 2, "correct": 2, "accuracy": 1.0}
    assert s["per_group"]["g"]["accuracy"] == 1.0


def test_streaming_greedy_and_doubly_robust_estimates_equal_the_offline_estimators():
    from regretflow.engine.evaluation import offpolicy as op

    rng = np.random.default_rng(9)
    n, k = 3000, 4
    P = rng.dirichlet(np.ones(k) * 2, size=n)
    A = np.array([rng.choice(k, p=p) for p in P])
    p = P[np.arange(n), A]
    mu = np.array([0.1, 0.3, 0.6, 0.4])
    R = (rng.random(n) < mu[A]).astype(float)
    Rhat = np.clip(mu + 0.1 * rng.normal(size=(n, k)), 0, 1)
    t = BanditRegret(k)
    for lo in range(0, n, 250):
        sl = slice(lo, lo + 250)
        t.update(A[sl], p[sl], R[sl], np.full(len(A[sl]), k), prob_vectors=P[sl], reward_estimates=Rhat[sl])
    s = t.summary()
    greedy = op.greedy_policy(P)
    assert s["greedy"]["ips"] == pytest.approx(op.ips(A, p, R, greedy), rel=1e-12)
    assert s["greedy"]["snips"] == pytest.approx(op.snips(A, p, R, greedy), rel=1e-12)
    assert s["greedy"]["dr"] == pytest.approx(op.doubly_robust(A, p, R, greedy, Rhat), rel=1e-12)
    assert s["uniform"]["dr"] == pytest.approx(op.doubly_robust(A, p, R, op.uniform_policy(n, k), Rhat), rel=1e-12)
    for a in range(k):
        assert s["constant"][a]["dr"] == pytest.approx(op.doubly_robust(A, p, R, op.constant_policy(n, k, a), Rhat), rel=1e-12)
    # DR has the smaller interval when the reward model is good
    c = s["constant"][2]
    assert c["dr_high"] - c["dr_low"] < c["ips_high"] - c["ips_low"]


def test_expected_pseudo_regret_uses_the_probability_vector():
    t = BanditRegret(2)
    t.record_decision(np.array([0.2, 0.9]), 0, np.array([0.25, 0.75]))
    s = t.summary()
    assert s["pseudo_regret"] == pytest.approx(0.7) and s["expected_pseudo_regret"] == pytest.approx(0.9 - (0.05 + 0.675))


def test_fairness_tracker_counts_a_pair_once_in_either_order_per_auditor():
    from regretflow.engine.evaluation.regret import FairnessTracker

    t = FairnessTracker()
    t.record_audit(1, np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0], [2, 2, 1], [1, 2, 1]]), ["ann", "bo"])
    assert t.summary()["auditors"] == {"ann": {"reported_pairs": 1, "panels": 1}, "bo": {"reported_pairs": 1, "panels": 1}}


def test_fairness_tracker_keeps_auditor_rows_apart_after_a_restore_and_bounds_names():
    from regretflow.engine.evaluation.regret import FairnessTracker

    t = FairnessTracker()
    t.record_audit(1, np.array([[0, 1, 0]]), ["a"])
    restored = FairnessTracker()
    restored.load_state_dict(t.state_dict())
    restored.record_audit(1, np.array([[0, 1, 0], [0, 2, 1]]), ["b", "a"])
    assert restored.summary()["auditors"] == {"a": {"reported_pairs": 2, "panels": 2}, "b": {"reported_pairs": 1, "panels": 1}}
    for i in range(FairnessTracker.MAX_AUDITORS + 5):
        restored.record_audit(0, np.zeros((0, 3), dtype=np.int64), [f"x{i}"])
    names = restored.summary()["auditors"]
    assert len(names) == FairnessTracker.MAX_AUDITORS + 1 and names["_other_"]["panels"] == 7
    with pytest.raises(ValueError, match="distinct"):
        FairnessTracker().load_state_dict({"counts": t.counts, "auditor_names": np.array(["a", "a"]), "auditor_counts": np.zeros((2, 2))})


def reference_bandit_update(t: BanditRegret, a: int, p: float, r: float, k: int, probs: np.ndarray, rhat: np.ndarray) -> None:
    """One feedback accounted one policy at a time with reductions over one-element arrays (the
    general formulas): what the tracker's scalar and vectorised paths must reproduce bit for bit."""
    from regretflow.engine.evaluation.regret import _dr, _sums

    t._grow(k)
    t.count += 1
    t.reward += float(np.array([r]).sum())
    t.uniform += _sums(1.0 / (np.array([k]) * np.array([p])), np.array([r]))
    s = _sums(1.0 / np.array([p]), np.array([r]))
    s[0] = 0.0
    t.constant[a] += s
    t.constant[:, 0] += 1
    greedy = int(np.argmax(probs))
    t.greedy += _sums(np.array([1.0 / p if a == greedy else 0.0]), np.array([r]))
    residual = (r - rhat[a]) / p
    t.dr_uniform += _dr(float(rhat[:k].mean()) + residual / k)
    t.dr_greedy += _dr(float(rhat[greedy]) + (residual if a == greedy else 0.0))
    for c in range(min(k, t.dr_constant.shape[0])):
        t.dr_constant[c] += _dr(float(rhat[c]) + (residual if a == c else 0.0))


@pytest.mark.parametrize("entry", ["update", "update_one"])
@pytest.mark.parametrize("k", [6, 12])  # (12: numpy's mean sums 8 lanes at a time from 8 values on)
def test_one_feedback_at_a_time_gives_the_bits_of_the_general_formulas(entry, k):
    rng = np.random.default_rng(4)
    fast, slow = BanditRegret(k), BanditRegret(k)
    for _ in range(300):
        probs = rng.dirichlet(np.ones(k))
        a = int(rng.integers(k))
        r, rhat = float(rng.normal()), rng.normal(size=k) * (rng.random() < 0.9)  # (some all-zero estimates: signed zeros)
        if entry == "update":
            fast.update(np.array([a]), np.array([probs[a]]), np.array([r]), np.array([k]), probs[None, :], rhat[None, :])
        else:  # what the bandit task calls per feedback
            fast.update_one(a, float(probs[a]), r, k, probs, rhat)
        reference_bandit_update(slow, a, float(probs[a]), r, k, probs, rhat)
    for name, value in slow.state_dict().items():
        assert np.asarray(fast.state_dict()[name]).tobytes() == np.asarray(value).tobytes(), name


def test_the_bandit_tracker_reports_a_non_finite_sum_after_the_update_that_wrote_it():
    t = BanditRegret(3)
    assert t.nonfinite_state() is None
    t.update_one(1, 0.5, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.9, 0.4]))
    assert t.nonfinite_state() is None
    assert t.nonfinite_state() is None  # nothing changed since: nothing to look at
    t.update_one(2, 0.3, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.array([0.1, np.inf, 0.4]))
    assert t.nonfinite_state() == "dr_uniform"
    assert t.nonfinite_state() == "dr_uniform"  # asked again, it says so again
    restored = BanditRegret(3)
    restored.load_state_dict(BanditRegret(3).state_dict())
    restored.record_decision(np.array([0.0, np.nan, 1.0]), 0)
    assert restored.nonfinite_state() == "pseudo_regret"


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda t: t.update_one(-1, 0.5, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.zeros(3)), IndexError),
        (lambda t: t.update_one(3, 0.5, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.zeros(3)), IndexError),
        (lambda t: t.update_one(0, 0.5, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.zeros(2)), ValueError),  # fewer estimates than actions
        (lambda t: t.update_one(0, 0.0, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.zeros(3)), ValueError),
        (lambda t: t.update_one(4, 0.0, 1.0, 5, None, None), ValueError),  # (nor does it grow to 5 actions)
        (lambda t: t.update_one(1, 0.5, 1.0, 5, np.full(5, 0.2), np.zeros(4)), ValueError),
        (lambda t: t.update(np.array([0, -1]), np.full(2, 0.5), np.ones(2), np.full(2, 3)), IndexError),
    ],
)
def test_a_feedback_the_tracker_cannot_account_changes_nothing(call, error):
    # update_one's sums are one kernel call that reads without bounds checks: every check comes first
    t = BanditRegret(3)
    t.update_one(1, 0.5, 1.0, 3, np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.9, 0.4]))
    before = {k: np.asarray(v).copy() for k, v in t.state_dict().items()}
    with pytest.raises(error):
        call(t)
    for name, value in t.state_dict().items():
        assert np.asarray(value).shape == before[name].shape and np.asarray(value).tobytes() == before[name].tobytes(), name
