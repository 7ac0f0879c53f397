"""Classification: class labels, prequential accuracy overall, per class and per group."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from regretflow.engine.evaluation.regret import ClassAccuracy
from regretflow.engine.observability.plotting import COLOURS, MAX_SERIES, _fmt, _grid, _legend_below, _png, _pyplot
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event, Run, _show
from regretflow.engine.tasks.base import ShardView, column, fmt
from regretflow.engine.tasks.supervised import SupervisedTask, observe_rows

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec
    from regretflow.engine.observability.metrics import Metrics
    from regretflow.engine.observability.plotting import ModelSeries


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _kind_of(label: Any) -> str:
    """A valid class label's kind, as the learner names it (bools are refused before: ``check_label``)."""
    return "str" if isinstance(label, str) else "int"


def _mixed_kinds(label: Any, expected: str, model: str) -> str:
    return f"model {model!r} learns {expected} class labels; got {_show(label)}"


class ClassificationTask(SupervisedTask):
    """String or integer class labels; the summary's ``classification`` holds the accuracies.

    >>> ClassificationTask().check_label("spam")
    'spam'
    """

    name: ClassVar[str] = "classification"

    def check_label(self, label: Any) -> Any:
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise BadEvent("bad_label", f"a class label must be a string or an integer, got {_show(label)}")
        if type(label) is int and not _INT64_MIN <= label <= _INT64_MAX:  # (a checkpoint stores integer labels as int64)
            raise BadEvent("bad_label", f"an integer class label must fit in 64 bits, got {_show(label)}")
        return label

    def check(self, shard: ShardView, ev: Event) -> None:
        super().check(shard, ev)
        if ev.kind == "observe" or ev.kind == "feedback":
            expected = self._expected_kind(shard)
            if expected is not None and _kind_of(ev.label) != expected:
                raise BadEvent("bad_label", _mixed_kinds(ev.label, expected, shard.spec.name))

    def refused_rows(self, shard: ShardView, run: Run) -> list[tuple[int, BadEvent]]:
        labels = run.labels
        if run.kind != "observe" or not labels:
            return []
        expected = self._expected_kind(shard) or _kind_of(labels[0])  # none yet: the run's first label sets it
        return [
            (i, BadEvent("bad_label", _mixed_kinds(label, expected, shard.spec.name)))
            for i, label in enumerate(labels)
            if _kind_of(label) != expected
        ]

    @staticmethod
    def _expected_kind(shard: ShardView) -> str | None:
        """The kind of class label the model learns: the learner's, else the first label of the run waiting to be learned."""
        kind = getattr(shard.learner, "label_kind", None)
        if kind is not None:
            return str(kind)
        for pending in getattr(shard, "run", ()):  # (a shard's pending run; observe rows only carry labels there)
            labels = [pending.label] if isinstance(pending, Event) else pending.labels
            if labels:
                return _kind_of(labels[0])
        return None

    def make_tracker(self, spec: ModelSpec) -> ClassAccuracy:
        return ClassAccuracy(spec.group_labels)

    def observe(self, shard: ShardView, X: np.ndarray, labels: list[Any], G: np.ndarray | None) -> Any:
        preds, _ = observe_rows(shard.learner, X, labels, G)
        shard.tracker.update(labels, preds, G)
        return preds

    def learn_label(self, shard: ShardView, x: np.ndarray, label: Any, prediction: Any, G: np.ndarray | None) -> None:
        shard.learner.learn_many(x, [label])
        shard.tracker.update([label], [prediction], G)

    # -- measuring ----------------------------------------------------------------------------
    def summarize(self, shards: Sequence[ShardView]) -> dict[str, Any]:
        return {"classification": shards[0].tracker.summary()}

    def publish(self, metrics: Metrics, model: str, summary: dict[str, Any]) -> None:
        m = metrics
        c = summary["classification"]
        for cls, v in c["per_class"].items():
            m.class_accuracy.labels(model=model, **{"class": cls}).set(v["accuracy"])
            m.class_rounds.labels(model=model, **{"class": cls}).set(v["count"])
        for group, v in c["per_group"].items():
            m.accuracy.labels(model=model, group=group).set(v["accuracy"])
            m.group_rounds.labels(model=model, group=group).set(v["count"])

    # -- showing ------------------------------------------------------------------------------
    def summary_rows(self, summary: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
        c = summary["classification"]
        g = summary.get("learner_gauges", {})
        heads = ["rows", "accuracy", "answer regret", "mean per-class acc."]
        row = [str(c["count"]), fmt(c["accuracy"]), fmt(g.get("analytic_answer_regret"), ".1f"), fmt(c["mean_per_class_accuracy"])]
        if "held_out_mean_class_accuracy" in extra:
            heads.append("held-out mean per-class acc.")
            row.append(fmt(extra["held_out_mean_class_accuracy"]))
        return heads, row

    def replay_lines(self, model: str, summary: dict[str, Any]) -> list[str]:
        c = summary["classification"]
        return [f"\nmodel {model}: accuracy {c['accuracy']:.4f}, mean per-class accuracy {c['mean_per_class_accuracy']:.4f}"]

    def live_panels(self, summary: dict[str, Any], monitor: dict[str, Any] | None) -> list[dict[str, Any]]:
        c = summary["classification"]
        g = summary.get("learner_gauges", {})
        panels: list[dict[str, Any]] = [
            {
                "title": "prequential accuracy",
                "unit": "fraction correct",
                "series": {"accuracy": c.get("accuracy"), "mean per-class accuracy": c.get("mean_per_class_accuracy")},
            }
        ]
        if "analytic_answer_regret" in g:
            panels.append(
                {
                    "title": "answer regret against the hindsight ridge",
                    "unit": "squared one-hot loss",
                    "series": {"answer regret": g["analytic_answer_regret"]},
                }
            )
        return panels

    def series(self, summaries: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], np.ndarray]:
        cs = [s.get("classification") or {} for s in summaries]
        values = {"count": column(cs, "count"), "accuracy": column(cs, "accuracy")}
        for cls in cs[-1].get("per_class") or {}:
            values[f"class.{cls}"] = column([(c.get("per_class") or {}).get(cls) or {} for c in cs], "accuracy")
        for label in cs[-1].get("per_group") or {}:
            values[f"group.{label}"] = column([(c.get("per_group") or {}).get(label) or {} for c in cs], "accuracy")
        return values, {}, values["count"]

    def figures(self, series: ModelSeries) -> list[tuple[str, bytes]]:
        return [(f"accuracy-{series.name}", classification_figure(series))]

    def final_table(self, series: ModelSeries) -> str:

        c = series.final.get("classification", {})
        rows = [("rounds", c.get("count")), ("accuracy", c.get("accuracy")), ("mean per-class accuracy", c.get("mean_per_class_accuracy"))]
        return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows) + "</table>"


