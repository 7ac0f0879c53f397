"""The quick form of ``regretflow reproduce fair-onesided``: trends and the violation gap (about 40 s).

Tolerances (set against the 3-seed quick table; see the reproduction's docstring):
regret/T and violations/T of FairExp2 and FairFTPL at T = 8,000 are at most 0.6 x and
0.7 x their values at T = 500 (seed means measured 0.36-0.38 and 0.45-0.53); the
accuracy-only learner has at least 3 x their violations/T at T = 2,000 and 8,000
(measured 7-18 x).
"""

from __future__ import annotations

import pytest

from regretflow.engine.experiments import fair_onesided as R


@pytest.fixture(scope="module")
def quick():
    results = R.experiment(R.QUICK_HORIZONS, R.QUICK_SEEDS, R.LEARNERS, R.FAIRNESS_SCALE, 200, 2_000, log=lambda *a, **k: None)
    results["checks"] = R.checks(results)
    return results


def row(results, learner, T):
    return next(r for r in results["summary"] if r["learner"] == learner and r["T"] == T)


def test_every_acceptance_check_passes(quick):
    failed = [name for name, ok in quick["checks"].items() if not ok]
    assert not failed, failed
    assert len(quick["checks"]) == 10


@pytest.mark.parametrize("learner", ["FairExp2", "FairFTPL"])
def test_both_ratios_shrink_by_the_stated_factors(learner, quick):
    assert R.shrinks(quick, learner, "lagrangian_regret_per_round", R.REGRET_SHRINK)
    assert R.shrinks(quick, learner, "violations_per_round", R.VIOLATION_SHRINK)
    first, last = R.QUICK_HORIZONS[0], R.QUICK_HORIZONS[-1]
    viol = [row(quick, learner, T)["violations_per_round"][0] for T in (first, last)]
    assert viol[1] <= R.VIOLATION_SHRINK * viol[0]


def test_the_checks_can_fail_the_accuracy_only_learner_violates_more_and_more(quick):
    # The same shrink check, applied to the learner without the fairness term, fails:
    # its violations per round grow as it concentrates on the most accurate thresholds.
    assert not R.shrinks(quick, "OneSidedExp2", "violations_per_round", R.VIOLATION_SHRINK)
    assert not R.shrinks(quick, "OneSidedExp2", "violations_per_round", 1.0)
    assert R.slopes(quick, "OneSidedExp2", "violations_per_round") > 1.0


@pytest.mark.parametrize("learner", ["FairExp2", "FairFTPL"])
def test_accuracy_only_has_several_times_the_violations(learner, quick):
    for T in R.QUICK_HORIZONS[1:]:
        plain = row(quick, "OneSidedExp2", T)["violations_per_round"][0]
        assert plain >= R.VIOLATION_GAP * row(quick, learner, T)["violations_per_round"][0]


def test_cost_of_fairness_is_positive_and_stated(quick):
    # Fairness costs accuracy: the fair LP optimum makes more mistakes than the best
    # unconstrained threshold, and the fair learners more than the accuracy-only one at the largest T.
    for T in R.QUICK_HORIZONS[:2]:
        r = row(quick, "FairExp2", T)
        assert r["fair_comparator_error_rate"] > r["best_policy_error_rate"][0] + 0.01
    last = R.QUICK_HORIZONS[-1]
    for learner in ("FairExp2", "FairFTPL"):
        assert row(quick, learner, last)["error_rate"][0] > row(quick, "OneSidedExp2", last)["error_rate"][0]
    text = R.table(quick)
    assert "cost of fairness" in text and "fair LP optimum - best unconstrained policy" in text


def test_lp_comparator_is_used_up_to_lp_max_and_the_lagrangian_bound_beyond(quick):
    kinds = {r["T"]: r["regret_kind"] for r in quick["summary"]}
    assert kinds[500] == "lp" and kinds[2000] == "lp" and kinds[8000] == "lagrangian"
    assert all(r["fair_comparator_error_rate"] is None or 0.0 < r["fair_comparator_error_rate"] < 0.26 for r in quick["summary"])
    assert {x["T"] for x in quick["lp"]} == {500, 2000}


def test_table_prints_every_learner_and_horizon(quick):
    text = R.table(quick)
    assert all(name in text for name in R.LEARNERS)
    assert "log-log slopes" in text
