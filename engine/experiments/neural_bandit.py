"""Reproduction: contextual bandits with online neural regression (Deb et al., ICLR 2024).

``regretflow reproduce neural-bandit [--quick] [--json]``

Cumulative pseudo-regret at T = min(10,000, n) rounds, averaged over 5 shuffle
seeds, on real classification datasets turned into bandits
(:mod:`regretflow.connectors.simulators.classification_bandit`), for NeuralFastCB,
NeuralSquareCB, our disjoint LinUCB and epsilon-greedy, River's ``LinUCBDisjoint``
and Vowpal Wabbit's ``--cb_explore_adf --squarecb`` (optional: skipped when the
``vowpalwabbit`` wheel is absent), plus the perturbation on/off ablation.

The paper gives no numbers that could be read, only
the ordering "the KL variant is best, the squared variant second, both ahead of the
baselines"; the table says for each dataset whether that ordering holds, with
differences under 2 standard errors called inconclusive.

``--quick`` (CI): fewer rounds and seeds on three datasets, and asserts only the
orderings that are robust there (see :func:`quick_assertions`).

Recorded full run (this module's hyperparameters, 5 seeds, mean cumulative
pseudo-regret at T; about 35 minutes on a shared 2-core machine, River on fashion14
takes 110 s per run)::

    learner                 mushroom  shuttle  fashion14  digits  segment  vehicle
    NeuralRidgeCB (defaults)   269.7    499.7     2372.8   276.9    409.6    298.1
    NeuralFastCB               682.1    598.0     3320.4   543.9    901.1    570.9
    NeuralSquareCB             914.0   1303.8     3588.1   681.0   1050.8    589.5
    LinUCB (ours)              718.6    993.0     2469.4   342.0    700.8    482.8
    EpsilonGreedy (ours)      1090.6   1765.2     3839.4   899.2   1301.7    571.3
    River LinUCBDisjoint       729.0    991.6     2717.4   515.6    866.6    559.8
    VW --squarecb (-q sa)      737.1   1750.7     3952.0   775.6   1094.0    611.7
    NeuralFastCB +perturb      870.7    725.2     3439.0   529.6   1141.9    591.9
    NeuralSquareCB +perturb   1318.2   1611.0     4038.3   662.9   1281.1    591.0
    uniform play              4062.0   8571.4     9000.0  1617.3   1980.0    634.5

The recommended NeuralRidgeCB (its constructor defaults, one set for all six: ridge penalty
0.2 * d, optimism 0.2, input clip 3) is below every other row on all six. The paper's first
claim (KL variant ahead of the squared one) held on all six; the
neural bandits were ahead of every linear baseline only on mushroom and shuttle
(NeuralFastCB), and behind our exact LinUCB on the other four; the perturbation (as
implemented, scale 1) made things worse on five of six.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypedDict

import numpy as np

from regretflow.connectors.datasets.bandit_classification import load
from regretflow.connectors.simulators.classification_bandit import ClassificationBandit
from regretflow.learners import EpsilonGreedy, LinUCBDisjoint, NeuralFastCB, NeuralRidgeCB, NeuralSquareCB

FULL_DATASETS = ("mushroom", "shuttle", "fashion14", "digits", "segment", "vehicle")
QUICK_DATASETS = ("mushroom", "shuttle", "digits")
FULL_HORIZON, FULL_SEEDS = 10_000, 5
QUICK_HORIZON, QUICK_SEEDS = 1_500, 2

# Hyperparameters: a small grid (optimizer x step size x init gain x gamma0 in {10, 100,
# 1000}) on seed 100, which is not one of the reported seeds 0..4, on mushroom, shuttle
# and digits at T = 3,000; then fixed for every dataset. Plain OGD (0.1 .. 2.0) was far
# behind the adaptive optimizers with one step per round; EXAdam made SquareCB collapse
# on shuttle (always the wrong arm), so SquareCB keeps AdaBelief.


class NetworkParams(TypedDict, total=False):
    """Constructor parameters of NeuralFastCB / NeuralSquareCB that the reproduction fixes.

    Examples
    --------
    >>> params: NetworkParams = {"width": 16, "learning_rate": 0.1}
    >>> NeuralFastCB(n_actions=3, seed=0, **params).width
    16
    """

    depth: int
    width: int
    activation: str
    optimizer: str
    learning_rate: float
    init_scale: float
    gamma_schedule: str
    gamma0: float


FASTCB: NetworkParams = dict(
    depth=1, width=100, activation="tanh", optimizer="exadam", learning_rate=0.003, init_scale=4.0, gamma_schedule="sqrt", gamma0=10.0
)
SQUARECB: NetworkParams = dict(
    depth=1, width=100, activation="tanh", optimizer="adabelief", learning_rate=0.003, init_scale=1.0, gamma_schedule="sqrt", gamma0=10.0
)
PERTURBATION = 1.0
# The recommended learner runs with its constructor defaults (no per-dataset tuning).
RECOMMENDED = "NeuralRidgeCB (recommended)"


@dataclass
class Run:
    """One learner on one shuffled stream."""

    regret: float
    realised_regret: float
    seconds: float
    curve: np.ndarray  # cumulative pseudo-regret after each round


def _uniform_regret(sim: ClassificationBandit) -> float:
    return (1.0 - 1.0 / sim.n_actions) * len(sim)


def run_ours(make: Callable[[int, int], Any], sim: ClassificationBandit, seed: int) -> Run:
    """Play a regretflow bandit (``decide``/``learn`` on the shared context) on ``sim``."""
    learner = make(sim.n_actions, seed)
    rng = np.random.default_rng(10_000 + seed)  # feedback is deterministic; kept for symmetry
    del rng
    curve = np.empty(len(sim))
    total = realised = 0.0
    start = time.perf_counter()
    contexts, labels = sim.contexts, sim.labels
    for t in range(len(sim)):
        x = contexts[t]
        decision = learner.decide(x)
        action, p = decision.action, decision.probabilities
        label = labels[t]
        reward = 1.0 if action == label else 0.0
        learner.learn(x, action, reward, p[action], ticket=decision.ticket)
        total += 1.0 - p[label]
        realised += 1.0 - reward
        curve[t] = total
    return Run(total, realised, time.perf_counter() - start, curve)


def run_river(sim: ClassificationBandit, seed: int, alpha: float = 1.0) -> Run:
    """River's ``LinUCBDisjoint`` (pure Python, dict features): deterministic argmax."""
    from river import bandit

    policy = bandit.LinUCBDisjoint(alpha=alpha, seed=seed)
    arms: list[int | str] = list(range(sim.n_actions))
    names = [f"x{i}" for i in range(sim.n_features)]
    curve = np.empty(len(sim))
    total = 0.0
    start = time.perf_counter()
    for t in range(len(sim)):
        context = dict(zip(names, sim.contexts[t].tolist()))
        action = policy.pull(arms, context=context)
        reward = 1.0 if action == sim.labels[t] else 0.0
        policy.update(action, context, reward)  # type: ignore[no-untyped-call]  # river's update has no annotations
        total += 1.0 - reward  # deterministic policy: pseudo-regret = realised regret
        curve[t] = total
    return Run(total, total, time.perf_counter() - start, curve)


