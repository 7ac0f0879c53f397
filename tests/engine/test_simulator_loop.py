"""Closed-loop simulator sources: decide/feedback through the engine, exact pseudo-regret."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from regretflow.connectors.memory import MemorySink
from regretflow.connectors.simulators.linear_dynamical import test_case
from regretflow.connectors.simulators.loop import ClosedLoopSource, LinearDynamicalEnv, TeeSink
from regretflow.engine.config import load_config
from regretflow.engine.runtime.loop import Engine
from regretflow.learners import DynLinUCB

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "dynamical_bandit.toml"
ROUNDS = 3000


def engine_for(config, rounds, checkpoint_dir=None):
    config = dataclasses.replace(
        config,
        metrics=dataclasses.replace(config.metrics, enabled=False),
        checkpoint=dataclasses.replace(config.checkpoint, dir=checkpoint_dir),
    )
    loop = ClosedLoopSource(LinearDynamicalEnv("ads", case="real-data", seed=0), rounds=rounds)
    return Engine(config, loop, TeeSink(loop, MemorySink()), MemorySink(), serve_metrics=False)


def test_pseudo_regret_through_the_engine_equals_stepping_the_learner_directly():
    config = load_config(EXAMPLE)
    engine = engine_for(config, ROUNDS)
    engine.run()
    shard = engine.router.shards[("ads", "")]
    summary = shard.tracker.summary()

    params = dict(config.models["ads"].params)
    learner = DynLinUCB(**params)
    sim = test_case("real-data", seed=0)
    regret = 0.0
    for _ in range(ROUNDS):
        action, probs = learner.act()
        regret += float(sim.steady_state_values.max() - sim.steady_state_values[action])
        learner.learn(None, action, sim.step(action), float(probs[action]))
    assert summary["pseudo_count"] == ROUNDS and summary["count"] == ROUNDS
    assert summary["pseudo_regret"] == pytest.approx(regret, rel=1e-12, abs=1e-12)
    assert shard.learner.state_dict()["n_updates"] == learner.state_dict()["n_updates"]
    gauges = engine.metrics.registry.get_sample_value("regretflow_learner_dynlin_epoch", {"model": "ads"})
    assert gauges is not None and gauges > 0
    assert engine.metrics.registry.get_sample_value("regretflow_pseudo_regret", {"model": "ads"}) == pytest.approx(regret)


def test_a_restarted_simulator_run_continues_the_same_world(tmp_path):
    config = load_config(EXAMPLE)
    straight = engine_for(config, ROUNDS)
    straight.run()
    first = engine_for(config, ROUNDS // 2, str(tmp_path))
    first.run()
    second = engine_for(config, ROUNDS, str(tmp_path))
    second.run()
    a = straight.router.shards[("ads", "")].learner.state_dict()
    b = second.router.shards[("ads", "")].learner.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].tobytes() == b[key].tobytes(), key
        else:
            assert a[key] == b[key], key
