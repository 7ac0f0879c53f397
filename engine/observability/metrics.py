"""Prometheus metrics and the health endpoints.

Every metric is prefixed ``regretflow_`` and labelled only by names the config
declares (models, groups, actions up to ``n_actions``), by fixed sets (kinds,
dead-letter reasons, policies), or by names from events bounded per model (class
labels and auditor names: at most 64 each, the rest as ``_other_``). The runtime updates them once per micro-batch; the
docs/metrics.md lists each one.

>>> m = Metrics(["demo"], {"demo": ["all"]})
>>> m.events.labels(model="demo", kind="observe").inc(3)
>>> b"regretflow_events_total" in m.exposition()
True
"""

from __future__ import annotations

import bisect
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Self, cast

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from regretflow.engine.observability import http_server
from regretflow.engine.runtime.dead_letters import REASONS
from regretflow.engine.runtime.events import KINDS

LATENCY_BUCKETS = (
    1e-6,
    2.5e-6,
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    5e-2,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
UNKNOWN_MODEL = "_unknown_"

log = logging.getLogger("regretflow")


class _BoundCounter(Counter):
    """A labelled Counter that keeps the child of each label combination it was asked for.

    ``labels()`` checks and normalises its arguments on every call (~4 µs); the runtime asks for
    the same few children every micro-batch, and a closed loop's micro-batch holds one event.
    """

    _bound: dict[tuple[Any, ...], Counter]

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Self:
        key = labelvalues or tuple(labelkwargs.items())
        bound = self.__dict__.setdefault("_bound", {})
        child = bound.get(key)
        if child is None:
            child = bound[key] = super().labels(*labelvalues, **labelkwargs)
        return cast(Self, child)

    def remove(self, *labelvalues: Any) -> None:
        self.__dict__.pop("_bound", None)
        super().remove(*labelvalues)

    def clear(self) -> None:
        self.__dict__.pop("_bound", None)
        super().clear()


class WeightedHistogram:
    """A histogram that takes many equal observations at once (a batch's events share one latency).

    >>> h = WeightedHistogram("regretflow_demo_seconds", "A demo.")
    >>> h.observe(0.003, count=4)
    >>> [(s.name, s.value) for f in h.collect() for s in f.samples if not s.name.endswith("_bucket")]
    [('regretflow_demo_seconds_count', 4), ('regretflow_demo_seconds_sum', 0.012)]
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.array(buckets, dtype=np.float64)
        self._bounds = [float(b) for b in buckets]
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float, count: int = 1) -> None:
        i = bisect.bisect_left(self._bounds, value)  # numpy's searchsorted (side="left") for one value, at a tenth of its cost
        with self._lock:
            self.counts[i] += count
            self.sum += value * count

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self.counts)
            total = self.sum
        buckets = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cumulative[:-1])]
        buckets.append(("+Inf", int(cumulative[-1])))
        family = HistogramMetricFamily(self.name, self.documentation, unit="seconds")
        family.add_metric([], buckets, total)
        yield family

    def describe(self) -> list[Metric]:
        return []


class _Callback:
    """Gauges computed at scrape time (checkpoint age, seconds since the last batch)."""

    def __init__(self, name: str, documentation: str, fn: Callable[[], float | None]) -> None:
        self.name, self.documentation, self.fn = name, documentation, fn

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        value = self.fn()
        if value is not None:
            family.add_metric([], value)
        yield family

    def describe(self) -> list[Metric]:
        return []


class OffsetResetCollector:
    """``regretflow_source_offset_resets_total{topic,partition,action}``, read at scrape time from
    ``counts``: a source's own ``{(topic, partition, action): n}`` (a Kafka source's ``offset_resets``).

    >>> c = OffsetResetCollector()
    >>> c.counts = {("events", "0", "earliest"): 1}
    >>> [(s.labels["action"], s.value) for f in c.collect() for s in f.samples if s.name.endswith("_total")]
    [('earliest', 1)]
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "regretflow_source_offset_resets",
            "Source positions found outside their partition's log "
            "(topic recreated, offset out of range), by the action source.on_offset_reset took.",
            labels=["topic", "partition", "action"],
        )
        for (topic, partition, action), count in list(self.counts.items()):
            family.add_metric([topic, partition, action], count)
        yield family

    def describe(self) -> list[Metric]:
        return []


