"""The daemon on a real Kafka-protocol broker (tansu, started here; or REGRETFLOW_TEST_BOOTSTRAP).

Events are produced by confluent-kafka's producer; the daemon consumes with its
default client (kafka-python) in a consumer group. Each test compares the final
per-partition checkpoints, bit for bit, with those of one uninterrupted run over the
same events.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.engine.runtime.checkpoint import latest_checkpoint
from tests.conftest import REGRETFLOW, flat
from tests.integration.kafka_broker import Broker, consume_all, free_port, produce

PARTITIONS = 3
KEYS = [f"k{i}" for i in range(6)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker") / "tansu.log")
    yield b
    b.stop()


def keyed_stream(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Observe/predict/feedback events for model m, keyed by shard key (Kafka key = model:key)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=3)
    out, waiting = [], {}
    for i in range(n):
        key = KEYS[int(rng.integers(len(KEYS)))]
        x = rng.normal(size=3)
        y = float(x @ w + 0.1 * rng.normal())
        seg = "abc"[i % 3]
        if i % 4 == 3:
            out.append({"id": f"p{i}", "model": "m", "kind": "predict", "key": key, "features": x.tolist(), "attributes": {"segment": seg}})
            waiting[key] = (f"p{i}", y)
        elif key in waiting and i % 4 == 1:
            ref, label = waiting.pop(key)
            out.append({"id": f"f{i}", "model": "m", "kind": "feedback", "key": key, "ref": ref, "label": label})
        else:
            out.append(
                {
                    "id": f"o{i}",
                    "model": "m",
                    "kind": "observe",
                    "key": key,
                    "features": x.tolist(),
                    "label": y,
                    "attributes": {"segment": seg},
                }
            )
    return [(f"m:{e['key']}".encode(), orjson.dumps(e)) for e in out]


def write_config(
    directory: Path, name: str, broker: Broker, topic: str, group: str, port: int, every_events: int = 500, backend: str = "kafka-python"
) -> Path:
    cfg = directory / f"{name}.toml"
    cfg.write_text(f"""
