"""``regretflow demo``: the embedded default, no broker and no config needed.

One model of every family runs side by side, interleaved in one engine, on bundled
real data or the bundled simulators:

=================  ===========================================  ======================================
family             models                                       stream
=================  ===========================================  ======================================
groupwise          ``ridge``, ``groupwise``                     Medical costs rows (``observe``), groups on
                                                                sex, smoker, region, age and BMI bins
neural-bandit      ``segment-fastcb`` (recommended neural       image segments as a 7-action bandit
                   bandit), ``segment-linucb``                  (``decide``/``feedback``, logged propensities)
analytic-ridge     ``digits-ridge``, ``digits-ridge-pfg``       long-tailed digits (``observe``), without
                                                                and with the pseudo-feature generator
dynamical-bandit   ``ads`` (DynLin-UCB)                         the linear-dynamical advertising simulator
fair-onesided      ``adult-lending`` (fair Exp2)                the Adult simulator with its auditor panel
=================  ===========================================  ======================================

It serves ``/metrics`` and the live page (``/``, data at ``/live.json``) while it
runs, shows a progress line with the events/s of the last seconds, and ends with one
compact table per family (:func:`~regretflow.engine.observability.summary_tables.family_tables`).

>>> sorted(FAMILIES)
['analytic-ridge', 'dynamical-bandit', 'fair-onesided', 'groupwise', 'neural-bandit']
>>> demo_config(metrics=False, families=["groupwise"]).models.keys()
dict_keys(['ridge', 'groupwise'])
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import orjson

from regretflow.connectors import Position, Records
from regretflow.connectors.datasets.insurance import load_insurance
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.connectors.simulators.loop import ClassificationBanditEnv, ClosedLoopSource, FairnessEnv, LinearDynamicalEnv
from regretflow.engine.cli.daemon import fairness_monitor
from regretflow.engine.config import Config, ConfigError, parse_config
from regretflow.engine.experiments.analytic_ridge import digits_long_tail, mean_class_accuracy
from regretflow.engine.observability.live import LiveRecorder, announce_compile
from regretflow.engine.observability.metrics import MonitorCollector
from regretflow.engine.observability.summary_tables import family_tables
from regretflow.engine.runtime.loop import Engine
from regretflow.engine.tasks import shown_task

if TYPE_CHECKING:
    from regretflow.engine.evaluation.fairness_lp import FairnessMonitor
    from regretflow.engine.runtime.shard import Shard

#: One lane of the demo's :class:`InterleavedSource`: name, source, size (events of a stream, rounds of a loop).
Lane = tuple[str, MemorySource | ClosedLoopSource, int]

DEMO_GROUPS = [
    {"name": "sex", "field": "sex", "values": ["female", "male"]},
    {"name": "smoker", "field": "smoker", "values": ["yes", "no"]},
    {"name": "region", "field": "region", "values": ["northeast", "northwest", "southeast", "southwest"]},
    {"name": "age", "field": "age", "edges": [18, 36, 51, 65]},
    {"name": "bmi", "field": "bmi", "edges": [0, 18.5, 25, 30, 100]},
]

# Settings are those of each family's reproduction (``regretflow reproduce NAME``) and deploy/examples.
SEGMENT_FEATURES = [f"f{i}" for i in range(18)]
ADS_ACTIONS = [[0.0, 0.5, 1.0], [0.0, 1.0, 0.5], [0.5, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]]
ADS_BOUNDS = {
    "rho_bar": 0.6668913422955944,
    "phi_bar": 2.781214839211887,
    "omega_norm": 0.6249799996799899,
    "theta_norm": 0.4305810028322197,
    "b_norm": 0.38560618976151995,
    "noise_sigma": 0.01,
}
FAIR_FEATURES = [
    "age",
    "education-num",
    "hours-per-week",
    "capital-gain",
    "capital-loss",
    "marital-status_Married-civ-spouse",
    "sex_Male",
    "sex_Female",
    "race_White",
    "race_Black",
]

# Closed-loop rounds per pass: a simulator plays one round per micro-batch (its feedback
# depends on the engine's answer), so these set the demo's length at --rate 0.
ROUNDS_PER_PASS = {"neural-bandit": 770, "dynamical-bandit": 700, "fair-onesided": 250}

FAMILIES: dict[str, dict[str, Any]] = {
    "groupwise": {
        "title": "groupwise regret (Medical costs, squared loss)",
        "models": {
            "ridge": {"learner": "ridge", "params": {"lam": 1.0}},
            "groupwise": {"learner": "groupwise", "params": {"lam": 1.0}},
        },
    },
    "neural-bandit": {
        "title": "contextual bandits (image segments, 7 actions, reward 1 for the right class)",
        "note": "segment-linucb plays its UCB argmax with probability 0.99 (its exploration floor spreads 0.01): from its log, "
        "the off-policy values of other policies rest on few rounds and have wide intervals (the neural bandit explores more)",
        "models": {
            "segment-fastcb": {
                "learner": "neural-fastcb",
                "n_actions": 7,
                "features": SEGMENT_FEATURES,
                "params": {"width": 100, "optimizer": "adabelief", "learning_rate": 0.01, "gamma0": 10.0, "seed": 0},
                "joins": {"ttl_events": 100, "default_reward": 0.0},
            },
            "segment-linucb": {
                "learner": "linucb-disjoint",
                "n_actions": 7,
                "features": SEGMENT_FEATURES,
                "params": {"alpha": 1.0, "lam": 1.0, "seed": 0},
                "joins": {"ttl_events": 100, "default_reward": 0.0},
            },
        },
    },
    "analytic-ridge": {
        "title": "analytic ridge classifier (long-tailed digits, 10 classes)",
        "models": {
            "digits-ridge": {"learner": "analytic-ridge", "params": {"gamma": 0.1, "expansion_dim": 1024, "generator": False, "seed": 0}},
            "digits-ridge-pfg": {
                "learner": "analytic-ridge",
                "params": {"gamma": 0.1, "expansion_dim": 1024, "generator": "before_answer", "seed": 0},
            },
        },
    },
    "dynamical-bandit": {
        "title": "dynamical linear bandit (budget split over 3 ad platforms, simulator of real data)",
        "models": {
            "ads": {
                "learner": "dynlin-ucb",
                "n_actions": 6,
                "params": {
                    "actions": ADS_ACTIONS,
                    "bounds": ADS_BOUNDS,
                    "horizon": 1_000_000,
                    "lam": "log_horizon",
                    "epoch_threshold": 1e-4,
                    "seed": 0,
                },
            },
        },
    },
    "fair-onesided": {
        "title": "individually fair decisions (Adult applicants, one-sided labels, auditor panel)",
        "models": {
            "adult-lending": {
                "learner": "fair-exp2",
                "features": FAIR_FEATURES,
                "params": {
                    "gamma": 0.5,
                    "fairness_scale": 7.07,
                    "cost_bound": 2.0,
                    "group_features": {"sex=male": "sex_Male", "sex=female": "sex_Female"},
                    "seed": 0,
                },
                "groups": [{"name": "sex", "field": "sex", "values": ["male", "female"]}],
                "joins": {"ttl_events": 1000},
            },
        },
    },
}


def _families(families: list[str] | None) -> list[str]:
    chosen = list(FAMILIES) if not families else list(families)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"--family: {', '.join(unknown)} is not one of {', '.join(FAMILIES)}")
    return chosen


def fair_rounds(passes: int) -> int:
    return max(1, passes) * ROUNDS_PER_PASS["fair-onesided"]


def demo_config(
    port: int = 9108, metrics: bool = True, families: list[str] | None = None, passes: int = 3, host: str = "127.0.0.1"
) -> Config:
    """The demo's config, as a user would write it in TOML (see deploy/examples)."""
    data = load_insurance()
    models: dict[str, Any] = {}
    for family in _families(families):
        for name, spec in FAMILIES[family]["models"].items():
            spec = dict(spec)
            if family == "groupwise":
                spec.update(features=list(data.feature_names), groups=DEMO_GROUPS)
            elif family == "analytic-ridge":
                spec["features"] = [f"p{i}" for i in range(64)]
            elif family == "fair-onesided":
                spec["params"] = {**spec["params"], "horizon": fair_rounds(passes)}
            models[name] = spec
    return parse_config(
        {
            "models": models,
            "runtime": {"batch_size": 64, "batch_timeout_ms": 10.0},
            "metrics": {"enabled": metrics, "port": port, "host": host},
        }
    )


