"""Runs in columns: the state and answers of events fed as column arrays equal those of the same events as JSON."""

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.events import Event, EventDecoder, Run
from regretflow.engine.runtime.loop import Engine, _BatchOutput
from regretflow.engine.tasks import model_tasks
from tests.conftest import regression_config_dict, regression_stream
from tests.engine.test_runtime import assert_same_bits, shard_state


def json_engine(config, payloads, batch_size):
    engine = Engine(config, MemorySource([]), MemorySink(), MemorySink(), serve_metrics=False)
    for lo in range(0, len(payloads), batch_size):
        engine.process(payloads[lo : lo + batch_size])
    return engine


def hand_over(router, pending: list[Event], out) -> None:
    """The pending decoded rows as one columnar run."""
    if pending:
        run = Run.from_columns(
            pending[0].kind,
            pending[0].model,
            [e.id for e in pending],
            np.array([e.values for e in pending], dtype=np.float64),
            np.stack([e.groups for e in pending]),
            labels=[e.label for e in pending] if pending[0].kind == "observe" else None,
            raws=[e.raw for e in pending],
        )
        assert router.admit_run(run, out) == []
        pending.clear()


def columns_engine(config, payloads, batch_size):
    """The same stream, observe and predict runs handed over as columns (the entry point of a columnar wire
    format), every other kind as JSON; runs split where a batch ends, as a wire batch would."""
    engine = Engine(config, MemorySource([]), MemorySink(), MemorySink(), serve_metrics=False)
    decoder = EventDecoder(config, model_tasks(config))
    router = engine.router
    for lo in range(0, len(payloads), batch_size):
        out = _BatchOutput()
        pending: list[Event] = []

        for payload in payloads[lo : lo + batch_size]:
            ev = decoder.decode(payload)
            ev.raw = payload
            if ev.kind in ("observe", "predict"):
                if pending and pending[0].kind != ev.kind:
                    hand_over(router, pending, out)
                pending.append(ev)
            else:
                hand_over(router, pending, out)
                router.shard(ev).admit(ev, out)
        hand_over(router, pending, out)
        router.flush(out)
        engine.answers.write(out.answers)
    return engine


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_runs_in_columns_give_the_state_and_answers_of_json_events(batch_size):
    config = parse_config(regression_config_dict())
    stream = regression_stream(400, seed=5)
    ref = json_engine(config, stream, batch_size)
    other = columns_engine(config, stream, batch_size)
    assert_same_bits(shard_state(ref), shard_state(other))
    assert [r[1] for r in ref.answers.records] == [r[1] for r in other.answers.records]
    assert len(ref.answers.records) == sum(b'"feedback"' not in p for p in stream) == 400


def test_a_refused_row_of_a_columnar_run_is_returned_alone():
    config = parse_config(regression_config_dict())
    engine = Engine(config, MemorySource([]), MemorySink(), MemorySink(), serve_metrics=False)
    out = _BatchOutput()
    X = np.ones((3, 3))
    run = Run.from_columns("predict", "m", ["a", "b", "a"], X, np.zeros((3, 6), dtype=np.bool_))
    refused = engine.router.admit_run(run, out)
    assert [(i, bad.reason) for i, bad in refused] == [(2, "duplicate_id")]
    engine.router.flush(out)
    assert [orjson.loads(r[1])["id"] for r in out.answers] == ["a", "b"]
    assert engine.router.shards[("m", "")].seq == 2


def test_decoded_events_keep_features_as_values_until_a_run_converts_them():
    config = parse_config(regression_config_dict())
    decoder = EventDecoder(config, model_tasks(config))
    a = decoder.decode(
        b'{"id": "1", "model": "m", "kind": "observe", "features": [1, 2.5, -3], "label": 1, "attributes": {"segment": "b"}}'
    )
    b = decoder.decode(b'{"id": "2", "model": "m", "kind": "observe", "features": {"x2": 4, "x0": 5, "x1": 6}, "label": 2}')
    assert a.values == [1, 2.5, -3] and a.codes == [1] and b.codes == []
    run = Run.from_events("observe", [a, b])
    assert run.X.tolist() == [[1.0, 2.5, -3.0], [5.0, 6.0, 4.0]] and run.X.dtype == np.float64
    assert run.groups is not None and run.groups.tolist() == [[False, True, False, False, False, False], [False] * 6]
    assert np.array_equal(run.X[0], a.x) and np.array_equal(run.groups[0], a.groups)
