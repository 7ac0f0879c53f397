"""Reproduction: AEF-OCL (analytic recursive ridge + pseudo-feature generator) on imbalanced streams.

``regretflow reproduce analytic-ridge [--quick] [--json]``

Mean per-class accuracy (balanced accuracy), prequential and held-out, on three
offline imbalanced streams, for AEF-OCL without and with the pseudo-feature
generator (PFG) and three River classifiers on the same streams, over 5 seeds,
with the per-event cost beside each number:

- ``digits-LT``: scikit-learn digits made long-tailed (imbalance ratio 40), spec 7.3:
  per class the first 50 of a seeded permutation are held out (balanced test set),
  the next ``max(3, int(120 * 0.6**c))`` are the stream, arriving roughly class by
  class (``argsort(y + U(0, 3))``); pixels / 16; ReLU expansion d = 1024.
- ``shuttle``: Statlog shuttle (7 classes, 78.6 % one class), standardised with
  whole-file constants, shuffled per seed; 80 % stream, 20 % held out; d = 256.
- ``rainfall``: NOAA rainfall in time order (drift from row 12,000); the first 80 %
  is the stream and the last 20 % is held out; d = 256.

The paper (Zhuang et al. 2024) reports SODA10M results only, which cannot be
reproduced offline and whose numbers were not available; the reference column is the
spec's numpy reimplementation anchor on digits-LT (spec 7.3, another RNG: +-0.03).

``--quick`` (CI): digits-LT with the 5 seeds for ours and one seed for the River
models, and 2,000-row prefixes of shuttle and rainfall with one seed; it asserts that
the generator adds at least 3 points of held-out mean per-class accuracy on digits-LT
and that it does not lower the prequential mean per-class accuracy there (exit code 1
otherwise). ``ours default (auto)`` is the classifier's default, ``generator="auto"``. BLAS-heavy: run with ``OPENBLAS_NUM_THREADS=1`` on a shared
machine (threads that wait for busy cores make it many times slower).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regretflow.connectors.datasets import imbalanced
from regretflow.learners import AnalyticRidgeClassifier

SEEDS = (0, 1, 2, 3, 4)
GAIN_TARGET = 0.03
# spec 7.3 anchors (numpy reimplementation of the official code, gamma = 0.1 and 1.0)
DIGITS_ANCHORS = {
    0.1: {"ours": 0.8248, "ours+PFG": 0.8856},
    1.0: {"ours": 0.7916, "ours+PFG": 0.8892},
}
ANCHOR_TOLERANCE = 0.03


@dataclass
class Split:
    """One seeded stream and its held-out set."""

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]


@dataclass
class Cell:
    """Results of one method on one dataset over seeds."""

    prequential: list[float] = field(default_factory=list)
    prequential_overall: list[float] = field(default_factory=list)
    held_out: list[float] = field(default_factory=list)
    us_per_event: list[float] = field(default_factory=list)

    def add(self, result: tuple[float, float, float, float]) -> None:
        pre, overall, held, cost = result
        self.prequential.append(pre)
        self.prequential_overall.append(overall)
        self.held_out.append(held)
        self.us_per_event.append(cost)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}

        return {
            "prequential_mean_class_accuracy": stats(self.prequential),
            "prequential_accuracy": stats(self.prequential_overall),
            "held_out_mean_class_accuracy": stats(self.held_out),
            "us_per_event": stats(self.us_per_event),
        }


def mean_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the true classes present of the fraction predicted right (``None`` counts as wrong)."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in sorted(set(y_true.tolist()), key=str)]
    return float(np.mean(recalls))


# -- streams ------------------------------------------------------------------------
def digits_long_tail(seed: int) -> Split:
    """Spec 7.3: long-tailed digits (counts 120, 72, 43, 25, 15, 9, 5, 3, 3, 3) + balanced test."""
    data = imbalanced.load_digits()
    X, y = data.X / 16.0, data.y
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(y == c))
        n_c = max(3, int(120 * 0.6**c))
        test_parts.append(members[:50])
        train_parts.append(members[50 : 50 + n_c])
    train, test = np.concatenate(train_parts), np.concatenate(test_parts)
    order = np.argsort(y[train] + rng.uniform(0, 3, train.size), kind="stable")
    train = train[order]
    return Split("digits-LT", X[train], y[train], X[test], y[test], data.feature_names)


def shuttle_split(seed: int, limit: int | None = None) -> Split:
    data = imbalanced.load_shuttle()
    X = (data.X - data.X.mean(axis=0)) / data.X.std(axis=0)  # whole-file constants, the same for all seeds
    order = np.random.default_rng(seed).permutation(X.shape[0])
    if limit is not None:
        order = order[:limit]
    cut = int(0.8 * order.size)
    return Split("shuttle", X[order[:cut]], data.y[order[:cut]], X[order[cut:]], data.y[order[cut:]], data.feature_names)


def rainfall_split(seed: int, limit: int | None = None) -> Split:
    del seed  # time order is the point of this stream
    data = imbalanced.load_rainfall()
    n = data.X.shape[0] if limit is None else limit
    cut = int(0.8 * n)
    return Split("rainfall", data.X[:cut], data.y[:cut], data.X[cut:n], data.y[cut:n], data.feature_names)


# -- methods ------------------------------------------------------------------------
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows predicted right (``None`` counts as wrong)."""
    return float(np.mean(np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object)))