def demo_events(passes: int = 1, seed: int = 0, models: list[str] | None = None) -> list[bytes]:
    """Observe events of the Medical costs rows for the regression models, pass after pass, each pass reshuffled."""
    data = load_insurance()
    names = list(data.feature_names)
    models = models if models is not None else list(FAMILIES["groupwise"]["models"])
    models = [m for m in models if m in FAMILIES["groupwise"]["models"]]
    out: list[bytes] = []
    for p in range(passes):
        order = np.random.RandomState(seed + p).permutation(len(data))
        for i in order:
            row = data.rows[i]
            attributes = {k: row[k] for k in ("sex", "smoker", "region", "age", "bmi")}
            features = dict(zip(names, data.X[i].tolist()))
            for model in models:
                out.append(
                    orjson.dumps(
                        {
                            "id": f"{model}-{p}-{i}",
                            "model": model,
                            "kind": "observe",
                            "features": features,
                            "attributes": attributes,
                            "label": float(data.y[i]),
                        }
                    )
                )
    return out


def digits_events(passes: int = 1, seed: int = 0, models: list[str] | None = None) -> list[bytes]:
    """Observe events of the long-tailed digits stream (the analytic-ridge reproduction's), the same rows every pass.

    Its balanced held-out set (:func:`digits_held_out`) is never streamed.
    """
    models = models if models is not None else list(FAMILIES["analytic-ridge"]["models"])
    models = [m for m in models if m in FAMILIES["analytic-ridge"]["models"]]
    out: list[bytes] = []
    split = digits_long_tail(seed)
    for p in range(passes):
        for i, (row, label) in enumerate(zip(split.X.tolist(), split.y.tolist())):
            for model in models:
                out.append(
                    orjson.dumps({"id": f"{model}-{p}-{i}", "model": model, "kind": "observe", "features": row, "label": int(label)})
                )
    return out


