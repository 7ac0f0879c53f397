"""Adding a kind of model is one Task subclass and one registration.

A toy "median" task (observe runs answered with the running median before each label,
its own label check, tracker, summary, gauge and table row) with a toy learner goes
through a real Engine: answers, dead letters, summary, metrics and a checkpoint round
trip all come from the task, with nothing in the runtime knowing about it.
"""

import contextlib

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.observability.summary_tables import family_tables
from regretflow.engine.runtime.events import BadEvent
from regretflow.engine.runtime.loop import Engine
from regretflow.engine.tasks import TASKS, Task, register_task, task_for, unregister_task
from regretflow.learners import LEARNERS
from regretflow.learners.contract import Monitored


class RunningMedian(Monitored):
    """Predicts the median of the labels seen so far (0.0 before the first)."""

    task = "median"
    GAUGES = {"median_rows": "Labels the running median holds."}

    def __init__(self, features=None):
        self.values: list[float] = []
        self.n_updates = 0

    def observe_labels(self, y: np.ndarray) -> np.ndarray:
        preds = np.empty(len(y))
        for i, v in enumerate(y):
            preds[i] = float(np.median(self.values)) if self.values else 0.0
            self.values.append(float(v))
            self.n_updates += 1
        return preds

    def gauges(self) -> dict[str, float]:
        return {"median_rows": float(len(self.values))}

    def group_gauges(self) -> dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> dict:
        return {"values": np.array(self.values), "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        self.values = [float(v) for v in state["values"]]
        self.n_updates = int(state["n_updates"])


class AbsoluteError:
    """Rows seen and the sum of absolute errors of the answers."""

    def __init__(self):
        self.count, self.total = 0, 0.0

    def update(self, predictions: np.ndarray, labels: np.ndarray) -> None:
        self.count += len(labels)
        self.total += float(np.abs(predictions - labels).sum())

    def summary(self) -> dict:
        return {"count": self.count, "mean_absolute_error": self.total / self.count if self.count else 0.0}

    def state_dict(self) -> dict:
        return {"count": self.count, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.total = int(state["count"]), float(state["total"])


class MedianTask(Task):
    name = "median"
    kinds = frozenset({"observe"})
    run_kinds = frozenset({"observe"})

    def check_label(self, label):
        if type(label) not in (int, float):
            raise BadEvent("bad_label", "a median label is a number")
        return float(label)

    def make_tracker(self, spec):
        return AbsoluteError()

    def run(self, shard, kind, events, out):
        y = np.array([e.label for e in events])
        version = shard.learner.n_updates
        preds = shard.learner.observe_labels(y)
        shard.tracker.update(preds, y)
        for i, e in enumerate(events):
            out.answer(
                e, {"id": e.id, "model": shard.spec.name, "kind": "observe", "median": float(preds[i]), "model_version": version + i}
            )

    def summarize(self, shards):
        return {"median": shards[0].tracker.summary()}

    def publish(self, metrics, model, summary):
        metrics.group_rounds.labels(model=model, group="all").set(summary["median"]["count"])

    def summary_rows(self, summary, extra):
        m = summary["median"]
        return ["rows", "mean abs. error"], [str(m["count"]), f"{m['mean_absolute_error']:.3f}"]


@contextlib.contextmanager
def registered(task: Task, family: str, learner: type):
    """``task`` registered and ``learner`` known as config family ``family`` inside the block."""
    LEARNERS[family] = learner
    try:
        yield register_task(task)
    finally:
        unregister_task(task.name)
        del LEARNERS[family]


@pytest.fixture
def median_task():
    with registered(MedianTask(), "running_median", RunningMedian) as task:
        yield task


def observe(i, label):
    return orjson.dumps({"id": f"o{i}", "model": "m", "kind": "observe", "features": [0.0], "label": label})


def run(config, payloads):
    answers, dead = MemorySink(), MemorySink()
    engine = Engine(config, MemorySource(payloads), answers, dead, serve_metrics=False)
    engine.run()
    return engine, [orjson.loads(r[1]) for r in answers.records], [orjson.loads(r[1]) for r in dead.records]


def test_a_registered_task_runs_through_the_engine(median_task):
    config = parse_config({"models": {"m": {"learner": "running_median", "features": ["x"]}}})
    assert task_for(RunningMedian) is median_task
    labels = [3.0, 1.0, 2.0, 10.0, 4.0]
    payloads = [observe(i, v) for i, v in enumerate(labels)]
    payloads.insert(2, observe(99, "high"))  # its own label check: dead-lettered, nothing learned
    payloads.append(orjson.dumps({"id": "p", "model": "m", "kind": "predict", "features": [0.0]}))  # a kind it does not take
    engine, answers, dead = run(config, payloads)

    assert [a["median"] for a in answers] == [0.0, 3.0, 2.0, 2.0, 2.5]
    assert [a["model_version"] for a in answers] == [0, 1, 2, 3, 4]
    assert [(d["reason"], d["model"]) for d in dead] == [("bad_label", "m"), ("unsupported_kind", "m")]

    summary = engine.summary()["m"]
    assert summary["task"] == "median" and summary["model_version"] == 5
    assert summary["median"] == {"count": 5, "mean_absolute_error": pytest.approx((3 + 2 + 0 + 8 + 1.5) / 5)}
    assert summary["learner_gauges"] == {"median_rows": 5.0}

    text = engine.metrics.exposition().decode()
    assert 'regretflow_group_rounds{group="all",model="m"} 5.0' in text
    assert 'regretflow_learner_median_rows{model="m"} 5.0' in text

    table = family_tables(engine.summary())
    assert "\nmedian\n" in table and "mean abs. error" in table and "2.900" in table
    engine.close()


def test_a_registered_task_checkpoints_and_resumes_bit_for_bit(median_task):
    config = parse_config({"models": {"m": {"learner": "running_median", "features": ["x"]}}})
    labels = [5.0, 1.0, 7.0, 2.0, 2.0, 9.0]
    whole, _, _ = run(config, [observe(i, v) for i, v in enumerate(labels)])
    first, _, _ = run(config, [observe(i, v) for i, v in enumerate(labels[:3])])
    resumed = Engine(
        config, MemorySource([observe(i, v) for i, v in enumerate(labels[3:], start=3)]), MemorySink(), MemorySink(), serve_metrics=False
    )
    resumed.parts[""].load_state_dict(first.parts[""].state_dict(None), 1)
    resumed.run()
    a, b = whole.router.shards[("m", "")], resumed.router.shards[("m", "")]
    assert a.learner.values == b.learner.values and a.tracker.state_dict() == b.tracker.state_dict()
    for engine in (whole, first, resumed):
        engine.close()


def test_unregistering_forgets_the_task(median_task):
    unregister_task("median")
    assert "median" not in TASKS
    with pytest.raises(KeyError, match="no task named 'median'"):
        task_for(RunningMedian)
    register_task(median_task)
    with pytest.raises(ValueError, match="already registered"):
        register_task(MedianTask())
