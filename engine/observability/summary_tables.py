"""The end-of-run tables of an engine summary (``Engine.summary()``), as plain text:
what ``regretflow run``, ``replay`` and ``demo`` print when they finish.

>>> s = {"m": {"task": "regression", "learner": "ridge", "model_version": 4, "groups": {"all": {"count": 4, "loss": 2.0, "comparator_loss": 1.0, "regret": 1.0}}}}
>>> print(summary_table(s).strip().splitlines()[0])
model m (ridge), version 4
"""

from __future__ import annotations

from typing import Any

from regretflow.engine.tasks import shown_task


def summary_table(summary: dict[str, Any]) -> str:
    """Per model, its task's detailed table (for regression: per group rounds, mean loss, comparator loss, regret)."""
    lines = []
    for model, s in summary.items():
        if isinstance(s, dict) and not model.startswith("_"):
            lines += shown_task(s.get("task")).detail_lines(model, s)
    return "\n".join(lines)


def family_tables(
    summary: dict[str, Any],
    families: dict[str, list[str]] | None = None,
    extras: dict[str, dict[str, Any]] | None = None,
    notes: dict[str, str] | None = None,
) -> str:
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
                heads, row = shown_task(s["task"]).summary_rows(s, extras.get(model, {}))
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
