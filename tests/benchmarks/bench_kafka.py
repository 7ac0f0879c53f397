"""Benchmark (not collected by pytest): the daemon on a real broker, per worker.

    .venv/bin/python tests/benchmarks/bench_kafka.py [--events 100000] [--rates 5000,20000]

Starts tansu on 127.0.0.1, then for each client backend (kafka-python, confluent):

1. the raw consume rate of that client over the topic (no engine);
2. end-to-end events/s of one worker (consume, decode, validate, learn, regret, answer
   produced to the answer topic) for the ridge model and, if the build has it, the
   groupwise model, at d = 32, next to (1) as a percentage;
3. predict latency from produce to answer at fixed offered loads: a producer thread
   sends ``predict`` events at the given rate, a consumer reads the answers, and the
   p50/p99 of (answer received - request produced) is printed, next to the same load
   through a bare consume->produce relay with no engine (the broker's own floor).
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.kafka_broker import Broker, free_port, produce  # noqa: E402

D = 32
NAMES = [f"x{i}" for i in range(D)]


def events(n: int, model: str, kind: str = "observe", seed: int = 0) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    y = X @ rng.normal(size=D)
    out = []
    for i in range(n):
        e = {"id": f"e{i}", "model": model, "kind": kind, "features": X[i].tolist(), "attributes": {"seg": "abcdef"[i % 6]}}
        if kind == "observe":
            e["label"] = float(y[i])
        out.append((model.encode(), orjson.dumps(e)))
    return out


def raw_consume(backend: str, bootstrap: str, topic: str, n: int) -> float:
    """Records/s from the first record to the last (the group join is not consumption)."""
    got, t0 = 0, None
    if backend == "confluent":
        from confluent_kafka import Consumer

        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": uuid.uuid4().hex,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        c.subscribe([topic])
        first = 0
        while got < n:
            k = sum(1 for m in c.consume(512, 0.05) if m.error() is None)
            if k and t0 is None:
                t0, first = time.perf_counter(), k  # the clock starts at the first batch
            got += k
        got -= first
    else:
        from kafka import KafkaConsumer

        c = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=uuid.uuid4().hex,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=512,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        first = 0
        while got < n:
            k = sum(len(v) for v in c.poll(timeout_ms=1000).values())
            if k and t0 is None:
                t0, first = time.perf_counter(), k
            got += k
        got -= first
    elapsed = time.perf_counter() - t0
    c.close()
    return got / elapsed


def config_text(bootstrap: str, topic: str, backend: str, model: str, learner: str, port: int, idle: float) -> str:
    groups = "".join(f'\n[[models.{model}.groups]]\nname = "seg{j}"\nfield = "seg"\nvalues = ["{"abcdef"[j]}"]\n' for j in range(6))
    return f"""
[source]
type = "kafka"
backend = "{backend}"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "bench-{uuid.uuid4().hex[:6]}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
fetch_max_wait_ms = 1
[answers]
type = "kafka"
topic = "{topic}-answers"
linger_ms = 1
[dead_letters]
type = "null"
[runtime]
batch_size = 512
batch_timeout_ms = 2
idle_exit_seconds = {idle}
[metrics]
port = {port}
[models.{model}]
learner = "{learner}"
features = {orjson.dumps(NAMES).decode()}
{groups}
"""


def end_to_end(broker: Broker, backend: str, model: str, learner: str, n: int, tmp: Path) -> float:
    topic = broker.create_topic(1, f"bench-{model}")
    produce(broker.bootstrap, topic, events(n, model))
    cfg = tmp / f"{topic}.toml"
    cfg.write_text(config_text(broker.bootstrap, topic, backend, model, learner, free_port(), idle=20))
    # the worker prints its own processing span: first to last event
    out = subprocess.run([sys.executable, "-c", WORKER, str(cfg)], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    if out.stdout.startswith("None"):
        raise RuntimeError("the worker saw no event: " + out.stderr[-3000:])
    first, last, count, in_first = (float(v) for v in out.stdout.split())
    assert int(count) == n, (count, n)
    return (n - in_first) / (last - first)


WORKER = r"""
import sys, time
from regretflow.engine.config import load_config
from regretflow.engine.cli.daemon import open_source, open_sink
from regretflow.engine.runtime.loop import Engine
cfg = load_config(sys.argv[1])
src = open_source(cfg, cfg.source)
eng = Engine(cfg, src, open_sink(cfg, cfg.answers, "answers"), open_sink(cfg, cfg.dead_letters, "dead_letters"), serve_metrics=False)
first = last = None
in_first = 0
orig = eng.process
def timed(records):
    global first, last, in_first
    orig(records)
    if first is None:  # the clock starts after the first batch, as for the raw consumer
        first, in_first = time.perf_counter(), len(records)
    last = time.perf_counter()