[source]
type = "kafka"
backend = "{backend}"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
session_timeout_ms = 2000
heartbeat_interval_ms = 500
request_timeout_ms = 5000
[answers]
type = "kafka"
topic = "{topic}-answers"
[dead_letters]
type = "kafka"
topic = "{topic}-dead"
[runtime]
batch_size = 64
batch_timeout_ms = 50
idle_exit_seconds = 6
[checkpoint]
dir = "{name}-state"
every_events = {every_events}
every_seconds = 1
[metrics]
port = {port}
refresh_seconds = 0.2
[models.m]
learner = "ridge"
features = ["x0", "x1", "x2"]
params = {{ lam = 1.0, shard_by_key = true }}
[[models.m.groups]]
name = "segment"
field = "segment"
values = ["a", "b", "c"]
[models.m.joins]
ttl_events = 50
""")
    return cfg


def start(cfg: Path, cwd: Path, log_name: str) -> subprocess.Popen:
    log = open(cwd / log_name, "ab")
    return subprocess.Popen([REGRETFLOW, "run", "--config", str(cfg)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def metric(port: int, name: str, labels: str = "") -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if labels and labels not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def final_states(state_dir: Path) -> dict[str, dict]:
    out = {}
    for part_dir in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        found = latest_checkpoint(part_dir)
        if found:
            out[part_dir.name] = found[0]
    return out


def assert_same_state(clean: dict, other: dict) -> None:
    assert clean.keys() == other.keys() and len(clean) == PARTITIONS
    for pid in clean:
        a, b = flat(clean[pid]), flat(other[pid])
        # the shards of a partition are listed in the order they were created: compare by (model, key)
        assert a["position/offset"] == b["position/offset"], pid
        assert a["events_seen"] == b["events_seen"] and a["valid_events"] == b["valid_events"], pid
        sa, sb = by_shard(clean[pid]["shards"]), by_shard(other[pid]["shards"])
        assert sa.keys() == sb.keys(), pid
        for sid in sa:
            fa, fb = flat(sa[sid]), flat(sb[sid])
            assert fa.keys() == fb.keys()
            for key in fa:
                if isinstance(fa[key], np.ndarray):
                    assert fa[key].dtype == fb[key].dtype and fa[key].tobytes() == fb[key].tobytes(), (pid, sid, key)
                else:
                    assert fa[key] == fb[key], (pid, sid, key)


def by_shard(shards: dict) -> dict:
    return {(s["model"], s["key"]): s for s in shards.values()}


def clean_run(broker, tmp_path, topic) -> dict:
    cfg = write_config(tmp_path, "clean", broker, topic, f"clean-{topic}", free_port(), every_events=10**9)
    proc = start(cfg, tmp_path, "clean.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "clean.log").read_text()[-3000:]
    return final_states(tmp_path / "clean-state")


def fault_test_setup(broker, tmp_path, name: str, events: int, seed: int):
    """A topic holding a keyed stream, the state an uninterrupted run reaches on it, and a config
    (with its metrics port) for the run under test."""
    topic = broker.create_topic(PARTITIONS, name)
    produce(broker.bootstrap, topic, keyed_stream(events, seed=seed))
    clean = clean_run(broker, tmp_path, topic)
    port = free_port()
    return topic, clean, port, write_config(tmp_path, name, broker, topic, f"{name}-{topic}", port)


def wait_for_events(proc, port: int, target: float, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = metric(port, "regretflow_events_total")
        dead = metric(port, "regretflow_dead_letters_total") or 0.0
        if seen is not None and seen + dead >= target:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_end_to_end_every_request_is_answered_and_metrics_show_the_stream(broker, tmp_path, backend):
    from regretflow.engine.cli.demo import demo_events

    topic = broker.create_topic(PARTITIONS, "e2e")
    events = demo_events(passes=1, models=["ridge"])  # the Medical costs data, as observe events
    bad = [b"not json", orjson.dumps({"id": "z", "model": "ridge", "kind": "observe", "features": [1.0], "label": 1.0})]
    produce(broker.bootstrap, topic, [(b"ridge", e) for e in events] + [(b"ridge", b) for b in bad])
    port = free_port()
    cfg = tmp_path / "e2e.toml"
    # answer headers are off by default: one backend runs with them on, the other checks they are absent
    answer_headers = "headers = true" if backend == "kafka-python" else ""
    from regretflow.connectors.datasets.insurance import load_insurance
    from regretflow.engine.cli.demo import DEMO_GROUPS

    features = list(load_insurance().feature_names)
    groups = "\n".join(
        f'[[models.ridge.groups]]\nname = "{g["name"]}"\nfield = "{g["field"]}"\n'
        + (f"values = {orjson.dumps(g['values']).decode()}\n" if "values" in g else f"edges = {list(g['edges'])}\n")
        for g in DEMO_GROUPS
    )
    cfg.write_text(f"""
