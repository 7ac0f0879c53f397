"""River's dict API side by side: our learners' ``predict_one`` + ``learn_one`` against
River's ``LinearRegression`` on the same dicts, in one run, BLAS pinned.

The figure of interest is "× River": our µs per event (one predict_one and one
learn_one, the River prequential loop) over River LinearRegression's. Both see the same
list of dicts (d features, float values) and the same targets; each learner is timed over
several passes and the fastest pass is kept, so a busy neighbour on the machine costs a
pass, not the figure.

    .venv/bin/python tests/benchmarks/bench_dict_api.py [--events 20000] [--d 8 32] [--repeats 3]
"""

from __future__ import annotations

import _pin  # noqa: F401  (before numpy: one BLAS thread)

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from river import linear_model

from regretflow.learners import OnlineNeuralRegressor, OnlineRidge, OptimisticOMDRegressor


def make_stream(n: int, d: int, seed: int = 0) -> tuple[list[dict[str, float]], list[float]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = 1.5 + X @ rng.normal(size=d) / np.sqrt(d) + 0.1 * rng.normal(size=n)
    names = [f"f{i:02d}" for i in range(d)]
    return [dict(zip(names, row.tolist(), strict=True)) for row in X], y.tolist()


def prequential_seconds(make: Callable[[], Any], dicts: list[dict[str, float]], targets: list[float]) -> tuple[float, float]:
    """Seconds for one prequential pass (predict_one then learn_one per event) and the late MAE."""
    model = make()
    model.learn_one(dicts[0], targets[0])  # first call outside the clock (numba dispatch, feature set-up)
    errors = 0.0
    start = time.perf_counter()
    for x, y in zip(dicts, targets, strict=True):
        errors += abs(model.predict_one(x) - y)
        model.learn_one(x, y)
    return time.perf_counter() - start, errors / len(dicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--d", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# dict API, predict_one + learn_one per event, {args.events} events, best of {args.repeats}; BLAS: {_pin.describe()}")
    learners: dict[str, Callable[[], Any]] = {
        "river LinearRegression": linear_model.LinearRegression,
        "OnlineRidge": OnlineRidge,
        "OptimisticOMDRegressor": OptimisticOMDRegressor,
        "OnlineNeuralRegressor (width 16)": lambda: OnlineNeuralRegressor(width=16),
    }
    for d in args.d:
        dicts, targets = make_stream(args.events, d)
        print(f"\nd = {d}")
        print(f"{'learner':<36}{'µs/event':>10}{'× River':>10}{'MAE':>10}")
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeats):  # interleaved, so drift on the machine hits every learner alike
            for name, make in learners.items():
                seconds, mae = prequential_seconds(make, dicts, targets)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, mae)
        river = best["river LinearRegression"][0]
        for name, (seconds, mae) in best.items():
            print(f"{name:<36}{seconds / args.events * 1e6:>10.2f}{seconds / river:>10.2f}{mae:>10.4f}")


if __name__ == "__main__":
    main()
