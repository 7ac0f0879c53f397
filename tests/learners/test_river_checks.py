"""River's own estimator checks (``river.checks.check_estimator``) on every
River-compatible learner, in each configuration its ``_unit_test_params`` lists."""

from __future__ import annotations

import pytest
from river import base, checks

from regretflow.learners import AnalyticRidgeClassifier, GroupwiseRegressor, OnlineNeuralRegressor, OnlineRidge, OptimisticOMDRegressor

RIVER_LEARNERS = [OnlineRidge, OptimisticOMDRegressor, OnlineNeuralRegressor, GroupwiseRegressor, AnalyticRidgeClassifier]


def configurations():
    for cls in RIVER_LEARNERS:
        for i, params in enumerate(cls._unit_test_params()):
            yield pytest.param(cls, params, id=f"{cls.__name__}-{i}")


# River's emerging-feature checks add keys the neural, groupwise and analytic-ridge learners
# cannot grow for: they say so (tested in test_feature_policy), not this test's subject.
@pytest.mark.filterwarnings("ignore:.* ignores features it was not built with")
@pytest.mark.parametrize("cls,params", list(configurations()))
def test_passes_river_check_estimator(cls, params):
    checks.check_estimator(cls(**params))


@pytest.mark.parametrize("cls", RIVER_LEARNERS)
def test_is_a_mini_batch_estimator_so_river_checks_its_many_methods(cls):
    assert isinstance(cls(**next(cls._unit_test_params())), (base.MiniBatchRegressor, base.MiniBatchClassifier))