[source]
type = "kafka"
backend = "{backend}"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "e2e-{backend}"
session_timeout_ms = 2000
heartbeat_interval_ms = 500
[answers]
type = "kafka"
topic = "{topic}-answers"
{answer_headers}
[dead_letters]
type = "kafka"
topic = "{topic}-dead"
[runtime]
idle_exit_seconds = 30
[checkpoint]
dir = "state"
[metrics]
port = {port}
refresh_seconds = 0.2
[models.ridge]
learner = "ridge"
features = {orjson.dumps(features).decode()}
{groups}
""")
    proc = start(cfg, tmp_path, "e2e.log")
    try:
        assert wait_for_events(proc, port, len(events) + len(bad)), (tmp_path / "e2e.log").read_text()[-3000:]
        time.sleep(0.5)
        assert metric(port, "regretflow_events_total", 'kind="observe"') == len(events)
        assert metric(port, "regretflow_dead_letters_total") == 2
        assert metric(port, "regretflow_group_rounds", 'group="smoker=yes"') == 274
        assert metric(port, "regretflow_owned_partitions") == PARTITIONS  # one worker owns them all
        assert metric(port, "regretflow_consumer_lag") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    answers = consume_all(broker.bootstrap, f"{topic}-answers", len(events))
    ids = [orjson.loads(m.value())["id"] for m in answers]
    assert sorted(set(ids)) == sorted(orjson.loads(e)["id"] for e in events)
    if answer_headers:
        headers = dict(answers[0].headers())
        assert headers["model"] == b"ridge" and headers["event_id"].decode() == orjson.loads(answers[0].value())["id"]
    else:
        assert not answers[0].headers()
    dead = consume_all(broker.bootstrap, f"{topic}-dead", 2)
    assert sorted(orjson.loads(m.value())["reason"] for m in dead) == ["missing_features", "not_json"]
    assert {m.key() for m in dead} == {b"_unknown_", b"ridge"}
    assert all(dict(m.headers())["reason"] in (b"missing_features", b"not_json") for m in dead)  # on by default for dead letters


def test_sigkill_at_random_points_gives_the_uninterrupted_state(broker, tmp_path):
    topic, clean, port, cfg = fault_test_setup(broker, tmp_path, "crash", 12_000, seed=1)
    rng = np.random.default_rng(3)
    targets = sorted(rng.integers(300, 1500, size=6))
    kills = 0
    for target in targets:
        proc = start(cfg, tmp_path, "crash.log")
        if wait_for_events(proc, port, target):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            proc.kill()
            proc.wait()
    assert kills >= 5, (tmp_path / "crash.log").read_text()[-3000:]
    proc = start(cfg, tmp_path, "crash.log")
    assert proc.wait(timeout=300) == 0
    assert_same_state(clean, final_states(tmp_path / "crash-state"))


def wait_for_metric(proc, port: int, name: str, target: float, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = metric(port, name)
        if value is not None and value >= target:
            return True
        time.sleep(0.05)
    return False


def wait_until(condition, procs, timeout: float = 120) -> bool:
    """Poll ``condition()`` until it holds; False on timeout or when a process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if condition():
            return True
        time.sleep(0.05)
    return False


def owned(port: int) -> float:
    return metric(port, "regretflow_owned_partitions") or 0.0


def coordinator_lines(log: str) -> str:
    """The membership story of a worker's log (its checkpoint lines left out)."""
    return "\n".join(line for line in log.splitlines() if "event=checkpoint" not in line)[-4000:]


def two_workers(broker, tmp_path, name: str, backend: str = "kafka-python"):
    """A topic with the first half of a keyed stream, and the configs of two workers A and B
    that share one group and one checkpoint directory."""
    topic = broker.create_topic(PARTITIONS, name)
    stream = keyed_stream(20_000, seed=2)
    produce(broker.bootstrap, topic, stream[:10_000])
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(tmp_path, "shared", broker, topic, f"{name}-{topic}", port_a, backend=backend)
    cfg_a.write_text(cfg_a.read_text().replace("idle_exit_seconds = 6", "idle_exit_seconds = 120"))
    cfg_b = tmp_path / "shared-b.toml"
    cfg_b.write_text(cfg_a.read_text().replace(f"port = {port_a}", f"port = {port_b}"))
    return topic, stream, (cfg_a, port_a), (cfg_b, port_b)


def b_leaves_then_a_finishes(a, b, port_a: int, events: int, tmp_path: Path) -> str:
    """B stops (it checkpoints, A restores its partitions); once A owns every partition and
    has applied every event it stops too. A's log."""
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=60) == 0
    assert wait_for_metric(a, port_a, "regretflow_owned_partitions", PARTITIONS)
    assert wait_for_metric(a, port_a, "regretflow_partition_events", events), (tmp_path / "a.log").read_text()[-3000:]
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=60) == 0, (tmp_path / "a.log").read_text()[-3000:]
    return (tmp_path / "a.log").read_text()