class ExportedMonitor(Protocol):
    """What :class:`MonitorCollector` reads of a simulator monitor (e.g.
    :class:`~regretflow.engine.evaluation.fairness_lp.FairnessMonitor`): ``GAUGES`` (name -> help)
    and their values; optionally ``AUDITOR_GAUGES`` (name -> help) whose values
    ``auditor_gauges`` gives per auditor.

    Examples
    --------
    >>> class Rounds:
    ...     GAUGES = {"rounds": "Rounds played."}
    ...     def gauges(self) -> dict[str, float]:
    ...         return {"rounds": 3.0}
    ...     def auditor_gauges(self) -> dict[str, dict[str, float]]:
    ...         return {}
    >>> monitor: ExportedMonitor = Rounds()
    >>> [(s.name, s.value) for f in MonitorCollector("demo", monitor).collect() for s in f.samples]
    [('regretflow_simulator_rounds', 3.0)]
    """

    @property
    def GAUGES(self) -> Mapping[str, str]: ...

    def gauges(self) -> Mapping[str, float]: ...

    def auditor_gauges(self) -> Mapping[str, Mapping[str, float]]: ...


class MonitorCollector:
    """A simulator monitor's figures as ``regretflow_simulator_*`` gauges, read at scrape time.

    The monitor (e.g. :class:`~regretflow.engine.evaluation.fairness_lp.FairnessMonitor`) declares
    ``GAUGES`` (per model) and ``AUDITOR_GAUGES`` (per model and auditor) with their help.
    """

    def __init__(self, model: str, monitor: ExportedMonitor) -> None:
        self.model = model
        self.monitor = monitor

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        values: Mapping[str, float] = self.monitor.gauges() if with_samples else {}
        for name, text in self.monitor.GAUGES.items():
            family = GaugeMetricFamily(f"regretflow_simulator_{name}", text, labels=["model"])
            if with_samples:
                family.add_metric([self.model], values[name])
            yield family
        per_auditor: Mapping[str, Mapping[str, float]] = self.monitor.auditor_gauges() if with_samples else {}
        auditor_gauges: Mapping[str, str] = getattr(self.monitor, "AUDITOR_GAUGES", {})  # optional: not every monitor has auditors
        for name, text in auditor_gauges.items():
            family = GaugeMetricFamily(f"regretflow_simulator_auditor_{name}", text, labels=["model", "auditor"])
            for auditor, figures in per_auditor.items():
                family.add_metric([self.model, auditor], figures[name])
            yield family

    def collect(self) -> Iterator[Metric]:
        yield from self._families(True)

    def describe(self) -> Iterator[Metric]:
        yield from self._families(False)


