"""``regretflow report``: a run's regret, reward and off-policy curves, as PNG files and one HTML page.

It reads a run's metrics log (``metrics.log_path``), or records one by replaying a
logged stream through a config's models (``--replay``) or the demo's stream offline
(``--demo``); ``regretflow report --help`` lists the options.

It draws, per model: for regression models the cumulative regret of every declared
group against its own labelled rounds, the regret per round, and the learner's mean
loss beside that of the best fixed predictor in hindsight; for bandit models the
pseudo-regret and the estimated regret against the best constant action, the
cumulative reward, and the observed mean reward beside the IPS and SNIPS values (with
their 95% intervals) of the uniform policy and of the best constant action; for
classification models the accuracy overall, per class and per group; and the
learner's own gauges. Every figure is a PNG in ``--out``; ``report.html`` embeds them
all (base64), so the page is one file to mail or attach. ``--replay`` and ``--demo``
also write the log they recorded to ``--out/metrics.jsonl``. Drawing needs matplotlib
(the ``plot`` extra); reading and writing the log does not.

The log's format is described in :mod:`regretflow.engine.observability.metrics_log`;
the ``regretflow report`` command is :mod:`regretflow.engine.cli.report`.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from numpy.typing import NDArray

from regretflow.connectors.memory import MemorySink
from regretflow.engine.evaluation.offline import offline_config
from regretflow.engine.observability.metrics_log import metrics_log_record
from regretflow.engine.observability.plotting import (
    COLOURS,
    MAX_SERIES,
    ModelSeries,
    _by_name,
    _grid,
    _legend_below,
    _png,
    _pyplot,
)
from regretflow.engine.tasks import shown_task
from regretflow.learners import LEARNERS

if TYPE_CHECKING:
    from regretflow.engine.config import Config
    from regretflow.engine.runtime.loop import Engine

# -- series -----------------------------------------------------------------------------------


def model_series(records: list[dict[str, Any]]) -> dict[str, ModelSeries]:
    """Per model, the time series a report draws (records where the model has no task are skipped)."""
    names: list[str] = []
    for r in records:
        for name in r["models"]:
            if name not in names:
                names.append(name)
    out: dict[str, ModelSeries] = {}
    for name in names:
        rows = [(r["ts"], r["models"][name]) for r in records if (r["models"].get(name) or {}).get("task")]
        if not rows:
            continue
        task = rows[-1][1]["task"]
        rows = [(t, s) for t, s in rows if s.get("task") == task]
        ts = np.array([t for t, _ in rows], dtype=float)
        summaries = [s for _, s in rows]
        values, groups, rounds = shown_task(task).series(summaries)
        for gauge in summaries[-1].get("learner_gauges") or {}:
            values[f"learner.{gauge}"] = _col([s.get("learner_gauges") or {} for s in summaries], gauge)
        for gauge, last in (summaries[-1].get("learner_group_gauges") or {}).items():
            for i in range(len(last)):
                values[f"learner_group.{gauge}.{i}"] = np.array(
                    [_num(((s.get("learner_group_gauges") or {}).get(gauge) or [None] * (i + 1))[i]) for s in summaries]
                )
        out[name] = ModelSeries(name, task, str(summaries[-1].get("learner", "")), ts, rounds, values, groups, summaries[-1])
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _col(rows: list[dict[str, Any]], key: str) -> NDArray[np.float64]:
    return np.array([_num(r.get(key)) for r in rows], dtype=float)


# -- drawing -----------------------------------------------------------------------------------


def _gauge_words(name: str, learner: str) -> tuple[str, str]:
    """A title in words and a y-axis label for a learner gauge (from the learner's own description)."""
    cls = LEARNERS.get(learner)
    text = {**getattr(cls, "GAUGES", {}), **getattr(cls, "GROUP_GAUGES", {})}.get(name, "") if cls else ""
    title = text.split(":")[0].split(" (")[0].split(". ")[0].rstrip(".") or name.replace("_", " ")
    if len(title) > 60:
        title = title[:57].rsplit(" ", 1)[0] + "…"
    lowered = name.lower()
    if any(w in lowered for w in ("probability", "accuracy", "fraction")):
        unit = "fraction"
    elif lowered.endswith("rate"):
        unit = "per round"
    elif any(w in lowered for w in ("regret", "loss", "reward", "gap", "envelope", "cost")):
        unit = "reward or loss units"
    elif any(w in lowered for w in ("rounds", "count", "epoch", "samples", "refreshes", "rows", "calls", "decisions", "pairs")):
        unit = "count"
    else:
        unit = "value"
    return title, f"{unit} ({name})"


def learner_figure(s: ModelSeries, group_labels: list[str], max_panels: int = 9) -> bytes | None:
    """The learner's own gauges: one panel each, titled in words; per-group gauges split by group name."""
    names = [k[len("learner.") :] for k in s.values if k.startswith("learner.")]
    group_names = sorted({k.split(".")[1] for k in s.values if k.startswith("learner_group.")})
    labels = [*group_labels, "all"]  # the engine's order: declared groups, then all
    panels: list[tuple[str, str, list[int]]] = [("", n, []) for n in names]
    for gauge in group_names:
        index = {label: i for i, label in enumerate(labels)}
        for _, chunk in _by_name(labels) or [("all", [])]:
            panels.append(("group", gauge, [index["all"], *(index[m] for m in chunk)]))
    panels = panels[:max_panels]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(panels))
    for ax, (kind, name, members) in zip(axes, panels):
        title, ylabel = _gauge_words(name, s.learner)
        if kind:
            for j, i in enumerate(members):
                key = f"learner_group.{name}.{i}"
                if key in s.values:
                    label = labels[i] if i < len(labels) else str(i)
                    ax.plot(s.rounds, s.values[key], lw=2.2 if label == "all" else 1.3, color=COLOURS[j % MAX_SERIES], label=label)
            shown = [labels[i].split("=", 1)[0] for i in members[1:]]
            title = f"{title} by {shown[0]}" if shown else title
            _legend_below(ax)
        else:
            ax.plot(s.rounds, s.values[f"learner.{name}"], color=COLOURS[0], lw=1.6)
        ax.set(title=title, xlabel="rounds", ylabel=ylabel)
        ax.title.set_fontsize(10)
    fig.suptitle(f"model {s.name} ({s.learner}): the learner's own gauges", fontsize=12)
    fig.tight_layout()
    return _png(fig)


