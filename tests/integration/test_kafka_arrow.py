"""Arrow batches through a real Kafka-protocol broker (tansu): the example producer, Arrow answers, and
kill -9 inside messages of many events (docs/arrow.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.connectors.arrow import encode_batch, from_events, read_batch
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.loop import Engine
from tests.conftest import REGRETFLOW
from tests.integration.kafka_broker import Broker, consume_all, free_port, produce
from tests.integration.test_kafka_daemon import (
    PARTITIONS,
    assert_same_state,
    final_states,
    keyed_stream,
    start,
    wait_for_events,
    write_config,
)

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "stream_frame.py"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker") / "tansu.log")
    yield b
    b.stop()


def test_the_example_streams_a_frame_that_is_learned_as_its_json_events_and_answered_in_arrow(broker, tmp_path):
    topic = broker.create_topic(1, "frame")
    rows = 3000
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--bootstrap", broker.bootstrap, "--topic", topic, "--rows", str(rows), "--rows-per-message", "700"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{rows} events in 5 Arrow messages" in out.stdout
    model = """
[models.m]
learner = "ridge"
features = ["x0", "x1", "x2"]
[[models.m.groups]]
name = "segment"
field = "segment"
values = ["a", "b", "c"]
"""
    (tmp_path / "c.toml").write_text(f"""
[source]
type = "kafka"
backend = "confluent"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "g-{topic}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
[answers]
type = "kafka"
topic = "{topic}-answers"
backend = "confluent"
[dead_letters]
type = "kafka"
topic = "{topic}-dead"
[runtime]
batch_size = 256
answer_format = "arrow"
idle_exit_seconds = 4
[checkpoint]
dir = "state"
[metrics]
enabled = false
{model}""")
    run = subprocess.run([REGRETFLOW, "run", "--config", "c.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = consume_all(broker.bootstrap, f"{topic}-answers", 1)
    records = [r for m in answers for r in read_batch(m.value()).to_pylist()]
    assert len(records) == rows and len({r["id"] for r in records}) == rows
    assert all(dict(m.headers())["content-type"] == b"application/vnd.apache.arrow.stream" for m in answers)

    # the same rows as JSON events, in process: the same learner state, bit for bit
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from stream_frame import synthetic_frame
    finally:
        sys.path.pop(0)
    frame = synthetic_frame(rows)
    X, y, segments = frame[["x0", "x1", "x2"]].to_numpy(), frame["y"].to_numpy(), frame["attributes.segment"].tolist()
    json_events = [
        orjson.dumps(
            {
                "id": f"row-{i}",
                "model": "m",
                "kind": "observe",
                "features": X[i].tolist(),
                "label": float(y[i]),
                "attributes": {"segment": segments[i]},
            }
        )
        for i in range(rows)
    ]
    config = parse_config(
        {
            "models": {
                "m": {
                    "learner": "ridge",
                    "features": ["x0", "x1", "x2"],
                    "groups": [{"name": "segment", "field": "segment", "values": ["a", "b", "c"]}],
                }
            }
        }
    )
    engine = Engine(config, MemorySource(json_events), MemorySink(), MemorySink(), serve_metrics=False)
    engine.run()
    (state,) = final_states(tmp_path / "state").values()
    learner = engine.router.shards[("m", "")].learner.state_dict()
    shard = next(iter(state["shards"].values()))
    for name, value in learner.items():
        if isinstance(value, np.ndarray):
            assert np.asarray(shard["learner"][name]).tobytes() == value.tobytes(), name


def arrow_keyed_messages(events: list[tuple[bytes, bytes]], rows_per_message: int) -> list[tuple[bytes, bytes]]:
    """The keyed stream as Arrow messages: each Kafka key's events in order, ``rows_per_message`` a message,
    the keys' messages interleaved (one key's messages stay in one partition, in order)."""
    by_key: dict[bytes, list[dict]] = defaultdict(list)
    for key, value in events:
        by_key[key].append(orjson.loads(value))
    queues = {
        key: [encode_batch(from_events(evs[i : i + rows_per_message])) for i in range(0, len(evs), rows_per_message)]
        for key, evs in by_key.items()
    }
    out = []
    for i in range(max(len(q) for q in queues.values())):
        out += [(key, q[i]) for key, q in queues.items() if i < len(q)]
    return out


def test_sigkill_inside_arrow_messages_gives_the_uninterrupted_state(broker, tmp_path):
    """Messages of 300 events, micro-batches of 64 and a checkpoint every 100 events: nearly every checkpoint
    falls inside a message, so each restart resumes at a row of one; the end state is the uninterrupted run's."""
    topic = broker.create_topic(PARTITIONS, "arrow-crash")
    messages = arrow_keyed_messages(keyed_stream(9_000, seed=4), rows_per_message=300)
    produce(broker.bootstrap, topic, messages)
    clean_cfg = write_config(tmp_path, "clean", broker, topic, f"clean-{topic}", free_port(), every_events=10**9)
    proc = start(clean_cfg, tmp_path, "clean.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "clean.log").read_text()[-3000:]
    clean = final_states(tmp_path / "clean-state")

    port = free_port()
    cfg = write_config(tmp_path, "crash", broker, topic, f"crash-{topic}", port, every_events=100)
    rng = np.random.default_rng(5)
    kills = 0
    inside = 0  # restarts from a checkpoint inside a message
    for target in sorted(rng.integers(300, 1500, size=5)):
        proc = start(cfg, tmp_path, "crash.log")
        if wait_for_events(proc, port, target):
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            proc.kill()
        proc.wait()
        inside += any(state["position"].get("row", 0) > 0 for state in final_states(tmp_path / "crash-state").values())
    assert kills >= 4, (tmp_path / "crash.log").read_text()[-3000:]
    assert inside >= 2
    proc = start(cfg, tmp_path, "crash.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "crash.log").read_text()[-3000:]
    assert_same_state(clean, final_states(tmp_path / "crash-state"))


def test_the_arrow_benchmark_runs_through_the_broker_on_a_tiny_size():
    """A smoke run of tests/benchmarks/bench_arrow.py with its broker part (no timing is asserted)."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_arrow.py"
    args = ["--events", "3000", "--rows-per-message", "500", "--batch", "256", "--repeat", "1"]
    out = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "agree: yes" in out.stdout and "engine / raw:" in out.stdout
