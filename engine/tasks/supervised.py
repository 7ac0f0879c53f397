"""What regression and classification share: labelled rows in runs, predicts joined with their labels.

Consecutive ``observe`` events are one prequential learner call (each row predicted,
then learned); consecutive ``predict`` events are one prediction call whose answers
wait in the join store for a ``feedback`` carrying the label.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, NamedTuple

import numpy as np

from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event, Run
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, register_payload
from regretflow.engine.tasks.base import Output, ShardView, Task, plain_list


@register_payload
class PredictPayload(JoinPayload):
    """A predict waiting for its label: the row, its groups and the prediction answered.

    >>> p = PredictPayload(np.ones(2), None, 0.5)
    >>> PredictPayload.from_columns(p.columns()).prediction
    0.5
    """

    __slots__ = ("x", "groups", "prediction")
    CODE: ClassVar[int] = 0

    def __init__(self, x: np.ndarray | None, groups: np.ndarray | None, prediction: Any):
        self.x = x
        self.groups = groups
        self.prediction = prediction

    def columns(self) -> dict[str, Any]:
        return {"x": self.x, "groups": self.groups, "prediction": self.prediction}

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> PredictPayload:
        return cls(columns["x"], columns["groups"], columns["prediction"])


class Served(NamedTuple):
    """A run's prequential predictions with fields their answer records add, one dict a row
    (a groupwise model serving a drawn expert names it: ``{"expert": "smoker"}``).

    >>> Served([0.5], [{"expert": "a"}]).fields[0]
    {'expert': 'a'}
    """

    predictions: Any
    fields: list[dict[str, Any]]


class SupervisedTask(Task):
    """Labelled rows: ``observe`` runs, ``predict`` runs, and ``feedback`` with the label.

    >>> from regretflow.engine.tasks import task_named
    >>> isinstance(task_named("classification"), SupervisedTask), sorted(SupervisedTask.kinds)
    (True, ['feedback', 'observe', 'predict'])
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"observe", "predict", "feedback"})
    run_kinds: ClassVar[frozenset[str]] = frozenset({"observe", "predict"})
    unchecked_kinds: ClassVar[frozenset[str]] = frozenset({"observe"})  # (check looks at predicts and feedback only)

    def check(self, shard: ShardView, ev: Event) -> None:
        if ev.kind == "predict":
            shard.check_new_id(ev)
        elif ev.kind == "feedback":
            shard.pending_reply(ev, "predict or decide", "feedback to")
            if ev.reward is not None:
                raise BadEvent("feedback_mismatch", f"feedback to predict {ev.ref!r} must carry a label")
            self.check_label(ev.label)

    def run(self, shard: ShardView, run: Run, out: Output) -> None:
        X, G, n, kind = run.X, run.groups, len(run), run.kind
        version = int(shard.learner.n_updates)
        if kind == "predict":
            preds = predict_rows(shard.learner, X, G)
        else:
            preds = self.observe(shard, X, run.labels or [], G)
        fields: list[dict[str, Any]] | None = None
        if isinstance(preds, Served):  # a learner whose answers carry more than the prediction (e.g. the drawn expert)
            preds, fields = preds.predictions, preds.fields
        if not self.healthy(preds):
            # nothing of the run is answered from the bad state; the engine puts the
            # shard's last good state back
            shard.quarantine(f"non-finite predictions after a run of {n} {kind} events")
            out.dead_run(run, "model_unhealthy", str(shard.quarantined))
            return
        model = shard.spec.name
        ids = run.ids
        if fields is None and kind == "observe":  # answered in columns: no record per row
            exact = (
                isinstance(preds, np.ndarray) and preds.ndim == 1 and preds.dtype in (np.float64, np.int64)
            )  # typed as their Python values
            prediction = preds if exact else plain_list(preds)
            versions = np.arange(version, version + n, dtype=np.int64)
            out.answer_columns(run, {"id": ids, "model": model, "kind": "observe", "prediction": prediction, "model_version": versions})
            return
        values = plain_list(preds)
        if kind == "observe":
            records = [
                {"id": eid, "model": model, "kind": "observe", "prediction": p, "model_version": v}
                for eid, p, v in zip(ids, values, range(version, version + n))
            ]
            if fields is not None:
                records = [record | extra for record, extra in zip(records, fields)]
            out.answer_run(run, records)
            return
        first_seq = shard.seq - n + 1
        add, ts = shard.joins.add, run.ts
        for i, eid in enumerate(ids):
            # the rows are views of the run's matrices: one conversion serves the answer and the join
            add(JoinEntry(eid, first_seq + i, ts[i], PredictPayload(X[i], None if G is None else G[i], values[i])))
        out.answer_run(
            run, [{"id": eid, "model": model, "kind": "predict", "prediction": p, "model_version": version} for eid, p in zip(ids, values)]
        )
        shard.expired += len(shard.joins.expire(shard.seq, None))

    def handle(self, shard: ShardView, ev: Event, out: Output) -> None:
        entry = shard.joins.take(str(ev.ref))
        assert entry is not None and isinstance(entry.payload, PredictPayload)  # checked by check()
        p = entry.payload
        assert p.x is not None
        self.learn_label(shard, p.x[None, :], ev.label, p.prediction, p.groups[None, :] if p.groups is not None else None)

    def healthy(self, predictions: Any) -> bool:
        """Whether a run's predictions may be answered."""
        return True

    @abstractmethod
    def observe(self, shard: ShardView, X: np.ndarray, labels: list[Any], G: np.ndarray | None) -> Any:
        """A run of labelled rows: the learner's prequential predictions (learner and tracker updated),
        or a :class:`Served` when their answers carry more than the prediction."""

    @abstractmethod
    def learn_label(self, shard: ShardView, x: np.ndarray, label: Any, prediction: Any, G: np.ndarray | None) -> None:
        """The label of an earlier predict: learn it and measure the prediction answered then."""


def predict_rows(learner: Any, X: np.ndarray, G: np.ndarray | None) -> Any:
    """The learner's predictions of a run of rows (every supervised learner takes ``groups``)."""
    return learner.predict_many(X, G)


def observe_rows(learner: Any, X: np.ndarray, y: Any, G: np.ndarray | None) -> tuple[Any, np.ndarray | None]:
    """Prequential predictions of a run of labelled rows and the learner's own per-row losses (None if it has none)."""
    observed = learner.observe(X, y, G)
    return observed.predictions, observed.losses
