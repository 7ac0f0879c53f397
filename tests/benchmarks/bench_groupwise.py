"""Benchmark (not collected by pytest): per-event cost of GroupwiseRegressor.

    .venv/bin/python tests/benchmarks/bench_groupwise.py [--events 20000] [--river-events 2000]

12 groups (11 declared from four categorical attributes with 3, 2, 2 and 4 values,
plus always_on), so every event wakes 5 experts; d = 18 and d = 64. It prints, per
event and in the same run: the bare numba kernel over the whole stream, the
learner's ``observe_many`` (the engine's ``learn_many`` path) in micro-batches, the
River dict API (``predict_one`` + ``learn_one``), the whole engine (JSON observe
events through :class:`regretflow.engine.runtime.loop.Engine`, regret tracker included),
and River's ``EWARegressor`` over 12 ``LinearRegression`` models on the same stream.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import time

import numpy as np
import orjson

ATTRIBUTES = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"], "c": ["c0", "c1"], "d": ["d0", "d1", "d2", "d3"]}


def make_stream(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    picks = {k: rng.integers(0, len(v), size=n) for k, v in ATTRIBUTES.items()}
    G = np.hstack([np.eye(len(v), dtype=bool)[picks[k]] for k, v in ATTRIBUTES.items()])
    coef = rng.normal(size=(G.shape[1], d)) / d
    y = 0.5 + 0.3 * np.sum((X @ coef.T) * G, axis=1) / 4 + 0.05 * rng.normal(size=n)
    attributes = [{k: ATTRIBUTES[k][picks[k][i]] for k in ATTRIBUTES} for i in range(n)]
    return X, y, G, attributes


def per_event(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_kernel(X, y, G, base: str) -> float:
    from regretflow.learners import groupwise_kernels as K

    n, d = X.shape
    n_groups = G.shape[1] + 1
    A = np.hstack([G, np.ones((n, 1), dtype=bool)]).astype(np.uint8)
    uniforms = np.random.default_rng(0).random(n)
    outs = [np.empty(n) for _ in range(3)]

    def run():
        R, C, counts = np.zeros(n_groups), np.zeros(n_groups), np.zeros(n_groups)
        if base == "ridge":
            P = np.repeat(np.eye(d)[None], n_groups, axis=0)
            theta = np.zeros((n_groups, d))
            K.groupwise_ridge_observe(P, theta, R, C, counts, X, y, A, uniforms, False, *outs)
        else:
            xhat, hint, var = np.zeros((n_groups, d)), np.zeros((n_groups, d)), np.zeros(n_groups)
            K.groupwise_omd_observe(xhat, hint, var, R, C, counts, X, y, A, uniforms, False, 10.0, 1.0, 1.0, *outs)

    return per_event(best_of(run), n)


def bench_observe_many(X, y, G, base: str, batch: int) -> float:
    from regretflow.learners.groupwise import GroupwiseRegressor

    features = [f"x{i}" for i in range(X.shape[1])]
    labels = [f"{k}={v}" for k, vs in ATTRIBUTES.items() for v in vs]

    def run():
        model = GroupwiseRegressor(features=features, groups=labels, base=base)
        for start in range(0, len(y), batch):
            model.learn_many(X[start : start + batch], y[start : start + batch], G[start : start + batch])

    return per_event(best_of(run), len(y))


def bench_river_api(X, y, G, n: int) -> float:
    from regretflow.learners.groupwise import GroupwiseRegressor

    features = [f"x{i}" for i in range(X.shape[1])]
    labels = [f"{k}={v}" for k, vs in ATTRIBUTES.items() for v in vs]
    dicts = []
    for i in range(n):
        x = dict(zip(features, X[i].tolist()))
        x.update({label: bool(G[i, j]) for j, label in enumerate(labels)})
        dicts.append(x)
    model = GroupwiseRegressor(features=features, groups=labels)
    t = time.perf_counter()
    for i in range(n):
        model.predict_one(dicts[i])
        model.learn_one(dicts[i], float(y[i]))
    return per_event(time.perf_counter() - t, n)


def bench_engine(X, y, attributes, batch: int) -> float:
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine
    from regretflow.learners import LEARNERS
    from regretflow.learners.groupwise import GroupwiseRegressor

    LEARNERS.setdefault("groupwise", GroupwiseRegressor)  # until the registry line lands
    features = [f"x{i}" for i in range(X.shape[1])]
    config = parse_config(
        {
            "models": {
                "gw": {
                    "learner": "groupwise",
                    "features": features,
                    "params": {"lam": 1.0},
                    "groups": [{"name": k, "field": k, "values": v} for k, v in ATTRIBUTES.items()],
                }
            },
            "runtime": {"batch_size": batch, "batch_timeout_ms": 10.0},
            "metrics": {"enabled": False},
        }
    )
    events = [
        orjson.dumps(
            {
                "id": str(i),
                "model": "gw",
                "kind": "observe",
                "features": dict(zip(features, X[i].tolist())),
                "attributes": attributes[i],
                "label": float(y[i]),
            }
        )
        for i in range(len(y))
    ]
    engine = Engine(config, MemorySource([]), MemorySink(keep=False), MemorySink(), serve_metrics=False)
    t = time.perf_counter()
    for start in range(0, len(events), batch):
        engine.process(events[start : start + batch])
    elapsed = time.perf_counter() - t
    assert engine.valid_events == len(events), "the engine refused events"
    return per_event(elapsed, len(events))


def bench_river_ewa(X, y, n: int) -> float:
    from river import ensemble, linear_model, optim

    features = [f"x{i}" for i in range(X.shape[1])]
    model = ensemble.EWARegressor([linear_model.LinearRegression(optimizer=optim.SGD(lr)) for lr in np.geomspace(1e-3, 0.3, 12)])
    dicts = [dict(zip(features, X[i].tolist())) for i in range(n)]
    t = time.perf_counter()
    for i in range(n):
        model.predict_one(dicts[i])
        model.learn_one(dicts[i], float(y[i]))
    return per_event(time.perf_counter() - t, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--river-events", type=int, default=2_000)
    args = parser.parse_args()
    from regretflow.learners import groupwise

    groupwise.warm_up()
    print(
        f"GroupwiseRegressor, 12 groups (5 awake per event); us per event; {args.events} events "
        f"({args.river_events} for the pure-Python rows); {_pin.describe()}"
    )
    print(f"{'path':<52}{'d=18':>10}{'d=64':>10}")
    rows: dict[str, list[float]] = {}
    for d in (18, 64):
        X, y, G, attributes = make_stream(args.events, d)
        results = {
            "bare kernel, ridge experts (whole stream)": bench_kernel(X, y, G, "ridge"),
            "bare kernel, OMD experts (whole stream)": bench_kernel(X, y, G, "omd"),
            "learn_many / observe_many, batches of 64": bench_observe_many(X, y, G, "ridge", 64),
            "learn_many / observe_many, batches of 512": bench_observe_many(X, y, G, "ridge", 512),
            "learn_many, OMD experts, batches of 512": bench_observe_many(X, y, G, "omd", 512),
            "engine: JSON observe events, batches of 512": bench_engine(X, y, attributes, 512),
            "River API: predict_one + learn_one (dicts)": bench_river_api(X, y, G, args.river_events),
            "River EWARegressor, 12 LinearRegression": bench_river_ewa(X, y, args.river_events),
        }
        for name, value in results.items():
            rows.setdefault(name, []).append(value)
    for name, (small, wide) in rows.items():
        print(f"{name:<52}{small:>10.2f}{wide:>10.2f}")
    ewa = rows["River EWARegressor, 12 LinearRegression"]
    many = rows["learn_many / observe_many, batches of 512"]
    engine = rows["engine: JSON observe events, batches of 512"]
    kernel = rows["bare kernel, ridge experts (whole stream)"]
    for i, d in enumerate((18, 64)):
        print(
            f"d={d}: River EWA / learn_many = {ewa[i] / many[i]:.1f}x, River EWA / engine = {ewa[i] / engine[i]:.1f}x, "
            f"engine / bare kernel = {engine[i] / kernel[i]:.1f}x"
        )


if __name__ == "__main__":
    main()