def vw_available() -> bool:
    try:
        import vowpalwabbit  # noqa: F401
    except ImportError:
        return False
    return True


def run_vw(sim: ClassificationBandit, seed: int, gamma_scale: float = 10.0) -> Run:
    """Vowpal Wabbit ``--cb_explore_adf --squarecb`` with a per-action linear model on the
    shared context (``-q sa``: context x action indicator, the disjoint encoding)."""
    import vowpalwabbit

    vw = vowpalwabbit.Workspace(f"--cb_explore_adf --squarecb --gamma_scale {gamma_scale} -q sa --random_seed {seed} --quiet")
    rng = np.random.default_rng(20_000 + seed)
    k = sim.n_actions
    action_lines = [f"|a arm{a}" for a in range(k)]
    curve = np.empty(len(sim))
    total = realised = 0.0
    start = time.perf_counter()
    for t in range(len(sim)):
        shared = "shared |s " + " ".join(f"f{i}:{v:.6g}" for i, v in enumerate(sim.contexts[t]) if v != 0.0)
        p = np.asarray(vw.predict([shared] + action_lines), dtype=np.float64)
        p = p / p.sum()
        action = int(np.searchsorted(np.cumsum(p), rng.random(), side="right"))
        action = min(action, k - 1)
        label = int(sim.labels[t])
        reward = 1.0 if action == label else 0.0
        lines = [shared] + [f"0:{1.0 - reward}:{p[a]:.6g} |a arm{a}" if a == action else action_lines[a] for a in range(k)]
        vw.learn(lines)
        total += 1.0 - p[label]
        realised += 1.0 - reward
        curve[t] = total
    vw.finish()
    return Run(total, realised, time.perf_counter() - start, curve)