class Metrics:
    """All metric objects of one engine process, on their own registry."""

    def __init__(
        self,
        models: list[str],
        groups: dict[str, list[str]],
        learner_gauges: dict[str, str] | None = None,
        learner_group_gauges: dict[str, str] | None = None,
    ) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.models = models
        self.events = _BoundCounter("regretflow_events", "Valid events processed, by model and kind.", ["model", "kind"], registry=r)
        self.dead_letters = _BoundCounter(
            "regretflow_dead_letters",
            "Events dead-lettered, by model (_unknown_ when undeclared) and reason.",
            ["model", "reason"],
            registry=r,
        )
        self.answers = _BoundCounter("regretflow_answers", "Answers emitted, by model and kind.", ["model", "kind"], registry=r)
        self.batches = Counter("regretflow_batches", "Micro-batches processed.", registry=r)
        self.latency = WeightedHistogram(
            "regretflow_event_latency_seconds", "Time from an event's micro-batch arriving to its answer being handed to the sink."
        )
        r.register(self.latency)
        self.batch_duration = WeightedHistogram("regretflow_batch_duration_seconds", "Wall time to process one micro-batch.")
        r.register(self.batch_duration)
        self.model_version = Gauge(
            "regretflow_model_version", "Learner updates applied so far (the model version in answers).", ["model"], registry=r
        )
        self.regret = Gauge(
            "regretflow_regret",
            "Cumulative regret against the best fixed linear predictor in hindsight on the group's rows (squared loss).",
            ["model", "group"],
            registry=r,
        )
        self.cumulative_loss = Gauge(
            "regretflow_cumulative_loss", "Cumulative squared loss of the learner on the group's rows.", ["model", "group"], registry=r
        )
        self.comparator_loss = Gauge(
            "regretflow_comparator_loss",
            "Squared loss of the best fixed linear predictor in hindsight on the group's rows.",
            ["model", "group"],
            registry=r,
        )
        self.group_rounds = Gauge(
            "regretflow_group_rounds", "Labelled rounds seen for the group (restored from checkpoints).", ["model", "group"], registry=r
        )
        self.mean_loss = Gauge("regretflow_mean_loss", "Cumulative loss divided by rounds, per group.", ["model", "group"], registry=r)
        self.cumulative_reward = Gauge("regretflow_cumulative_reward", "Sum of joined rewards of a bandit model.", ["model"], registry=r)
        self.feedback_rounds = Gauge(
            "regretflow_feedback_rounds", "Joined bandit feedbacks (restored from checkpoints).", ["model"], registry=r
        )
        self.pseudo_regret = Gauge(
            "regretflow_pseudo_regret",
            "Exact pseudo-regret (max expected reward minus the chosen action's), when the source supplies expected rewards.",
            ["model"],
            registry=r,
        )
        self.expected_pseudo_regret = Gauge(
            "regretflow_pseudo_regret_expected",
            "Pseudo-regret in expectation over each decision's own probabilities (max expected reward minus p . expected rewards).",
            ["model"],
            registry=r,
        )
        self.policy_value = Gauge(
            "regretflow_policy_value",
            "Off-policy estimate of a reference policy's mean reward (uniform, best_constant, greedy) by IPS, SNIPS or doubly-robust (dr) from logged propensities.",
            ["model", "policy", "estimator"],
            registry=r,
        )
        self.policy_value_low = Gauge(
            "regretflow_policy_value_low",
            "Lower end of the 95% interval of regretflow_policy_value.",
            ["model", "policy", "estimator"],
            registry=r,
        )
        self.policy_value_high = Gauge(
            "regretflow_policy_value_high",
            "Upper end of the 95% interval of regretflow_policy_value.",
            ["model", "policy", "estimator"],
            registry=r,
        )
        self.regret_vs_best_constant = Gauge(
            "regretflow_regret_vs_best_constant",
            "Estimated regret against the best constant action (SNIPS value times rounds minus observed reward).",
            ["model"],
            registry=r,
        )
        self.class_accuracy = Gauge(
            "regretflow_class_accuracy",
            "Prequential accuracy on the rows of each class (at most 64 class labels; later ones count as _other_).",
            ["model", "class"],
            registry=r,
        )
        self.class_rounds = Gauge("regretflow_class_rounds", "Labelled rows of each class.", ["model", "class"], registry=r)
        self.accuracy = Gauge(
            "regretflow_accuracy", "Prequential accuracy of a classification model on the group's rows.", ["model", "group"], registry=r
        )
        self.auditor_reported_pairs = Gauge(
            "regretflow_fair_auditor_reported_pairs",
            "Fair models, audits that name their auditors: distinct pairs each auditor reported (at most 64 names per model, later ones as _other_).",
            ["model", "auditor"],
            registry=r,
        )
        self.auditor_panels = Gauge(
            "regretflow_fair_auditor_panels",
            "Fair models, audits that name their auditors: panels each auditor sat on.",
            ["model", "auditor"],
            registry=r,
        )
        self.pending_joins = Gauge("regretflow_pending_joins", "Requests waiting for feedback.", ["model"], registry=r)
        self.joins_expired = Counter(
            "regretflow_joins_expired", "Requests whose feedback window closed without feedback.", ["model"], registry=r
        )
        self.joins_evicted = Counter(
            "regretflow_joins_evicted", "Requests dropped because the join store was full (joins.max_pending).", ["model"], registry=r
        )
        self.quarantines = Counter(
            "regretflow_quarantines",
            "Shards quarantined: their state went non-finite or their learner raised mid-update; the last good state was put back and their events are dead-lettered as model_unhealthy until a restart.",
            ["model"],
            registry=r,
        )
        self.quarantined_shards = Gauge(
            "regretflow_quarantined_shards",
            "Shards of the model that are quarantined now (they neither learn nor answer).",
            ["model"],
            registry=r,
        )
        self.checkpoints = Counter("regretflow_checkpoints", "Checkpoints written.", registry=r)
        self.checkpoint_duration = Gauge("regretflow_checkpoint_duration_seconds", "Wall time of the last checkpoint write.", registry=r)
        self.last_checkpoint = 0.0
        r.register(
            _Callback(
                "regretflow_checkpoint_age_seconds",
                "Seconds since the last checkpoint was written (absent before the first).",
                lambda: time.time() - self.last_checkpoint if self.last_checkpoint else None,
            )
        )
        self.last_batch = 0.0
        r.register(
            _Callback(
                "regretflow_seconds_since_last_batch",
                "Seconds since the last micro-batch finished (absent before the first).",
                lambda: time.time() - self.last_batch if self.last_batch else None,
            )
        )
        self.rebalances = Counter("regretflow_rebalances", "Partition assignments received from the consumer group.", registry=r)
        self.partitions_lost = Counter(
            "regretflow_partitions_lost",
            "Partitions dropped unwritten because the group evicted this worker (it stalled past the session timeout).",
            registry=r,
        )
        self.owned_partitions = Gauge("regretflow_owned_partitions", "Source partitions this worker owns now.", registry=r)
        self.consumer_lag = Gauge(
            "regretflow_consumer_lag",
            "Records between this worker's position and the end of the partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.partition_events = Gauge(
            "regretflow_partition_events",
            "Events applied to the state of each partition this worker owns (restored from checkpoints).",
            ["topic", "partition"],
            registry=r,
        )
        self.source_errors = Counter(
            "regretflow_source_errors", "Errors talking to the source (broker unreachable, failed commits).", registry=r
        )
        self.source_up = Gauge(
            "regretflow_source_up", "1 while the source answers, 0 after a failed poll, commit or lag query.", registry=r
        )
        self.source_up.set(1)
        self.offset_resets = OffsetResetCollector()  # the engine points it at a Kafka source's counts
        r.register(self.offset_resets)
        self.sink_records = _BoundCounter(
            "regretflow_sink_records", "Records handed to the sinks (answers, dead_letters).", ["sink"], registry=r
        )
        # both series exist from the start, at 0 (a rate over them needs that); the loop counts into them every batch
        self.answers_sent = self.sink_records.labels("answers")
        self.dead_letters_sent = self.sink_records.labels("dead_letters")
        self.learner_gauges = {
            name: Gauge(f"regretflow_learner_{name}", text, ["model"], registry=r) for name, text in (learner_gauges or {}).items()
        }
        # a per-group figure whose name is also a per-model one is exported as <name>_by_group
        self.learner_group_gauges = {
            name: Gauge(
                f"regretflow_learner_{name}{'_by_group' if name in self.learner_gauges else ''}", text, ["model", "group"], registry=r
            )
            for name, text in (learner_group_gauges or {}).items()
        }
        info = Gauge("regretflow_build_info", "Constant 1, labelled with the regretflow version.", ["version"], registry=r)
        info.labels(version=_version()).set(1)
        # materialise every bounded label combination so dashboards see zeros, not gaps
        for model in models:
            for kind in KINDS:
                self.events.labels(model=model, kind=kind)
                self.answers.labels(model=model, kind=kind)
            for reason in REASONS:
                self.dead_letters.labels(model=model, reason=reason)
            for group in groups.get(model, []):
                self.regret.labels(model=model, group=group)
            for per_model in (self.joins_expired, self.joins_evicted, self.quarantines, self.quarantined_shards):
                per_model.labels(model=model)
        for reason in REASONS:
            self.dead_letters.labels(model=UNKNOWN_MODEL, reason=reason)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("regretflow")
    except Exception:
        return "unknown"


