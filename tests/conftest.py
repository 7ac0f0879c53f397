"""Shared fixtures: event builders, configs, a uniform-policy bandit for engine tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.engine.config import parse_config
from regretflow.learners.contract import BanditDefaults, Decision

# benchmarks are scripts that time things on this host; they are run by hand, never collected
collect_ignore = ["benchmarks"]
REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
REGRETFLOW = str(VENV_BIN / "regretflow")


def reference_doc_holding(marker: str) -> Path:
    """The reference page holding ``marker``: a page of docs/ once the reference lives there, else README.md."""
    docs = sorted((REPO / "docs").rglob("*.md")) if (REPO / "docs").is_dir() else []
    for path in [*docs, REPO / "README.md"]:
        if marker in path.read_text(encoding="utf-8"):
            return path
    raise AssertionError(f"no page of docs/ or README.md holds {marker!r}")


def flat(state: dict) -> dict:
    """A nested checkpoint state as one {"a/b/c": leaf} dict (the checkpoint's own flattening)."""
    from regretflow.engine.runtime.checkpoint import flatten

    arrays, scalars = flatten(state)
    return {**{k.rstrip("/"): v for k, v in scalars.items()}, **arrays}


def shard_state(engine) -> dict:
    """Every shard's ``state_dict``, by shard id."""
    return {sid: s.state_dict() for sid, s in engine.router.shards.items()}


def engine_fed(config: dict, payloads: list, batch: int, column_wise: bool = True):
    """An engine (no sinks but memory, no metrics server) that took ``payloads`` in micro-batches of ``batch``;
    ``column_wise``: JSON batches checked in columns however few their payloads (``min_rows`` 1); ``False``:
    each JSON event validated alone (the per-event path)."""
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.runtime.loop import Engine

    engine = Engine(parse_config(config), MemorySource([]), MemorySink(), MemorySink(), serve_metrics=False)
    if not column_wise:
        engine.json_decoder = None
    elif engine.json_decoder is not None:
        engine.json_decoder.min_rows = 1
    for lo in range(0, len(payloads), batch):
        engine.process(payloads[lo : lo + batch])
    return engine


def assert_same_bits(a, b, path=""):
    """``a`` and ``b`` equal bit for bit: same types, keys, lengths, array dtypes, shapes and bytes."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_bits(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_bits(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), path
    else:
        assert a == b, path


def observe(eid, model="m", features=None, label=0.0, **extra) -> bytes:
    return orjson.dumps({"id": str(eid), "model": model, "kind": "observe", "features": features, "label": label, **extra})


def regression_stream(n: int, d: int = 3, seed: int = 0, model: str = "m", with_joins: bool = True) -> list[bytes]:
    """A deterministic mixed stream: observe events, and predict events answered by feedback a few events later."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    out: list[bytes] = []
    waiting: list[tuple[str, float]] = []
    for i in range(n):
        x = rng.normal(size=d)
        y = float(x @ w + 0.1 * rng.normal())
        attrs = {"segment": ["a", "b", "c"][i % 3], "age": float(rng.integers(18, 80))}
        if with_joins and i % 5 == 4:
            out.append(orjson.dumps({"id": f"p{i}", "model": model, "kind": "predict", "features": x.tolist(), "attributes": attrs}))
            waiting.append((f"p{i}", y))
        else:
            out.append(
                orjson.dumps({"id": f"o{i}", "model": model, "kind": "observe", "features": x.tolist(), "label": y, "attributes": attrs})
            )
        if waiting and i % 5 == 1:
            ref, label = waiting.pop(0)
            out.append(orjson.dumps({"id": f"f{i}", "model": model, "kind": "feedback", "ref": ref, "label": label}))
    return out


def regression_config_dict(d: int = 3, model: str = "m", **top) -> dict:
    return {
        "models": {
            model: {
                "learner": "ridge",
                "features": [f"x{i}" for i in range(d)],
                "params": {"lam": 1.0},
                "groups": [
                    {"name": "segment", "field": "segment", "values": ["a", "b", "c"]},
                    {"name": "age", "field": "age", "edges": [18, 40, 60, 80]},
                ],
                "joins": {"ttl_events": 50},
            }
        },
        **top,
    }


@pytest.fixture
def regression_config():
    return parse_config(regression_config_dict())


class UniformPolicy(BanditDefaults):
    """Test double for the bandit role: uniform over n_actions, seeded, with state."""

    task = "bandit"

    def __init__(self, n_actions: int = 3, seed: int = 0):
        self.n_actions = n_actions
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.n_updates = 0
        self.reward_sum = np.zeros(n_actions)

    def decide(self, context=None, actions=None):
        k = len(actions) if actions is not None else self.n_actions
        p = np.full(k, 1.0 / k)
        return Decision(int(self._rng.integers(k)), p)

    def learn(self, context, action, reward, probability=None, actions=None, ticket=-1):
        self.reward_sum[action] += reward
        self.n_updates += 1

    def state_dict(self):
        from regretflow.learners.contract import rng_state

        return {"n_updates": self.n_updates, "reward_sum": self.reward_sum.copy(), **rng_state(self._rng)}

    def load_state_dict(self, state):
        from regretflow.learners.contract import restore_rng

        self.n_updates = int(state["n_updates"])
        self.reward_sum = np.array(state["reward_sum"], dtype=float)
        self._rng = restore_rng(state)


@pytest.fixture
def uniform_bandit(monkeypatch):
    from regretflow.learners import LEARNERS

    monkeypatch.setitem(LEARNERS, "uniform-test", UniformPolicy)
    return UniformPolicy


def trained_bandit(cls, steps: int = 20, d: int = 4, **params):
    """A bandit of ``cls`` (3 actions, seed 1) after ``steps`` decide-and-learn rounds on random contexts and rewards."""
    rng = np.random.default_rng(0)
    bandit = cls(n_actions=3, seed=1, **params)
    for _ in range(steps):
        x = rng.normal(size=d)
        decision = bandit.decide(x)
        a = int(decision.action)
        bandit.learn(x, a, float(rng.normal()), float(decision.probabilities[a]), ticket=decision.ticket)
    return bandit