def held_out_accuracy(engine: Engine, seed: int = 0) -> dict[str, float]:
    """Mean per-class accuracy of each analytic-ridge demo model on the digits' balanced held-out set.

    As the reproduction measures it: the generator's answer weights refreshed from the
    final state first (the held-out rows are never learned).
    """
    split = digits_long_tail(seed)
    out: dict[str, float] = {}
    shards: Callable[[], Iterable[Shard]] = engine.shards  # annotated here: runtime.loop is not typed yet
    for shard in shards():
        if shard.spec.name in FAMILIES["analytic-ridge"]["models"]:
            learner = shard.learner
            if learner.generator:
                learner.refresh_generator()
            out[shard.spec.name] = mean_class_accuracy(split.y_test, learner.predict_many(split.X_test))
    return out


class ThrottledSource(MemorySource):
    """A memory source that serves at most ``rate`` events per second (0: unlimited).

    >>> source = ThrottledSource([b"1", b"2", b"3"], rate=0.0)
    >>> source.poll(2, 0.0), source.poll(2, 0.0), source.exhausted()
    ([b'1', b'2'], [b'3'], True)
    """

    def __init__(self, payloads: Iterable[bytes], rate: float = 0.0) -> None:
        super().__init__(payloads)
        self.rate = rate
        self._start = time.monotonic()

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        if self.rate > 0:
            due = self._start + self._index / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, max(timeout, 0.001)))
            allowed = int((time.monotonic() - self._start) * self.rate) - self._index + 1
            max_records = max(1, min(max_records, allowed))
        return super().poll(max_records, timeout)