eng.process = timed
eng.run()
print(first, last, eng.events_seen, in_first)
"""


def latency(broker: Broker, backend: str, rate: float, seconds: float, tmp: Path) -> tuple[float, float, int]:
    from confluent_kafka import Consumer, Producer

    topic = broker.create_topic(1, "lat")
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    # the answer topic must exist before the reader subscribes: librdkafka refreshes
    # the metadata of a missing topic only every few minutes
    admin.create_topics([NewTopic(f"{topic}-answers", num_partitions=1, replication_factor=1)])
    admin.close()
    cfg = tmp / f"{topic}.toml"
    cfg.write_text(config_text(broker.bootstrap, topic, backend, "m", "ridge", free_port(), idle=0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "regretflow.engine.cli.main", "run", "--config", str(cfg)], stderr=open(tmp / f"{topic}.log", "wb")
    )
    # earliest: tansu's end offsets are unreliable (see docs/kafka.md); warm-up answers are ignored by id.
    # A short session: a group join takes about half of it on tansu.
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 1,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    consumer.subscribe([f"{topic}-answers"])
    sent: dict[str, float] = {}
    lat: list[float] = []
    warm = events(1, "m", kind="predict")[0][1]
    # linger 2 ms: tansu takes only a few thousand single-record produce requests per second
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
    # warm up: wait until the worker answers
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        producer.produce(topic, key=b"m", value=warm.replace(b'"e0"', b'"warm-%d"' % int(time.monotonic() * 1e6)))
        producer.flush()
        msgs = consumer.consume(100, 0.5)
        if any(m.error() is None for m in msgs):
            break
    payloads = events(int(rate * seconds), "m", kind="predict", seed=1)
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            for m in consumer.consume(1000, 0.05):
                if m.error() is None:
                    now = time.perf_counter()
                    eid = orjson.loads(m.value())["id"]
                    if eid in sent:
                        lat.append(now - sent[eid])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = time.perf_counter()
    for i, (key, value) in enumerate(payloads):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:  # sleep, never spin: on 2 cores a spinning producer starves the worker and the broker
            time.sleep(wait)
        eid = f"e{i}"
        sent[eid] = time.perf_counter()
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    producer.flush()
    deadline = time.monotonic() + 30  # let the worker drain what it queued
    while len(lat) < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    t.join()
    proc.terminate()
    proc.wait(timeout=60)
    consumer.close()
    arr = np.array(lat) * 1e3
    if not len(arr):
        return float("nan"), float("nan"), 0  # no answer came back within the window
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), len(arr)


def relay_latency(broker: Broker, rate: float, seconds: float) -> tuple[float, float, int]:
    """The broker's own floor: the same load through a bare consume->produce relay, no engine."""
    from confluent_kafka import Consumer, Producer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = broker.create_topic(1, "relay")
    answers = f"{topic}-answers"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(answers, num_partitions=1, replication_factor=1)])
    admin.close()
    stop = threading.Event()

    def relay():
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "relay",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 1,
                "session.timeout.ms": 6000,
            }
        )
        c.subscribe([topic])
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
        while not stop.is_set():
            for m in c.consume(512, 0.002):
                if m.error() is None:
                    p.produce(answers, m.value())
            p.poll(0)
        p.flush()
        c.close()

    reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 1,
            "session.timeout.ms": 6000,
        }
    )
    reader.subscribe([answers])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
    threading.Thread(target=relay, daemon=True).start()
    time.sleep(5)  # both group joins
    payloads = events(int(rate * seconds), "m", kind="predict", seed=1)
    sent: dict[str, float] = {}
    lat: list[float] = []

    def read():
        while not stop.is_set():
            for m in reader.consume(1000, 0.05):
                if m.error() is None:
                    eid = orjson.loads(m.value())["id"]
                    if eid in sent:
                        lat.append(time.perf_counter() - sent[eid])

    threading.Thread(target=read, daemon=True).start()
    start = time.perf_counter()
    for i, (key, value) in enumerate(payloads):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        sent[f"e{i}"] = time.perf_counter()
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    producer.flush()
    deadline = time.monotonic() + 30
    while len(lat) < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    arr = np.array(lat) * 1e3
    if not len(arr):
        return float("nan"), float("nan"), 0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), len(arr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rates", default="5000,20000")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    import tempfile

    from regretflow.learners import LEARNERS

    tmp = Path(tempfile.mkdtemp())
    broker = Broker(tmp / "tansu.log")
    try:
        raw_topic = broker.create_topic(1, "raw")
        produce(broker.bootstrap, raw_topic, events(args.events, "m"))
        models = [("m", "ridge")] + ([("g", "groupwise")] if "groupwise" in LEARNERS else [])
        print(f"\nKafka (tansu on 127.0.0.1), one worker, d = {D}, {args.events:,} events")
        print(f"{'backend':<14}{'path':<34}{'events/s':>12}{'% of raw':>10}")
        for backend in ("kafka-python", "confluent"):
            raw = raw_consume(backend, broker.bootstrap, raw_topic, args.events)
            print(f"{backend:<14}{'raw consume (no engine)':<34}{raw:>12,.0f}{100.0:>9.0f}%")
            for model, learner in models:
                rate = end_to_end(broker, backend, model, learner, args.events, tmp)
                print(f"{backend:<14}{'engine end to end: ' + learner:<34}{rate:>12,.0f}{100 * rate / raw:>9.0f}%")
        print(f"\npredict latency, produce -> answer (ms), ridge, {args.seconds:.0f} s at each offered load")
        print(f"{'backend':<14}{'offered ev/s':>14}{'p50':>10}{'p99':>10}{'answers':>10}")
        for rate in (float(r) for r in args.rates.split(",")):
            p50, p99, count = relay_latency(broker, rate, args.seconds)
            print(f"{'relay, no engine':<14}{rate:>14,.0f}{p50:>10.2f}{p99:>10.2f}{count:>10,}")
        for backend in ("confluent", "kafka-python"):
            for rate in (float(r) for r in args.rates.split(",")):
                p50, p99, count = latency(broker, backend, rate, args.seconds, tmp)
                print(f"{backend:<14}{rate:>14,.0f}{p50:>10.2f}{p99:>10.2f}{count:>10,}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