def run_ours(
    split: Split, seed: int, generator: bool | str, expansion_dim: int, gamma: float, batch: int, refresh_events: int
) -> tuple[float, float, float, float]:
    """Prequential mean per-class and overall accuracy, held-out mean per-class accuracy, and
    microseconds per stream event. ``generator``: False, True (the periodic refresh) or ``"auto"``."""
    mode: bool | str
    if generator is True:
        mode = "before_answer" if refresh_events <= batch else "every_n"
    else:
        mode = generator
    model = AnalyticRidgeClassifier(
        gamma=gamma,
        expansion_dim=expansion_dim,
        generator=mode,
        refresh_events=max(refresh_events, 1),
        update="auto",
        seed=seed,
    )
    answers = []
    start = time.perf_counter()
    for offset in range(0, split.y.size, batch):
        answers += model.observe_many(split.X[offset : offset + batch], split.y[offset : offset + batch]).tolist()
    elapsed = time.perf_counter() - start
    if generator:
        model.refresh_generator()  # the evaluation point: fresh pseudo-rows from the final real-data state
    held_out = model.predict_many(split.X_test)
    return (
        mean_class_accuracy(split.y, np.array(answers, dtype=object)),
        accuracy(split.y, np.array(answers, dtype=object)),
        mean_class_accuracy(split.y_test, held_out),
        1e6 * elapsed / split.y.size,
    )


def river_models(seed: int) -> dict[str, Callable[[], Any]]:
    from river import forest, linear_model, multiclass, preprocessing, tree

    return {
        "River LogisticRegression (OvR)": lambda: (
            preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
        ),
        "River HoeffdingTree": lambda: tree.HoeffdingTreeClassifier(),
        "River ARF": lambda: forest.ARFClassifier(seed=seed),
    }


def run_river(split: Split, make: Callable[[], Any]) -> tuple[float, float, float, float]:
    model = make()
    names = split.feature_names
    rows = [dict(zip(names, row)) for row in split.X.tolist()]
    labels = split.y.tolist()
    answers = []
    start = time.perf_counter()
    for x, y in zip(rows, labels):
        answers.append(model.predict_one(x))
        model.learn_one(x, y)
    elapsed = time.perf_counter() - start
    held_out = [model.predict_one(dict(zip(names, row))) for row in split.X_test.tolist()]
    return (
        mean_class_accuracy(split.y, np.array(answers, dtype=object)),
        accuracy(split.y, np.array(answers, dtype=object)),
        mean_class_accuracy(split.y_test, np.array(held_out, dtype=object)),
        1e6 * elapsed / len(labels),
    )


