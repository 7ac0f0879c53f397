"""Benchmark (not collected by pytest): online ridge at d=32, every layer, beside River.

    .venv/bin/python tests/benchmarks/bench_ridge.py [--events 20000]

Prints µs per event and events/s for: the bare batched numba kernel, the learner's
``observe_many``, the whole engine path on an in-memory stream (decode, validate,
route, learn, regret tracking, answer encoding, metrics), and River's
``LinearRegression`` (SGD, learn_one/predict_one) and a River ridge-equivalent on the
same stream; p50/p99 of per-batch engine latency per event; peak RSS.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import resource
import time

import numpy as np
import orjson


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    n, d = args.events, args.d
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)

    from regretflow.learners import OnlineRidge
    from regretflow.learners import ridge_kernels as K

    K.warm_up()
    rows = []

    def bare():
        P, w, out = np.eye(d), np.zeros(d), np.empty(args.batch)
        for lo in range(0, n, args.batch):
            K.ridge_observe(P, w, X[lo : lo + args.batch], y[lo : lo + args.batch], 1.0, float(d), out[: len(X[lo : lo + args.batch])])

    rows.append((f"bare kernel ridge_observe (batches of {args.batch})", timed(bare)))

    def learner():
        m = OnlineRidge(features=[f"x{i}" for i in range(d)])
        for lo in range(0, n, args.batch):
            m.observe_many(X[lo : lo + args.batch], y[lo : lo + args.batch])

    rows.append(("OnlineRidge.observe_many", timed(learner)))

    names = [f"x{i}" for i in range(d)]

    def learner_one():
        m = OnlineRidge(features=names)
        for i in range(min(n, 5000)):
            x = dict(zip(names, X[i]))
            m.predict_one(x)
            m.learn_one(x, y[i])

    t = timed(learner_one, repeat=1)
    rows.append(("OnlineRidge predict_one+learn_one (dicts)", t * n / min(n, 5000)))

    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine

    cfg = parse_config(
        {
            "models": {
                "m": {"learner": "ridge", "features": names, "groups": [{"name": "seg", "field": "seg", "values": ["a", "b", "c"]}]}
            },
            "runtime": {"batch_size": args.batch},
        }
    )
    payloads = [
        orjson.dumps(
            {
                "id": f"e{i}",
                "model": "m",
                "kind": "observe",
                "features": X[i].tolist(),
                "attributes": {"seg": "abc"[i % 3]},
                "label": float(y[i]),
            }
        )
        for i in range(n)
    ]
    latencies = []

    def engine_path():
        eng = Engine(cfg, MemorySource(payloads), MemorySink(keep=False), MemorySink(keep=False), serve_metrics=False)
        src = eng.source
        while not src.exhausted():
            batch = src.poll(args.batch, 0.0)
            t0 = time.perf_counter()
            eng.process(batch)
            latencies.append((time.perf_counter() - t0) / len(batch))

    rows.append(("engine path (decode, validate, route, learn, regret, answer, metrics)", timed(engine_path)))

    from river import linear_model

    def river_lr():
        m = linear_model.LinearRegression()
        for i in range(min(n, 5000)):
            x = dict(zip(names, X[i]))
            m.predict_one(x)
            m.learn_one(x, y[i])

    t = timed(river_lr, repeat=1)
    rows.append(("River LinearRegression (SGD) predict_one+learn_one", t * n / min(n, 5000)))

    print(f"\nonline ridge, d={d}, {n:,} events, batch {args.batch}; {_pin.describe()}")
    print(f"{'path':<72}{'us/event':>10}{'events/s':>14}{'x kernel':>10}")
    kernel_seconds = rows[0][1]
    for name, seconds in rows:
        print(f"{name:<72}{1e6 * seconds / n:>10.2f}{n / seconds:>14,.0f}{seconds / kernel_seconds:>10.1f}")
    lat = np.array(latencies) * 1e6
    print(f"\nengine per-event latency within a batch: p50 {np.percentile(lat, 50):.2f} us, p99 {np.percentile(lat, 99):.2f} us")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
