"""Fair models in the engine: hidden labels are never learned; feedback and audits through a real population."""

import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.connectors.simulators.loop import ClosedLoopSource, FairnessEnv, TeeSink
from regretflow.engine.config import load_config
from regretflow.engine.runtime.loop import Engine

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "fairness.toml"


def offline(config):
    return dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, enabled=False))


def learner_bits(engine):
    state = engine.router.shards[("lending", "")].learner.state_dict()
    return {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in state.items()}


def test_labels_of_negatively_decided_individuals_are_dead_lettered_and_never_learned():
    config = offline(load_config(EXAMPLE))
    env = FairnessEnv("lending", k=5, seed=0)
    decide = orjson.dumps(env.decide(0))
    answers = MemorySink()
    engine = Engine(config, MemorySource([decide]), answers, MemorySink(), serve_metrics=False)
    engine.run()
    answer = orjson.loads(answers.records[0][1])
    decisions = answer["decisions"]
    assert len(decisions) == 5 and len(answer["probabilities"]) == 5 and 0 in decisions
    before = learner_bits(engine)

    # a producer that reports every label, hidden ones included
    all_labels = [int(v) for v in env.sim.labels(0)]
    leak = orjson.dumps({"id": "leak", "model": "lending", "kind": "feedback", "ref": answer["id"], "label": all_labels})
    dead = MemorySink()
    engine.dead_letters = dead
    engine.process([leak])
    assert [orjson.loads(r[1])["reason"] for r in dead.records] == ["hidden_label"]
    assert learner_bits(engine) == before, "a hidden label touched the learner"
    assert engine.router.shards[("lending", "")].tracker.summary()["revealed"] == 0

    # the one-sided version of the same feedback is learned
    one_sided = orjson.dumps(env.sim.feedback_event(0, np.array(decisions)))
    engine.process([one_sided])
    assert len(dead.records) == 1
    summary = engine.router.shards[("lending", "")].tracker.summary()
    assert summary["revealed"] == sum(decisions)
    # ... once only
    engine.process([one_sided.replace(b'-fb"', b'-fb2"')])
    assert orjson.loads(dead.records[-1][1])["reason"] == "duplicate_feedback"


def test_a_population_stream_through_the_engine_learns_from_feedback_and_audits():
    config = offline(load_config(EXAMPLE))
    loop = ClosedLoopSource(FairnessEnv("lending", k=5, seed=0), rounds=300)
    dead = MemorySink()
    engine = Engine(config, loop, TeeSink(loop, MemorySink()), dead, serve_metrics=False)
    engine.run()
    assert not dead.records
    shard = engine.router.shards[("lending", "")]
    s = shard.tracker.summary()
    assert s["rounds"] == 300 and s["audits"] == 300 and s["revealed"] == s["positives"]
    assert len(shard.joins) == 0, "a decision with both its feedback and its audit is closed"
    gauges = shard.learner.gauges()
    assert gauges["audited_rounds"] == 300 and gauges["violation_pairs"] == s["violation_pairs"]
    assert engine.metrics.registry.get_sample_value("regretflow_learner_violation_rounds", {"model": "lending"}) == s["violation_rounds"]


def test_audit_indices_and_kinds_are_checked():
    config = offline(load_config(EXAMPLE))
    env = FairnessEnv("lending", k=5, seed=0)
    dead = MemorySink()
    engine = Engine(config, MemorySource([orjson.dumps(env.decide(0))]), MemorySink(), dead, serve_metrics=False)
    engine.run()
    ref = env.sim.decision_id(0)
    engine.process(
        [
            orjson.dumps({"id": "a1", "model": "lending", "kind": "audit", "ref": ref, "violations": [[0, 7]]}),
            orjson.dumps({"id": "a2", "model": "lending", "kind": "audit", "ref": ref, "violations": [[0, 1, 4]], "panel_size": 3}),
            orjson.dumps({"id": "o", "model": "lending", "kind": "observe", "features": [0.0] * 10, "label": 1}),
            orjson.dumps({"id": "a3", "model": "lending", "kind": "audit", "ref": ref, "violations": [[0, 1]]}),
            orjson.dumps({"id": "a4", "model": "lending", "kind": "audit", "ref": ref, "violations": [[0, 1]]}),
        ]
    )
    assert [orjson.loads(r[1])["reason"] for r in dead.records] == ["bad_field", "bad_field", "unsupported_kind", "duplicate_feedback"]


@pytest.mark.parametrize("auditors", [[["x"]], [{"a": 1}], [1], ["a\u0000"], ["_other_"], ["a", "a"], "a", []])
def test_malformed_auditor_names_are_dead_lettered_and_never_touch_the_learner(auditors):
    config = offline(load_config(EXAMPLE))
    env = FairnessEnv("lending", k=5, seed=0)
    dead = MemorySink()
    engine = Engine(config, MemorySource([orjson.dumps(env.decide(0))]), MemorySink(), dead, serve_metrics=False)
    engine.run()
    before = learner_bits(engine)
    audit = {
        "id": "a1",
        "model": "lending",
        "kind": "audit",
        "ref": env.sim.decision_id(0),
        "violations": [[0, 1, 0]],
        "auditors": auditors,
    }
    engine.process([orjson.dumps(audit)])
    assert [orjson.loads(r[1])["reason"] for r in dead.records] == ["bad_field"]
    assert learner_bits(engine) == before
    assert engine.router.shards[("lending", "")].tracker.summary()["audits"] == 0
