"""Regression: squared loss, regret per declared group against the best fixed linear predictor in hindsight."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from regretflow.engine.evaluation.regret import HindsightRegret
from regretflow.engine.observability.plotting import (
    COLOURS,
    MAX_SERIES,
    _by_name,
    _fmt,
    _grid,
    _group_order,
    _group_panels,
    _legend_below,
    _png,
    _pyplot,
)
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import _show
from regretflow.engine.tasks.base import ShardView, column, fmt
from regretflow.engine.tasks.supervised import Served, SupervisedTask

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec
    from regretflow.engine.observability.metrics import Metrics
    from regretflow.engine.observability.plotting import ModelSeries

_GROUP_FIGURES = ("count", "loss", "comparator_loss", "regret")


class RegressionTask(SupervisedTask):
    """Numeric labels; the summary's ``groups`` hold rounds, losses and regret per group.

    >>> task = RegressionTask()
    >>> task.check_label(3), task.summary_rows({"groups": {"all": {"count": 2, "loss": 1.0, "comparator_loss": 0.5, "regret": 0.5}}}, {})[1]
    (3.0, ['2', '0.5000', '0.5000', '-', '-'])
    """

    name: ClassVar[str] = "regression"

    def check_label(self, label: Any) -> Any:
        if (type(label) is not float and type(label) is not int) or isinstance(label, bool):
            raise BadEvent("bad_label", f"a regression label must be a number, got {_show(label)}")
        return float(label)

    def make_tracker(self, spec: ModelSpec) -> HindsightRegret:
        r = spec.regret
        return HindsightRegret(len(spec.features), spec.group_labels, r.comparator_lambda, r.lag, r.pinv_cutoff)

    def healthy(self, predictions: Any) -> bool:
        return bool(np.isfinite(np.asarray(predictions, dtype=np.float64)).all())

    def observe(self, shard: ShardView, X: np.ndarray, labels: list[Any], G: np.ndarray | None) -> Any:
        y = np.array(labels, dtype=np.float64)
        observed = shard.learner.observe(X, y, G)
        preds, losses = observed.predictions, observed.losses
        if losses is None or len(losses) != len(y):
            losses = (np.asarray(preds, dtype=np.float64) - y) ** 2
        shard.tracker.update(X, y, losses, G)
        fields = getattr(observed, "answer_fields", None)  # a groupwise model serving a draw names the expert
        return Served(preds, fields) if fields is not None else preds

    def learn_label(self, shard: ShardView, x: np.ndarray, label: Any, prediction: Any, G: np.ndarray | None) -> None:
        y = np.array([float(label)])
        shard.learner.learn_many(x, y)
        shard.tracker.update(x, y, np.array([(prediction - y[0]) ** 2]), G)

    # -- measuring ----------------------------------------------------------------------------
    def summarize(self, shards: Sequence[ShardView]) -> dict[str, Any]:
        groups: dict[str, dict[str, float]] = {}
        for s in shards:
            for label, g in s.tracker.summary().items():
                acc = groups.setdefault(label, {"count": 0, "loss": 0.0, "comparator_loss": 0.0, "regret": 0.0})
                for k in acc:
                    acc[k] += g[k]
        return {"groups": groups}

    def publish(self, metrics: Metrics, model: str, summary: dict[str, Any]) -> None:
        m = metrics
        for group, g in summary["groups"].items():
            m.regret.labels(model=model, group=group).set(g["regret"])
            m.cumulative_loss.labels(model=model, group=group).set(g["loss"])
            m.comparator_loss.labels(model=model, group=group).set(g["comparator_loss"])
            m.group_rounds.labels(model=model, group=group).set(g["count"])
            m.mean_loss.labels(model=model, group=group).set(g["loss"] / g["count"] if g["count"] else 0.0)

    # -- showing ------------------------------------------------------------------------------
    def summary_rows(self, summary: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
        groups = {k: v for k, v in summary["groups"].items() if v["count"]}
        a = groups.get("all", {"count": 0, "loss": 0.0, "regret": 0.0})
        worst = max((k for k in groups if k != "all"), key=lambda k: groups[k]["regret"] / groups[k]["count"], default="-")
        w = groups.get(worst, {"regret": float("nan"), "count": 1})
        return (
            ["rounds", "mean loss", "regret", "worst group", "its regret/round"],
            [
                str(a["count"]),
                fmt(a["loss"] / a["count"] if a["count"] else float("nan")),
                fmt(a["regret"]),
                worst,
                fmt(w["regret"] / w["count"], ".5f"),
            ],
        )

    def detail_lines(self, model: str, summary: dict[str, Any]) -> list[str]:
        s = summary
        lines = [
            f"\nmodel {model} ({s['learner']}), version {s['model_version']}",
            f"  {'group':<24}{'rounds':>8}{'cum. loss':>12}{'best fixed':>12}{'regret':>10}{'regret/round':>14}",
        ]
        for group, g in s["groups"].items():
            per = g["regret"] / g["count"] if g["count"] else 0.0
            lines.append(f"  {group:<24}{g['count']:>8}{g['loss']:>12.4f}{g['comparator_loss']:>12.4f}{g['regret']:>10.4f}{per:>14.5f}")
        gauges = s.get("learner_group_gauges")
        if gauges:
            lines.append(f"  learner gauges per group: {', '.join(gauges)}")
        return lines

    def progress_figure(self, model: str, summary: dict[str, Any]) -> str | None:
        return f"{model} regret={summary['groups']['all']['regret']:.3f}"

    def live_panels(self, summary: dict[str, Any], monitor: dict[str, Any] | None) -> list[dict[str, Any]]:

        groups = summary["groups"]
        panels = _group_panels({k: v["regret"] for k, v in groups.items()}, "cumulative regret", "squared loss")
        a = groups.get("all", {})
        n = a.get("count") or 0
        panels.append(
            {
                "title": "mean loss, learner and best fixed predictor",
                "unit": "squared loss per round",
                "series": {
                    "learner": a.get("loss", 0.0) / n if n else None,
                    "best fixed in hindsight": a.get("comparator_loss", 0.0) / n if n else None,
                },
            }
        )
        return panels

    def series(self, summaries: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], np.ndarray]:
        groups: dict[str, dict[str, np.ndarray]] = {}
        for label in list(summaries[-1].get("groups", {})):
            gs = [s.get("groups", {}).get(label) or {} for s in summaries]
            groups[label] = {key: column(gs, key) for key in _GROUP_FIGURES}
        rounds = groups["all"]["count"] if "all" in groups else np.arange(len(summaries), dtype=float)
        return {}, groups, rounds

    def figures(self, series: ModelSeries) -> list[tuple[str, bytes]]:
        return [(f"regret-{series.name}", regression_figure(series))] if series.groups else []

    def final_table(self, series: ModelSeries) -> str:

        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{_fmt(g.get('count'))}</td><td>{_fmt(g.get('loss'))}</td>"
            f"<td>{_fmt(g.get('comparator_loss'))}</td><td>{_fmt(g.get('regret'))}</td>"
            f"<td>{_fmt(g['regret'] / g['count'] if g.get('count') and g.get('regret') is not None else 0.0)}</td></tr>"
            for label, g in series.final.get("groups", {}).items()
        )
        return (
            "<table><tr><th>group</th><th>rounds</th><th>cumulative loss</th><th>best fixed</th><th>regret</th>"
            f"<th>regret / round</th></tr>{rows}</table>"
        )


def regression_figure(s: ModelSeries, max_groups: int = 64) -> bytes:
    """Cumulative regret per group, one small panel per declared group (with ``all``), and mean loss against the comparator's."""

    plt = _pyplot()
    labels = _group_order(list(s.groups))[:max_groups]
    chunks = _by_name(labels) or [("all", [])]
    fig, axes = _grid(plt, len(chunks) + 1)
    for ax, (name, members) in zip(axes, chunks):
        for i, label in enumerate(["all", *members] if "all" in s.groups else members):
            g = s.groups[label]
            ax.plot(g["count"], g["regret"], label=label, color=COLOURS[i % MAX_SERIES], lw=2.2 if label == "all" else 1.4)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set(title=f"cumulative regret by {name}", xlabel="labelled rounds of the group", ylabel="regret (squared loss)")
        _legend_below(ax)
    ax = axes[-1]
    if "all" in s.groups:
        g = s.groups["all"]
        with np.errstate(invalid="ignore", divide="ignore"):
            ax.plot(g["count"], g["loss"] / g["count"], color=COLOURS[0], lw=2, label="learner")
            ax.plot(
                g["count"],
                g["comparator_loss"] / g["count"],
                color=COLOURS[2],
                lw=2,
                ls="--",
                label="best fixed linear predictor in hindsight",
            )
    ax.set(title="mean loss on all rows", xlabel="labelled rounds", ylabel="squared loss per round")
    _legend_below(ax, ncol=1)
    fig.suptitle(f"model {s.name} ({s.learner}): regret against the best fixed linear predictor, per group", fontsize=12)
    fig.tight_layout()
    return _png(fig)
