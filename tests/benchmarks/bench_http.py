"""Benchmark: event throughput and /metrics latency of a running engine under HTTP abuse.

Runs the same stream through an in-process engine twice: quiet, then while a second
process holds 500 idle connections and 100 slowloris clients, floods /metrics from 16
clients and scrapes politely (one GET every 100 ms, timing each). Prints events/s of
both runs and the polite scrape latencies. Not a test: the figures depend on the host.

With two or more CPUs the engine runs on the first and the clients on the others
(``--no-pin`` to share them): the attackers stand for other machines, so what is
measured is what serving them costs the engine, not the attackers' own CPU time taken
from a small host.

    .venv/bin/python tests/benchmarks/bench_http.py [--events 300000]
"""

from __future__ import annotations

import _pin  # noqa: F401  (one BLAS thread; must come before numpy)

# isort: split

import argparse
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def attack(port: int, seconds: float, idle: int, slow: int, flood: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # the engine's run is over
    url = f"http://127.0.0.1:{port}/metrics"
    held, slow_socks = [], []
    reconnects = {"idle": 0, "slow": 0}
    for _ in range(idle):
        held.append(socket.create_connection(("127.0.0.1", port)))
    for _ in range(slow):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow_socks.append(s)

    def keep_holding():  # whatever the server closes is opened again: the pressure stays on
        while not stop.is_set():
            for group, key, prime in ((held, "idle", b""), (slow_socks, "slow", b"GET /metrics HTTP/1.1\r\n")):
                for i, s in enumerate(group):
                    try:
                        s.send(b"X-a: b\r\n" if key == "slow" else b"")
                        s.setblocking(False)
                        if s.recv(1) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        try:
                            group[i] = socket.create_connection(("127.0.0.1", port))
                            if prime:
                                group[i].sendall(prime)
                            reconnects[key] += 1
                        except OSError:
                            pass
            time.sleep(0.2)

    flood_count = [0]

    def flooder():
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                flood_count[0] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=keep_holding, daemon=True)] + [threading.Thread(target=flooder, daemon=True) for _ in range(flood)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    stop.wait(seconds)
    stop.set()
    print(json.dumps({"flood_scrapes": flood_count[0], "reconnects": reconnects}), flush=True)


def polite(port: int, seconds: float) -> None:
    """One GET of /metrics every 100 ms, timed, from a process of its own: timed inside the attacker's
    process, a scrape would wait for that process's own 17 threads to hand it the interpreter."""
    url = f"http://127.0.0.1:{port}/metrics"
    latencies, failures, kinds = [], 0, {}
    end = time.monotonic() + seconds
    done = []
    signal.signal(signal.SIGTERM, lambda *_: done.append(True))  # the engine's run is over: its port closes next
    while time.monotonic() < end and not done:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=6) as r:
                r.read()
            latencies.append(time.perf_counter() - t0)
        except OSError as exc:
            if done:
                break
            failures += 1
            kind = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"[:80]
            kinds[kind] = kinds.get(kind, 0) + 1
        time.sleep(0.1)
    latencies.sort()
    print(
        json.dumps(
            {
                "polite_scrapes": len(latencies),
                "failures": failures,
                "failure_kinds": kinds,
                "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
                "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
                "max_ms": 1000 * latencies[-1] if latencies else None,
                "latencies_ms": [round(1000 * x, 3) for x in latencies],
            }
        ),
        flush=True,
    )


def run_engine(payloads, on_ready=None, server_cpus=None, on_done=None):
    """Events/s of one run, and the engine thread's CPU time per event (µs) and share of the wall time on a CPU."""
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine
    from tests.conftest import regression_config_dict

    config = parse_config(regression_config_dict(metrics={"port": 0}))
    engine = Engine(config, MemorySource(payloads), MemorySink(keep=False), MemorySink(keep=False))
    child = getattr(engine.server, "child", None)  # None: a server in the engine's own process (older builds)
    if server_cpus and child is not None:
        os.sched_setaffinity(child.pid, server_cpus)
    if on_ready:
        on_ready(engine.server.port)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    engine.run()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    if on_done:
        on_done()  # (before the port closes)
    engine.close()
    return engine.events_seen / wall, 1e6 * cpu / engine.events_seen, cpu / wall


