"""Benchmark (not collected by pytest): Arrow batches of events, in process and through a broker.

    .venv/bin/python tests/benchmarks/bench_arrow.py [--events 200000] [--rows-per-message 2000] [--batch 4096] [--no-kafka | --kafka-only]

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
   (target: at least 80% of the raw event rate), with CPU time per event of the engine's
   main thread, of its whole process (librdkafka's threads too) and of tansu (the machine
   is shared: CPU time says what a run cost, wall clock what it got), and the bare
   learner's rate on the same rows, the ceiling of any engine that learns them. Beside it,
   in the same run: an experiment that consumes and decodes one micro-batch ahead in a
   second thread (the kernels release the GIL), to measure what such a pipeline could
   give (it is not the engine: it handles no rebalance, checkpoint or drain), and
   ``regretflow run --workers 2`` on a topic of 2 partitions holding the same messages
   (events/s while both workers are busy, from the Kafka timestamps of the answers; each
   worker has its own model state per partition).

    .venv/bin/python tests/benchmarks/bench_arrow.py --kafka-only --events 400000 [--no-workers]
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import os
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
import os, sys, time
from regretflow.engine.config import load_config
from regretflow.engine.cli.daemon import open_source, open_sink
from regretflow.engine.runtime.loop import Engine
cfg = load_config(sys.argv[1])
tansu = int(sys.argv[2])
prefetch = sys.argv[3] == "prefetch"
def cpu_of(pid):  # user + system seconds of a process (all its threads)
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
eng = Engine(cfg, open_source(cfg, cfg.source), open_sink(cfg, cfg.answers, "answers"),
             open_sink(cfg, cfg.dead_letters, "dead_letters"), serve_metrics=False)
if prefetch:
    # EXPERIMENT (not the engine): a thread consumes and decodes one micro-batch ahead of the loop, which
    # then routes, learns, answers and produces; no rebalance, checkpoint or drain is handled
    import queue, threading
    from regretflow.engine.runtime.arrow_batches import expand_rows
    ahead = queue.Queue(maxsize=1)
    poll, rt = eng.source.poll, cfg.runtime
    def consume_ahead():
        while True:
            records = poll(rt.batch_size, rt.batch_timeout_ms / 1000.0)
            ahead.put(expand_rows(records, eng.arrow_decoder) if records else records)
    started = []
    def take(max_records, timeout):
        if not started:  # first called by the loop once the engine has connected the source
            started.append(threading.Thread(target=consume_ahead, daemon=True))
            started[0].start()
        try:
            return ahead.get(timeout=max(timeout, 0.05))
        except queue.Empty:
            return []
    eng.source.poll = take
first = last = None
in_first = seen = 0
main_first = main_last = proc_first = proc_last = tansu_first = tansu_last = 0.0
process = eng.process
def timed(records):
    global first, last, in_first, seen, main_first, main_last, proc_first, proc_last, tansu_first, tansu_last
    process(records)
    if first is None:  # the clock starts after the first batch, as for the raw consumer
        first, in_first = time.perf_counter(), eng.events_seen
        main_first, proc_first, tansu_first = time.thread_time(), time.process_time(), cpu_of(tansu)
    last, main_last, seen = time.perf_counter(), time.thread_time(), eng.events_seen
    proc_last, tansu_last = time.process_time(), cpu_of(tansu)
eng.process = timed
eng.run()
print(first, last, seen, in_first, main_last - main_first, proc_last - proc_first, tansu_last - tansu_first, flush=True)
os._exit(0)  # (the experiment's thread may sit in the client's poll)
"""


def raw_consume(bootstrap: str, topic: str, messages: int, rows_per_message: int) -> tuple[float, float]:
    """Events/s of a bare confluent-kafka consumer over the messages (each holds rows_per_message events),
    from the first batch to the last, as the engine is timed, and its CPU seconds (librdkafka's threads too) over that span."""
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
    t0, cpu0, got = time.perf_counter(), time.process_time(), 1
    while got < messages:
        got += sum(1 for m in c.consume(64, 0.05) if m.error() is None)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    c.close()
    return (got - 1) * rows_per_message / elapsed, cpu