# -- the report ----------------------------------------------------------------------------------


def write_report(records: list[dict[str, Any]], out: str | Path, title: str = "regretflow report", source: str = "") -> dict[str, Path]:
    """Draw every figure of ``records`` into ``out`` (PNG files and report.html); returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series = model_series(records)
    figures: dict[str, list[tuple[str, bytes]]] = {}
    for name, s in series.items():
        figs = shown_task(s.task).figures(s)
        group_labels = (
            [g for g in s.groups if g != "all"]
            if s.groups
            else [k[len("group.") :] for k in s.values if k.startswith("group.") and k != "group.all"]
        )
        learner = learner_figure(s, group_labels)
        if learner is not None:
            figs.append((f"learner-{name}", learner))
        figures[name] = figs
    written: dict[str, Path] = {}
    for figs in figures.values():
        for stem, png in figs:
            path = out / f"{_safe(stem)}.png"
            path.write_bytes(png)
            written[stem] = path
    page = out / "report.html"
    page.write_text(_html(records, series, figures, title, source), encoding="utf-8")
    written["report.html"] = page
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _html(
    records: list[dict[str, Any]], series: dict[str, ModelSeries], figures: dict[str, list[tuple[str, bytes]]], title: str, source: str
) -> str:
    t0, t1 = records[0]["ts"], records[-1]["ts"]
    span = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t0))} to {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t1))} UTC"
    parts = [
        "<!DOCTYPE html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1600px;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(records)} records, {span}{'; source ' + html.escape(source) if source else ''}.</p>",
    ]
    for name, s in series.items():
        parts.append(f"<h2>model {html.escape(name)} <small>({html.escape(s.learner)}, {html.escape(s.task)})</small></h2>")
        parts.append(shown_task(s.task).final_table(s))
        for stem, png in figures.get(name, []):
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{html.escape(stem)}' src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# -- recording a run offline (replay, demo) ------------------------------------------------------


def record_run(config: Config, source: Any, every: int, total: int | None = None, progress: TextIO | None = None) -> list[bytes]:
    """Run ``source`` through an engine offline, one metrics-log line every ``every`` events and at the end.

    ``progress`` (a text stream, e.g. stderr) gets a line every two seconds: events so
    far, of ``total`` when known, and the events/s since the previous line. ``source`` is
    any source the :class:`~regretflow.engine.runtime.loop.Engine` reads (a connector).
    """
    # the engine loads prometheus_client and the HTTP server: drawing a log that is already written does without them
    from regretflow.engine.runtime.loop import Engine

    config = offline_config(config, max_batch_size=every)
    lines: list[bytes] = []
    next_record = every
    shown_at, shown_events = time.monotonic(), 0

    def recorder(engine: Engine) -> None:
        nonlocal next_record, shown_at, shown_events
        now = time.monotonic()
        if progress is not None and now - shown_at >= 2.0:
            rate = (engine.events_seen - shown_events) / (now - shown_at)
            of = f"/{total:,} ({100 * engine.events_seen / total:.0f}%)" if total else ""
            progress.write(f"recording: {engine.events_seen:,}{of} events, {rate:,.0f} ev/s\n")
            progress.flush()
            shown_at, shown_events = now, engine.events_seen
        if engine.events_seen >= next_record:
            lines.append(metrics_log_record(engine.summary(), time.time()))
            while next_record <= engine.events_seen:
                next_record += every

    engine = Engine(config, source, MemorySink(keep=False), MemorySink(keep=False), serve_metrics=False, progress=recorder)
    engine.run()
    summary = engine.summary()
    summary["_stream"] = {"events": engine.events_seen, "valid": engine.valid_events, "dead_letters": engine.dead_count}
    lines.append(metrics_log_record(summary, time.time()))
    engine.close()
    return lines
