"""Benchmark (not collected by pytest): per-round cost of the fair learners, k = 10, N = 1,000.

    .venv/bin/python tests/benchmarks/bench_fair.py [--rounds 2000] [--batch 64]

One round = a ``decide`` of k = 10 Adult individuals, the ``feedback`` with the labels of
the positively decided, and the ``audit`` with the panel's reports (3 of the 5 default
auditors), for a class of 1,002 linear thresholds. Measured, for FairExp2, FairFTPL and
the accuracy-only OneSidedExp2, in the same run:

1. ``kernels``: the numba kernel calls of a round alone (what the learner cannot avoid);
2. ``learner``: ``act`` + ``learn`` + ``audit`` through the learner's Python API;
3. ``engine, closed loop``: the three events as JSON bytes through ``Engine.process``,
   one decide per micro-batch and its feedback and audit in the next (a caller waiting
   for every answer): decode, validate, join, learn, answer encoding, metrics. The
   decide latency (what a live caller waits for) is reported on its own;
4. ``engine, batched``: ``--batch`` decides per micro-batch, then their feedbacks and
   audits in one micro-batch (delayed feedback, as a busy deployment sees it).

The simulator's own work (drawing people, computing the auditors' reports) is outside
every timer. River and Vowpal Wabbit have no learner for this setting (one-sided
feedback, randomised policies judged by auditor panels); as a yardstick the benchmark
times what they charge for a plain online logistic classifier on the same 10
individuals per round (predict each, then learn each label: full information, an upper
bound of the one-sided cost), when installed.
Prints µs per round (p50, p99, mean), rounds/s and the process's peak RSS.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import math
import resource
import time

import numpy as np
import orjson

from regretflow.connectors.memory import MemorySink
from regretflow.connectors.simulators.fairness import FAIR_FEATURES, AdultPopulation, FairnessSimulator
from regretflow.engine.config import parse_config
from regretflow.engine.experiments import fair_onesided as R
from regretflow.engine.runtime.loop import Engine
from regretflow.learners import fair_kernels as K
from regretflow.learners.fair import FairExp2, FairFTPL, OneSidedExp2, greedy_separator


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def line(path: str, name: str, laps_us: np.ndarray, extra: str = "", reference_us: float | None = None) -> float:
    """Print one path's per-round figures (and its mean over ``reference_us``); return the mean."""
    ratio = f"  x{laps_us.mean() / reference_us:6.1f} kernels" if reference_us else ""
    print(
        f"  {path:<22} {name:<13} p50 {np.percentile(laps_us, 50):9.1f}  p99 {np.percentile(laps_us, 99):9.1f}"
        f"  mean {laps_us.mean():9.1f} us/round  {1e6 / laps_us.mean():9.0f} rounds/s{ratio}  {extra}"
    )
    return float(laps_us.mean())


def build(name: str, W, b, separator, rounds: int):
    common = dict(weights=W, offsets=b, horizon=rounds, seed=0)
    if name == "FairExp2":
        return FairExp2(fairness_scale=R.FAIRNESS_SCALE, cost_bound=R.RATE_COST_BOUND, **common)
    if name == "OneSidedExp2":
        return OneSidedExp2(**common)
    return FairFTPL(
        separator_points=separator,
        fairness_scale=R.FAIRNESS_SCALE,
        cost_bound=R.RATE_COST_BOUND,
        perturbation_factor=R.FTPL_PERTURBATION_FACTOR,
        **common,
    )


FAMILY = {"FairExp2": "fair-exp2", "OneSidedExp2": "one-sided-exp2", "FairFTPL": "fair-ftpl"}


def bench_learner(model, sim: FairnessSimulator, rounds: int) -> np.ndarray:
    laps = np.empty(rounds)
    for t in range(rounds):
        X, y = sim.individuals(t), sim.labels(t)
        start = time.perf_counter()
        panel = model.decide_panel(X)
        dec, q = panel.decisions, panel.probabilities
        model.learn_panel(dec, np.where(dec == 1, y, -1.0), q, X)
        mid = time.perf_counter()
        reports = sim.reports(t, q)  # the simulator's work, not timed
        resume = time.perf_counter()
        model.audit(X, dec, q, reports, panel_size=sim.panel_size)
        laps[t] = (mid - start) + (time.perf_counter() - resume)
    return laps * 1e6


class AuditKernels:
    """The kernel calls of ``audit``: the panel rule on the reports, then the fairness costs."""

    def __init__(self, model, sim: FairnessSimulator):
        self.sim = sim
        self.weight = model.current_fairness_weight()
        self.required = max(1, math.ceil(model.gamma * sim.panel_size - 1e-12))
        self.kept, self.f = np.zeros((sim.k, sim.k)), np.zeros(sim.k)

    def run(self, t: int, q: np.ndarray, V: np.ndarray, cost: np.ndarray) -> float:
        """Seconds the kernels take (the simulator's reports are computed outside the timer)."""
        reports = np.array(self.sim.reports(t, q), dtype=np.int64).reshape(-1, 3)
        start = time.perf_counter()
        self.kept[:] = 0.0
        if K.aggregate_reports(reports, q, self.sim.panel_size, self.required, self.kept) and self.weight > 0:
            self.f[:] = 0.0
            K.fairness_costs(self.kept, self.weight, self.f)
            K.add_fairness_costs(cost, V, self.f)
        return time.perf_counter() - start


