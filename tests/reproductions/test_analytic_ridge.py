"""`regretflow reproduce analytic-ridge --quick`: the generator's gain on long-tailed digits.

The reproduction runs in a child process with one BLAS thread, as the reproduction's
docstring recommends on a shared machine (its numbers do not depend on it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from regretflow.engine.experiments import REPRODUCTIONS
from regretflow.engine.experiments import analytic_ridge as reproduction

METHODS = {"ours", "ours+PFG", "ours default (auto)", "River LogisticRegression (OvR)", "River HoeffdingTree", "River ARF"}


@pytest.fixture(scope="module")
def quick_report():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "regretflow.engine.experiments.analytic_ridge", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_reproduction_is_registered_under_its_cli_name():
    assert REPRODUCTIONS["analytic-ridge"] == "regretflow.engine.experiments.analytic_ridge"


def test_generator_adds_at_least_three_points_on_long_tailed_digits(quick_report):
    checks = quick_report["checks"]
    assert checks["digits_pfg_gain_held_out"] >= 0.03
    assert checks["digits_pfg_gain_ok"] is True


def test_generator_does_not_lower_prequential_per_class_accuracy_on_long_tailed_digits(quick_report):
    checks = quick_report["checks"]
    assert checks["digits_pfg_prequential_change"] >= 0.0 and checks["digits_pfg_prequential_ok"] is True
    digits = quick_report["datasets"]["digits-LT"]
    # the default switches the generator on here (no class outnumbers d = 1024): the same answers
    for metric in ("prequential_mean_class_accuracy", "held_out_mean_class_accuracy"):
        assert digits["ours default (auto)"][metric]["mean"] == pytest.approx(digits["ours+PFG"][metric]["mean"], abs=1e-12)


def test_digits_cells_are_within_the_spec_anchor_tolerance(quick_report):
    digits = quick_report["datasets"]["digits-LT"]
    for label, anchor in reproduction.DIGITS_ANCHORS[0.1].items():
        held_out = digits[label]["held_out_mean_class_accuracy"]
        assert held_out["n"] == 5
        assert abs(held_out["mean"] - anchor) <= reproduction.ANCHOR_TOLERANCE, (label, held_out)


def test_every_dataset_reports_every_method_with_accuracies_and_costs(quick_report):
    assert set(quick_report["datasets"]) == {"digits-LT", "shuttle", "rainfall"}
    for name, cells in quick_report["datasets"].items():
        assert set(cells) == METHODS, name
        for label, cell in cells.items():
            for metric in ("prequential_mean_class_accuracy", "prequential_accuracy", "held_out_mean_class_accuracy"):
                assert 0.0 <= cell[metric]["mean"] <= 1.0, (name, label, metric)
            assert cell["us_per_event"]["mean"] > 0.0


def test_long_tailed_digits_protocol_has_ratio_40_and_a_balanced_test_set():
    split = reproduction.digits_long_tail(0)
    counts = np.bincount(split.y, minlength=10)
    assert counts.tolist() == [120, 72, 43, 25, 15, 9, 5, 3, 3, 3]
    assert np.bincount(split.y_test).tolist() == [50] * 10
    assert split.X.max() <= 1.0
    # roughly class-incremental: the mean arrival position grows with the class
    positions = [np.flatnonzero(split.y == c).mean() for c in range(10)]
    assert positions == sorted(positions)


def test_mean_class_accuracy_counts_unanswered_rows_as_wrong():
    y = np.array(["a", "a", "b", "b"], dtype=object)
    assert reproduction.mean_class_accuracy(y, np.array([None, "a", "b", "b"], dtype=object)) == 0.75
