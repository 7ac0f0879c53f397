"""Offline evaluation of what a live system decided: logged answers joined with logged feedback.

A bandit's answers carry the chosen action, its probability, the whole probability
vector and (for learners with a reward model) the predicted rewards; the event log
carries the feedback rewards. Joined by decide id, they give the inputs of
:mod:`regretflow.engine.evaluation.offpolicy`: the values of the model's greedy policy, of the
uniform policy and of the best constant action, by IPS, SNIPS and doubly-robust
estimates with bootstrap intervals.

>>> import json, os, tempfile
>>> d = tempfile.mkdtemp()
>>> with open(os.path.join(d, "answers.jsonl"), "w") as f:
...     for i in range(50):
...         _ = f.write(json.dumps({"id": f"d{i}", "model": "b", "kind": "decide", "action": i % 2, "probability": 0.5, "probabilities": [0.5, 0.5]}) + "\\n")
>>> with open(os.path.join(d, "events.jsonl"), "w") as f:
...     for i in range(50):
...         _ = f.write(json.dumps({"id": f"f{i}", "model": "b", "kind": "feedback", "ref": f"d{i}", "reward": float(i % 2)}) + "\\n")
>>> out = logged_policy_values(os.path.join(d, "events.jsonl"), os.path.join(d, "answers.jsonl"), None, n_bootstrap=50)
>>> out["b"]["rounds"], out["b"]["best_constant"]["snips"]["value"], out["b"]["uniform"]["ips"]["value"]
(50, 1.0, 0.5)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from regretflow.connectors.jsonl import WRITTEN_LINE_BYTES, read_objects
from regretflow.engine.config import Config
from regretflow.engine.evaluation import offpolicy as op


def offline_config(config: Config, max_batch_size: int | None = None) -> Config:
    """``config`` for a replay of a logged stream: it evaluates, it does not serve, so no
    checkpoints and no metrics server, and it ends at the end of its log.

    ``max_batch_size`` caps the micro-batch (a recorder that looks every N events needs
    batches of at most N).

    >>> from regretflow.engine.config import ModelSpec
    >>> live = Config(models={"m": ModelSpec(name="m", learner="ridge", features=["a"])})
    >>> replay = offline_config(live, max_batch_size=10)
    >>> replay.runtime.stop_at_end, replay.checkpoint.dir, replay.metrics.enabled, replay.runtime.batch_size
    (True, None, False, 10)
    """
    runtime = dataclasses.replace(config.runtime, stop_at_end=True)
    if max_batch_size is not None:
        runtime = dataclasses.replace(runtime, batch_size=max(1, min(runtime.batch_size, max_batch_size)))
    return dataclasses.replace(
        config,
        runtime=runtime,
        checkpoint=dataclasses.replace(config.checkpoint, dir=None),
        metrics=dataclasses.replace(config.metrics, enabled=False),
    )


def logged_policy_values(
    events_path: str, answers_path: str, config: Config | None = None, n_bootstrap: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Per bandit model in the answers: off-policy values of greedy, uniform and best-constant policies."""
    decisions: dict[str, dict[str, Any]] = {}
    for a in read_objects(answers_path):
        if a.get("kind") == "decide" and "probabilities" in a and "action" in a:
            decisions[a["id"]] = a
    rows: dict[str, list[tuple[dict[str, Any], float]]] = {}
    # an event past the config's bound was dead-lettered live (oversized): it joins nothing here either
    event_bytes = config.runtime.max_event_bytes if config is not None else WRITTEN_LINE_BYTES
    for e in read_objects(events_path, event_bytes):
        if e.get("kind") != "feedback" or "reward" not in e:
            continue
        ref = e.get("ref")
        decision = decisions.pop(ref, None) if isinstance(ref, str) else None  # first feedback of a decision only
        if decision is None:
            continue
        rows.setdefault(decision["model"], []).append((decision, float(e["reward"])))
    out = {}
    for model, joined in rows.items():
        widths = {len(a["probabilities"]) for a, _ in joined}
        if len(widths) != 1:
            continue  # per-decision action sets of different sizes: no common constant policy
        k = widths.pop()
        A = np.array([a["action"] for a, _ in joined], dtype=np.int64)
        P = np.array([a["probabilities"] for a, _ in joined], dtype=np.float64)
        p = P[np.arange(len(A)), A]
        R = np.array([r for _, r in joined])
        rhat = None
        if all("predicted_rewards" in a for a, _ in joined):
            rhat = np.array([a["predicted_rewards"] for a, _ in joined], dtype=np.float64)
        n = len(A)
        best = op.best_constant_action(A, p, R, k)
        values = op.evaluate_policies(
            A,
            p,
            R,
            {"greedy": op.greedy_policy(P), "uniform": op.uniform_policy(n, k), "best_constant": op.constant_policy(n, k, best)},
            reward_estimates=rhat,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        out[model] = {"rounds": n, "best_constant_action": best, **values}
    return out
