"""Benchmark of the analytic ridge classifier's update paths (not collected by pytest).

Per-event cost at expanded dimensions 64, 512 and 2048 with 10 classes, in one run:

- ``single``: the Sherman-Morrison numba kernel, one rank-1 update per event;
- ``numba-block B``: the Cholesky/Woodbury block kernel in numba loops, micro-batches of B;
- ``blas-block B``: the same block update with numpy/BLAS calls;
- ``engine B``: ``AnalyticRidgeClassifier.observe_many`` (what the engine calls), micro-
  batches of B, with label mapping, masking and regret bookkeeping, ``update="auto"``;
- ``refresh``: one pseudo-feature generator refresh with 1,000 pseudo-rows;
- ``River LogReg OvR``: River's one-vs-rest logistic regression on the same input rows
  (input width 64), for scale.

``--reproduction`` instead times the classifier at the settings of ``regretflow reproduce
analytic-ridge`` (digits-LT: expansion 1024, micro-batches of 16; shuttle and rainfall:
expansion 256, micro-batches of 64; gamma 0.1, the default ``generator="auto"``):
``observe_many`` (answer then learn, per event) with the constructor's default update
(``"sherman-morrison"``) and with ``"auto"`` and ``"blas"``, against River's
``StandardScaler | OneVsRestClassifier(LogisticRegression())`` (``predict_one`` +
``learn_one``, the reproduction's River model) on the same rows, in one run; then the
same at expansion widths 64 .. 1024 on 3,000 shuttle rows, to find where the ratio passes 2.

Run::

    .venv/bin/python tests/benchmarks/bench_analytic_ridge.py
    .venv/bin/python tests/benchmarks/bench_analytic_ridge.py --dims 64 512 --batches 16 64
    .venv/bin/python tests/benchmarks/bench_analytic_ridge.py --reproduction [--rows 6000]

Numbers are microseconds per event (median of ``--repeats`` runs); nothing is asserted.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import statistics
import time

import numpy as np

from regretflow.learners import analytic_ridge_kernels as K
from regretflow.learners.analytic_ridge import AnalyticRidgeClassifier

N_CLASSES = 10
INPUT_DIM = 64


def events_for(d: int) -> int:
    """Enough events for a stable timing, few enough at large d."""
    return int(min(4000, max(128, 4e9 / (3 * d * d) / 4)))


def time_kernel(kernel, d: int, n: int, batch: int, repeats: int, rng) -> float:
    Phi = np.maximum(rng.normal(size=(n, d)), 0.0)
    labels = rng.integers(0, N_CLASSES, n).astype(np.int64)
    runs = []
    for _ in range(repeats):
        R, W = np.eye(d), np.zeros((d, N_CLASSES))
        logits, losses, s_values = np.empty((n, N_CLASSES)), np.empty(n), np.empty(n)
        start = time.perf_counter()
        for offset in range(0, n, batch):
            sl = slice(offset, offset + batch)
            kernel(R, W, Phi[sl], labels[sl], logits[sl], losses[sl], s_values[sl])
        runs.append(1e6 * (time.perf_counter() - start) / n)
    return statistics.median(runs)


def time_engine(d: int, n: int, batch: int, repeats: int, rng) -> float:
    X = rng.normal(size=(n, INPUT_DIM))
    labels = rng.integers(0, N_CLASSES, n)
    runs = []
    for _ in range(repeats):
        model = AnalyticRidgeClassifier(gamma=1.0, expansion_dim=d, update="auto", seed=0)
        start = time.perf_counter()
        for offset in range(0, n, batch):
            model.observe_many(X[offset : offset + batch], labels[offset : offset + batch])
        runs.append(1e6 * (time.perf_counter() - start) / n)
    return statistics.median(runs)


def time_refresh(d: int, rng) -> float:
    """One generator refresh (1,000 pseudo-rows), in microseconds."""
    model = AnalyticRidgeClassifier(gamma=1.0, expansion_dim=d, generator="before_answer", update="auto", seed=0)
    labels = np.concatenate([np.zeros(1100, dtype=int), np.ones(100, dtype=int)])
    model.learn_many(rng.normal(size=(labels.size, INPUT_DIM)), labels)
    start = time.perf_counter()
    model.refresh_generator()
    return 1e6 * (time.perf_counter() - start)


def time_river(n: int, rng) -> float:
    from river import linear_model, multiclass

    model = multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
    X = rng.normal(size=(n, INPUT_DIM))
    labels = rng.integers(0, N_CLASSES, n).tolist()
    rows = [{f"x{i}": v for i, v in enumerate(row)} for row in X.tolist()]
    start = time.perf_counter()
    for x, y in zip(rows, labels):
        model.predict_one(x)
        model.learn_one(x, y)
    return 1e6 * (time.perf_counter() - start) / n


def time_observe(X: np.ndarray, y: np.ndarray, expansion_dim: int, batch: int, update: str, generator: bool | str = "auto") -> float:
    """``observe_many`` over the stream in micro-batches (each row answered, then learned), us/event."""
    model = AnalyticRidgeClassifier(gamma=0.1, expansion_dim=expansion_dim, generator=generator, update=update, seed=0)
    start = time.perf_counter()
    for offset in range(0, y.size, batch):
        model.observe_many(X[offset : offset + batch], y[offset : offset + batch])
    return 1e6 * (time.perf_counter() - start) / y.size


def time_river_pipeline(X: np.ndarray, y: np.ndarray) -> float:
    """The reproduction's River model, ``predict_one`` + ``learn_one`` per row, us/event."""
    from regretflow.engine.experiments.analytic_ridge import river_models

    model = river_models(0)["River LogisticRegression (OvR)"]()
    rows = [{f"x{i}": v for i, v in enumerate(row)} for row in X.tolist()]
    start = time.perf_counter()
    for x, label in zip(rows, y.tolist()):
        model.predict_one(x)
        model.learn_one(x, label)
    return 1e6 * (time.perf_counter() - start) / y.size


