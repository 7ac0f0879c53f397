"""Pending joins: windows on the event stream, bounded, checkpointed."""

import numpy as np

from regretflow.engine.runtime.joins import JoinEntry, PendingJoins
from regretflow.engine.tasks.bandit import DecidePayload
from regretflow.engine.tasks.supervised import PredictPayload


def predict(eid, seq, ts, **kw):
    return JoinEntry(eid, seq, ts, PredictPayload(kw.get("x"), kw.get("groups"), kw.get("prediction", 0.0)))


def decide(eid, seq, ts, action=-1, probability=1.0, n_choices=0, x=None, actions=None):
    return JoinEntry(eid, seq, ts, DecidePayload(x, None, action, probability, n_choices, actions, None, None, -1))


def test_windows_close_on_event_count_and_event_time():
    j = PendingJoins(ttl_events=3, ttl_seconds=10.0, max_pending=100)
    j.add(predict("a", seq=1, ts=100.0))
    j.add(predict("b", seq=2, ts=100.0))
    assert j.expire(seq=3, ts=109.0) == []
    assert [e.id for e in j.expire(seq=4, ts=111.0)] == ["a", "b"]  # b by time, a by both
    assert j.was_expired("a") and not j.was_expired("zzz")


def test_store_is_bounded_and_evicts_oldest_first():
    j = PendingJoins(ttl_events=1000, ttl_seconds=None, max_pending=2)
    evicted = []
    for i in range(5):
        evicted += j.add(decide(str(i), seq=i, ts=None))
    assert [e.id for e in evicted] == ["0", "1", "2"] and len(j) == 2 and j.evicted == 3


def test_would_expire_changes_nothing():
    j = PendingJoins(ttl_events=2, ttl_seconds=None, max_pending=10)
    e = predict("a", seq=1, ts=None)
    j.add(e)
    assert j.would_expire(e, 4, None) and "a" in j


def test_state_round_trip_keeps_entries_and_order():
    j = PendingJoins(ttl_events=10, ttl_seconds=5.0, max_pending=10)
    j.add(predict("p", seq=1, ts=1.5, x=np.arange(3.0), groups=np.array([True, False]), prediction=0.25))
    j.add(decide("d", seq=2, ts=None, x=np.ones(2), action=2, probability=0.4, n_choices=3, actions=np.eye(3)))
    j.add(decide("e", seq=3, ts=None, action=0, probability=1.0, n_choices=2))
    j.expire(5, 2.0)
    k = PendingJoins(ttl_events=10, ttl_seconds=5.0, max_pending=10)
    k.load_state_dict(j.state_dict())
    assert list(k.pending) == ["p", "d", "e"]
    p, d, e = k.pending["p"], k.pending["d"], k.pending["e"]
    assert p.ts == 1.5 and d.ts is None
    p, d, e = p.payload, d.payload, e.payload
    assert p.x.tolist() == [0.0, 1.0, 2.0] and p.groups.tolist() == [True, False] and p.prediction == 0.25
    assert d.actions.tolist() == np.eye(3).tolist() and d.probability == 0.4 and d.n_choices == 3 and d.action == 2
    assert e.x is None and e.actions is None and isinstance(e, DecidePayload)
    assert k.latest_ts == 2.0


def test_a_classifiers_pending_predict_with_a_class_name_survives_a_checkpoint(tmp_path):
    import orjson

    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine

    config = parse_config(
        {"models": {"c": {"learner": "analytic-ridge", "features": ["a", "b"]}}, "checkpoint": {"dir": str(tmp_path), "every_events": 1}}
    )
    events = [{"id": f"o{i}", "model": "c", "kind": "observe", "features": [i % 2, 1.0], "label": ["cat", "dog"][i % 2]} for i in range(8)]
    events.append({"id": "p", "model": "c", "kind": "predict", "features": [1.0, 1.0]})
    first = Engine(config, MemorySource([orjson.dumps(e) for e in events]), MemorySink(), MemorySink(), serve_metrics=False)
    first.run()  # ends with a checkpoint holding the predict that waits for its label
    first.close()
    assert first.dead_count == 0
    predicted = orjson.loads(first.answers.records[-1][1])["prediction"]
    assert predicted in ("cat", "dog")

    feedback = {"id": "f", "model": "c", "kind": "feedback", "ref": "p", "label": predicted}
    stream = [orjson.dumps(e) for e in [*events, feedback]]  # the restored position skips the first nine
    second = Engine(config, MemorySource(stream), MemorySink(), MemorySink(), serve_metrics=False)
    (shard,) = second.router.shards.values()
    assert [e.payload.prediction for e in shard.joins.pending.values()] == [predicted]  # the class name, restored
    second.run()
    second.close()
    (shard,) = second.router.shards.values()
    assert second.dead_count == 0 and second.valid_events == 10 and not shard.joins.pending  # joined, not dead-lettered
