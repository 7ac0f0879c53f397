"""The end-of-run tables of an engine summary (``Engine.summary()``), as plain text:
what ``regretflow run``, ``replay`` and ``demo`` print when they finish.

>>> s = {"m": {"task": "regression", "learner": "ridge", "model_version": 4, "groups": {"all": {"count": 4, "loss": 2.0, "comparator_loss": 1.0, "regret": 1.0}}}}
>>> print(summary_table(s).strip().splitlines()[0])
model m (ridge), version 4
"""

from __future__ import annotations

from typing import Any

import numpy as np


def summary_table(summary: dict[str, Any]) -> str:
    """Per regression model and group: rounds, mean loss, comparator loss, regret."""
    lines = []
    for model, s in summary.items():
        if not isinstance(s, dict) or s.get("task") != "regression":
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


def _f(value: Any, spec: str = ".4f") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if not np.isfinite(v) else format(v, spec)


def _rows(task: str, model: str, s: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Column heads and one row of a model: rounds, regret, loss or reward, and its task's headline figure."""
    g = s.get("learner_gauges", {})
    if task == "regression":
        groups = {k: v for k, v in s["groups"].items() if v["count"]}
        a = groups.get("all", {"count": 0, "loss": 0.0, "regret": 0.0})
        worst = max((k for k in groups if k != "all"), key=lambda k: groups[k]["regret"] / groups[k]["count"], default="-")
        w = groups.get(worst, {"regret": float("nan"), "count": 1})
        return (["rounds", "mean loss", "regret", "worst group", "its regret/round"],
                [str(a["count"]), _f(a["loss"] / a["count"] if a["count"] else float("nan")), _f(a["regret"]), worst,
                 _f(w["regret"] / w["count"], ".5f")])
    if task == "bandit":
        b = s["bandit"]
        greedy = b.get("greedy", {})
        if "dynlin_regret_envelope" in g:
            return (["rounds", "mean reward", "pseudo-regret", "epochs", "regret envelope"],
                    [str(b["count"]), _f(b["mean_reward"]), _f(b["pseudo_regret"], ".3f"), _f(g.get("dynlin_epoch"), ".0f"),
                     _f(g.get("dynlin_regret_envelope"), ".1f")])
        return (["rounds", "mean reward", "pseudo-regret", "uniform SNIPS", "greedy SNIPS [95%]"],
                [str(b["count"]), _f(b["mean_reward"]), _f(b["pseudo_regret"], ".1f"), _f(b.get("uniform", {}).get("snips")),
                 f"{_f(greedy.get('snips'), '.3f')} [{_f(greedy.get('snips_low'), '.3f')}, {_f(greedy.get('snips_high'), '.3f')}]"
                 if greedy else "-"])
    if task == "classification":
        c = s["classification"]
        heads = ["rows", "accuracy", "answer regret", "mean per-class acc."]
        row = [str(c["count"]), _f(c["accuracy"]), _f(g.get("analytic_answer_regret"), ".1f"), _f(c["mean_per_class_accuracy"])]
        if "held_out_mean_class_accuracy" in extra:
            heads.append("held-out mean per-class acc.")
            row.append(_f(extra["held_out_mean_class_accuracy"]))
        return heads, row
    if task == "fair":
        f = s["fair"]
        return (["rounds", "positive rate", "revealed acc.", "violations/round", "fair regret (simulator)"],
                [str(f["rounds"]), _f(f["positive_rate"]), _f(f["revealed_accuracy"]), _f(f["violations_per_round"], ".3f"),
                 _f(extra.get("fair_regret"), ".1f")])
    return (["events"], [str(s.get("events", 0))])


def family_tables(summary: dict[str, Any], families: dict[str, list[str]] | None = None,
                  extras: dict[str, dict[str, Any]] | None = None, notes: dict[str, str] | None = None) -> str:
    """One compact table per family (``families``: title -> models; default: one per task).

    >>> s = {"m": {"task": "regression", "learner": "ridge", "groups": {"all": {"count": 4, "loss": 2.0, "comparator_loss": 1.0, "regret": 1.0}}}}
    >>> print(family_tables(s))
    <BLANKLINE>
    regression
      model    rounds  mean loss  regret  worst group  its regret/round
      m             4     0.5000  1.0000            -                 -
    """
    extras = extras or {}
    if families is None:
        families = {}
        for model, s in summary.items():
            if isinstance(s, dict) and not model.startswith("_"):
                families.setdefault(s.get("task") or "no events yet", []).append(model)
    lines = []
    for title, models in families.items():
        table = []
        heads: list[str] = []
        for model in models:
            s = summary.get(model)
            if s and s.get("task"):
                heads, row = _rows(s["task"], model, s, extras.get(model, {}))
                table.append(row)
        lines.append(f"\n{title}")
        shown = [m for m in models if (summary.get(m) or {}).get("task")]
        name_w = max(len("model"), *(len(m) for m in models)) + 2
        if table:
            widths = [max(len(h), *(len(r[i]) for r in table)) + 2 for i, h in enumerate(heads)]
            lines.append("  " + "model".ljust(name_w) + "".join(h.rjust(w) for h, w in zip(heads, widths)))
            for model, row in zip(shown, table):
                lines.append("  " + model.ljust(name_w) + "".join(v.rjust(w) for v, w in zip(row, widths)))
        for model in models:
            if model not in shown:
                lines.append("  " + model.ljust(name_w) + "no events yet")
        if notes and title in notes and table:
            lines.append(f"  note: {notes[title]}")
    return "\n".join(lines)