class InterleavedSource:
    """Several lanes (finite streams and closed simulator loops) as one source, progressing together.

    A closed loop plays one round per poll (its next event waits for the engine's
    answer), so the loops set the pace: at every poll each loop whose share of its
    rounds is behind the slowest's gets a round, and each stream gets the events that
    keep it at the same fraction. ``rate`` (events/s, 0: unlimited) paces the whole.

    >>> a = InterleavedSource([("a", MemorySource([b"1", b"2", b"3", b"4"]), 4)])
    >>> a.poll(2, 0.0), a.poll(8, 0.0), a.exhausted()
    ([b'1', b'2'], [b'3', b'4'], True)
    """

    partitioned = False

    def __init__(self, lanes: list[Lane], rate: float = 0.0, chunks: dict[str, int] | None = None) -> None:
        self.lanes = lanes
        self.rate = rate
        self.chunks = chunks or {}  # stream -> events released together (a learner that pays per call)
        self.emitted = 0
        self.polls = 0
        self._start = time.monotonic()
        self._loops = [(n, s, k) for n, s, k in lanes if isinstance(s, ClosedLoopSource)]
        self._streams = [(n, s, k) for n, s, k in lanes if not isinstance(s, ClosedLoopSource)]
        self._released = {n: 0 for n, _, _ in self._streams}

    def _clock(self) -> float:
        """The slowest loop's fraction of its rounds (1 when there is no loop left)."""
        fractions = [s.t / k for _, s, k in self._loops if not s.exhausted()]
        return min(fractions) if fractions else 1.0

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        if self.rate > 0:
            # pace by waiting until what was emitted is due, never by shrinking a poll: a small poll
            # would go to the loops first and starve the streams
            wait = self._start + self.emitted / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, max(timeout, 0.001)))
                if self._start + self.emitted / self.rate > time.monotonic():
                    return []
        self.polls += 1
        out: list[bytes] = []
        clock = self._clock()
        step = max((1.0 / k for _, s, k in self._loops if not s.exhausted()), default=1.0)
        for _, loop, rounds in self._loops:
            room = max_records - len(out)
            if room <= 0:
                break
            if loop.t / rounds > clock:  # ahead of the slowest: only the feedback already due, no new round
                room = min(room, len(loop.outbox))
            if room > 0:
                out += loop.poll(room, 0.0)
        target = min(1.0, clock + step)
        for name, stream, size in self._streams:
            chunk = self.chunks.get(name, 1)
            due = min(size, chunk * int(np.ceil(target * size / chunk))) - self._released[name]
            take = min(due, max_records - len(out))
            if take > 0:
                got = stream.poll(take, 0.0)
                self._released[name] += len(got)
                out += got
        self.emitted += len(out)
        return out

    def progress(self) -> dict[str, float]:
        """Per lane, the fraction done."""
        return {name: (s.t / k if isinstance(s, ClosedLoopSource) else self._released[name] / k) if k else 1.0 for name, s, k in self.lanes}

    def exhausted(self) -> bool:
        return all(s.exhausted() for _, s, _ in self.lanes)

    def position(self) -> Position:
        return {}

    def seek(self, position: Position) -> None:
        pass

    def close(self) -> None:
        for _, s, _ in self.lanes:
            s.close()


class LoopSink:
    """Hands each answer to the simulator loop of its model (answers carry a ``model`` header).

    >>> sink = LoopSink({})
    >>> sink.write([("m", b"{}", (("model", "m"),))])  # no loop plays model m: the answer is dropped
    """

    def __init__(self, loops: dict[str, ClosedLoopSource]) -> None:
        self.loops = loops

    def write(self, records: Records) -> None:
        for record in records:
            headers = dict(record[2]) if len(record) > 2 else {}
            loop = self.loops.get(headers.get("model", record[0]))
            if loop is not None:
                loop.write([record])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def build_demo(config: Config, passes: int, seed: int, rate: float) -> tuple[InterleavedSource, LoopSink, dict[str, FairnessMonitor]]:
    """The interleaved source, the answer sink and the simulator monitors of the demo's models."""
    models = set(config.models)
    lanes: list[Lane] = []
    loops: dict[str, ClosedLoopSource] = {}
    monitors: dict[str, FairnessMonitor] = {}
    passes = max(1, passes)
    for name in ("ridge", "groupwise"):
        if name in models:
            events = demo_events(passes, seed, [name])
            lanes.append((name, MemorySource(events), len(events)))
    for name in ("digits-ridge", "digits-ridge-pfg"):
        if name in models:
            events = digits_events(passes, seed, [name])
            lanes.append((name, MemorySource(events), len(events)))
    for name in ("segment-fastcb", "segment-linucb"):
        if name in models:
            rounds = passes * ROUNDS_PER_PASS["neural-bandit"]
            loops[name] = ClosedLoopSource(ClassificationBanditEnv(name, dataset="segment", seed=seed), rounds=rounds)
            lanes.append((name, loops[name], rounds))
    if "ads" in models:
        rounds = passes * ROUNDS_PER_PASS["dynamical-bandit"]
        loops["ads"] = ClosedLoopSource(LinearDynamicalEnv("ads", case="real-data", seed=seed), rounds=rounds)
        lanes.append(("ads", loops["ads"], rounds))
    if "adult-lending" in models:
        rounds = fair_rounds(passes)
        env = FairnessEnv("adult-lending", k=5, seed=seed, horizon=rounds)
        env.monitor = monitors["adult-lending"] = fairness_monitor(config, env, rounds, rounds)
        loops["adult-lending"] = ClosedLoopSource(env, rounds=rounds)
        lanes.append(("adult-lending", loops["adult-lending"], rounds))
    # the analytic ridge learns (and refreshes its generator) per call: rows in the reproduction's micro-batches of 16
    chunks = {name: 16 for name in ("digits-ridge", "digits-ridge-pfg")}
    return InterleavedSource(lanes, rate, chunks), LoopSink(loops), monitors


