"""The live page: a running engine's figures over time, served at ``/`` beside ``/metrics``.

:class:`LiveRecorder` samples the engine once a second (on the engine's thread, after
a batch) into bounded time series, and serves three routes on the metrics port:

- ``/``: ``live.html``, plain HTML;
- ``/live.js``: the charting script (canvas, no library), shipped in the package;
- ``/live.json``: the data, documented below; the page polls it every second.

Nothing is fetched from anywhere else.

``/live.json``
--------------
One JSON object (``format`` ``"regretflow-live"``, ``version`` 1)::

    {"format": "regretflow-live", "version": 1, "title": "regretflow demo",
     "now": 12.5,                      # seconds since the recorder started
     "t": [0.9, 1.9, ...],             # sample times, seconds since start (at most 600)
     "engine": [<panel>, ...],         # throughput, latency, dead letters by reason
     "families": [{"title": "...", "models": ["ridge", ...]}, ...],
     "models": {"<model>": {"task": "regression", "learner": "ridge", "panels": [<panel>, ...]}}}

    <panel> = {"title": "cumulative regret by sex", "unit": "squared loss",
               "series": {"<label>": [number or null per sample in t], ...}}

Panels hold at most :data:`MAX_SERIES` series (groups are split by their declared
name: one panel for sex, one for region, each with ``all``). Per task:

- regression: cumulative regret per declared group (squared loss, against the best
  fixed linear predictor in hindsight on that group's rows); mean loss beside the
  comparator's;
- bandit: cumulative reward and pseudo-regret; exploration (probability of the greedy
  action, cumulative predicted reward given up to exploration) when the learner
  reports it; off-policy SNIPS values of the greedy, uniform and best constant
  policies beside the observed mean reward;
- classification: accuracy and mean per-class accuracy;
- fair: violating pairs per audited round and positive-decision rate; with a
  simulator monitor, its regret figures.

When more than 600 samples have been taken, every other old sample is dropped, so the
whole run stays on the page at a coarser step.

>>> from regretflow.engine.observability.plotting import _group_panels
>>> [p["title"] for p in _group_panels({"all": 1.0, "sex=female": 2.0, "sex=male": 0.5, "smoker=yes": 1.5}, "cumulative regret", "squared loss")]
['cumulative regret by sex', 'cumulative regret by smoker']
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import numpy as np
import orjson

from regretflow.engine.tasks import shown_task
from regretflow.learners import LEARNERS

if TYPE_CHECKING:
    from regretflow.engine.config import Config
    from regretflow.engine.observability.metrics import MetricsServer
    from regretflow.engine.runtime.loop import Engine

LIVE_FORMAT = "regretflow-live"
LIVE_VERSION = 1
MAX_SAMPLES = 600
MAX_SERIES = 8

#: The engine's progress hook: called as ``progress(engine)`` after each batch, ``progress(engine, final=True)`` at the end.
ProgressCallback = Callable[..., None]


class GaugeSource(Protocol):
    """A simulator monitor (e.g. :class:`~regretflow.engine.evaluation.fairness_lp.FairnessMonitor`) whose figures join a model's panels.

    Examples
    --------
    >>> class Fixed:
    ...     def gauges(self) -> dict[str, float]:
    ...         return {"fair_regret": 0.5}
    >>> source: GaugeSource = Fixed()
    >>> source.gauges()
    {'fair_regret': 0.5}
    """

    def gauges(self) -> dict[str, float]: ...


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def model_panels(s: dict[str, Any], monitor_figures: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The panels of one model's summary at one moment: title, unit and ``{label: value}``."""

    return shown_task(s.get("task")).live_panels(s, monitor_figures)