def time_kernel_rounds(model, sim: FairnessSimulator, rounds: int, act_and_learn) -> np.ndarray:
    """µs per round of the class evaluation, ``act_and_learn(X, y, V, cost)`` (the family's
    kernels, returning the probabilities q) and the audit kernels."""
    V, cost = np.empty((model.n_policies, sim.k)), model.cost_.copy()
    audit = AuditKernels(model, sim)
    laps = np.empty(rounds)
    for t in range(rounds):
        X, y = np.ascontiguousarray(sim.individuals(t)), sim.labels(t)
        start = time.perf_counter()
        K.evaluate_class(model.W_, model.b_, X, V)
        q = act_and_learn(X, y, V, cost)
        laps[t] = time.perf_counter() - start + audit.run(t, q, V, cost)
    return laps * 1e6


def bench_exp2_kernels(model: FairExp2, sim: FairnessSimulator, rounds: int) -> np.ndarray:
    """The kernel calls of FairExp2's act, learn and audit, nothing else."""
    p, q, arm = np.empty(model.n_policies), np.empty(sim.k), np.empty(sim.k)
    eta = model.current_learning_rate() if hasattr(model, "current_learning_rate") else 0.01
    rng = np.random.default_rng(0)

    def act_and_learn(X, y, V, cost):
        K.softmax_weights(cost, eta, 0.0, p)
        K.positive_probabilities(p, V, q)
        dec = V[K.draw_index(p, rng.random())].astype(np.int64)
        K.importance_label_costs(dec, np.where(dec == 1, y, -1.0), q, arm)
        K.add_label_costs(cost, V, arm)
        return q

    return time_kernel_rounds(model, sim, rounds, act_and_learn)


def bench_ftpl_kernels(model: FairFTPL, sim: FairnessSimulator, rounds: int) -> np.ndarray:
    """The kernel calls of FairFTPL's act (n_samples leaders), learn (geometric resampling) and audit."""
    k, S = sim.k, model.S_.shape[0]
    q, arm, repeats = np.empty(k), np.empty(k), np.empty(k)
    scale, cap, samples = model.current_perturbation_scale(), model.current_max_resamples(), int(model.n_samples)
    leaders, resampled = np.empty(samples, dtype=np.int64), np.empty(cap, dtype=np.int64)
    rng = np.random.default_rng(0)

    def act_and_learn(X, y, V, cost):
        K.perturbed_leaders(cost, model.VS_T_, rng.laplace(0.0, scale, size=(samples, S)), leaders)
        K.leader_frequencies(leaders, V, q)
        dec = V[leaders[0]].astype(np.int64)
        repeats[:] = 0.0
        if dec.any():
            K.perturbed_leaders(cost, model.VS_T_, rng.laplace(0.0, scale, size=(cap, S)), resampled)
            K.geometric_repeats(resampled, V, dec, cap, repeats)
        K.resampled_label_costs(dec, np.where(dec == 1, y, -1.0), repeats, arm)
        K.add_label_costs(cost, V, arm)
        return q

    return time_kernel_rounds(model, sim, rounds, act_and_learn)


def engine_for(name: str, W, b, separator, rounds: int, batch: int) -> Engine:
    params = {"weights": W.tolist(), "offsets": b.tolist(), "horizon": rounds, "seed": 0}
    if name != "OneSidedExp2":  # the tuning regretflow reproduce fair-onesided runs
        params.update(fairness_scale=R.FAIRNESS_SCALE, cost_bound=R.RATE_COST_BOUND)
    if name == "FairFTPL":
        params.update(separator_points=separator.tolist(), perturbation_factor=R.FTPL_PERTURBATION_FACTOR)
    config = parse_config(
        {
            "models": {
                "fair": {
                    "learner": FAMILY[name],
                    "features": list(FAIR_FEATURES),
                    "params": params,
                    "joins": {"ttl_events": 4 * batch + 16},
                }
            },
            "runtime": {"batch_size": 4 * batch + 16},
            "metrics": {"enabled": False},
        }
    )
    return Engine(config, None, MemorySink(), MemorySink(), serve_metrics=False)


def answers_of(sink: MemorySink) -> list[dict]:
    out = [orjson.loads(r[1]) for r in sink.records]
    sink.records.clear()
    return out


