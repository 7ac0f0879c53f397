"""Paper reproductions: ``regretflow reproduce NAME [--quick] [--json]``.

Each reproduction is a module here with ``main(argv: list[str]) -> int``; it is
seeded, prints its table next to the paper's numbers, and has a ``--quick`` form
that CI runs with assertions.
"""

from __future__ import annotations

import importlib

REPRODUCTIONS = {
    "groupwise": "regretflow.engine.experiments.groupwise",
    "analytic-ridge": "regretflow.engine.experiments.analytic_ridge",
    "dynamical-bandit": "regretflow.engine.experiments.dynamical_bandit",
    "neural-bandit": "regretflow.engine.experiments.neural_bandit",
    "fair-onesided": "regretflow.engine.experiments.fair_onesided",
}


def run(name: str, argv: list[str]) -> int:
    """Run reproduction ``name`` with its own arguments."""
    if name not in REPRODUCTIONS:
        raise SystemExit(f"unknown reproduction {name!r}; known: {', '.join(sorted(REPRODUCTIONS))}")
    try:
        module = importlib.import_module(REPRODUCTIONS[name])
    except ModuleNotFoundError as exc:
        raise SystemExit(f"reproduction {name!r} is not available in this build: {exc}") from exc
    return int(module.main(argv) or 0)
