"""Benchmark (not collected by pytest): Arrow batches of events, in process and through a broker.

    .venv/bin/python tests/benchmarks/bench_arrow.py [--events 200000] [--rows-per-message 2000] [--batch 4096] [--no-kafka]

Ridge at d = 32, measured side by side in one run:

1. in process: the engine reading Arrow messages and answering with Arrow messages
   (decode, column-wise validation, route, learn, regret, answers, metrics) against the
   bare learner, ``OnlineRidge.observe_many``, on the same matrix in the same
   micro-batches (target: at most 2x), with the engine answering in JSON and the engine on
   the same events as JSON beside them. CPU seconds of this process, best of ``--repeat``
   (the machine is shared: wall-clock time would count other processes); the timed runs
   keep no answers (a sink that keeps every answer makes the garbage collector walk
   them all), one more run checks that the engine's answers equal the bare learner's
   prequential predictions ("agree");
2. through tansu with confluent-kafka: the daemon consuming Arrow messages, answering
   with Arrow messages, against a raw consumer of the same messages, both in events/s
   (target: at least 80% of the raw event rate), with the engine's own CPU time per event
   (its main thread) and the bare learner's rate on the same rows, the ceiling of any
   engine that learns them.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

D = 32
NAMES = [f"x{i}" for i in range(D)]


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    return X, X @ rng.normal(size=D) + 0.1 * rng.normal(size=n)


def read_batch(payload: bytes):
    from regretflow.connectors.arrow import read_batch as read

    return read(payload)


def arrow_messages(X: np.ndarray, y: np.ndarray, rows_per_message: int, model: str = "m") -> list[bytes]:
    from regretflow.connectors.arrow import encode_batch, to_record_batch

    out = []
    for lo in range(0, len(X), rows_per_message):
        hi = min(lo + rows_per_message, len(X))
        columns = {"id": [f"e{i}" for i in range(lo, hi)], "features": X[lo:hi], "label": y[lo:hi]}
        out.append(encode_batch(to_record_batch(columns, model=model, kind="observe")))
    return out


def json_events(X: np.ndarray, y: np.ndarray, model: str = "m") -> list[bytes]:
    return [
        orjson.dumps({"id": f"e{i}", "model": model, "kind": "observe", "features": X[i].tolist(), "label": float(y[i])})
        for i in range(len(X))
    ]


def config(batch: int, **top):
    from regretflow.engine.config import parse_config

    return parse_config({"models": {"m": {"learner": "ridge", "features": NAMES}}, "runtime": {"batch_size": batch}, **top})


def best_of(repeat: int, fn):
    """The fastest of ``repeat`` runs in CPU seconds of this process (one BLAS thread), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t)
    return best, result


def in_process(n: int, rows_per_message: int, batch: int, repeat: int) -> dict[str, float]:
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.runtime.loop import Engine
    from regretflow.learners import OnlineRidge

    X, y = data(n)
    messages = arrow_messages(X, y, rows_per_message)
    payloads = json_events(X, y)

    def bare():
        learner = OnlineRidge(features=NAMES)
        return np.concatenate([learner.observe_many(X[lo : lo + batch], y[lo : lo + batch]) for lo in range(0, n, batch)])

    def engine(source_payloads, answer_format="json", keep=False):
        def go():
            answers = MemorySink(keep=keep)
            top = {"answers": {"type": "memory"}, "runtime": {"batch_size": batch, "answer_format": answer_format}}
            eng = Engine(config(batch, **top), MemorySource(source_payloads), answers, MemorySink(keep=False), serve_metrics=False)
            started = time.process_time()  # (the engine is built before the clock starts)
            eng.run()
            return time.process_time() - started, answers.records

        return go

    bare()  # compile / load the kernels
    t_bare, preds = best_of(repeat, bare)
    t_arrow_answers = min(engine(messages, "arrow")()[0] for _ in range(repeat))
    t_arrow = min(engine(messages)()[0] for _ in range(repeat))
    t_json = min(engine(payloads)()[0] for _ in range(max(1, repeat - 1)))
    _, answers = engine(messages, "arrow", keep=True)()
    answered = np.array([row["prediction"] for r in answers for row in read_batch(r[1]).to_pylist()])
    agree = len(answered) == n and bool(np.array_equal(answered, preds))
    us = 1e6 / n
    print(f"\nin process: ridge, d = {D}, {n} events, micro-batches of {batch}, Arrow messages of {rows_per_message} rows")
    print(f"{'path':58s} {'us/event':>9s} {'x bare':>7s}")
    for name, t in (
        ("bare learner: observe_many on the same matrix", t_bare),
        ("engine, Arrow messages in, Arrow answers", t_arrow_answers),
        ("engine, Arrow messages in, JSON answers", t_arrow),
        ("engine, JSON events in, JSON answers", t_json),
    ):
        print(f"{name:58s} {t * us:9.2f} {t / t_bare:7.2f}")
    print(
        f"Arrow engine / bare: {t_arrow_answers / t_bare:.2f}x (target <= 2x; with JSON answers {t_arrow / t_bare:.2f}x); "
        f"JSON engine / Arrow engine: {t_json / t_arrow_answers:.2f}x"
    )
    print(f"agree: {'yes' if agree else 'NO'} (engine answers == observe_many predictions)")
    return {"bare": t_bare, "arrow": t_arrow_answers, "arrow_json_answers": t_arrow, "json": t_json, "agree": float(agree)}