def start_attack(child: dict, seconds: float, client_cpus: list, port: int) -> None:
    """The attackers' process, then (once they hold their connections) the polite scraper's, on ``client_cpus``
    (a child would otherwise inherit the engine's CPU: the clients must not take the engine's CPU time)."""
    child["p"] = subprocess.Popen(
        [sys.executable, __file__, "--attack", str(port), "--seconds", str(seconds), *client_cpus], stdout=subprocess.PIPE, text=True
    )
    assert child["p"].stdout.readline().strip() == "ready"
    time.sleep(1.0)
    child["polite"] = subprocess.Popen(
        [sys.executable, __file__, "--polite", str(port), "--seconds", str(seconds - 1.0), *client_cpus], stdout=subprocess.PIPE, text=True
    )


def end_attack(child: dict) -> None:
    """The engine's run is over: the clients stop (the polite one after its request in flight) and report."""
    for name in ("polite", "p"):
        child[name].send_signal(signal.SIGTERM)
    child["polite"].wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3, help="quiet and attacked runs, alternated (the host's other load evens out)")
    parser.add_argument(
        "--server-cpu",
        choices=["same", "other"],
        default="same",
        help="the HTTP server's process on the engine's CPU (one core for both: the worst case) or on the clients' CPUs",
    )
    parser.add_argument("--server-nice", type=int, help="the server process's niceness (default: MetricsServer.CHILD_NICE)")
    parser.add_argument("--server-share", type=float, help="its CPU share under load (default: MetricsServer.CHILD_SHARE; 1: uncapped)")
    parser.add_argument("--attack", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--polite", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--no-pin", action="store_true", help="let the engine and the clients share every CPU")
    parser.add_argument("--client-cpus", help=argparse.SUPPRESS)  # the clients' CPUs, from the engine's process
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    if args.client_cpus:
        os.sched_setaffinity(0, [int(c) for c in args.client_cpus.split(",")])
    elif pin and not (args.attack or args.polite):
        os.sched_setaffinity(0, cpus[:1])
    if args.attack:
        attack(args.attack, args.seconds, idle=500, slow=100, flood=16)
        return
    if args.polite:
        polite(args.polite, args.seconds)
        return
    from regretflow.engine.observability.metrics import MetricsServer
    from tests.conftest import regression_stream

    if args.server_nice is not None:
        MetricsServer.CHILD_NICE = args.server_nice
    if args.server_share is not None:
        MetricsServer.CHILD_SHARE = args.server_share
    server_cpus = cpus[1:] if pin and args.server_cpu == "other" else None
    payloads = regression_stream(args.events // 2)
    run_engine(payloads[:20_000])  # warm the kernels
    if pin:
        where = "the clients' CPUs" if server_cpus else "the engine's CPU"
        print(f"engine on CPU {cpus[0]}, clients on CPUs {cpus[1:]}, HTTP server process on {where}")
    else:
        print("engine and clients share the CPUs")
    client_cpus = ["--client-cpus", ",".join(map(str, cpus if not pin else cpus[1:]))]
    quiet, loud, scrapes, failures = [], [], [], 0
    for _ in range(args.rounds):
        quiet.append(run_engine(payloads))
        child: dict = {}
        seconds = len(payloads) / quiet[-1][0] * 1.6 + 2
        loud.append(
            run_engine(
                payloads, functools.partial(start_attack, child, seconds, client_cpus), server_cpus, functools.partial(end_attack, child)
            )
        )
        attacked, _ = child["p"].communicate()
        scraped = json.loads(child["polite"].communicate()[0])
        scrapes.append(scraped.pop("latencies_ms"))
        failures += scraped["failures"]
        (q, q_cpu, q_on), (a, a_cpu, a_on) = quiet[-1], loud[-1]
        print(
            f"quiet {q:,.0f} events/s ({q_cpu:.1f} µs CPU/event, on CPU {100 * q_on:.0f}%), "
            f"attacked {a:,.0f} events/s ({a_cpu:.1f} µs CPU/event, on CPU {100 * a_on:.0f}%): {100 * a / q:.1f}% of quiet; "
            f"attackers {attacked.strip()}; polite scrapes {json.dumps(scraped)}"
        )
    ratios = sorted(a[0] / q[0] for q, a in zip(quiet, loud))
    polite_all = sorted(x for s in scrapes for x in s)
    print(
        f"under attack (500 idle, 100 slowloris, 16-client /metrics flood), median of {args.rounds} alternated runs "
        f"({len(payloads):,} events each): {100 * ratios[len(ratios) // 2]:.1f}% of quiet throughput "
        f"(runs: {', '.join(f'{100 * r:.1f}%' for r in ratios)})"
    )
    print(
        f"polite /metrics scrapes (one every 100 ms, own process), all runs: {len(polite_all)}, "
        f"failures {failures}, p50 {polite_all[len(polite_all) // 2]:.1f} ms, "
        f"p99 {polite_all[int(len(polite_all) * 0.99)]:.1f} ms, max {polite_all[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
