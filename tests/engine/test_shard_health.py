"""A shard's health checks: the outputs of every decision, the state once per micro-batch.

A learner and a tracker that check themselves are asked directly (``nonfinite_state``);
what they answer must be what the generic walk over their attributes says.
"""

import math

import numpy as np
import pytest

from regretflow.engine.config import parse_config
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.shard import Shard, nonfinite_state


def neural_shard() -> Shard:
    model = {"learner": "neural-squarecb", "n_actions": 3, "features": ["a", "b"], "params": {"width": 8}}
    config = parse_config({"models": {"nb": model}, "metrics": {"enabled": False}})
    shard = Shard(config.models["nb"], "")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=2)
        decision = shard.learner.decide(x, None)
        a = int(decision.action)
        shard.learner.learn(x, a, 1.0, float(decision.probabilities[a]), actions=None, ticket=decision.ticket)
        shard.tracker.update_one(a, float(decision.probabilities[a]), 1.0, 3, decision.probabilities, decision.predicted_rewards)
    return shard


def test_finite_outputs_pass_and_a_missing_output_is_skipped():
    shard = neural_shard()
    shard.check_outputs("decide 'd1'", np.array([0.2, 0.3, 0.5]), None)
    shard.check_outputs("decide 'd2'", [0.5, 0.5], np.array([[1.0, 2.0]]))  # lists and 2-D arrays take numpy's check
    assert shard.quarantined is None


@pytest.mark.parametrize(
    "outputs",
    [
        (np.array([0.2, math.nan, 0.8]), None),
        (np.array([0.2, 0.3, 0.5]), np.array([1.0, math.inf, 0.0])),
        (np.array([math.nan, 0.0, 0.3, 0.0, 0.7, 0.0])[::2], None),  # not contiguous: numpy's check
        ([0.5, -math.inf],),
    ],
)
def test_a_non_finite_output_refuses_the_event_and_quarantines_the_shard(outputs):
    shard = neural_shard()
    with pytest.raises(BadEvent) as raised:
        shard.check_outputs("decide 'd9'", *outputs)
    assert raised.value.reason == "model_unhealthy"
    assert shard.quarantined == "non-finite outputs after decide 'd9'"


@pytest.mark.parametrize("where", ["network", "learner float", "tracker"])
def test_the_state_check_names_what_the_generic_walk_names(where):
    shard = neural_shard()
    assert shard.check_state() and nonfinite_state(shard.learner, shard.tracker) is None
    if where == "network":
        shard.learner.oracle._theta[3] = math.inf
        shard.learner.oracle._unchecked = True  # as a step leaves it
    elif where == "learner float":
        shard.learner.exploration.cumulative_loss = math.nan
    else:
        shard.tracker.reward = math.nan
        shard.tracker._unchecked = True
    expected = nonfinite_state(shard.learner, shard.tracker)
    assert expected is not None
    assert not shard.check_state()
    assert shard.quarantined == f"non-finite values in {expected}"