# -- the experiment -----------------------------------------------------------------
def compile_once() -> None:
    """A tiny run of every update rule and of the generator, so that numba's compilation
    (or cache load) is not billed to the first seed's us/event."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(48, 4)), np.arange(48) % 3
    for update in ("sherman-morrison", "cholesky", "blas"):
        model = AnalyticRidgeClassifier(expansion_dim=8, generator="every_n", refresh_events=16, update=update)
        for offset in range(0, 48, 16):
            model.observe_many(X[offset : offset + 16], y[offset : offset + 16])
        model.refresh_generator()
        model.predict_many(X[:4])


def experiment(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    compile_once()
    river_seeds = SEEDS[:1] if quick else SEEDS
    limit = 2000 if quick else None
    plans: list[tuple[str, Callable[[int], Split], tuple[int, ...], int, float, int, int]] = [
        # name, split maker, ours' seeds, expansion, gamma, micro-batch, PFG refresh period (rows)
        ("digits-LT", lambda s: digits_long_tail(s), SEEDS, 1024, 0.1, 16, 16),
        ("shuttle", lambda s: shuttle_split(s, limit), SEEDS[:1] if quick else SEEDS, 256, 0.1, 64, 500 if quick else 5000),
        ("rainfall", lambda s: rainfall_split(s, limit), SEEDS[:1] if quick else SEEDS, 256, 0.1, 64, 500 if quick else 2000),
    ]
    results: dict[str, dict[str, Cell]] = {}
    for name, make_split, seeds, expansion_dim, gamma, batch, refresh in plans:
        cells: dict[str, Cell] = {}
        for seed in seeds:
            split = make_split(seed)
            runs: list[tuple[str, Callable[[], tuple[float, float, float, float]]]] = [
                (label, functools.partial(run_ours, split, seed, generator, expansion_dim, gamma, batch, refresh))
                for label, generator in (("ours", False), ("ours+PFG", True), ("ours default (auto)", "auto"))
            ]
            if seed in river_seeds:
                runs += [(label, functools.partial(run_river, split, make)) for label, make in river_models(seed).items()]
            for label, run in runs:
                result = run()
                cells.setdefault(label, Cell()).add(result)
                pre, overall, held, cost = result
                log(f"{name} seed={seed} {label}: prequential={pre:.4f} overall={overall:.4f} held_out={held:.4f} us/event={cost:.1f}")
        results[name] = cells
    digits = results["digits-LT"]
    gain = float(np.mean(digits["ours+PFG"].held_out) - np.mean(digits["ours"].held_out))
    prequential_change = float(np.mean(digits["ours+PFG"].prequential) - np.mean(digits["ours"].prequential))
    anchors = DIGITS_ANCHORS[0.1]
    within = {label: abs(float(np.mean(digits[label].held_out)) - anchors[label]) <= ANCHOR_TOLERANCE for label in anchors}
    return {
        "quick": quick,
        "seeds": list(SEEDS),
        "datasets": {name: {label: cell.summary() for label, cell in cells.items()} for name, cells in results.items()},
        "checks": {
            "digits_pfg_gain_held_out": gain,
            "digits_pfg_gain_target": GAIN_TARGET,
            "digits_pfg_gain_ok": gain >= GAIN_TARGET,
            # where users look: the generator must not lower the prequential per-class accuracy
            "digits_pfg_prequential_change": prequential_change,
            "digits_pfg_prequential_ok": prequential_change >= 0.0,
            "digits_within_spec_anchor": within,
        },
        "reference": {
            "digits-LT held-out, spec 7.3 numpy anchor (gamma 0.1)": anchors,
            "paper (SODA10M)": "not reproducible offline; AEF-OCL's own numbers were not available to the spec",
        },
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "AEF-OCL analytic ridge: mean per-class accuracy (mean +- std over seeds), per-event cost",
        f"{'dataset':<10} {'method':<32} {'prequential':>16} {'preq. overall':>16} {'held-out':>16} {'us/event':>10} {'spec anchor':>12}",
    ]
    anchors = DIGITS_ANCHORS[0.1]
    for name, cells in report["datasets"].items():
        for label, cell in cells.items():
            pre, overall, held, cost = (
                cell["prequential_mean_class_accuracy"],
                cell["prequential_accuracy"],
                cell["held_out_mean_class_accuracy"],
                cell["us_per_event"],
            )
            anchor = f"{anchors[label]:.4f}" if name == "digits-LT" and label in anchors else "-"
            lines.append(
                f"{name:<10} {label:<32} {pre['mean']:>8.4f} +-{pre['std']:.3f} {overall['mean']:>8.4f} +-{overall['std']:.3f}"
                f" {held['mean']:>8.4f} +-{held['std']:.3f}"
                f" {cost['mean']:>10.1f} {anchor:>12}"
            )
    checks = report["checks"]
    lines.append(
        f"generator gain on digits-LT (held-out): {100 * checks['digits_pfg_gain_held_out']:+.2f} points"
        f" (target >= {100 * checks['digits_pfg_gain_target']:.0f}): {'OK' if checks['digits_pfg_gain_ok'] else 'FAILED'}"
    )
    lines.append(
        f"generator change of prequential mean per-class accuracy on digits-LT: {100 * checks['digits_pfg_prequential_change']:+.2f} points"
        f" (target >= 0): {'OK' if checks['digits_pfg_prequential_ok'] else 'FAILED'}"
    )
    lines.append("paper (SODA10M): not reproducible offline; its numbers were not available to the spec.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regretflow reproduce analytic-ridge", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short seeded CI version (a minute or two)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = experiment(args.quick, log)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0 if report["checks"]["digits_pfg_gain_ok"] and report["checks"]["digits_pfg_prequential_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
