"""Fair panels: a ``decide`` accepts or rejects k individuals; labels come back one-sided, audits flag unfair pairs.

A decision waits for two replies, a ``feedback`` (labels of the accepted individuals
only) and an ``audit`` (pairs an auditor panel flagged), in either order; it leaves the
join store when both have arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

import numpy as np

from regretflow.engine.evaluation.regret import FairnessTracker
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, register_payload
from regretflow.engine.tasks.bandit import check_expected
from regretflow.engine.tasks.base import Output, ShardView, Task, fmt

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec
    from regretflow.engine.observability.metrics import Metrics

# the replies a panel decision has received (its join entry's flags)
FEEDBACK, AUDIT = 1, 2


@register_payload
class PanelPayload(JoinPayload):
    """A panel decision waiting for its labels and its audit: the individuals, the decisions, their probabilities.

    >>> p = PanelPayload(np.eye(2), np.array([1, 0]), np.array([0.9, 0.2]))
    >>> PanelPayload.from_columns(p.columns()).decisions.tolist()
    [1, 0]
    """

    __slots__ = ("actions", "decisions", "probabilities")
    CODE: ClassVar[int] = 2

    def __init__(self, actions: np.ndarray, decisions: np.ndarray, probabilities: np.ndarray):
        self.actions = actions
        self.decisions = decisions
        self.probabilities = probabilities

    def columns(self) -> dict[str, Any]:
        return {
            "actions": self.actions,
            "n_choices": len(self.decisions),
            "extra": np.vstack([self.decisions.astype(np.float64), self.probabilities]),
        }

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> PanelPayload:
        logged = columns["extra"]
        return cls(columns["actions"], logged[0].astype(np.int64), logged[1])


class Panel(NamedTuple):
    """A fair policy's decisions on a panel (the learner API's ``PanelDecision``).

    >>> Panel(np.array([1, 0]), np.array([0.9, 0.1])).decisions.tolist()
    [1, 0]
    """

    decisions: np.ndarray
    probabilities: np.ndarray


def decide_panel(learner: Any, actions: np.ndarray) -> Panel:
    """A fair policy's decisions on a panel."""
    d = learner.decide_panel(actions)
    return Panel(np.asarray(d.decisions, dtype=np.int64), np.asarray(d.probabilities, dtype=np.float64))


def learn_panel(learner: Any, p: PanelPayload, labels: np.ndarray) -> None:
    """Hand a fair policy the one-sided labels of panel ``p`` (-1.0 where not revealed)."""
    learner.learn_panel(p.decisions, labels, p.probabilities, p.actions)


