"""The good traffic the fuzz suites mix bad payloads into: three models, three tasks.

``reg`` is a ridge regression sharded by key (observe, predict, feedback), ``bandit``
a linear contextual bandit on the real Segment data (decide, feedback with reward),
``fair`` a fair-exp2 learner on the real Adult data with one-sided feedback and
auditor panels (decide, feedback with labels, audit). The bandit and fair streams
depend on the engine's answers, so they are recorded from a closed loop once; a
replay of the recording reaches the same state, bit for bit (the engine is
deterministic), which the fuzz tests then compare against.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import orjson

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.connectors.simulators.fairness import FAIR_FEATURES
from regretflow.connectors.simulators.loop import ClassificationBanditEnv, ClosedLoopSource, FairnessEnv, TeeSink
from regretflow.engine.config import Config, parse_config
from regretflow.engine.runtime.loop import Engine

REG_KEYS = ("k0", "k1", "k2")
REG_FEATURES = ["x0", "x1", "x2"]
FAIR_K = 4


def config_dict(rounds: int = 60, **runtime) -> dict:
    return {
        "runtime": {"batch_size": 32, **runtime},
        "metrics": {"enabled": False},
        "answers": {"type": "memory"},
        "dead_letters": {"type": "memory"},
        "models": {
            "reg": {
                "learner": "ridge",
                "features": REG_FEATURES,
                "params": {"lam": 1.0, "shard_by_key": True},
                "groups": [{"name": "segment", "field": "segment", "values": ["a", "b", "c"]}],
                "joins": {"ttl_events": 50},
            },
            "bandit": {
                "learner": "linucb-disjoint",
                "n_actions": 7,
                "features": [f"f{i}" for i in range(18)],
                "params": {"alpha": 1.0},
                "joins": {"ttl_events": 100},
            },
            "fair": {
                "learner": "fair-exp2",
                "features": list(FAIR_FEATURES),
                "params": {"horizon": rounds, "gamma": 0.5, "fairness_scale": 2.0, "cost_bound": 2.0, "seed": 0},
                "joins": {"ttl_events": 100},
            },
        },
    }


def offline(config: Config) -> Config:
    return dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, enabled=False))


def regression_events(n: int, seed: int = 0) -> list[bytes]:
    """Keyed observe, predict and feedback events for ``reg`` (every predict gets its feedback)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=len(REG_FEATURES))
    out, waiting = [], []
    for i in range(n):
        key = REG_KEYS[i % len(REG_KEYS)]
        x = rng.normal(size=len(REG_FEATURES))
        y = float(x @ w + 0.1 * rng.normal())
        attrs = {"segment": "abc"[int(rng.integers(3))]}
        if i % 4 == 3:
            out.append({"id": f"r-p{i}", "model": "reg", "kind": "predict", "key": key, "features": x.tolist(), "attributes": attrs})
            waiting.append((f"r-p{i}", key, y))
        else:
            out.append(
                {"id": f"r-o{i}", "model": "reg", "kind": "observe", "key": key, "features": x.tolist(), "label": y, "attributes": attrs}
            )
        if waiting and i % 4 == 1:
            ref, key, label = waiting.pop(0)
            out.append({"id": f"r-f{i}", "model": "reg", "kind": "feedback", "key": key, "ref": ref, "label": label})
    return [orjson.dumps(e) for e in out]


class _Recorder(ClosedLoopSource):
    def __init__(self, env, rounds):
        super().__init__(env, rounds)
        self.emitted: list[bytes] = []

    def poll(self, max_records, timeout):
        out = super().poll(max_records, timeout)
        self.emitted.extend(out)
        return out


def _record(env, config: Config, rounds: int) -> list[bytes]:
    loop = _Recorder(env, rounds)
    dead = MemorySink()
    Engine(config, loop, TeeSink(loop, MemorySink()), dead, serve_metrics=False).run()
    assert not dead.records, dead.records[:3]
    return loop.emitted


@lru_cache(maxsize=4)
def good_stream(rounds: int = 60) -> tuple[bytes, ...]:
    """The three models' good events, interleaved round-robin (each model's own order kept)."""
    config = parse_config(config_dict(rounds))
    streams = [
        regression_events(3 * rounds),
        _record(ClassificationBanditEnv("bandit", "segment", seed=0), config, rounds),
        _record(FairnessEnv("fair", k=FAIR_K, seed=0, horizon=rounds), config, rounds),
    ]
    out, at = [], [0] * len(streams)
    while any(a < len(s) for a, s in zip(at, streams)):
        for i, s in enumerate(streams):
            if at[i] < len(s):
                out.append(s[at[i]])
                at[i] += 1
    return tuple(out)


def run_engine(config: Config, payloads, batch_size: int | None = None) -> Engine:
    """The real engine over ``payloads`` with in-memory sinks; returns it after the run."""
    if batch_size is not None:
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, batch_size=batch_size))
    engine = Engine(config, MemorySource(list(payloads)), MemorySink(), MemorySink(), serve_metrics=False)
    engine.run()
    return engine
