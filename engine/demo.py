"""``regretflow demo``: the embedded default, no broker and no config needed.

It streams the Medical costs data (bundled, checksummed) as ``observe`` events
through every regression model the project has, with the declared groups sex,
smoker, region and age/BMI bins, serves ``/metrics`` while it runs, shows a progress
line with events/s and the current regret, and ends with a table per model and group.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import orjson

from regretflow.connectors.datasets.insurance import load_insurance
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.learners import LEARNERS

from .config import Config, parse_config
from .runtime import Engine

DEMO_GROUPS = [
    {"name": "sex", "field": "sex", "values": ["female", "male"]},
    {"name": "smoker", "field": "smoker", "values": ["yes", "no"]},
    {"name": "region", "field": "region", "values": ["northeast", "northwest", "southeast", "southwest"]},
    {"name": "age", "field": "age", "edges": [18, 36, 51, 65]},
    {"name": "bmi", "field": "bmi", "edges": [0, 18.5, 25, 30, 100]},
]

# The demo's models: every regression family the build has, with its paper's settings.
DEMO_MODELS = {
    "ridge": {"learner": "ridge", "params": {"lam": 1.0}},
    "groupwise": {"learner": "groupwise", "params": {"lam": 1.0}},
}


def demo_config(port: int = 9108, metrics: bool = True) -> Config:
    """The demo's config, as a user would write it in TOML (see deploy/examples)."""
    data = load_insurance()
    models = {
        name: {**spec, "features": list(data.feature_names), "groups": DEMO_GROUPS}
        for name, spec in DEMO_MODELS.items()
        if spec["learner"] in LEARNERS
    }
    return parse_config({
        "models": models,
        "runtime": {"batch_size": 64, "batch_timeout_ms": 10.0},
        "metrics": {"enabled": metrics, "port": port},
    })


def demo_events(passes: int = 1, seed: int = 0, models: list[str] | None = None) -> list[bytes]:
    """Observe events for every demo model, pass after pass, each pass reshuffled."""
    data = load_insurance()
    names = list(data.feature_names)
    models = models or [m for m, s in DEMO_MODELS.items() if s["learner"] in LEARNERS]
    out = []
    for p in range(passes):
        order = np.random.RandomState(seed + p).permutation(len(data))
        for i in order:
            row = data.rows[i]
            attributes = {k: row[k] for k in ("sex", "smoker", "region", "age", "bmi")}
            features = dict(zip(names, data.X[i].tolist()))
            for model in models:
                out.append(orjson.dumps({
                    "id": f"{model}-{p}-{i}", "model": model, "kind": "observe",
                    "features": features, "attributes": attributes, "label": float(data.y[i]),
                }))
    return out


class ThrottledSource(MemorySource):
    """A memory source that serves at most ``rate`` events per second (0: unlimited)."""

    def __init__(self, payloads, rate: float = 0.0):
        super().__init__(payloads)
        self.rate = rate
        self._start = time.monotonic()

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        if self.rate > 0:
            due = self._start + self._index / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, max(timeout, 0.001)))
            allowed = int((time.monotonic() - self._start) * self.rate) - self._index + 1
            max_records = max(1, min(max_records, allowed))
        return super().poll(max_records, timeout)


class Progress:
    """One status line: a bar, events/s and the current overall regret of each model."""

    def __init__(self, total: int, stream=None, every: float = 0.2):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if self.tty else 2.0
        self.started = None  # set at the first batch: start-up (kernel warm-up) is not streaming
        self.last = 0.0

    def __call__(self, engine: Engine, final: bool = False) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now - 1e-3
        if not final and now - self.last < self.every:
            return
        self.last = now
        done = engine.events_seen
        rate = done / max(now - self.started, 1e-9)
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        regrets = []
        for model, s in engine.summaries.items():
            if "groups" in s:
                regrets.append(f"{model} regret={s['groups']['all']['regret']:.3f}")
        line = f"[{bar}] {100 * frac:5.1f}% {done:,}/{self.total:,} events {rate:,.0f} ev/s  " + "  ".join(regrets)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def summary_table(summary: dict[str, Any]) -> str:
    """Per model and group: rounds, mean loss, comparator loss, regret."""
    lines = []
    for model, s in summary.items():
        if s.get("task") != "regression":
            continue
        lines.append(f"\nmodel {model} ({s['learner']}), version {s['model_version']}")
        lines.append(f"  {'group':<24}{'rounds':>8}{'cum. loss':>12}{'best fixed':>12}{'regret':>10}{'regret/round':>14}")
        for group, g in s["groups"].items():
            per = g["regret"] / g["count"] if g["count"] else 0.0
            lines.append(f"  {group:<24}{g['count']:>8}{g['loss']:>12.4f}{g['comparator_loss']:>12.4f}{g['regret']:>10.4f}{per:>14.5f}")
        gauges = s.get("learner_group_gauges")
        if gauges:
            lines.append(f"  learner gauges per group: {', '.join(gauges)}")
    return "\n".join(lines)


def run_demo(passes: int = 3, rate: float = 1000.0, port: int = 9108, linger: float = 0.0,
             progress: bool = True, as_json: bool = False, seed: int = 0) -> dict[str, Any]:
    config = demo_config(port=port)
    events = demo_events(passes=passes, seed=seed, models=list(config.models))
    engine = Engine(config, ThrottledSource(events, rate), MemorySink(keep=False), MemorySink(),
                    progress=Progress(len(events)) if progress else None)
    if engine.server is not None:
        print(f"regretflow demo: {len(events):,} events, metrics on http://{engine.server.host}:{engine.server.port}/metrics",
              file=sys.stderr)
    engine.run(install_signals=True)
    if progress:
        engine.progress(engine, final=True)
    summary = engine.summary()
    if as_json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print(summary_table(summary))
    if linger > 0 and engine.server is not None:
        print(f"serving /metrics for {linger:.0f} more seconds", file=sys.stderr)
        until = time.monotonic() + linger
        while time.monotonic() < until and not engine.stop_requested:
            time.sleep(0.1)
    engine.close()
    return summary