class Progress:
    """One status line: a bar, events/s over the last seconds and the current overall regret of each model.

    The rate is that of a sliding window (``window`` seconds), so one fast batch at the
    start does not claim a figure the run never keeps.

    >>> import io
    >>> bar = Progress(total=100, stream=io.StringIO())
    >>> bar.rate(0.0, 0), bar.rate(2.0, 50)  # no rate until the window spans a second
    (None, 25.0)
    """

    def __init__(self, total: int, stream: TextIO | None = None, every: float = 0.2, window: float = 5.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if self.tty else 2.0
        self.window = window
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.last = 0.0

    def rate(self, now: float, done: int) -> float | None:
        """Events per second over the window; ``None`` until it spans at least a second."""
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        t0, n0 = self.samples[0]
        return (done - n0) / (now - t0) if now - t0 >= 1.0 else None

    def __call__(self, engine: Engine, final: bool = False) -> None:
        now = time.monotonic()
        done = engine.events_seen
        rate = self.rate(now, done)
        if not final and now - self.last < self.every:
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        figures = []
        for model, s in engine.summaries.items():
            figure = shown_task(s.get("task")).progress_figure(model, s)
            if figure is not None:
                figures.append(figure)
        shown = f"{rate:,.0f} ev/s" if rate is not None else "… ev/s"
        line = f"[{bar}] {100 * frac:5.1f}% {done:,}/{self.total:,} events {shown}  " + "  ".join(figures[:4])
        if self.tty:
            self.stream.write("\r" + line[:200] + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_demo(
    passes: int = 3,
    rate: float = 1000.0,
    port: int = 9108,
    linger: float = 0.0,
    host: str = "127.0.0.1",
    progress: bool = True,
    as_json: bool = False,
    seed: int = 0,
    families: list[str] | None = None,
) -> dict[str, Any]:
    chosen = _families(families)
    config = demo_config(port=port, families=chosen, passes=passes, host=host)
    source, sink, monitors = build_demo(config, passes, seed, rate)
    total = sum(k * (3 if s.env.model == "adult-lending" else 2) if isinstance(s, ClosedLoopSource) else k for _, s, k in source.lanes)
    with announce_compile(config):
        engine = Engine(config, source, sink, MemorySink(), progress=None)
    for model, monitor in monitors.items():
        engine.metrics.registry.register(MonitorCollector(model, monitor))
    bar = Progress(total) if progress else None
    live = LiveRecorder(
        engine, monitors=monitors, title="regretflow demo", families={FAMILIES[f]["title"]: list(FAMILIES[f]["models"]) for f in chosen}
    )
    engine.progress = live.chain(bar)
    if engine.server is not None:
        live.serve(engine.server)
        print(
            f"regretflow demo: {', '.join(chosen)}; live page http://{engine.server.host}:{engine.server.port}/ (/metrics, /live.json)",
            file=sys.stderr,
        )
    source._start = time.monotonic()  # pace from the first poll, not from before the warm-up
    with engine.signals_handled():  # through the linger too: a SIGTERM then ends it cleanly
        engine.run()
        live.sample(force=True)
        if bar is not None:
            bar(engine, final=True)
        summary = engine.summary()
        extras = {m: mon.gauges() for m, mon in monitors.items()}
        for model, value in held_out_accuracy(engine, seed).items():
            extras[model] = {"held_out_mean_class_accuracy": value}
        if as_json:
            for model, figures in extras.items():  # what only the demo knows: simulator monitors, held-out sets
                summary[model]["simulator" if model in monitors else "held_out"] = figures
            print(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode())
        else:
            titles = {FAMILIES[f]["title"]: list(FAMILIES[f]["models"]) for f in chosen}
            notes = {FAMILIES[f]["title"]: FAMILIES[f]["note"] for f in chosen if "note" in FAMILIES[f]}
            print(family_tables(summary, titles, extras, notes))
        if linger > 0 and engine.server is not None:
            engine.health.ready = True  # still serving: a scraper keeps reading the final figures
            engine.health.detail = "lingering"
            engine.server.publish_health()  # before it says so: a scraper that reads the line then finds it ready
            print(f"serving the live page and /metrics for {linger:.0f} more seconds", file=sys.stderr)
            until = time.monotonic() + linger
            while time.monotonic() < until and not engine.stop_requested:
                time.sleep(0.1)
    engine.close()
    return summary