def learners(quick: bool) -> dict[str, Callable[[ClassificationBandit, int], Run]]:
    """Name -> runner(sim, seed) of every compared learner (VW only when installed)."""
    table: dict[str, Callable[[ClassificationBandit, int], Run]] = {
        RECOMMENDED: lambda sim, s: run_ours(lambda k, seed: NeuralRidgeCB(n_actions=k, seed=seed), sim, s),
        "NeuralFastCB": lambda sim, s: run_ours(lambda k, seed: NeuralFastCB(n_actions=k, seed=seed, **FASTCB), sim, s),
        "NeuralSquareCB": lambda sim, s: run_ours(lambda k, seed: NeuralSquareCB(n_actions=k, seed=seed, **SQUARECB), sim, s),
        "LinUCB": lambda sim, s: run_ours(lambda k, seed: LinUCBDisjoint(n_actions=k, alpha=1.0, exploration=0.0), sim, s),
        "EpsilonGreedy": lambda sim, s: run_ours(lambda k, seed: EpsilonGreedy(n_actions=k, epsilon=0.05, seed=seed), sim, s),
    }
    if not quick:
        table["River LinUCBDisjoint"] = run_river
        if vw_available():
            table["VW SquareCB"] = run_vw
        table["NeuralFastCB +perturb"] = lambda sim, s: run_ours(
            lambda k, seed: NeuralFastCB(n_actions=k, seed=seed, perturbation=PERTURBATION, **FASTCB), sim, s
        )
        table["NeuralSquareCB +perturb"] = lambda sim, s: run_ours(
            lambda k, seed: NeuralSquareCB(n_actions=k, seed=seed, perturbation=PERTURBATION, **SQUARECB), sim, s
        )
    return table


