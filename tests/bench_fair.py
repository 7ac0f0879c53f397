"""Benchmark (not collected by pytest): per-round cost of the fair learners, k = 10, N = 1,000.

    .venv/bin/python tests/bench_fair.py [--rounds 2000]

One round = ``act`` (k individuals) + ``learn`` (labels of the positive decisions) +
``audit`` (the panel's reports), on Adult individuals with the default auditor pool.
This measures the learner path the engine calls; the engine's own per-event cost
(decode, join, answer) is measured by the engine benchmarks once it routes
``task = "fair"`` models. Prints microseconds per round (p50, p99, mean).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from regretflow.connectors.simulators.fairness import AdultPopulation, FairnessSimulator
from regretflow.learners import fair_kernels
from regretflow.learners.fair import FairExp2, FairFTPL, OneSidedExp2, greedy_separator


def bench(name, model, sim, rounds):
    laps = np.empty(rounds)
    for t in range(rounds):
        X, y = sim.individuals(t), sim.labels(t)
        start = time.perf_counter()
        dec, q = model.act(None, X)
        model.learn(None, dec, np.where(dec == 1, y, -1.0), q, X)
        reports = sim.reports(t, q)  # the simulator's work, excluded below
        mid = time.perf_counter()
        model.audit(X, dec, q, reports, panel_size=sim.panel_size)
        end = time.perf_counter()
        laps[t] = (mid - start) + (end - mid)
    laps *= 1e6
    print(f"{name:<14} k={sim.k} N={model.n_policies:<5} rounds={rounds:<6} "
          f"p50 {np.percentile(laps, 50):9.1f} us  p99 {np.percentile(laps, 99):9.1f} us  mean {laps.mean():9.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    fair_kernels.warm_up()
    pop = AdultPopulation.load()
    W, b = pop.hypothesis_class(50, 20, seed=0)  # 1,002 policies
    separator = greedy_separator(W, b, pop.separator_candidates(3000, seed=1))
    sim = FairnessSimulator(pop, n_rounds=args.rounds, k=10, seed=0)
    print(f"class: {W.shape[0]} thresholds, separator: {separator.shape[0]} points")
    common = dict(weights=W, offsets=b, horizon=args.rounds, seed=0)
    bench("FairExp2", FairExp2(learning_rate_factor=32.0, **common), sim, args.rounds)
    bench("OneSidedExp2", OneSidedExp2(**common), sim, args.rounds)
    bench("FairFTPL", FairFTPL(separator_points=separator, perturbation_factor=0.003, **common), sim, args.rounds)


if __name__ == "__main__":
    main()