def engine_config(bootstrap: str, topic: str, batch: int, idle_exit: float = 5) -> str:
    """The daemon's config for the benchmark (metrics port 0: each worker gets a free one)."""
    return f"""
[source]
type = "kafka"
backend = "confluent"
bootstrap_servers = "{bootstrap}"
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
idle_exit_seconds = {idle_exit}
answer_format = "arrow"
[metrics]
port = 0
[models.m]
learner = "ridge"
features = {orjson.dumps(NAMES).decode()}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_worker(broker, topic: str, n: int, batch: int, tmp: Path, mode: str) -> dict[str, float]:
    """One timed worker (``mode`` "plain": the engine as it is; "prefetch": the experiment of WORKER; "backoff-1000":
    the engine with librdkafka's own ``fetch.queue.backoff.ms``, the default before ``fetch_queue_backoff_ms``):
    events/s from its first batch to its last, CPU seconds of its main thread, of the whole process and of tansu."""
    cfg = tmp / f"{topic}-{mode}.toml"
    text = engine_config(broker.bootstrap, topic, batch).replace(f'"bench-{topic}"', f'"bench-{topic}-{mode}"')
    if mode == "backoff-1000":
        text = text.replace("fetch_max_wait_ms = 1\n", "fetch_max_wait_ms = 1\nfetch_queue_backoff_ms = 1000\n")
    cfg.write_text(text)
    out = subprocess.run([sys.executable, "-c", WORKER, str(cfg), str(broker.pid), mode], capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or out.stdout.startswith("None"):
        raise RuntimeError(out.stderr[-3000:])
    first, last, count, in_first, main_cpu, proc_cpu, tansu_cpu = (float(v) for v in out.stdout.split())
    assert int(count) == n, (count, n, out.stderr[-3000:])
    events = n - in_first
    return {
        "rate": events / (last - first),
        "wall": last - first,
        "events": events,
        "main": main_cpu,
        "process": proc_cpu,
        "tansu": tansu_cpu,
    }


def two_workers(broker, messages: list[bytes], rows_per_message: int, batch: int, tmp: Path) -> dict[str, float]:
    """``regretflow run --workers 2`` on a topic of 2 partitions holding the same messages (alternately):
    events/s while both partitions are being answered (the Kafka timestamps of the answer messages), and the
    CPU seconds of the two workers and of tansu over that span (sampled from /proc)."""
    import threading

    from confluent_kafka import Producer

    from tests.integration.kafka_broker import consume_all

    topic = broker.create_topic(2, "bench-arrow-w2")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i, m in enumerate(messages):
        producer.produce(topic, m, b"m", partition=i % 2)
        producer.poll(0)
    assert producer.flush(60) == 0
    cfg = tmp / "w2.toml"
    cfg.write_text(engine_config(broker.bootstrap, topic, batch))
    samples: list[tuple[float, float, float]] = []  # (time, CPU of the workers, CPU of tansu)
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "regretflow.engine.cli.main", "run", "--config", str(cfg), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "w2.log", "wb"),
    )

    def sample() -> None:
        while supervisor.poll() is None:
            try:
                children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
                samples.append((time.time(), sum(cpu_seconds(int(c)) for c in children), cpu_seconds(broker.pid)))
            except (OSError, ValueError):  # a worker just exited
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert supervisor.wait(timeout=900) == 0, (tmp / "w2.log").read_text()[-3000:]
    sampler.join()
    # (answer message's timestamp in s, rows, source partition of its rows)
    answered: list[tuple[float, int, int]] = []
    for m in consume_all(broker.bootstrap, f"{topic}-answers", 1, timeout=60):
        ids = read_batch(m.value()).column("id").to_pylist()
        for p in (0, 1):
            rows = sum(1 for i in ids if (int(i[1:]) // rows_per_message) % 2 == p)
            if rows:
                answered.append((m.timestamp()[1] / 1000.0, rows, p))
    assert sum(r for _, r, _ in answered) == len(messages) * rows_per_message
    firsts = [min(t for t, _, p in answered if p == q) for q in (0, 1)]
    lasts = [max(t for t, _, p in answered if p == q) for q in (0, 1)]
    lo, hi = max(firsts), min(lasts)  # both partitions answered: both workers busy (each owns one partition)
    events = sum(r for t, r, _ in answered if lo < t <= hi)
    if events == 0 or hi <= lo:
        # A tiny run can have no window where both workers answer (one finished before the other
        # started, or both within one millisecond): measure first answer to last instead.
        lo, hi = min(firsts), max(lasts)
        events = sum(r for _, r, _ in answered)
        hi = max(hi, lo + 1e-3)

    def cpu_at(t: float, k: int) -> float:
        return min(samples, key=lambda s: abs(s[0] - t))[k]

    return {
        "rate": events / (hi - lo),
        "wall": hi - lo,
        "events": events,
        "workers": cpu_at(hi, 1) - cpu_at(lo, 1),
        "tansu": cpu_at(hi, 2) - cpu_at(lo, 2),
        "whole": sum(r for _, r, _ in answered) / max(max(lasts) - min(firsts), 1e-3),
    }


def through_kafka(n: int, rows_per_message: int, batch: int, workers: bool = True) -> dict[str, float]:
    from tests.integration.kafka_broker import Broker, produce

    X, y = data(n, seed=1)
    messages = arrow_messages(X, y, rows_per_message)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "tansu.log")
        try:
            topic = broker.create_topic(1, "bench-arrow")
            produce(broker.bootstrap, topic, [(b"m", m) for m in messages])
            tansu_before = cpu_seconds(broker.pid)
            raw, raw_cpu = raw_consume(broker.bootstrap, topic, len(messages), rows_per_message)
            raw_tansu = cpu_seconds(broker.pid) - tansu_before
            plain = one_worker(broker, topic, n, batch, Path(tmp), "plain")
            ahead = one_worker(broker, topic, n, batch, Path(tmp), "prefetch")
            paused = one_worker(broker, topic, n, batch, Path(tmp), "backoff-1000")
            two = two_workers(broker, messages, rows_per_message, batch, Path(tmp)) if workers else None
        finally:
            broker.stop()
    bare = bare_rate(X, y, batch)
    us = 1e6
    print(f"\nthrough tansu (confluent-kafka): {n} events in {len(messages)} Arrow messages of {rows_per_message} rows, load {load:.1f}")
    print(f"{'path':62s} {'events/s':>10s} {'% raw':>6s} {'CPU us/event: main':>19s} {'process':>8s} {'tansu':>6s}")
    print(f"{'raw consume of the same messages':62s} {raw:10.0f} {100:6.0f} {'':>19s} {us * raw_cpu / n:8.2f} {us * raw_tansu / n:6.2f}")
    rows = [
        ("engine: Arrow in, ridge, Arrow answers produced", plain),
        ("(experiment) the same, consumed + decoded one batch ahead", ahead),
        ("the engine, librdkafka's prefetch pause (1000 ms, its default)", paused),
    ]
    for name, r in rows:
        e = r["events"]
        print(
            f"{name:62s} {r['rate']:10.0f} {100 * r['rate'] / raw:6.0f} {us * r['main'] / e:19.2f} "
            f"{us * r['process'] / e:8.2f} {us * r['tansu'] / e:6.2f}"
        )
    if two is not None:
        e = two["events"]
        print(
            f"{'--workers 2, 2 partitions (one model state each), both busy':62s} {two['rate']:10.0f} {100 * two['rate'] / raw:6.0f} "
            f"{'':>19s} {us * two['workers'] / e:8.2f} {us * two['tansu'] / e:6.2f}"
        )
        print(f"{'  (the same, first answer to last)':62s} {two['whole']:10.0f} {100 * two['whole'] / raw:6.0f}")
    print(f"{'(ceiling) bare observe_many on the same rows, CPU time':62s} {bare:10.0f} {100 * bare / raw:6.0f}")
    print(
        f"engine / raw: {100 * plain['rate'] / raw:.0f}% (target >= 80%); one batch ahead: {100 * ahead['rate'] / raw:.0f}%; "
        f"with librdkafka's prefetch pause: {100 * paused['rate'] / raw:.0f}%; "
        f"wall clock per event: {us / plain['rate']:.2f} us, {us / ahead['rate']:.2f} us ahead"
    )
    return {
        "raw": raw,
        "engine": plain["rate"],
        "ahead": ahead["rate"],
        "paused": paused["rate"],
        "bare": bare,
        "workers2": two["rate"] if two else float("nan"),
    }


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
    ap.add_argument("--kafka-only", action="store_true", help="only the comparison through the broker")
    ap.add_argument("--no-workers", action="store_true", help="without the --workers 2 run")
    args = ap.parse_args(argv)
    print(f"BLAS pinned: {_pin.describe()}")
    if not args.kafka_only:
        in_process(args.events, args.rows_per_message, args.batch, args.repeat)
    if not args.no_kafka:
        through_kafka(args.events, args.rows_per_message, args.batch, workers=not args.no_workers)


if __name__ == "__main__":
    main()
