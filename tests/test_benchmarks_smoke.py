"""Smoke runs of the engine benchmarks at a tiny size: they run, and the engine answered what the bare learners computed.

No timing is asserted (the figures depend on the host); tests/benchmarks/README.md says how to run them for real.
"""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent / "benchmarks"


def test_bench_engine_runs_tiny_and_every_family_agrees_with_its_learner():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_engine.py"), "--events", "600", "--rounds", "40", "--batch", "64", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    out = done.stdout
    for section in ("(a) ridge", "(e) groupwise, d = 18", "(e) groupwise, d = 64", "(e) analytic ridge", "(e) neural SquareCB", "(e) fair"):
        assert section in out, out
    verdicts = [line.rsplit("agree=", 1)[1] for line in out.splitlines() if "agree=" in line]
    assert verdicts == ["True"] * 6, out
    assert "(f) closed-loop decide latency" in out and "(g) peak RSS" in out
