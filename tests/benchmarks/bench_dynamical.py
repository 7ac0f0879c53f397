"""Benchmark of the dynamical linear bandit family (not collected by pytest).

    .venv/bin/python tests/benchmarks/bench_dynamical.py [--official /tmp/DLB] [--rounds 1000000]

Prints:

1. the per-round cost of ``DynLinUCB.act`` + ``learn`` through the Python API, split
   into rounds inside an epoch (replay, no regression) and rounds that end an epoch
   (Sherman-Morrison update; the next round's decision is timed with it);
2. the same split for the kernels alone (what the engine's batched path pays);
3. the wall time of one 10^6-round run on the real-data system per method with the
   compiled closed loop (``LinearDynamicalSystem.play`` -> the learner's ``play``), and of the
   class stepped round by round;
4. if a checkout of the official code (marcomussi/DLB, MIT) is given, the same run
   with its numpy agents and environment on this machine, and the speed-up. The
   checkout is only read; a numpy-2 fix (a (1,1) array stored into a float array
   element) is applied to a temporary copy. Never commit the official code.
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import importlib
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from regretflow.connectors.simulators.linear_dynamical import test_case
from regretflow.engine.experiments import dynamical_bandit as R
from regretflow.learners import dynamical_kernels as K
from regretflow.learners.dynamical import SystemBounds


def api_split(rounds: int) -> dict[str, float]:
    sim = test_case("real-data", seed=1)
    learner = R.make_learner("DynLin-UCB (lambda=log T)", sim, 10**6, seed=0)
    rewards = np.array([sim.step(k % 6) for k in range(rounds)])
    inside, ending = [], []
    clock = time.perf_counter_ns
    for t in range(rounds):
        end = t == learner._istate[K.I_EPOCH_END]
        due = learner._istate[K.I_DUE] != K.DUE_REPLAY
        start = clock()
        arm, _ = learner.act()
        learner.learn(None, arm, rewards[t])
        elapsed = clock() - start
        (ending if end or due else inside).append(elapsed)
    return {"inside": float(np.median(inside)) / 1e3, "end_or_decide": float(np.median(ending)) / 1e3, "share_end": len(ending) / rounds}


def kernel_split(rounds: int) -> dict[str, float]:
    """Kernel calls only: a decide + learn pair per round, timed in blocks of like rounds."""
    sim = test_case("real-data", seed=1)
    learner = R.make_learner("DynLin-UCB (lambda=log T)", sim, 10**6, seed=0)
    learner.act()
    a = learner
    rewards = np.array([sim.step(k % 6) for k in range(rounds)])
    inside = ending = 0
    n_in = n_end = 0
    clock = time.perf_counter_ns
    for t in range(rounds):
        end = t == a._istate[K.I_EPOCH_END]
        due = a._istate[K.I_DUE] != K.DUE_REPLAY
        start = clock()
        K.ucb_decide(a._istate, a._fstate, a._h, a._M, a._actions, a._beta_rule, a._beta_params, 0, a._means, a._scores)
        K.ucb_learn(a._istate, a._fstate, a._Vinv, a._b, a._h, a._actions, rewards[t], a._log_inv_rho, a._residual_window, a._scratch)
        elapsed = clock() - start
        if end or due:
            ending += elapsed
            n_end += 1
        else:
            inside += elapsed
            n_in += 1
    return {"inside": inside / max(n_in, 1) / 1e3, "end_or_decide": ending / max(n_end, 1) / 1e3}


def fast_run(method: str, rounds: int) -> float:
    sim = test_case("real-data", seed=3)
    learner = R.make_learner(method, sim, 10**6, seed=0)
    start = time.perf_counter()
    sim.play(learner, rounds)
    return time.perf_counter() - start


def class_run(method: str, rounds: int) -> float:
    sim = test_case("real-data", seed=3)
    learner = R.make_learner(method, sim, 10**6, seed=0)
    start = time.perf_counter()
    for _ in range(rounds):
        arm, _ = learner.act()
        learner.learn(None, arm, sim.step(arm))
    return time.perf_counter() - start


def load_official(path: str):
    """Import the official agents and environment from a numpy-2-fixed temporary copy."""
    work = tempfile.mkdtemp(prefix="dlb_np2_")
    shutil.copytree(os.path.join(path, "dynlinucb"), os.path.join(work, "dynlinucb"))
    agents = os.path.join(work, "dynlinucb", "experimental", "agents.py")
    src = open(agents).read()
    out, pos = [], 0
    for match in re.finditer(r"obj_vals\[i\] = ", src):
        start = match.end()
        depth, i = 0, start
        while True:  # the statement ends at the first newline outside brackets
            ch = src[i]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "\n" and depth == 0:
                break
            i += 1
        out.append(src[pos:start] + "float(np.squeeze(" + src[start:i] + "))")
        pos = i
    out.append(src[pos:])
    open(agents, "w").write("".join(out))
    sys.path.insert(0, work)
    return importlib.import_module("dynlinucb.experimental.agents"), importlib.import_module("dynlinucb.experimental.environment")


def official_run(agents, environment, method: str, rounds: int) -> float:
    sim = test_case("real-data")
    A, B, C, D = sim.A, sim.B, sim.C, sim.D
    bounds = SystemBounds.from_matrices(A, B, C, D, sim.noise_sigma)
    actions = sim.actions
    horizon = 10**6
    u_val = float(np.max(np.linalg.norm(actions, axis=1)))
    args = (
        6,
        3,
        actions,
        horizon,
        np.log(horizon),
        bounds.rho_bar,
        bounds.omega_norm,
        bounds.theta_norm,
        u_val,
        bounds.b_norm,
        bounds.phi_bar,
        sim.noise_sigma**2,
        1.0 / horizon,
    )
    flag = {"DynLin-UCB (lambda=log T)": {"dynlinucb": True}, "LinUCB (lambda=log T)": {"linucb": True}}[method]
    agent = agents.LinearAgent(*args, **flag)
    rng = np.random.RandomState(1)
    noise = rng.normal(0, sim.noise_sigma, (1, rounds, 3))
    out_noise = rng.normal(0, sim.noise_sigma, (1, rounds, 3))
    env = environment.DynLinEnvironment(A, B, C, D, 3, 3, 3, rounds, noise, out_noise, 1, np.ones((1, 3)))
    env.reset(0)
    agent.reset()
    start = time.perf_counter()
    for _ in range(rounds):  # the official Runner's loop, without its progress bar
        action = agent.pull_arm()
        reward = env.step(action.reshape(3, 1))
        agent.update(reward[0, 0])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", default="/tmp/DLB", help="checkout of marcomussi/DLB (skipped if absent)")
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--official-rounds", type=int, default=100_000, help="rounds timed with the official code (scaled to 10^6)")
    args = parser.parse_args()
    K.warm_up()
    test_case("real-data").play(R.make_learner("Exp3", test_case("real-data"), 10**6, 0), 10)
    for m in R.METHODS:
        fast_run(m, 1000)
    print(f"per-round cost, real-data system, DynLin-UCB (lambda = log T); {_pin.describe()}")
    api = api_split(200_000)
    print(
        f"  Python API act()+learn(): inside an epoch {api['inside']:.2f} us (median); epoch end or decision {api['end_or_decide']:.2f} us "
        f"({100 * api['share_end']:.1f}% of rounds)"
    )
    ker = kernel_split(200_000)
    print(f"  kernels only (Python call overhead included): inside {ker['inside']:.2f} us; end or decision {ker['end_or_decide']:.2f} us")
    print(
        f"  Python API / kernels: inside x{api['inside'] / ker['inside']:.1f}, end or decision x{api['end_or_decide'] / ker['end_or_decide']:.1f}"
    )
    print(f"wall time of one {args.rounds:,}-round run with the simulator (real-data)")
    ours = {}
    for m in R.METHODS:
        ours[m] = fast_run(m, args.rounds)
        print(f"  jitted loop  {m:<28} {ours[m]:7.3f} s  ({1e9 * ours[m] / args.rounds:6.1f} ns/round)")
    for m in ("DynLin-UCB (lambda=log T)", "LinUCB (lambda=log T)"):
        n = min(args.rounds, 200_000)
        secs = class_run(m, n) * args.rounds / n
        print(f"  class steps  {m:<28} {secs:7.3f} s  (from {n:,} rounds)  x{secs / ours[m]:,.0f} the jitted loop")
    if os.path.isdir(os.path.join(args.official, "dynlinucb")):
        agents, environment = load_official(args.official)
        print(f"official numpy code (marcomussi/DLB), {args.official_rounds:,} rounds timed, scaled to {args.rounds:,}")
        for m in ("DynLin-UCB (lambda=log T)", "LinUCB (lambda=log T)"):
            secs = official_run(agents, environment, m, args.official_rounds) * args.rounds / args.official_rounds
            print(f"  official     {m:<28} {secs:7.1f} s   speed-up of the jitted loop: x{secs / ours[m]:,.0f}")
    else:
        print(f"official code not found at {args.official}: skipped the comparison")


if __name__ == "__main__":
    main()