WORKER = r"""
import sys, time
from regretflow.engine.config import load_config
from regretflow.engine.cli.daemon import open_source, open_sink
from regretflow.engine.runtime.loop import Engine
cfg = load_config(sys.argv[1])
eng = Engine(cfg, open_source(cfg, cfg.source), open_sink(cfg, cfg.answers, "answers"),
             open_sink(cfg, cfg.dead_letters, "dead_letters"), serve_metrics=False)
first = last = None
in_first = 0
cpu_first = cpu_last = 0.0
process = eng.process
def timed(records):
    global first, last, in_first, cpu_first, cpu_last
    process(records)
    if first is None:  # the clock starts after the first batch, as for the raw consumer
        first, in_first, cpu_first = time.perf_counter(), eng.events_seen, time.thread_time()
    last, cpu_last = time.perf_counter(), time.thread_time()
eng.process = timed
eng.run()
print(first, last, eng.events_seen, in_first, cpu_last - cpu_first)
"""


def raw_consume(bootstrap: str, topic: str, messages: int, rows_per_message: int) -> float:
    """Events/s of a bare confluent-kafka consumer over the messages (each holds rows_per_message events),
    from the first batch to the last, as the engine is timed."""
    import uuid

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
    while not any(m.error() is None for m in c.consume(1, 0.05)):  # the clock starts after the first message
        pass
    t0, got = time.perf_counter(), 1
    while got < messages:
        got += sum(1 for m in c.consume(64, 0.05) if m.error() is None)
    elapsed = time.perf_counter() - t0
    c.close()
    return (got - 1) * rows_per_message / elapsed


def through_kafka(n: int, rows_per_message: int, batch: int) -> dict[str, float]:
    from tests.integration.kafka_broker import Broker, free_port, produce

    X, y = data(n, seed=1)
    messages = arrow_messages(X, y, rows_per_message)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "tansu.log")
        try:
            topic = broker.create_topic(1, "bench-arrow")
            produce(broker.bootstrap, topic, [(b"m", m) for m in messages])
            raw = raw_consume(broker.bootstrap, topic, len(messages), rows_per_message)
            cfg = Path(tmp) / "c.toml"
            cfg.write_text(f"""
[source]
type = "kafka"
backend = "confluent"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "bench-{topic}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
fetch_max_wait_ms = 1
[answers]
type = "kafka"
backend = "confluent"
topic = "{topic}-answers"
linger_ms = 1
[dead_letters]
type = "null"
[runtime]
batch_size = {batch}
batch_timeout_ms = 2
idle_exit_seconds = 5
answer_format = "arrow"
[metrics]
port = {free_port()}
[models.m]
learner = "ridge"
features = {orjson.dumps(NAMES).decode()}
""")
            out = subprocess.run([sys.executable, "-c", WORKER, str(cfg)], capture_output=True, text=True, timeout=900)
            if out.returncode != 0 or out.stdout.startswith("None"):
                raise RuntimeError(out.stderr[-3000:])
            first, last, count, in_first, cpu = (float(v) for v in out.stdout.split())
            assert int(count) == n, (count, n)
            engine = (n - in_first) / (last - first)
            cpu_us = 1e6 * cpu / (n - in_first)
        finally:
            broker.stop()
    print(f"\nthrough tansu (confluent-kafka): {n} events in {len(messages)} Arrow messages of {rows_per_message} rows")
    print(f"{'path':58s} {'events/s':>10s} {'% raw':>6s}")
    print(f"{'raw consume of the same messages':58s} {raw:10.0f} {100:6.0f}")
    print(f"{'engine: Arrow in, ridge, Arrow answers produced':58s} {engine:10.0f} {100 * engine / raw:6.0f}")
    bare = bare_rate(X, y, batch)
    print(f"{'(ceiling) bare observe_many on the same rows, CPU time':58s} {bare:10.0f} {100 * bare / raw:6.0f}")
    print(f"engine / raw: {100 * engine / raw:.0f}% (target >= 80%); the engine's main thread: {cpu_us:.2f} us CPU per event")
    return {"raw": raw, "engine": engine, "bare": bare}


def bare_rate(X: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Events/s of ``observe_many`` alone on the rows, in CPU time (the most any engine that learns them can do)."""
    from regretflow.learners import OnlineRidge

    def go():
        learner = OnlineRidge(features=NAMES)
        for lo in range(0, len(X), batch):
            learner.observe_many(X[lo : lo + batch], y[lo : lo + batch])

    go()
    return len(X) / best_of(3, go)[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rows-per-message", type=int, default=2_000, help="about 650 kB a message at d = 32 (brokers take 1 MB)")
    ap.add_argument("--batch", type=int, default=4096, help="runtime.batch_size and the bare learner's batches")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-kafka", action="store_true", help="only the in-process comparison")
    args = ap.parse_args(argv)
    print(f"BLAS pinned: {_pin.describe()}")
    in_process(args.events, args.rows_per_message, args.batch, args.repeat)
    if not args.no_kafka:
        through_kafka(args.events, args.rows_per_message, args.batch)


if __name__ == "__main__":
    main()
