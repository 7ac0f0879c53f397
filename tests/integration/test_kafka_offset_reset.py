"""A recreated topic is never silent: the daemon on a real tansu broker that is restarted
(tansu keeps topics in memory, so a restart loses them all) and whose topic is created
again with fewer records than the daemon had consumed.

``source.on_offset_reset = "fail"`` ends the worker non-zero with one clear line and
leaves the checkpoints as they were; ``"earliest"`` resumes from the new log's start
with the learner state kept. Both backends, between two runs and during one.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import REGRETFLOW
from tests.integration.kafka_broker import Broker, free_port, produce
from tests.integration.test_kafka_daemon import final_states, metric, start, wait_until

PARTITIONS = 2
BACKENDS = ["kafka-python", "confluent"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: the tests restart it."""
    b = Broker(tmp_path_factory.mktemp("broker") / "tansu.log")
    yield b
    b.stop()


def events(first: int, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` observe events with ids ``first``.. spread over the partitions by key."""
    out = []
    for i in range(first, first + n):
        event = {"id": f"o{i}", "model": "m", "kind": "observe", "features": [1.0, float(i % 7)], "label": float(i % 5)}
        out.append((f"k{i % 16}".encode(), orjson.dumps(event)))
    return out


def write_config(directory: Path, broker: Broker, topic: str, backend: str, policy: str, port: int, idle_exit: float = 60) -> Path:
    cfg = directory / f"{policy}.toml"
    cfg.write_text(f"""
[source]
type = "kafka"
backend = "{backend}"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "g-{topic}"
session_timeout_ms = 2000
heartbeat_interval_ms = 500
request_timeout_ms = 5000
on_offset_reset = "{policy}"
[answers]
type = "null"
[dead_letters]
type = "null"
[runtime]
batch_size = 64
batch_timeout_ms = 50
idle_exit_seconds = {idle_exit}
[checkpoint]
dir = "state"
every_events = 100
every_seconds = 1
[metrics]
port = {port}
refresh_seconds = 0.2
[models.m]
learner = "ridge"
features = ["x0", "x1"]
""")
    return cfg


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def applied(state_dir: Path) -> tuple[int, set[str | None]]:
    """Events in the newest checkpoints, summed over partitions, and the topic ids their positions name."""
    states = final_states(state_dir)
    return sum(s["events_seen"] for s in states.values()), {s["position"].get("topic_id") for s in states.values()}


def run_until_applied(cfg: Path, cwd: Path, log: str, port: int, events_applied: int) -> str:
    """Run the daemon until its partitions hold ``events_applied`` events, then SIGTERM it (exit 0)."""
    proc = start(cfg, cwd, log)
    try:
        done = wait_until(lambda: (metric(port, "regretflow_partition_events") or 0) >= events_applied, [proc])
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    text = (cwd / log).read_text()
    assert done and rc == 0, text[-3000:]
    return text


def recreate(broker: Broker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Restart tansu (every topic is lost) and create ``topic`` again with ``records``. A daemon still running
    may ask for the topic first, and tansu then creates it itself (with 4 partitions instead of PARTITIONS): the
    topic is recreated either way, and the tests count events over every partition."""
    broker.restart()
    broker.create_topic(PARTITIONS, name=topic, exist_ok=True)
    produce(broker.bootstrap, topic, records)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restart_onto_a_recreated_topic_fails_loudly_then_earliest_resumes_from_its_start(broker, tmp_path, backend):
    topic = broker.create_topic(PARTITIONS, f"recreated-{backend}")
    produce(broker.bootstrap, topic, events(0, 600))
    port = free_port()
    cfg = write_config(tmp_path, broker, topic, backend, "fail", port)
    run_until_applied(cfg, tmp_path, "first.log", port, 600)
    seen, old_ids = applied(tmp_path / "state")
    assert seen == 600 and None not in old_ids and len(old_ids) == 1  # tansu has topic ids, and they are checkpointed
    checkpointed = len(final_states(tmp_path / "state"))

    recreate(broker, topic, events(10_000, 150))
    before = snapshot(tmp_path / "state")
    proc = start(cfg, tmp_path, "fail.log")
    rc = proc.wait(timeout=120)
    log = (tmp_path / "fail.log").read_text()
    assert rc == 1, log[-3000:]
    assert "event=offset_reset" in log and "reason=topic_recreated action=fail" in log, log[-3000:]
    assert f"Kafka topic {topic} partition" in log and 'source.on_offset_reset = "fail"' in log, log[-3000:]
    assert snapshot(tmp_path / "state") == before

    cfg = write_config(tmp_path, broker, topic, backend, "earliest", port)
    log = run_until_applied(cfg, tmp_path, "earliest.log", port, 600 + 150)
    assert log.count("event=offset_reset") == checkpointed and "reason=topic_recreated action=earliest" in log, log[-3000:]
    seen, new_ids = applied(tmp_path / "state")
    assert seen == 600 + 150, log[-3000:]  # the old state kept, every new record applied once
    assert len(new_ids) == 1 and new_ids.isdisjoint(old_ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broker_restart_under_a_running_daemon_is_reset_per_policy_and_counted(broker, tmp_path, backend):
    topic = broker.create_topic(PARTITIONS, f"live-{backend}")
    produce(broker.bootstrap, topic, events(0, 600))
    port = free_port()
    cfg = write_config(tmp_path, broker, topic, backend, "earliest", port)
    proc = start(cfg, tmp_path, "live.log")
    try:
        assert wait_until(lambda: (metric(port, "regretflow_partition_events") or 0) >= 600, [proc]), (tmp_path / "live.log").read_text()[
            -3000:
        ]
        recreate(broker, topic, events(10_000, 150))
        resets = f'action="earliest",partition="0",topic="{topic}"'
        assert wait_until(
            lambda: (
                (metric(port, "regretflow_partition_events") or 0) >= 750
                and (metric(port, "regretflow_source_offset_resets_total", resets) or 0) >= 1
            ),
            [proc],
            timeout=90,
        ), (tmp_path / "live.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    log = (tmp_path / "live.log").read_text()
    assert rc == 0, log[-3000:]
    assert "reason=topic_recreated action=earliest" in log, log[-3000:]
    seen, ids = applied(tmp_path / "state")
    assert seen == 750 and len(ids) == 1, log[-3000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broker_restart_under_a_running_daemon_stops_it_under_fail_with_only_the_old_log_applied(broker, tmp_path, backend):
    topic = broker.create_topic(PARTITIONS, f"live-fail-{backend}")
    produce(broker.bootstrap, topic, events(0, 600))
    port = free_port()
    cfg = write_config(tmp_path, broker, topic, backend, "fail", port)
    proc = start(cfg, tmp_path, "live.log")
    try:
        assert wait_until(lambda: (metric(port, "regretflow_partition_events") or 0) >= 600, [proc]), (tmp_path / "live.log").read_text()[
            -3000:
        ]
        _, old_ids = applied(tmp_path / "state")
        recreate(broker, topic, events(10_000, 150))
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "live.log").read_text()
    assert rc == 1, log[-3000:]
    assert "reason=topic_recreated action=fail" in log and 'source.on_offset_reset = "fail" stops here' in log, log[-3000:]
    seen, ids = applied(tmp_path / "state")
    assert seen == 600 and ids == old_ids, log[-3000:]  # not one record of the new log in any checkpoint


def test_an_unknown_offset_reset_policy_is_a_config_error_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[source]\ntype = "kafka"\ntopics = ["t"]\non_offset_reset = "skip"\n[models.m]\nlearner = "ridge"\nfeatures = ["x"]\n')
    done = subprocess.run([REGRETFLOW, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "source.on_offset_reset: 'skip' is not one of fail, earliest, latest" in done.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checkpoint_past_the_end_of_the_log_is_caught_without_a_topic_id(broker, backend):
    """An old checkpoint (or a broker without topic ids) gives no id to compare: a position past
    the end of the log the broker serves is caught by the fetch's end alone, before any record."""
    from regretflow.connectors.kafka import KafkaSource, OffsetResetError

    topic = broker.create_topic(1, f"past-end-{backend}")
    produce(broker.bootstrap, topic, events(0, 40))
    options = {
        "backend": backend,
        "bootstrap_servers": broker.bootstrap,
        "topics": [topic],
        "group_id": f"g-{topic}",
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 500,
    }

    def consume(policy: str, polls: int = 60) -> list:
        source = KafkaSource({**options, "on_offset_reset": policy})
        source.set_listener(lambda pids: [source.seek(pid, {"offset": 5_000}) for pid in pids], lambda pids: None)
        got = []
        try:
            for _ in range(polls):
                got.extend(source.poll(100, 0.1))
                if len(got) >= 40:
                    break
        finally:
            source.close()
        return got, source

    with pytest.raises(OffsetResetError) as failed:
        consume("fail")
    assert (failed.value.reason, failed.value.position, failed.value.high) == ("past_log_end", 5_000, 40)
    got, source = consume("earliest")
    assert [orjson.loads(v)["id"] for _, v in got] == [f"o{i}" for i in range(40)]
    assert source.offset_resets == {(topic, "0", "earliest"): 1} and source.errors >= 1


@pytest.mark.parametrize("stop", ["sigterm", "idle_exit"])
def test_the_confluent_backend_exits_0_with_file_sinks(broker, tmp_path, stop):
    """librdkafka reports the revocation while the consumer closes, after the engine closed its sinks:
    nothing may raise through it (it used to end in a SystemError, exit 1)."""
    topic = broker.create_topic(PARTITIONS, f"exit-{stop}")
    produce(broker.bootstrap, topic, events(0, 300))
    port = free_port()
    cfg = write_config(tmp_path, broker, topic, "confluent", "fail", port, idle_exit=6 if stop == "idle_exit" else 60)
    cfg.write_text(
        cfg.read_text()
        .replace('[answers]\ntype = "null"', '[answers]\ntype = "jsonl"\npath = "answers.jsonl"')
        .replace('[dead_letters]\ntype = "null"', '[dead_letters]\ntype = "jsonl"\npath = "dead.jsonl"')
    )
    proc = start(cfg, tmp_path, "exit.log")
    if stop == "sigterm":
        assert wait_until(lambda: (metric(port, "regretflow_partition_events") or 0) >= 300, [proc]), (tmp_path / "exit.log").read_text()[
            -3000:
        ]
        proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
    log = (tmp_path / "exit.log").read_text()
    assert rc == 0, log[-3000:]
    assert "event=stop events=300" in log and "Traceback" not in log, log[-3000:]
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == 300
