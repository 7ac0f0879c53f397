"""The quick form of ``regretflow reproduce fair-onesided``: trends and the violation gap (about 90 s)."""

from __future__ import annotations

import pytest

from regretflow.engine.reproduce import fair_onesided as R


@pytest.fixture(scope="module")
def quick():
    results = R.experiment(R.QUICK_HORIZONS, 2, R.LEARNERS, 1.0, 200, 2_000, log=lambda *a, **k: None)
    results["checks"] = R.checks(results)
    return results


def row(results, learner, T):
    return next(r for r in results["summary"] if r["learner"] == learner and r["T"] == T)


def test_every_acceptance_check_passes(quick):
    failed = [name for name, ok in quick["checks"].items() if not ok]
    assert not failed, failed


@pytest.mark.parametrize("learner", ["FairExp2", "FairFTPL"])
def test_lagrangian_regret_per_round_shrinks_with_T(learner, quick):
    values = [row(quick, learner, T)["lagrangian_regret_per_round"][0] for T in R.QUICK_HORIZONS]
    assert values[-1] < 0.8 * values[0]


def test_accuracy_only_violations_grow_while_fair_learners_do_not(quick):
    first, last = R.QUICK_HORIZONS[0], R.QUICK_HORIZONS[-1]
    plain = [row(quick, "OneSidedExp2", T)["violations_per_round"][0] for T in (first, last)]
    assert plain[1] > 2 * plain[0]
    for learner in ("FairExp2", "FairFTPL"):
        assert row(quick, learner, last)["violations_per_round"][0] < 0.5 * plain[1]


def test_lp_comparator_is_used_up_to_lp_max_and_the_lagrangian_bound_beyond(quick):
    kinds = {r["T"]: r["regret_kind"] for r in quick["summary"]}
    assert kinds[500] == "lp" and kinds[2000] == "lp" and kinds[8000] == "lagrangian"
    assert all(r["fair_comparator_error_rate"] is None or 0.0 < r["fair_comparator_error_rate"] < 0.26
               for r in quick["summary"])


def test_table_prints_every_learner_and_horizon(quick):
    text = R.table(quick)
    assert all(name in text for name in R.LEARNERS)
    assert "log-log slopes" in text