class FairTask(Task):
    """Panels of individuals, one-sided labels and auditor panels.

    >>> FairTask().kinds == {"decide", "feedback", "audit"}
    True
    """

    name: ClassVar[str] = "fair"
    kinds: ClassVar[frozenset[str]] = frozenset({"decide", "feedback", "audit"})

    def make_tracker(self, spec: ModelSpec) -> FairnessTracker:
        return FairnessTracker()

    # -- events -------------------------------------------------------------------------------
    def check(self, shard: ShardView, ev: Event) -> None:
        if ev.kind == "decide":
            if ev.actions is None:
                raise BadEvent("missing_field", "a decide to a fair model carries the k individuals as 'actions'")
            features = shard.spec.features
            if features and ev.actions.shape[1] != len(features):
                raise BadEvent("bad_actions", f"each individual has {ev.actions.shape[1]} values, the model declares {len(features)}")
            shard.check_new_id(ev)
            check_expected(shard, ev)
        elif ev.kind == "feedback":
            entry = shard.pending_reply(ev, "predict or decide", "feedback to")
            self._check_labels(entry, ev)
        else:
            entry = shard.pending_reply(ev, "decide", "audit of")
            if entry.flags & AUDIT:
                raise BadEvent("duplicate_feedback", f"decide {ev.ref!r} was already audited")
            k = _payload(entry).actions.shape[0]
            if ev.violations is not None and len(ev.violations) and int(ev.violations[:, :2].max()) >= k:
                raise BadEvent("bad_field", f"a flagged index is not below the decide's {k} individuals")

    def _check_labels(self, entry: JoinEntry, ev: Event) -> None:
        """One-sided feedback: labels only for positively decided individuals."""
        if entry.flags & FEEDBACK:
            raise BadEvent("duplicate_feedback", f"decide {ev.ref!r} already has its feedback")
        decisions = _payload(entry).decisions
        label = ev.label
        if ev.reward is not None or type(label) is not list or len(label) != len(decisions):
            raise BadEvent("bad_label", f"feedback to a fair decide carries a list of {len(decisions)} labels (0, 1 or null)")
        hidden = [i for i, (d, v) in enumerate(zip(decisions, label)) if d == 0 and v is not None]
        if hidden:
            raise BadEvent("hidden_label", f"labels for negatively decided individuals {hidden[:5]} are never learned")
        missing = [i for i, (d, v) in enumerate(zip(decisions, label)) if d == 1 and v is None]
        if missing:
            raise BadEvent("bad_label", f"no label for positively decided individuals {missing[:5]}")

    def handle(self, shard: ShardView, ev: Event, out: Output) -> None:
        if ev.kind == "decide":
            assert ev.actions is not None  # checked by check()
            panel = decide_panel(shard.learner, ev.actions)
            shard.tracker.record_decisions(panel.decisions)
            # an evicted panel is counted by the join store alone: it has no default reply to learn
            shard.joins.add(JoinEntry(ev.id, shard.seq, ev.ts, PanelPayload(ev.actions, panel.decisions, panel.probabilities)))
            shard.check_outputs(f"decide {ev.id!r}", panel.probabilities)
            out.answer(
                ev,
                {
                    "id": ev.id,
                    "model": shard.spec.name,
                    "kind": "decide",
                    "decisions": panel.decisions.tolist(),
                    "probabilities": panel.probabilities.tolist(),
                    "model_version": shard.learner.n_updates,
                },
            )
            return
        entry = shard.joins.pending[str(ev.ref)]
        p = _payload(entry)
        if ev.kind == "feedback":
            revealed = cast(list[Any], ev.label)  # checked by check(): 0, 1 or None per individual
            labels = np.array([-1.0 if v is None else float(v) for v in revealed])
            learn_panel(shard.learner, p, labels)
            shard.tracker.record_labels(p.decisions, labels)
            _replied(shard, entry, FEEDBACK)
        else:
            kept = shard.learner.audit(p.actions, p.decisions, p.probabilities, ev.violations, panel_size=ev.panel_size)
            shard.tracker.record_audit(int(kept), ev.violations, ev.auditors)
            _replied(shard, entry, AUDIT)

    # -- measuring ----------------------------------------------------------------------------
    def summarize(self, shards: Sequence[ShardView]) -> dict[str, Any]:
        return {"fair": shards[0].tracker.summary()}

    def publish(self, metrics: Metrics, model: str, summary: dict[str, Any]) -> None:
        for auditor, figures in summary["fair"]["auditors"].items():
            metrics.auditor_reported_pairs.labels(model=model, auditor=auditor).set(figures["reported_pairs"])
            metrics.auditor_panels.labels(model=model, auditor=auditor).set(figures["panels"])

    # -- showing ------------------------------------------------------------------------------
    def summary_rows(self, summary: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
        f = summary["fair"]
        return (
            ["rounds", "positive rate", "revealed acc.", "violations/round", "fair regret (simulator)"],
            [
                str(f["rounds"]),
                fmt(f["positive_rate"]),
                fmt(f["revealed_accuracy"]),
                fmt(f["violations_per_round"], ".3f"),
                fmt(extra.get("fair_regret"), ".1f"),
            ],
        )

    def live_panels(self, summary: dict[str, Any], monitor: dict[str, Any] | None) -> list[dict[str, Any]]:
        f = summary["fair"]
        panels: list[dict[str, Any]] = [
            {
                "title": "auditor-panel violations",
                "unit": "violating pairs per audited round",
                "series": {
                    "violations per round": f.get("violations_per_round"),
                    "rounds with a violation (fraction)": f.get("violation_round_rate"),
                },
            },
            {
                "title": "decisions",
                "unit": "fraction of individuals",
                "series": {"positive-decision rate": f.get("positive_rate"), "revealed accuracy": f.get("revealed_accuracy")},
            },
        ]
        if monitor:
            panels.append(
                {
                    "title": "regret measured by the simulator",
                    "unit": "expected mistakes",
                    "series": {
                        "against the best fixed policy": monitor.get("mistake_regret_unconstrained"),
                        "against the best fair mixture": monitor.get("fair_regret"),
                        "Lagrangian regret": monitor.get("lagrangian_regret"),
                    },
                }
            )
        return panels


def _payload(entry: JoinEntry) -> PanelPayload:
    assert isinstance(entry.payload, PanelPayload)
    return entry.payload


def _replied(shard: ShardView, entry: JoinEntry, flag: int) -> None:
    entry.flags |= flag
    if entry.flags == FEEDBACK | AUDIT:
        shard.joins.take(entry.id)