def test_a_second_worker_joins_and_leaves_without_loss_or_double_counting(broker, tmp_path):
    topic, stream, (cfg_a, port_a), (cfg_b, port_b) = two_workers(broker, tmp_path, "rebalance")
    a = start(cfg_a, tmp_path, "a.log")
    assert wait_for_events(a, port_a, 2_000), (tmp_path / "a.log").read_text()[-3000:]
    b = start(cfg_b, tmp_path, "b.log")
    # B joins: the group rebalances, A checkpoints what it gives up, B restores it. If A
    # misses the join window the group forms without it and it rejoins: either way the
    # two end up sharing the partitions.
    shared = wait_until(lambda: owned(port_a) >= 1 and owned(port_b) >= 1 and owned(port_a) + owned(port_b) == PARTITIONS, [a, b])
    assert shared, (
        coordinator_lines((tmp_path / "a.log").read_text()) + "\n--- B ---\n" + coordinator_lines((tmp_path / "b.log").read_text())
    )
    produce(broker.bootstrap, topic, stream[10_000:])
    assert wait_for_events(b, port_b, 500), (tmp_path / "b.log").read_text()[-3000:]
    log_a = b_leaves_then_a_finishes(a, b, port_a, len(stream), tmp_path)
    # A held all partitions, then its share, then all again
    assert log_a.count("event=assigned") >= 3 and "event=revoked" in log_a, coordinator_lines(log_a)
    clean = clean_run(broker, tmp_path, topic)
    assert_same_state(clean, final_states(tmp_path / "shared-state"))


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_a_stalled_worker_is_evicted_and_rejoins_without_double_counting(broker, tmp_path, backend):
    """A freezes (SIGSTOP) past its session timeout while B joins: the group evicts it and
    B takes every partition. A wakes up holding partitions it no longer owns; it must drop
    them unwritten (``event=lost``), rejoin, and the final state is the uninterrupted one."""
    topic, stream, (cfg_a, port_a), (cfg_b, port_b) = two_workers(broker, tmp_path, f"evict-{backend}", backend)
    a = start(cfg_a, tmp_path, "a.log")
    assert wait_for_events(a, port_a, 2_000), (tmp_path / "a.log").read_text()[-3000:]
    a.send_signal(signal.SIGSTOP)
    try:
        b = start(cfg_b, tmp_path, "b.log")
        assert wait_until(lambda: owned(port_b) == PARTITIONS, [b]), coordinator_lines((tmp_path / "b.log").read_text())
        produce(broker.bootstrap, topic, stream[10_000:])
        assert wait_for_events(b, port_b, 1_000), (tmp_path / "b.log").read_text()[-3000:]
    finally:
        a.send_signal(signal.SIGCONT)
    # A learns it was evicted, drops its partitions, rejoins: the two share the group
    assert wait_until(lambda: (metric(port_a, "regretflow_partitions_lost_total") or 0) >= PARTITIONS and owned(port_a) >= 1, [a, b]), (
        coordinator_lines((tmp_path / "a.log").read_text())
    )
    log_a = b_leaves_then_a_finishes(a, b, port_a, len(stream), tmp_path)
    assert "event=lost" in log_a and log_a.count("event=assigned") >= 2, coordinator_lines(log_a)
    clean = clean_run(broker, tmp_path, topic)
    assert_same_state(clean, final_states(tmp_path / "shared-state"))


def test_broker_outage_of_ten_seconds_loses_nothing(broker, tmp_path):
    topic, clean, port, cfg = fault_test_setup(broker, tmp_path, "outage", 8_000, seed=4)
    cfg.write_text(cfg.read_text().replace("idle_exit_seconds = 6", "idle_exit_seconds = 20"))
    proc = start(cfg, tmp_path, "outage.log")
    assert wait_for_events(proc, port, 1_000)
    broker.pause()
    try:
        time.sleep(10)
        assert proc.poll() is None, "the daemon must keep running while the broker is away"
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    finally:
        broker.resume()
    assert proc.wait(timeout=300) == 0, (tmp_path / "outage.log").read_text()[-3000:]
    assert_same_state(clean, final_states(tmp_path / "outage-state"))


def test_workers_flag_runs_a_group_of_processes_that_share_the_partitions(broker, tmp_path):
    topic, clean, port, cfg = fault_test_setup(broker, tmp_path, "workers", 6_000, seed=5)
    log = open(tmp_path / "workers.log", "ab")
    proc = subprocess.Popen([REGRETFLOW, "run", "--config", str(cfg), "--workers", "2"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    assert proc.wait(timeout=300) == 0, (tmp_path / "workers.log").read_text()[-3000:]
    text = (tmp_path / "workers.log").read_text()
    assert "event=supervise workers=2" in text
    # both workers owned partitions at some point (two distinct metrics ports started)
    assert text.count("event=start metrics=") == 2
    assert_same_state(clean, final_states(tmp_path / "workers-state"))
