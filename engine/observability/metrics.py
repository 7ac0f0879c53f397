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
import ipaddress
import math
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Self, cast

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

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

    >>> health = HealthState(stall_seconds=60.0)
    >>> health.ready, health.detail
    (False, 'starting')
    """

    def __init__(self, stall_seconds: float = 120.0) -> None:
        self.ready = False
        self.stall_seconds = stall_seconds
        self.heartbeat = time.monotonic()
        self.detail = "starting"

    def beat(self) -> None:
        self.heartbeat = time.monotonic()


class MetricsServer:
    """HTTP endpoint: /metrics (Prometheus text), /healthz, /readyz and any added ``routes``.

    One thread runs a non-blocking event loop, so what a connection costs is a socket and
    a small buffer, never a thread: at most ``max_connections`` are open (past it the
    oldest one still sending its request is closed to make room, so a polite client gets
    in while slow ones hold the rest), each has ``request_timeout`` seconds from its
    accept to send its request and take the answer (idle and slowloris clients are
    closed), and a request's headers may be at most 16 KiB. ``/metrics`` is rendered at
    most once per ``exposition_max_age`` seconds and served from that copy, so a flood
    of scrapes cannot slow learning. GET and HEAD; one request per connection. Bound to
    a loopback address, a request whose Host header is not a loopback name is refused
    with 421 (DNS rebinding: a web page cannot read the live page through its own name).

    Examples
    --------
    >>> import urllib.request
    >>> server = MetricsServer(Metrics(["demo"], {"demo": ["all"]}), HealthState(), "127.0.0.1", 0).start()
    >>> with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as r:
    ...     r.status, r.read()
    (200, b'ok\\n')
    >>> server.stop()
    """

    MAX_HEADER_BYTES = 16 * 1024
    ROUND_PAUSE = 0.002  # shortest pause after a busy round (work then gathers, the engine runs)
    SHARE = 0.15  # most of the interpreter's time the server takes under load
    MAX_PAUSE = 0.02  # longest pause: a rare long round (a sweep closing hundreds of sockets) must not stall scrapes
    LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

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
        # further GET routes (path -> callable returning (body, content type)): the live page adds /, /live.js, /live.json
        self.routes: dict[str, Callable[[], tuple[bytes, str]]] = {}
        if max_connections is None:  # leave the process file descriptors for its own files
            max_connections = min(1024, max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2))
        self.max_connections, self.request_timeout, self.exposition_max_age = max_connections, request_timeout, exposition_max_age
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=backlog)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.host = host
        self._loopback = _is_loopback(host)
        self._allowed_hosts = self.LOOPBACK_NAMES | {host.lower(), f"[{host.lower()}]"}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._conns: dict[socket.socket, _Connection] = {}
        self._stopping = False
        self._next_sweep = 0.0
        self._render_seconds = 0.0
        self._exposition = b""
        self._exposition_at = -math.inf
        self.expositions_rendered = 0  # how often /metrics was rendered (the cache's effect is visible in tests)
        self.thread = threading.Thread(target=self._serve, name="regretflow-metrics", daemon=True)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        for sock in list(self._conns):
            self._close(sock)
        self._selector.close()
        self._listener.close()

    # -- the loop ------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopping:
            ready = self._selector.select(timeout=0.1)
            started = time.thread_time()  # this thread's CPU time: waiting for the interpreter is not work
            for key, events in ready:
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                    continue
                if sock not in self._conns:  # closed earlier in this round (evicted to make room)
                    continue
                self._try(self._read if events & selectors.EVENT_READ else self._write, sock)
            now = time.monotonic()
            if now >= self._next_sweep:
                self._next_sweep = now + 0.05
                for sock, conn in list(self._conns.items()):
                    if now > conn.deadline:
                        self._close(sock)
            if ready:
                # a duty cycle: after a round that took w seconds, pause so that serving uses at most
                # SHARE of the interpreter; a flood then waits in the backlog, and learning goes on
                worked = time.thread_time() - started - self._render_seconds  # a render is bounded by its interval already
                self._render_seconds = 0.0
                time.sleep(min(self.MAX_PAUSE, max(self.ROUND_PAUSE, worked * (1 - self.SHARE) / self.SHARE)))

    def _accept(self) -> None:
        # a bounded number per round, so the requests of those accepted are read before a burst
        # of newer connections could evict them
        for _ in range(32):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: the backlog holds the client until next time
                return
            if len(self._conns) >= self.max_connections:
                # full: drop the oldest connection that has not finished its request
                waiting = [(c.deadline, s) for s, c in self._conns.items() if c.out is None]
                if not waiting:
                    sock.close()
                    continue
                self._close(min(waiting, key=lambda x: x[0])[1])
            sock.setblocking(False)
            self._conns[sock] = _Connection(time.monotonic() + self.request_timeout)
            self._selector.register(sock, selectors.EVENT_READ, None)
            self._try(self._read, sock)  # a polite client's request is usually there already: answer in this round

    def _try(self, step: Callable[[socket.socket], None], sock: socket.socket) -> None:
        try:
            step(sock)
        except (BlockingIOError, InterruptedError):
            pass
        except Exception:  # noqa: BLE001 - a reset or broken client ends its connection, never the loop
            self._close(sock)

    def _read(self, sock: socket.socket) -> None:
        conn = self._conns[sock]
        data = sock.recv(8192)
        if not data:
            self._close(sock)
            return
        conn.inbox += data
        end = conn.inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.inbox) > self.MAX_HEADER_BYTES:
                self._respond(sock, conn, 431, b"request headers too large\n", "text/plain", head=False)
            return
        if end > self.MAX_HEADER_BYTES:
            self._respond(sock, conn, 431, b"request headers too large\n", "text/plain", head=False)
            return
        self._handle(sock, conn, bytes(conn.inbox[:end]))

    def _write(self, sock: socket.socket) -> None:
        conn = self._conns[sock]
        assert conn.out is not None  # a connection waits for writability only once _respond has set its answer
        sent = sock.send(conn.out)
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        if self._conns.pop(sock, None) is not None:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        sock.close()

    # -- requests ------------------------------------------------------------------------
    def _handle(self, sock: socket.socket, conn: _Connection, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._respond(sock, conn, 400, b"bad request\n", "text/plain", head=False)
            return
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            self._respond(sock, conn, 405, b"only GET and HEAD\n", "text/plain", head=False, extra="Allow: GET, HEAD\r\n")
            return
        is_head = method == "HEAD"
        if self._loopback and "host" in headers and _host_name(headers["host"]) not in self._allowed_hosts:
            self._respond(sock, conn, 421, b"this server answers to its loopback address or localhost only\n", "text/plain", head=is_head)
            return
        try:
            status, body, ctype = self._route(target.split("?", 1)[0])
        except Exception:  # noqa: BLE001 - a failing route is that request's 500, never the server's end
            status, body, ctype = 500, b"internal error\n", "text/plain"
        self._respond(sock, conn, status, body, ctype, head=is_head)

    def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/metrics":
            return 200, self.exposition(), "text/plain; version=0.0.4; charset=utf-8"
        if path == "/healthz":
            stalled = time.monotonic() - self.health.heartbeat > self.health.stall_seconds
            return (503 if stalled else 200), (b"stalled\n" if stalled else b"ok\n"), "text/plain"
        if path == "/readyz":
            ok = self.health.ready
            return (200 if ok else 503), (b"ready\n" if ok else f"not ready: {self.health.detail}\n".encode()), "text/plain"
        if path in self.routes:
            body, ctype = self.routes[path]()
            return 200, body, ctype
        return 404, b"not found: try / (live page), /live.json, /metrics, /healthz or /readyz\n", "text/plain"

    def exposition(self) -> bytes:
        """The Prometheus text, rendered at most once per ``exposition_max_age`` seconds."""
        now = time.monotonic()
        if now - self._exposition_at >= self.exposition_max_age:
            cpu = time.thread_time()
            self._exposition = self.metrics.exposition()
            self._exposition_at = now
            self._render_seconds += time.thread_time() - cpu
            self.expositions_rendered += 1
        return self._exposition

    def _respond(self, sock: socket.socket, conn: _Connection, status: int, body: bytes, ctype: str, head: bool, extra: str = "") -> None:
        reason = HTTP_REASONS.get(status, "")
        header = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n"
        ).encode("latin-1")
        conn.out = memoryview(header if head else header + body)
        self._selector.modify(sock, selectors.EVENT_WRITE, None)
        self._try(self._write, sock)  # most answers fit the socket's buffer at once


HTTP_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Connection:
    """One client: its deadline, the request bytes so far, the answer still to send."""

    __slots__ = ("deadline", "inbox", "out")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.inbox = bytearray()
        self.out: memoryview | None = None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _host_name(value: str) -> str:
    """The name of a Host header value, without its port ("[::1]:9108" -> "[::1]")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value