def bench_engine_closed_loop(engine: Engine, sim: FairnessSimulator, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    laps, decide_laps = np.empty(rounds), np.empty(rounds)
    sim.model = "fair"
    for t in range(rounds):
        decide = orjson.dumps(sim.decide_event(t))
        start = time.perf_counter()
        engine.process([decide])
        decided = time.perf_counter()
        answer = answers_of(engine.answers)[0]
        replies = [
            orjson.dumps(sim.feedback_event(t, np.asarray(answer["decisions"]))),
            orjson.dumps(sim.audit_event(t, np.asarray(answer["probabilities"]))),
        ]
        resume = time.perf_counter()
        engine.process(replies)
        laps[t] = (decided - start) + (time.perf_counter() - resume)
        decide_laps[t] = decided - start
    assert not engine.dead_letters.records, engine.dead_letters.records[:3]
    return laps * 1e6, decide_laps * 1e6


def bench_engine_batched(engine: Engine, sim: FairnessSimulator, rounds: int, batch: int) -> np.ndarray:
    laps = []
    sim.model = "fair"
    for first in range(0, rounds - batch + 1, batch):
        decides = [orjson.dumps(sim.decide_event(t)) for t in range(first, first + batch)]
        start = time.perf_counter()
        engine.process(decides)
        decided = time.perf_counter()
        replies = []
        for t, answer in zip(range(first, first + batch), answers_of(engine.answers)):
            replies.append(orjson.dumps(sim.feedback_event(t, np.asarray(answer["decisions"]))))
            replies.append(orjson.dumps(sim.audit_event(t, np.asarray(answer["probabilities"]))))
        resume = time.perf_counter()
        engine.process(replies)
        laps.append(((decided - start) + (time.perf_counter() - resume)) / batch)
    assert not engine.dead_letters.records, engine.dead_letters.records[:3]
    return np.array(laps) * 1e6


def bench_river(sim: FairnessSimulator, rounds: int) -> np.ndarray | None:
    try:
        from river import linear_model
    except ImportError:
        return None
    model, laps = linear_model.LogisticRegression(), np.empty(rounds)
    names = list(FAIR_FEATURES)
    for t in range(rounds):
        rows = [dict(zip(names, x)) for x in sim.individuals(t).tolist()]
        y = sim.labels(t)
        start = time.perf_counter()
        for row, label in zip(rows, y):
            model.predict_proba_one(row)
            model.learn_one(row, bool(label))
        laps[t] = time.perf_counter() - start
    return laps * 1e6


def bench_vw(sim: FairnessSimulator, rounds: int) -> np.ndarray | None:
    try:
        import vowpalwabbit
    except ImportError:
        return None
    vw, laps = vowpalwabbit.Workspace("--loss_function logistic --link logistic --quiet"), np.empty(rounds)
    for t in range(rounds):
        lines = [" ".join(f"f{j}:{v:.6g}" for j, v in enumerate(x)) for x in sim.individuals(t).tolist()]
        y = sim.labels(t)
        start = time.perf_counter()
        for text, label in zip(lines, y):
            vw.predict("| " + text)
            vw.learn(f"{1 if label else -1} | " + text)
        laps[t] = time.perf_counter() - start
    vw.finish()
    return laps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    K.warm_up()
    pop = AdultPopulation.load()
    W, b = pop.hypothesis_class(50, 20, seed=0)  # 1,002 policies
    separator = greedy_separator(W, b, pop.separator_candidates(3000, seed=1))
    sim = FairnessSimulator(pop, n_rounds=args.rounds, k=10, seed=0)
    print(
        f"k = {sim.k} individuals per round, N = {W.shape[0]} thresholds, |S| = {separator.shape[0]} separator points, "
        f"{args.rounds} rounds, micro-batches of {args.batch} for the batched engine path, "
        f"{_pin.describe()}"
    )
    for name in ("FairExp2", "FairFTPL", "OneSidedExp2"):
        print(name)
        kernel = bench_exp2_kernels if name != "FairFTPL" else bench_ftpl_kernels
        kernels_us = line("kernels", name, kernel(build(name, W, b, separator, args.rounds), sim, args.rounds))
        line("learner API", name, bench_learner(build(name, W, b, separator, args.rounds), sim, args.rounds), reference_us=kernels_us)
        warm = engine_for(name, W, b, separator, args.rounds, args.batch)  # first-call set-up, then thrown away
        warm.process([orjson.dumps(sim.decide_event(0) | {"model": "fair"})])
        engine = engine_for(name, W, b, separator, args.rounds, args.batch)
        laps, decide = bench_engine_closed_loop(engine, sim, args.rounds)
        line(
            "engine, closed loop",
            name,
            laps,
            f"(decide alone p50 {np.percentile(decide, 50):.1f}, p99 {np.percentile(decide, 99):.1f} us)",
            reference_us=kernels_us,
        )
        engine = engine_for(name, W, b, separator, args.rounds, args.batch)
        line(
            "engine, batched",
            name,
            bench_engine_batched(engine, sim, args.rounds, args.batch),
            "(per round; p50/p99 over micro-batches)",
            reference_us=kernels_us,
        )
        print(f"  peak RSS so far {peak_rss_mb():.0f} MB")
    print(
        "Yardsticks: a plain online logistic classifier, predict and learn each of the same 10 individuals "
        "per round (no fairness, no randomised policy, no auditors)"
    )
    for label, laps in (
        ("River LogisticRegression", bench_river(sim, args.rounds)),
        ("Vowpal Wabbit logistic", bench_vw(sim, args.rounds)),
    ):
        if laps is None:
            print(f"  {label}: not installed (pip install -e '.[bench]')")
        else:
            line(label, "", laps)
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