def classification_figure(s: ModelSeries, max_lines: int = 64) -> bytes:
    """Prequential accuracy overall and per class, then per group, at most eight lines a panel."""

    plt = _pyplot()
    n = s.rounds
    panels = []
    for prefix, what in (("class.", "class"), ("group.", "group")):
        keys = [k for k in s.values if k.startswith(prefix) and k != "group.all"][:max_lines]
        for start in range(0, max(len(keys), 1 if prefix == "class." else 0), MAX_SERIES - 1):
            panels.append((what, keys[start : start + MAX_SERIES - 1]))
    fig, axes = _grid(plt, len(panels))
    for ax, (what, keys) in zip(axes, panels):
        ax.plot(n, s.values["accuracy"], color=COLOURS[0], lw=2.2, label="all rows")
        for i, key in enumerate(keys, start=1):
            ax.plot(n, s.values[key], lw=1.3, color=COLOURS[i % MAX_SERIES], label=key.split(".", 1)[1])
        ax.set(title=f"prequential accuracy by {what}", xlabel="labelled rounds", ylabel="accuracy (fraction correct)", ylim=(-0.02, 1.02))
        _legend_below(ax, ncol=4)
    fig.suptitle(f"model {s.name} ({s.learner}): accuracy", fontsize=12)
    fig.tight_layout()
    return _png(fig)