class LiveRecorder:
    """Samples a running engine into the time series of ``/live.json`` and serves the page.

    Parameters
    ----------
    engine
        The :class:`~regretflow.engine.runtime.loop.Engine` to watch.
    every
        Seconds between two samples (taken after a batch; an idle engine takes none).
    monitors
        Simulator monitors by model (their ``gauges()`` join the model's panels).
    families
        Title -> models, the page's sections (default: one section of all models).

    Examples
    --------
    >>> from regretflow.engine.config import parse_config
    >>> from regretflow.engine.runtime.loop import Engine
    >>> from regretflow.connectors.memory import MemorySink, MemorySource
    >>> config = parse_config({"models": {"m": {"learner": "ridge", "features": ["x"]}}})
    >>> events = [orjson.dumps({"id": str(i), "model": "m", "kind": "observe", "features": [i / 10], "label": i / 5}) for i in range(20)]
    >>> engine = Engine(config, MemorySource(events), MemorySink(), MemorySink(), serve_metrics=False)
    >>> live = LiveRecorder(engine)
    >>> engine.progress = live.chain(None)
    >>> engine.run()
    >>> live.sample(force=True)
    >>> data = orjson.loads(live.json())
    >>> data["models"]["m"]["panels"][0]["title"], len(data["t"])  # sampled after the one batch, then forced
    ('cumulative regret', 2)
    """

    def __init__(
        self,
        engine: Engine,
        every: float = 1.0,
        monitors: Mapping[str, GaugeSource] | None = None,
        families: dict[str, list[str]] | None = None,
        title: str = "regretflow",
    ) -> None:
        self.engine = engine
        self.every = every
        self.monitors = monitors or {}
        self.families = families or {"models": list(engine.config.models)}
        self.title = title
        self.started = time.monotonic()
        self.due = 0.0
        self.t: list[float] = []
        self.columns: dict[tuple[str, int, str], list[float | None]] = {}  # (scope, panel index, label) -> values
        self.layout: dict[str, list[dict[str, Any]]] = {}  # scope -> panels (title, unit, labels)
        self.tasks: dict[str, dict[str, Any]] = {}
        self._last_events = 0
        self._last_latency = (0.0, 0)
        self._snapshot = self._render()

    def chain(self, then: ProgressCallback | None) -> ProgressCallback:
        """A progress callback that samples, then calls ``then`` (e.g. the progress line)."""

        def callback(engine: Engine, final: bool = False) -> None:
            self.sample()
            if then is not None:
                then(engine, final=final) if final else then(engine)

        return callback

    def _engine_panels(self, now: float) -> list[dict[str, Any]]:
        m = self.engine.metrics
        events = self.engine.events_seen
        dt = now - (self.t[-1] + self.started) if self.t else now - self.started
        rate = (events - self._last_events) / dt if dt > 0 else None
        self._last_events = events
        total, count = m.latency.sum, int(m.latency.counts.sum())
        d_count = count - self._last_latency[1]
        latency = 1000 * (total - self._last_latency[0]) / d_count if d_count > 0 else None
        self._last_latency = (total, count)
        dead: dict[str, float] = {}
        for family in m.dead_letters.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value > 0:
                    reason = sample.labels["reason"]
                    dead[reason] = dead.get(reason, 0.0) + sample.value
        top = sorted(dead, key=dead.__getitem__, reverse=True)
        shown = {r: dead[r] for r in top[: MAX_SERIES - 1]}
        if len(top) >= MAX_SERIES:
            shown["other reasons"] = sum(dead[r] for r in top[MAX_SERIES - 1 :])
        return [
            {"title": "throughput", "unit": "events per second", "series": {"events/s": rate}},
            {"title": "mean latency, batch arrival to answer", "unit": "milliseconds", "series": {"mean latency": latency}},
            {"title": "dead letters by reason", "unit": "events (cumulative)", "series": shown or {"none yet": 0.0}},
        ]

    def sample(self, force: bool = False) -> None:
        """Append one sample when one is due (``force``: now)."""
        now = time.monotonic()
        if not force and now < self.due:
            return
        self.due = now + self.every
        scopes = {"engine": self._engine_panels(now)}
        summary = self.engine.summary()
        for model, s in summary.items():
            if not s.get("task"):
                continue
            figures = self.monitors[model].gauges() if model in self.monitors else None
            scopes[model] = model_panels(s, figures)
            self.tasks[model] = {"task": s["task"], "learner": s.get("learner")}
        if len(self.t) >= MAX_SAMPLES:  # keep the whole run at half the resolution
            self.t = self.t[::2]
            self.columns = {k: v[::2] for k, v in self.columns.items()}
        n = len(self.t)
        self.t.append(round(now - self.started, 3))
        for scope, panels in scopes.items():
            layout = self.layout.setdefault(scope, [])
            for i, panel in enumerate(panels):
                if i >= len(layout):
                    layout.append({"title": panel["title"], "unit": panel["unit"], "labels": []})
                for label, value in panel["series"].items():
                    key = (scope, i, label)
                    if key not in self.columns:
                        self.columns[key] = [None] * n
                        layout[i]["labels"].append(label)
                    self.columns[key].append(_num(value))
        for column in self.columns.values():  # a series absent from this sample: null
            if len(column) < n + 1:
                column.append(None)
        self._snapshot = self._render()  # one reference swap: the HTTP thread reads whole snapshots

    def _panels(self, scope: str) -> list[dict[str, Any]]:
        return [
            {"title": p["title"], "unit": p["unit"], "series": {label: self.columns[(scope, i, label)] for label in p["labels"]}}
            for i, p in enumerate(self.layout.get(scope, []))
        ]

    def _render(self) -> bytes:
        data = {
            "format": LIVE_FORMAT,
            "version": LIVE_VERSION,
            "title": self.title,
            "now": round(time.monotonic() - self.started, 3),
            "t": self.t,
            "engine": self._panels("engine"),
            "families": [{"title": title, "models": models} for title, models in self.families.items()],
            "models": {model: {**info, "panels": self._panels(model)} for model, info in self.tasks.items()},
        }
        return orjson.dumps(data)

    def json(self) -> bytes:
        """The latest ``/live.json`` body (bytes, safe to read from another thread)."""
        return self._snapshot

    def serve(self, server: MetricsServer) -> None:
        """Add ``/``, ``/live.js`` and ``/live.json`` to a :class:`~regretflow.engine.observability.metrics.MetricsServer`."""
        page, script = static_file("live.html"), static_file("live.js")
        server.routes["/"] = lambda: (page, "text/html; charset=utf-8")
        server.routes["/live.js"] = lambda: (script, "text/javascript; charset=utf-8")
        server.routes["/live.json"] = lambda: (self.json(), "application/json")


