"""A simulator as the engine's source *and* answer sink: closed-loop decide/feedback streams.

The loop emits a ``decide`` event (with the expected reward of every action, so the
engine computes exact pseudo-regret), reads the engine's answer to it, plays the
chosen action in the environment and emits the ``feedback`` with the observed
reward, then the next ``decide``. Its position (round, pending feedback, the
environment's state and RNG) is checkpointed with the engine, so a restarted daemon
continues the same simulated world.

An environment has ``model``, ``decide(t) -> event dict``, ``feedback(t, answer) ->
event dict`` and ``state_dict()``/``load_state_dict()``.

Examples
--------
>>> env = LinearDynamicalEnv("ads", case="synthetic", seed=1)
>>> loop = ClosedLoopSource(env, rounds=2)
>>> [e[:40] for e in loop.poll(10, 0.0)]
[b'{"id":"ads-0","model":"ads","kind":"deci']
>>> loop.write([("ads", b'{"id":"ads-0","kind":"decide","action":3}', ())])
>>> [__import__("orjson").loads(e)["kind"] for e in loop.poll(10, 0.0)]
['feedback', 'decide']
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray

from regretflow.connectors import Position, Records, Sink
from regretflow.connectors.datasets.bandit_classification import load

from .classification_bandit import ClassificationBandit
from .fairness import FairnessSimulator


class Environment(Protocol):
    """What :class:`ClosedLoopSource` plays: the environments of :data:`ENVIRONMENTS`.

    Examples
    --------
    >>> env: Environment = LinearDynamicalEnv("ads", case="synthetic", seed=1)
    >>> env.decide(0)["kind"], env.model
    ('decide', 'ads')
    """

    model: str

    def decide(self, t: int) -> dict[str, Any]: ...

    def feedback(self, t: int, answer: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RoundMonitor(Protocol):
    """Watches the rounds a simulator plays (the engine's ``FairnessMonitor``); checkpointed with the loop.

    Examples
    --------
    >>> env = FairnessEnv("fair", k=4, seed=0, horizon=8)
    >>> env.monitor is None  # the daemon sets one for a fair model (regretflow.engine.cli.daemon.fairness_monitor)
    True
    """

    def observe(self, t: int, probabilities: NDArray[np.float64], reports: list[tuple[int, int, int]] | None = None) -> None: ...

    def gauges(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ClosedLoopSource:
    """Runs ``rounds`` rounds of an environment against the engine (``None``: forever)."""

    partitioned = False

    def __init__(self, env: Environment, rounds: int | None = None, record_path: str | None = None) -> None:
        self.env = env
        self.rounds = rounds
        # every emitted event, as JSONL: a log that ``regretflow replay`` can evaluate later
        self._record = open(record_path, "ab") if record_path else None
        self.t = 0
        self.waiting: dict[str, int] = {}  # decide id -> round, until its answer arrives
        self.outbox: list[bytes] = []
        self.issued = 0

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        out = self.outbox[:max_records]
        self.outbox = self.outbox[max_records:]
        # one decision in flight: its feedback depends on the engine's answer
        if not self.waiting and len(out) < max_records and (self.rounds is None or self.t < self.rounds):
            event = self.env.decide(self.t)
            self.waiting[event["id"]] = self.t
            self.t += 1
            out.append(orjson.dumps(event))
        self.issued += len(out)
        if self._record is not None and out:
            self._record.write(b"\n".join(out) + b"\n")
        return out

    def write(self, records: Records) -> None:
        """The engine's answers: each answered decide is played and its feedback queued."""
        for record in records:
            answer = orjson.loads(record[1])
            t = self.waiting.pop(answer.get("id"), None)
            if t is not None and answer.get("kind") == "decide":
                replies = self.env.feedback(t, answer)
                for reply in replies if isinstance(replies, list) else [replies]:
                    self.outbox.append(orjson.dumps(reply))

    def flush(self) -> None:
        if self._record is not None:
            self._record.flush()

    def position(self) -> Position:
        return {
            "t": self.t,
            "waiting_ids": np.array(list(self.waiting), dtype=str),
            "waiting_rounds": np.array(list(self.waiting.values()), dtype=np.int64),
            "outbox": np.array([o.decode() for o in self.outbox], dtype=str),
            "env": self.env.state_dict(),
        }

    def seek(self, position: Position) -> None:
        self.t = int(position["t"])
        self.waiting = {str(k): int(v) for k, v in zip(position["waiting_ids"], position["waiting_rounds"])}
        self.outbox = [str(o).encode() for o in position["outbox"]]
        self.env.load_state_dict(position["env"])

    def exhausted(self) -> bool:
        return self.rounds is not None and self.t >= self.rounds and not self.waiting and not self.outbox

    def close(self) -> None:
        if self._record is not None:
            self._record.close()


class TeeSink:
    """Hands every answer to the loop and to the configured answer sink."""

    def __init__(self, loop: ClosedLoopSource, sink: Sink) -> None:
        self.loop, self.sink = loop, sink

    def write(self, records: Records) -> None:
        self.sink.write(records)
        self.loop.write(records)

    def flush(self) -> None:
        self.sink.flush()
        self.loop.flush()

    def close(self) -> None:
        self.sink.close()


class LinearDynamicalEnv:
    """The dynamical-bandit systems (``case`` = ``"synthetic"`` or ``"real-data"``) as a loop environment."""

    def __init__(self, model: str, case: str = "real-data", seed: int = 0):
        # its kernels are numba-compiled on import: the other environments start without them
        from .linear_dynamical import test_case

        self.model = model
        self.sim = test_case(case, seed=seed)
        self.values = [float(v) for v in self.sim.steady_state_values]

    def decide(self, t: int) -> dict[str, Any]:
        return {"id": f"{self.model}-{t}", "model": self.model, "kind": "decide", "expected_rewards": self.values}

    def feedback(self, t: int, answer: dict[str, Any]) -> dict[str, Any]:
        reward = self.sim.step(int(answer["action"]))
        return {"id": f"{self.model}-{t}-r", "model": self.model, "kind": "feedback", "ref": answer["id"], "reward": reward}

    def state_dict(self) -> dict[str, Any]:
        return self.sim.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sim.load_state_dict(state)


class ClassificationBanditEnv:
    """A labelled dataset as a contextual bandit (reward 1 for the right class)."""

    def __init__(self, model: str, dataset: str = "segment", seed: int = 0):
        data = load(dataset)
        self.model = model
        self.sim = ClassificationBandit(data.X, data.y, seed=seed, model=model)
        self.n_actions, self.n_features = self.sim.n_actions, self.sim.n_features

    def decide(self, t: int) -> dict[str, Any]:
        event = self.sim.decide_event(t % len(self.sim))
        event["id"] = f"{self.model}-{t}"  # unique across passes over the data
        return event

    def feedback(self, t: int, answer: dict[str, Any]) -> dict[str, Any]:
        event = self.sim.feedback_event(t % len(self.sim), int(answer["action"]))
        event.update(id=f"{self.model}-{t}-r", ref=answer["id"])
        return event

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FairnessEnv:
    """k individuals from the real Adult data per round, one-sided feedback and an auditor panel.

    ``monitor``, when set (the daemon sets a
    :class:`~regretflow.engine.evaluation.fairness_lp.FairnessMonitor`), observes every answered
    round with the simulator's knowledge (all labels, every auditor's metric); its
    state travels in the loop's checkpointed position.
    """

    def __init__(self, model: str, k: int = 5, seed: int = 0, horizon: int = 100_000):
        self.model = model
        self.sim = FairnessSimulator(n_rounds=horizon, k=k, seed=seed, model=model)
        self.monitor: RoundMonitor | None = None

    def decide(self, t: int) -> dict[str, Any]:
        return self.sim.decide_event(t)

    def feedback(self, t: int, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """Labels of the positively decided only, then the panel's audit of the answered probabilities."""
        decisions, probabilities = np.asarray(answer["decisions"]), np.asarray(answer["probabilities"])
        audit = self.sim.audit_event(t, probabilities)
        if self.monitor is not None:
            self.monitor.observe(t, probabilities, reports=audit["violations"])
        return [self.sim.feedback_event(t, decisions), audit]

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict() if self.monitor is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.monitor is not None and state:
            self.monitor.load_state_dict(state)


ENVIRONMENTS = {"linear-dynamical": LinearDynamicalEnv, "classification-bandit": ClassificationBanditEnv, "fairness": FairnessEnv}