class HealthState:
    """What /healthz and /readyz report: alive while batches keep finishing, ready once started.

    Setting ``ready`` or ``detail`` to a new value calls ``on_change`` (the metrics server
    passes it on to its process at once); the heartbeat goes with its next tick.

    >>> health = HealthState(stall_seconds=60.0)
    >>> health.ready, health.detail
    (False, 'starting')
    """

    def __init__(self, stall_seconds: float = 120.0) -> None:
        self.on_change: Callable[[], None] | None = None
        self._ready = False
        self._detail = "starting"
        self.stall_seconds = stall_seconds
        self.heartbeat = time.monotonic()

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        if value != self._ready:
            self._ready = value
            self._changed()

    @property
    def detail(self) -> str:
        return self._detail

    @detail.setter
    def detail(self, value: str) -> None:
        if value != self._detail:
            self._detail = value
            self._changed()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class MetricsServer:
    """HTTP endpoint: /metrics (Prometheus text), /healthz, /readyz and any added ``routes``,
    answered by a child process so that no client can slow learning.

    The listening socket is bound here (a taken port raises :class:`OSError` from the
    constructor), then handed to a child process that runs
    :class:`~regretflow.engine.observability.http_server.HttpServer` and imports nothing but
    the standard library: connection cap, per-connection timeout, header limit, HEAD, the
    Host check and the listen backlog are that class's. This process keeps one publisher
    thread, which sleeps until the child asks for a copy or readiness changes: ``/metrics``
    is rendered when the child's copy is older than ``exposition_max_age`` seconds and a
    client waits for it (however many clients, at most once per interval), a route of
    ``routes`` (path -> callable returning ``(body, content type)``; the live page adds
    ``/``, ``/live.js`` and ``/live.json``) is called the same way, on the publisher thread;
    readiness and its reason go to the child as they change, the heartbeat every
    ``TICK`` seconds. A route takes no query and must be cheap and safe to call from another
    thread; an exception in it is that request's 500.

    The child ends when :meth:`stop` closes its control socket or when this process dies
    (kill -9 included: the kernel closes the socket and the child reads EOF); if the child
    dies first, the publisher starts another on the same listening socket.

    Examples
    --------
    >>> import urllib.request
    >>> server = MetricsServer(Metrics(["demo"], {"demo": ["all"]}), HealthState(), "127.0.0.1", 0).start()
    >>> with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as r:
    ...     r.status, r.read()
    (200, b'ok\\n')
    >>> server.stop()
    """

    TICK = 0.25  # seconds between two heartbeats sent to the child
    CHILD_NICE = 0
    CHILD_SHARE: float | None = None
    EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(
        self,
        metrics: Metrics,
        health: HealthState,
        host: str = "127.0.0.1",
        port: int = 9108,
        max_connections: int | None = None,
        request_timeout: float = 5.0,
        exposition_max_age: float = 0.1,
        backlog: int = 1024,
    ) -> None:
        self.metrics, self.health = metrics, health
        self.routes: dict[str, Callable[[], tuple[bytes, str]]] = _Routes(self._send_routes)
        self._send_lock = threading.Lock()
        self.max_connections, self.request_timeout, self.exposition_max_age = max_connections, request_timeout, exposition_max_age
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=backlog)
        self.port = self._listener.getsockname()[1]
        self.host = host
        self.child: subprocess.Popen[bytes] | None = None
        self.children_started = 0
        self.expositions_rendered = 0  # how often /metrics was rendered (the cache's effect is visible in tests)
        self._control: socket.socket | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self._stopping = False
        self._asked = bytearray()
        self._sent_bodies: dict[str, bytes] = {}
        self._sent_health: tuple[bool, str, float, float] | None = None
        self._sent_routes: list[str] | None = None
        self.thread = threading.Thread(target=self._publish, name="regretflow-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._spawn()
        self.health.on_change = self._wake
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop the publisher and the child (it answers what it holds until then), close the port."""
        self._stopping = True
        self.health.on_change = None
        self._wake()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        if self._control is not None:
            self._control.close()  # the child reads EOF and ends
        if self.child is not None:
            try:
                self.child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def publish_health(self) -> None:
        """Send the health state to the child now, from the caller's thread (the publisher sends a change
        soon after it, asynchronously): a client that connects after this call sees it."""
        if self._control is not None and not self._stopping:
            self._send(b"", with_health=True)

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"!")
        except OSError:  # full (a wake is pending anyway) or closed (stopping)
            pass

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        listen_fd, control_fd = self._listener.fileno(), theirs.fileno()
        command = [
            sys.executable,
            "-I",  # isolated and without site-packages: the standard library and the server's own file only
            "-S",
            http_server.__file__,
            *("--listen-fd", str(listen_fd), "--control-fd", str(control_fd), "--host", self.host),
            *("--request-timeout", repr(self.request_timeout), "--max-age", repr(self.exposition_max_age)),
            *(("--max-connections", str(self.max_connections)) if self.max_connections is not None else ()),
            *(("--share", repr(self.CHILD_SHARE)) if self.CHILD_SHARE is not None else ()),
            *(("--nice", str(self.CHILD_NICE)) if self.CHILD_NICE else ()),
        ]
        try:
            self.child = subprocess.Popen(command, pass_fds=(listen_fd, control_fd), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        ours.settimeout(30)
        try:
            up = ours.recv(1) == b"\n"
        except TimeoutError:
            up = False
        if not up:
            ours.close()
            self.child.kill()
            raise RuntimeError("the metrics server's process did not start (its error is above)")
        ours.settimeout(None)
        self._control = ours
        self.children_started += 1
        self._asked.clear()
        self._sent_bodies.clear()  # a new child holds no copies
        self._sent_health = self._sent_routes = None

    # -- the publisher ---------------------------------------------------------------------
    def _publish(self) -> None:
        while not self._stopping:
            control = self._control
            assert control is not None  # set by start() before this thread runs
            readable, _, _ = select.select([control, self._wake_reader], [], [], self.TICK)
            if self._wake_reader in readable:
                self._wake_reader.recv(4096)
            if self._stopping:
                return
            wanted: list[str] = []
            if control in readable:
                data = control.recv(65536)
                if not data:
                    self._replace_child()
                    continue
                self._asked += data
                *lines, rest = self._asked.split(b"\n")
                self._asked = bytearray(rest)
                wanted = list(dict.fromkeys(line.decode("utf-8", "replace") for line in lines if line))
            self._send(b"".join(self._document(path) for path in wanted), with_health=True)

    def _send(self, out: bytes, with_health: bool = False) -> None:
        with self._send_lock:  # (what was sent is remembered under it too: two threads send)
            out = self._routes_frame() + (self._health_frame() if with_health else b"") + out
            if out and self._control is not None:
                try:
                    self._control.sendall(out)
                except OSError:  # the child is gone: the publisher reads its EOF next
                    pass

    def _send_routes(self) -> None:
        # from the thread adding a route, at once: a client that asks right after is served it
        if self._control is not None and not self._stopping:
            self._send(b"")

    def _replace_child(self) -> None:
        assert self.child is not None and self._control is not None
        self._control.close()
        rc = self.child.wait()
        log.error("event=metrics_server_died rc=%s action=restart", rc)
        time.sleep(1.0)  # a child that dies at once must not spin
        if not self._stopping:
            self._spawn()

    def _health_frame(self) -> bytes:
        h = self.health
        state = (h.ready, h.detail, h.stall_seconds, h.heartbeat)
        if state == self._sent_health:
            return b""
        self._sent_health = state
        return http_server.frame(b"H", http_server.health(h.ready, h.stall_seconds, time.monotonic() - h.heartbeat, h.detail))

    def _routes_frame(self) -> bytes:
        paths = sorted(self.routes)
        if paths == self._sent_routes:
            return b""
        self._sent_routes = paths
        return http_server.frame(b"P", "\n".join(paths).encode())

    def _document(self, path: str) -> bytes:
        if path == "/metrics":
            self.expositions_rendered += 1
            return http_server.frame(b"D", http_server.document(200, path, self.EXPOSITION_TYPE, self.metrics.exposition()))
        route = self.routes.get(path)
        if route is None:  # asked for a route the child still knew
            return http_server.frame(b"D", http_server.document(404, path, "text/plain", http_server.NOT_FOUND))
        try:
            body, ctype = route()
        except Exception as exc:  # noqa: BLE001 - a failing route is that request's 500, never the publisher's end
            log.warning("event=route_failed path=%s error=%r", path, f"{type(exc).__name__}: {exc}"[:300])
            return http_server.frame(b"D", http_server.document(500, path, "text/plain", b"internal error\n"))
        if self._sent_bodies.get(path) is body:  # the same object again (a static file, an unchanged snapshot)
            return http_server.frame(b"S", path.encode())
        self._sent_bodies[path] = body
        return http_server.frame(b"D", http_server.document(200, path, ctype, body))


class _Routes(dict[str, Callable[[], tuple[bytes, str]]]):
    """The routes of a :class:`MetricsServer`: adding one tells the server's process at once."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__()
        self.on_change = on_change

    def __setitem__(self, path: str, route: Callable[[], tuple[bytes, str]]) -> None:
        super().__setitem__(path, route)
        self.on_change()