def reproduction_costs(rows: int | None) -> None:
    """Per-event cost at the reproduction's settings against River's logistic regression."""
    from regretflow.engine.experiments import analytic_ridge as repro

    streams = [
        ("digits-LT", repro.digits_long_tail(0), 1024, 16),
        ("shuttle", repro.shuttle_split(0), 256, 64),
        ("rainfall", repro.rainfall_split(0), 256, 64),
    ]
    repro.compile_once()
    print(f"{_pin.describe()}; us per event (answer + learn), gamma 0.1, generator='auto' (the default)")
    print(
        f"{'stream':<10} {'rows':>6} {'d in':>5} {'C':>3} {'D':>5} {'batch':>5} {'default (rank-1)':>17} {'auto':>8} {'blas':>8} {'River':>8} {'default/River':>14}"
    )
    for name, split, expansion_dim, batch in streams:
        X, y = split.X[:rows], split.y[:rows]
        costs = {update: time_observe(X, y, expansion_dim, batch, update) for update in ("sherman-morrison", "auto", "blas")}
        river = time_river_pipeline(X, y)
        print(
            f"{name:<10} {y.size:>6} {X.shape[1]:>5} {np.unique(y).size:>3} {expansion_dim:>5} {batch:>5}"
            f" {costs['sherman-morrison']:>17.1f} {costs['auto']:>8.1f} {costs['blas']:>8.1f} {river:>8.1f}"
            f" {costs['sherman-morrison'] / river:>14.2f}",
            flush=True,
        )
    split = repro.shuttle_split(0)
    X, y = split.X[: rows or 3000], split.y[: rows or 3000]
    river = time_river_pipeline(X, y)
    print(f"\nshuttle rows ({y.size}), batch 64, by expansion width D; River {river:.1f} us/event on the same rows")
    print(
        f"{'D':>5} {'default (rank-1)':>17} {'auto':>8} {'default, no generator':>22} {'auto, no generator':>19} {'default/River':>14} {'auto/River':>11}"
    )
    for expansion_dim in (64, 128, 256, 512, 1024):
        default = time_observe(X, y, expansion_dim, 64, "sherman-morrison")
        auto = time_observe(X, y, expansion_dim, 64, "auto")
        plain_default = time_observe(X, y, expansion_dim, 64, "sherman-morrison", generator=False)
        plain_auto = time_observe(X, y, expansion_dim, 64, "auto", generator=False)
        print(
            f"{expansion_dim:>5} {default:>17.1f} {auto:>8.1f} {plain_default:>22.1f} {plain_auto:>19.1f}"
            f" {default / river:>14.2f} {auto / river:>11.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 512, 2048])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reproduction", action="store_true", help="cost at the reproduction's settings against River's logistic regression"
    )
    parser.add_argument("--rows", type=int, default=None, help="with --reproduction: the first ROWS rows of each stream (default: all)")
    args = parser.parse_args()
    if args.reproduction:
        reproduction_costs(args.rows)
        return
    rng = np.random.default_rng(0)
    K.warm_up()
    print(f"{_pin.describe()}, classes={N_CLASSES}, input width={INPUT_DIM}")
    print(f"{'d':>6} {'path':<18} {'us/event':>12} {'events/s':>12} {'x single':>9}")
    engine_us_at_input_width = None
    for d in args.dims:
        n = events_for(d)
        rows = [("single", time_kernel(K.sherman_morrison_observe, d, n, 1, args.repeats, rng))]
        for batch in args.batches:
            rows.append((f"numba-block {batch}", time_kernel(K.cholesky_observe, d, n, batch, args.repeats, rng)))
            rows.append((f"blas-block {batch}", time_kernel(K.blas_observe, d, n, batch, args.repeats, rng)))
        for batch in (1, args.batches[-1]):
            rows.append((f"engine {batch}", time_engine(d, n, batch, args.repeats, rng)))
        for path, us in rows:
            print(f"{d:>6} {path:<18} {us:>12.1f} {1e6 / us:>12.0f} {us / rows[0][1]:>9.2f}", flush=True)
        if d == INPUT_DIM:
            engine_us_at_input_width = rows[-1][1]
        print(f"{d:>6} {'refresh (1k rows)':<18} {time_refresh(d, rng):>12.0f} us per refresh", flush=True)
    river_us = time_river(2000, rng)
    print(f"{INPUT_DIM:>6} {'River LogReg OvR':<18} {river_us:>12.1f} {1e6 / river_us:>12.0f}")
    if engine_us_at_input_width is not None:
        print(f"River LogReg OvR / engine {args.batches[-1]} at d = {INPUT_DIM}: {river_us / engine_us_at_input_width:.1f}x")


if __name__ == "__main__":
    main()