def static_file(name: str) -> bytes:
    """A file of ``engine/static`` (shipped as package data)."""
    return resources.files("regretflow.engine").joinpath("static", name).read_bytes()


# -- start-up feedback ---------------------------------------------------------------------
def _kernel_modules(config: Config) -> list[str]:
    mods = {"regretflow.learners.ridge_kernels"}
    for spec in config.models.values():
        name = LEARNERS[spec.learner].__module__
        mods.update({name, name + "_kernels"})
    return sorted(mods)


def cold_kernel_cache(config: Config) -> bool:
    """Whether any kernel module of the config's learners has no numba cache index yet."""
    from numba.core import config as numba_config

    cache_dir: str = getattr(numba_config, "CACHE_DIR", "")  # set at import from NUMBA_CACHE_DIR, invisible to a type checker

    for name in _kernel_modules(config):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        source = Path(spec.origin)
        if "@njit" not in source.read_text(errors="ignore") and "njit(" not in source.read_text(errors="ignore"):
            continue
        places = [Path(cache_dir)] if cache_dir else [source.parent / "__pycache__"]  # numba uses one or the other
        if not any(list(p.rglob(f"{source.stem}.*.nbi")) for p in places if p.is_dir()):
            return True
    return False


@contextlib.contextmanager
def announce_compile(config: Config, stream: TextIO | None = None) -> Iterator[None]:
    """Around the engine's warm-up: on a cold numba cache, say so, and how long it took."""
    stream = stream or sys.stderr
    cold = cold_kernel_cache(config)
    started = time.monotonic()
    if cold:
        print("compiling kernels (first run only)…", file=stream, flush=True)
    yield
    if cold:
        print(f"kernels compiled in {time.monotonic() - started:.1f} s (cached for the next runs)", file=stream, flush=True)