def evaluate(
    datasets: tuple[str, ...], horizon: int, seeds: list[int], quick: bool, only: tuple[str, ...] | None = None, log: TextIO = sys.stderr
) -> dict[str, Any]:
    """Run every learner on every dataset and seed; returns the results as plain data."""
    results: dict[str, Any] = {"horizon": horizon, "seeds": seeds, "datasets": {}}
    runners = learners(quick)
    if only:
        runners = {name: fn for name, fn in runners.items() if name in only}
    for name in datasets:
        data = load(name)
        entry: dict[str, Any] = {"learners": {}}
        for learner, runner in runners.items():
            finals, realised, seconds, tails, heads = [], [], [], [], []
            for seed in seeds:
                sim = ClassificationBandit(data.X, data.y, seed=seed, horizon=horizon)
                run = runner(sim, seed)
                finals.append(run.regret)
                realised.append(run.realised_regret)
                seconds.append(run.seconds)
                fifth = max(1, len(sim) // 5)
                heads.append(run.curve[fifth - 1])
                tails.append(run.curve[-1] - run.curve[-fifth - 1])
            entry["T"] = len(sim)
            entry["K"] = sim.n_actions
            entry["uniform"] = _uniform_regret(sim)
            entry["learners"][learner] = {
                "mean": float(np.mean(finals)),
                "stderr": float(np.std(finals, ddof=1) / math.sqrt(len(finals))) if len(finals) > 1 else 0.0,
                "std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
                "per_seed": [float(v) for v in finals],
                "realised_mean": float(np.mean(realised)),
                "seconds_per_run": float(np.mean(seconds)),
                "us_per_round": float(np.mean(seconds) / len(sim) * 1e6),
                "slope_ratio_last_first_fifth": float(np.mean(tails) / max(np.mean(heads), 1e-12)),
            }
            print(f"  {name:10s} {learner:24s} regret {np.mean(finals):9.1f}  ({np.mean(seconds):6.2f} s/run)", file=log, flush=True)
        results["datasets"][name] = entry
    return results


def _ahead(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'yes' if a's mean regret is below b's by more than 2 combined standard errors,
    'no' if above by more than that, else 'inconclusive'."""
    margin = 2.0 * math.hypot(a["stderr"], b["stderr"])
    if a["mean"] < b["mean"] - margin:
        return "yes"
    if a["mean"] > b["mean"] + margin:
        return "no"
    return "inconclusive"


LINEAR_BASELINES = ("LinUCB", "EpsilonGreedy", "River LinUCBDisjoint", "VW SquareCB")


def claims(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The paper's ordering claims, checked per dataset."""
    out: dict[str, dict[str, str]] = {}
    for name, entry in results["datasets"].items():
        lr = entry["learners"]
        fast, square = lr.get("NeuralFastCB"), lr.get("NeuralSquareCB")
        linear = [lr[b] for b in LINEAR_BASELINES if b in lr]
        best_linear = min(linear, key=lambda r: r["mean"]) if linear else None
        row = {
            "FastCB < SquareCB": _ahead(fast, square) if fast and square else "n/a",
            "FastCB < best linear": _ahead(fast, best_linear) if fast and best_linear else "n/a",
            "SquareCB < best linear": _ahead(square, best_linear) if square and best_linear else "n/a",
        }
        if "NeuralFastCB +perturb" in lr:
            on, off = lr["NeuralFastCB +perturb"], lr["NeuralFastCB"]
            row["perturbation changes FastCB by < 1 seed std"] = (
                "yes" if abs(on["mean"] - off["mean"]) < max(off["std"], on["std"], 1e-12) else "no"
            )
        out[name] = row
    return out


def format_table(results: dict[str, Any]) -> str:
    names = list(results["datasets"])
    learner_names: list[str] = []
    for entry in results["datasets"].values():
        for learner in entry["learners"]:
            if learner not in learner_names:
                learner_names.append(learner)
    lines = [
        f"Cumulative pseudo-regret at T = min({results['horizon']}, n), mean ± s.e. over {len(results['seeds'])} seeds (lower is better)",
        "Paper (Deb et al., ICLR 2024): no readable numbers; claimed ordering NeuralFastCB < NeuralSquareCB < baselines on most datasets.",
        f"Paper-faithful configuration: NeuralFastCB {FASTCB}; NeuralSquareCB {SQUARECB}.",
        f"Recommended: {NeuralRidgeCB(n_actions=None)!r} (its constructor defaults).",
        "",
    ]
    header = f"{'learner':24s}" + "".join(f"{n + ' (T=' + str(results['datasets'][n]['T']) + ')':>22s}" for n in names)
    lines.append(header)
    lines.append("-" * len(header))
    for learner in learner_names:
        texts = []
        for n in names:
            r = results["datasets"][n]["learners"].get(learner)
            texts.append(f"{r['mean']:10.1f} ± {r['stderr']:6.1f}" if r else f"{'-':>19s}")
        lines.append(f"{learner:24s}" + "".join(f"{c:>22s}" for c in texts))
    lines.append(f"{'uniform play':24s}" + "".join(f"{results['datasets'][n]['uniform']:>22.1f}" for n in names))
    lines.append("")
    lines.append("Does the paper's ordering hold? ('inconclusive': difference < 2 standard errors)")
    checked = claims(results)
    keys = list(next(iter(checked.values())).keys()) if checked else []
    for key in keys:
        lines.append(f"  {key:46s}" + "".join(f"{checked[n][key]:>14s}" for n in names))
    lines.append("")
    lines.append("Microseconds per round (decide + learn):")
    for learner in learner_names:
        cells = [results["datasets"][n]["learners"].get(learner) for n in names]
        lines.append(f"  {learner:26s}" + "".join(f"{(c['us_per_round'] if c else float('nan')):>12.1f}" for c in cells))
    return "\n".join(lines)


def quick_assertions(results: dict[str, Any]) -> list[str]:
    """The orderings CI asserts; returns the failures (empty: all hold).

    Only what held with margin in the quick runs is asserted (the paper's full claim,
    neural ahead of the linear baselines, did NOT hold here: LinUCB was better):

    1. NeuralFastCB < NeuralSquareCB on every quick dataset (the paper's first claim).
    2. Both neural bandits beat uniform play by at least a factor of 1.5.
    3. NeuralFastCB beats epsilon-greedy on shuttle and digits.
    4. The neural regret curves bend: the slope over the last fifth is < 0.75x the
       slope over the first fifth.
    """
    failures = []
    for name, entry in results["datasets"].items():
        lr = entry["learners"]
        if lr["NeuralFastCB"]["mean"] >= lr["NeuralSquareCB"]["mean"]:
            failures.append(
                f"{name}: NeuralFastCB {lr['NeuralFastCB']['mean']:.1f} not below NeuralSquareCB {lr['NeuralSquareCB']['mean']:.1f}"
            )
        for neural in ("NeuralFastCB", "NeuralSquareCB"):
            if lr[neural]["mean"] * 1.5 > entry["uniform"]:
                failures.append(f"{name}: {neural} regret {lr[neural]['mean']:.1f} not 1.5x below uniform {entry['uniform']:.1f}")
            if lr[neural]["slope_ratio_last_first_fifth"] >= 0.75:
                failures.append(
                    f"{name}: {neural} regret curve does not bend (slope ratio {lr[neural]['slope_ratio_last_first_fifth']:.2f})"
                )
        if name in ("shuttle", "digits") and lr["NeuralFastCB"]["mean"] >= lr["EpsilonGreedy"]["mean"]:
            failures.append(
                f"{name}: NeuralFastCB {lr['NeuralFastCB']['mean']:.1f} not below EpsilonGreedy {lr['EpsilonGreedy']['mean']:.1f}"
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regretflow reproduce neural-bandit", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI form: fewer rounds, seeds and datasets, with assertions")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of " + ",".join(FULL_DATASETS))
    parser.add_argument("--learners", default=None, help="comma-separated subset of the learner names")
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args(argv)
    datasets = tuple(args.datasets.split(",")) if args.datasets else (QUICK_DATASETS if args.quick else FULL_DATASETS)
    horizon = args.horizon or (QUICK_HORIZON if args.quick else FULL_HORIZON)
    n_seeds = args.seeds or (QUICK_SEEDS if args.quick else FULL_SEEDS)
    only = tuple(args.learners.split(",")) if args.learners else None
    results = evaluate(datasets, horizon, list(range(n_seeds)), args.quick, only)
    results["claims"] = claims(results)
    failures = quick_assertions(results) if args.quick and only is None and args.datasets is None else []
    results["quick_failures"] = failures
    if args.json:
        print(json.dumps(results, indent=2, default=lambda a: a.tolist()))
    else:
        print(format_table(results))
        if args.quick:
            print("\nquick assertions:", "all hold" if not failures else "FAILED")
            for failure in failures:
                print("  -", failure)
    return 1 if failures else 0
