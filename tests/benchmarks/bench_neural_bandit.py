"""Benchmark (not collected by pytest): cost of one decision + one learn of the neural bandits.

K = 10 actions, d = 32 shared-context features (disjoint encoding, so the network's
input row is K*d = 320 wide), one hidden layer of width 100, on one synthetic stream,
measured in the same run for:

- the bare numba kernels (predict_items + igw + sample + learn_one on arrays);
- ``act``/``learn`` of NeuralSquareCB and NeuralFastCB;
- the engine: a ``decide`` event and its ``feedback`` through ``Engine.process``
  (one event per micro-batch, the worst case), with the classes registered in
  ``LEARNERS`` for this process only;
- River's ``LinUCBDisjoint`` (``pull``/``update`` on dicts);
- Vowpal Wabbit ``--cb_explore_adf --squarecb -q sa`` from Python (``predict``/``learn``
  on text examples).

Run: ``.venv/bin/python tests/benchmarks/bench_neural_bandit.py [--rounds 3000]``. Prints
microseconds per round (decision + learn), median of three repeats for the fast paths.

``--table`` instead prints the docs' comparison table (docs/learners/neural-bandit.md):
the six datasets of ``regretflow reproduce neural-bandit``, 5 seeds, T = 10,000, the
cumulative pseudo-regret mean ± sd and the microseconds per round of the recommended
NeuralRidgeCB (defaults), the paper-faithful NeuralFastCB/NeuralSquareCB, our
LinUCBDisjoint, River's LinUCBDisjoint and VW squarecb, all measured in one run
(``--seeds``/``--horizon`` for a smaller run; ``--json FILE`` keeps the raw results).
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import time

import numpy as np
import orjson

from regretflow.learners import neural_kernels as NK
from regretflow.learners.neural_bandit import NeuralFastCB, NeuralSquareCB

K, D, WIDTH = 10, 32, 100


def stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)) / np.sqrt(D)
    W = rng.normal(size=(K, D))
    labels = np.argmax(np.tanh(X @ W.T * 3.0) + 0.1 * rng.normal(size=(n, K)), axis=1)
    return X, labels


def bench_bare(X, labels, optimizer: int) -> float:
    n_in = K * D
    p = NK.n_parameters(n_in, WIDTH, 1)
    rng = np.random.default_rng(0)
    theta = rng.normal(0, 1 / np.sqrt(D), p)
    theta0 = theta.copy()
    grad, first, second = np.zeros(p), np.zeros(p), np.zeros(p)
    rows_of, offsets = np.zeros(K, dtype=np.int64), np.arange(K, dtype=np.int64) * D
    z, probs = np.empty(K), np.empty(K)
    start = time.perf_counter()
    for t in range(len(X)):
        x = X[t]
        NK.predict_items(theta, theta0, x[None, :], rows_of, offsets, n_in, WIDTH, 1, NK.TANH, 0.0, 0, z)
        NK.igw_probabilities(1.0 - z, 10.0 * np.sqrt(t), probs)
        a = NK.sample_index(probs, rng.random())
        NK.learn_one(
            theta,
            theta0,
            grad,
            first,
            second,
            t + 1,
            x,
            a * D,
            n_in,
            WIDTH,
            1,
            NK.TANH,
            NK.SQUARED,
            float(a == labels[t]),
            1e-6,
            0.0,
            0,
            a,
            optimizer,
            3e-3,
            0.9,
            0.999,
            1e-16,
            0.0,
        )
    return (time.perf_counter() - start) / len(X) * 1e6


def bench_learner(X, labels, make) -> float:
    bandit = make()
    start = time.perf_counter()
    for t in range(len(X)):
        a, p = bandit.act(X[t])
        bandit.learn(X[t], a, float(a == labels[t]), p[a])
    return (time.perf_counter() - start) / len(X) * 1e6


def bench_engine(X, labels, family: str, params: dict) -> float:
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine
    from regretflow.learners import LEARNERS

    LEARNERS.setdefault("neural-squarecb", NeuralSquareCB)  # this process only; see the report
    LEARNERS.setdefault("neural-fastcb", NeuralFastCB)
    config = parse_config(
        {
            "models": {"nb": {"learner": family, "n_actions": K, "params": params, "features": [f"x{i}" for i in range(D)]}},
            "metrics": {"enabled": False},
        }
    )
    answers = MemorySink()
    engine = Engine(config, MemorySource([]), answers, MemorySink(), serve_metrics=False)
    decides = [orjson.dumps({"id": f"d{t}", "model": "nb", "kind": "decide", "features": X[t].tolist()}) for t in range(len(X))]
    start = time.perf_counter()
    for t in range(len(X)):
        engine.process([decides[t]])
        action = orjson.loads(answers.records[-1][1])["action"]
        engine.process(
            [orjson.dumps({"id": f"f{t}", "model": "nb", "kind": "feedback", "ref": f"d{t}", "reward": float(action == labels[t])})]
        )
    elapsed = time.perf_counter() - start
    return elapsed / len(X) * 1e6


def bench_river(X, labels) -> float:
    from river import bandit

    policy = bandit.LinUCBDisjoint(alpha=1.0, seed=0)
    arms = list(range(K))
    names = [f"x{i}" for i in range(D)]
    start = time.perf_counter()
    for t in range(len(X)):
        context = dict(zip(names, X[t].tolist()))
        a = policy.pull(arms, context=context)
        policy.update(a, context, float(a == labels[t]))
    return (time.perf_counter() - start) / len(X) * 1e6


def bench_vw(X, labels) -> float:
    import vowpalwabbit

    vw = vowpalwabbit.Workspace("--cb_explore_adf --squarecb -q sa --quiet --random_seed 0")
    rng = np.random.default_rng(0)
    action_lines = [f"|a arm{a}" for a in range(K)]
    start = time.perf_counter()
    for t in range(len(X)):
        shared = "shared |s " + " ".join(f"f{i}:{v:.6g}" for i, v in enumerate(X[t]))
        p = np.asarray(vw.predict([shared] + action_lines))
        a = min(int(np.searchsorted(np.cumsum(p / p.sum()), rng.random(), side="right")), K - 1)
        cost = 1.0 - float(a == labels[t])
        vw.learn([shared] + [f"0:{cost}:{p[a]:.6g} |a arm{i}" if i == a else action_lines[i] for i in range(K)])
    elapsed = time.perf_counter() - start
    vw.finish()
    return elapsed / len(X) * 1e6


TABLE_LEARNERS = ("NeuralRidgeCB (recommended)", "NeuralFastCB", "NeuralSquareCB", "LinUCB", "River LinUCBDisjoint", "VW SquareCB")


def comparison_table(horizon: int, n_seeds: int, json_path: str | None) -> str:
    """The regret / cost table of the docs, as markdown."""
    import json
    import sys

    from regretflow.engine.experiments import neural_bandit as repro

    results = repro.evaluate(repro.FULL_DATASETS, horizon, list(range(n_seeds)), quick=False, only=TABLE_LEARNERS, log=sys.stderr)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=1)
    names = list(results["datasets"])
    lines = [
        f"Cumulative pseudo-regret at T = min({horizon}, n), mean ± sd over {n_seeds} seeds; µs per round (decide + learn) below. {_pin.describe()}",
        "",
        "| learner | " + " | ".join(f"{n} (T={results['datasets'][n]['T']}, K={results['datasets'][n]['K']})" for n in names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for learner in TABLE_LEARNERS:
        cells = [results["datasets"][n]["learners"].get(learner) for n in names]
        lines.append(f"| {learner} | " + " | ".join(f"{c['mean']:.1f} ± {c['std']:.1f}" if c else "-" for c in cells) + " |")
    lines.append("| uniform play | " + " | ".join(f"{results['datasets'][n]['uniform']:.1f}" for n in names) + " |")
    lines += ["", "| µs per round | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for learner in TABLE_LEARNERS:
        cells = [results["datasets"][n]["learners"].get(learner) for n in names]
        lines.append(f"| {learner} | " + " | ".join(f"{c['us_per_round']:.0f}" if c else "-" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--table", action="store_true", help="the docs' regret and cost table instead of the cost breakdown")
    parser.add_argument("--horizon", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default=None, help="with --table: also write the raw results here")
    args = parser.parse_args()
    if args.table:
        print(comparison_table(args.horizon, args.seeds, args.json))
        return
    X, labels = stream(args.rounds)
    NK.warm_up()
    warm = stream(50, seed=1)
    sq = dict(width=WIDTH, optimizer="adabelief", learning_rate=3e-3)
    rows = []
    for name, fn in [
        ("bare kernels, OGD", lambda: bench_bare(X, labels, NK.OGD)),
        ("bare kernels, AdaBelief", lambda: bench_bare(X, labels, NK.ADABELIEF)),
        (
            "NeuralSquareCB act+learn, OGD",
            lambda: bench_learner(X, labels, lambda: NeuralSquareCB(n_actions=K, width=WIDTH, learning_rate=0.05)),
        ),
        ("NeuralSquareCB act+learn, AdaBelief", lambda: bench_learner(X, labels, lambda: NeuralSquareCB(n_actions=K, **sq))),
        (
            "NeuralFastCB act+learn, EXAdam",
            lambda: bench_learner(X, labels, lambda: NeuralFastCB(n_actions=K, width=WIDTH, optimizer="exadam", learning_rate=3e-3)),
        ),
        ("engine decide+feedback, SquareCB AdaBelief", lambda: bench_engine(X, labels, "neural-squarecb", sq)),
    ]:
        if name.startswith("engine"):
            bench_engine(*warm, "neural-squarecb", sq)  # compile + warm the engine path
        rows.append((name, float(np.median([fn() for _ in range(3)]))))
    rows.append(("River LinUCBDisjoint pull+update", bench_river(X[:1000], labels[:1000])))
    try:
        rows.append(("VW --cb_explore_adf --squarecb", bench_vw(X, labels)))
    except ImportError:
        rows.append(("VW --cb_explore_adf --squarecb (not installed)", float("nan")))
    print(f"K={K}, d={D} (disjoint: input {K * D}), width {WIDTH}, 1 hidden layer, {args.rounds} rounds; {_pin.describe()}")
    print(f"{'path':48s} {'us/round':>10s} {'rounds/s':>10s} {'x kernels':>10s}")
    kernel_us = rows[0][1]
    for name, us in rows:
        print(f"{name:48s} {us:10.1f} {1e6 / us:10.0f} {us / kernel_us:10.1f}")


if __name__ == "__main__":
    main()
