"""The runtime loop: source -> micro-batches -> decode/validate -> route -> learn -> answer -> sink.

One :class:`Engine` owns a router (the shards), the decoder, the sinks, the metrics
and the checkpoints. Per micro-batch it decodes every payload, hands valid events to
their shard in order (bad ones go to the dead-letter sink with their reason), flushes
the shards' vectorised runs, writes the answers, updates the metrics once, and every
``checkpoint.every_events`` events or ``every_seconds`` seconds writes one checkpoint
holding the shards and the source position. Restarting from that checkpoint and
seeking the source there replays exactly the events after it: every event affects
the state once, even after ``kill -9``.

>>> from regretflow.engine.config import parse_config
>>> from regretflow.connectors.memory import MemorySource, MemorySink
>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["x"]}}})
>>> events = [b'{"id": "%d", "model": "m", "kind": "observe", "features": [1], "label": 2}' % i for i in range(3)]
>>> answers = MemorySink()
>>> engine = Engine(cfg, MemorySource(events), answers, MemorySink(), serve_metrics=False)
>>> engine.run()
>>> [round(__import__("orjson").loads(r[1])["prediction"], 3) for r in answers.records]
[0.0, 1.333, 1.6]
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import platform
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, cast

import numpy as np
import orjson

from regretflow.connectors import Record, Sink
from regretflow.connectors.arrow import AnswerColumns
from regretflow.connectors.files import open_private_append
from regretflow.connectors.partition_ids import split_pid
from regretflow.engine.config import Config, ModelSpec
from regretflow.engine.errors import FatalError
from regretflow.engine.evaluation import regret
from regretflow.engine.observability.metrics import UNKNOWN_MODEL, HealthState, Metrics, MetricsServer, MonitorCollector
from regretflow.engine.observability.metrics_log import metrics_log_record
from regretflow.engine.runtime.arrow_batches import (
    ArrowBlock,
    ArrowDecoder,
    ArrowRow,
    admit_block,
    answer_messages,
    expand_rows,
    run_id_column,
)
from regretflow.engine.runtime.checkpoint import (
    CheckpointError,
    CheckpointFenced,
    latest_checkpoint,
    newest_number,
    restore_checkpoint,
    write_checkpoint,
)
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event, EventDecoder, Run
from regretflow.engine.runtime.json_batches import JSON_PAYLOAD_TYPES, JsonBatchDecoder, admit_json_run
from regretflow.engine.runtime.shard import Router, Shard, dumps
from regretflow.engine.runtime.startup import broker_endpoints, connect_endpoints
from regretflow.engine.tasks import model_tasks
from regretflow.learners import LEARNERS

log = logging.getLogger("regretflow")

_dumps = orjson.dumps
CHECKPOINT_KIND = "regretflow-engine"
DEAD_RAW_BYTES = 65_536  # a dead letter's raw holds at most this many UTF-8 bytes of the payload


# glibc returns freed memory at the top of the heap to the kernel as soon as 128 KiB are free, so a
# micro-batch that builds and drops a few hundred answers (orjson allocates 1 KiB per record before it
# shrinks it) pays page faults for the same memory every batch: ~2.7 us an answer on a VM, more than the
# rest of the answer. Keeping up to this much free memory in the process removes them.
HEAP_TRIM_THRESHOLD = 64 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_TOP_PAD = -1, -2  # mallopt parameters (malloc.h)
_allocator_tuned = False


def tune_allocator() -> bool:
    """Keep freed heap memory (up to HEAP_TRIM_THRESHOLD) instead of returning it to the kernel at once; glibc only.

    >>> tune_allocator() in (True, False)
    True
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        tuned = bool(libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)) and bool(libc.mallopt(_M_TOP_PAD, 16 * 1024 * 1024))
    except (OSError, AttributeError):  # no mallopt in this C library
        return False
    _allocator_tuned = tuned
    return tuned


def _capped_raw(payload: Any) -> str:
    """The payload as text for a dead letter, at most DEAD_RAW_BYTES once encoded as UTF-8
    (a cut multi-byte character is dropped; invalid bytes become U+FFFD)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload[:DEAD_RAW_BYTES]).decode("utf-8", errors="replace")
    else:
        raw = str(payload)[:DEAD_RAW_BYTES]
    encoded = raw.encode("utf-8", errors="replace")
    if len(encoded) <= DEAD_RAW_BYTES:
        return raw
    return encoded[:DEAD_RAW_BYTES].decode("utf-8", errors="ignore")


class _BatchOutput:
    """Collects what one micro-batch produces; metrics read it once at the end.

    >>> out = _BatchOutput()
    >>> run = Run.from_columns("observe", "m", ["a", "b"], np.zeros((2, 1)), labels=[1.0, 2.0])
    >>> out.answer_run(run, [{"id": "a"}, {"id": "b"}]); out.answers[1], out.answered
    (('m', b'{"id":"b"}', (('model', 'm'), ('event_id', 'b'))), {('m', 'observe'): 2})
    """

    __slots__ = ("answers", "spans", "dead_records", "kinds", "answered", "dead_reasons", "columnar")

    def __init__(self, columnar: bool = False) -> None:
        # Arrow answers (runtime.answer_format = "arrow"): a run's answers stay columns until its message is built
        self.columnar = columnar
        self.answers: list[Record | AnswerColumns] = []
        # where each event's or run's answers start in ``answers`` (to withdraw a quarantined shard's)
        self.spans: list[tuple[int, Event | Run]] = []
        self.dead_records: list[Record] = []
        self.kinds: dict[tuple[str, str], int] = {}
        self.answered: dict[tuple[str, str], int] = {}
        self.dead_reasons: dict[tuple[str, str], int] = {}

    def answer(self, ev: Event, record: dict[str, Any]) -> None:
        if ev.key is not None:
            record["key"] = ev.key
        self.spans.append((len(self.answers), ev))
        self.answers.append((ev.key or ev.model, dumps(record), (("model", ev.model), ("event_id", ev.id))))
        k = (ev.model, ev.kind)
        self.answered[k] = self.answered.get(k, 0) + 1

    def answer_run(self, run: Run, records: list[dict[str, Any]]) -> None:
        """The answers of a run, one record per row in order: serialised in one comprehension."""
        model, option = run.model, orjson.OPT_SERIALIZE_NUMPY
        self.spans.append((len(self.answers), run))
        if run.keys is None:
            self.answers += [(model, _dumps(r, option=option), (("model", model), ("event_id", eid))) for r, eid in zip(records, run.ids)]
        else:
            for r, key in zip(records, run.keys):
                if key is not None:
                    r["key"] = key
            self.answers += [
                (key or model, _dumps(r, option=option), (("model", model), ("event_id", eid)))
                for r, eid, key in zip(records, run.ids, run.keys)
            ]
        k = (model, run.kind)
        self.answered[k] = self.answered.get(k, 0) + len(records)

    def answer_columns(self, run: Run, columns: dict[str, Any]) -> None:
        """The answers of a run as columns (field -> one value per row, or one string for every row),
        the same answers :meth:`answer_run` takes as records; kept as columns for Arrow answers."""
        if not self.columnar:
            answers = AnswerColumns(run.model, run.kind, columns, len(run))
            if run.keys is not None:  # (keyed answers carry their key last, as answer_run adds it)
                self.answer_run(run, answers.dicts())
                return
            model = run.model
            named = ("model", model)
            self.spans.append((len(self.answers), run))
            self.answers += [(model, row, (named, ("event_id", eid))) for row, eid in zip(answers.json_rows(), run.ids)]
            k = (model, run.kind)
            self.answered[k] = self.answered.get(k, 0) + len(run)
            return
        ids = run_id_column(run)  # the messages' own id column: no Python string per row
        if ids is not None:
            columns["id"] = ids
        if run.keys is not None:
            columns["key"] = run.keys
        self.spans.append((len(self.answers), run))
        self.answers.append(AnswerColumns(run.model, run.kind, columns, len(run)))
        k = (run.model, run.kind)
        self.answered[k] = self.answered.get(k, 0) + len(run)

    def records(self) -> list[Record]:
        """The answers as JSON records, one per answer (runs kept in columns are serialised here)."""
        out: list[Record] = []
        for item in self.answers:
            if type(item) is not AnswerColumns:
                out.append(cast(Record, item))
                continue
            model = item.model
            out += [(r.get("key") or model, dumps(r), (("model", model), ("event_id", r["id"]))) for r in item.records()]
        return out

    def count(self) -> int:
        """How many answers (a run in columns counts its rows)."""
        if not self.columnar:  # (every answer a record)
            return len(self.answers)
        return sum(len(a) if type(a) is AnswerColumns else 1 for a in self.answers)

    def dead(self, payload: Any, reason: str, detail: str, model: str | None, event_id: str | None = None) -> None:
        """A dead letter: the reason, a detail, the model (``_unknown_`` when not a declared
        one) and the raw payload; headers name the model, the reason and the event id when known."""
        model = model or UNKNOWN_MODEL
        raw = _capped_raw(payload)
        record = {"reason": reason, "detail": detail, "model": model, "raw": raw}
        headers: tuple[tuple[str, str], ...] = (("model", model), ("reason", reason))
        if event_id is not None:
            headers += (("event_id", event_id),)
        self.dead_records.append((model, orjson.dumps(record), headers))
        k = (model, reason)
        self.dead_reasons[k] = self.dead_reasons.get(k, 0) + 1

    def dead_event(self, ev: Event, reason: str, detail: str) -> None:
        """Dead-letter an event that had passed validation (its shard was quarantined)."""
        self.dead(ev.raw, reason, detail, ev.model, ev.id)

    def dead_run(self, run: Run, reason: str, detail: str) -> None:
        """Dead-letter every row of a run that had passed validation (its shard was quarantined)."""
        for raw, eid in zip(run.raws, run.ids):
            self.dead(raw, reason, detail, run.model, eid)

    def owners(self) -> list[tuple[str, str | None, str, str, Any]]:
        """(model, key, kind, event id, payload) of each answer, in order (the rare quarantine path)."""
        owners: list[tuple[str, str | None, str, str, Any]] = []
        for _, source in self.spans:
            if isinstance(source, Event):
                owners.append((source.model, source.key, source.kind, source.id, source.raw))
            else:
                keys = source.keys or [None] * len(source)
                owners += [(source.model, k, source.kind, i, r) for k, i, r in zip(keys, source.ids, source.raws)]
        return owners


@contextlib.contextmanager
def stop_signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGTERM and SIGINT go to ``handler`` inside the block (main thread only); the handlers found are put back
    after it, so a process that goes on (a test, a notebook, an embedding service) still stops on them."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            if old is not None:  # (None: a handler Python did not set, which it cannot put back)
                signal.signal(sig, old)


class Partition:
    """The state one source partition owns: its shards, its counters, its checkpoints.

    A file or stdin source is one partition (id ``""``); a Kafka source has one per
    topic partition the consumer group assigns to this worker. Checkpoints are per
    partition, so a partition can move to another worker with its state.
    """

    def __init__(self, pid: str, models: dict[str, ModelSpec]) -> None:
        self.pid = pid
        self.router = Router(models)
        self.events_seen = 0
        self.valid_events = 0
        self.dead_count = 0
        self.dirty = False
        self.checkpoint_number = 0
        # another worker restored this partition's directory: nothing more is written for it until it is assigned again
        self.fenced = False

    def state_dict(self, position: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "partition": self.pid,
            "position": position or {},
            "events_seen": self.events_seen,
            "valid_events": self.valid_events,
            "dead_count": self.dead_count,
            "shards": self.router.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], number: int) -> None:
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"not an engine checkpoint (kind {state.get('kind')!r})")
        self.router.load_state_dict(state.get("shards", {}))
        self.events_seen = int(state["events_seen"])
        self.valid_events = int(state["valid_events"])
        self.dead_count = int(state["dead_count"])
        self.checkpoint_number = number


def _count_rows(part: Partition, kinds: dict[tuple[str, str], int], model: str, kind: str, rows: int, refused: int) -> None:
    """Count a run of rows admitted together (an Arrow block, a JSON run): seen, dead-lettered, valid by model and kind."""
    part.events_seen += rows
    part.dead_count += refused
    part.valid_events += rows - refused
    kinds[(model, kind)] = kinds.get((model, kind), 0) + rows - refused


class Engine:
    """A running engine: call :meth:`run` (blocks) or :meth:`process` per batch."""

    def __init__(
        self,
        config: Config,
        source: Any,  # a source of regretflow.connectors (duck-typed: plain or partitioned)
        answers: Sink,
        dead_letters: Sink,
        serve_metrics: bool = True,
        metrics: Metrics | None = None,
        progress: Callable[[Engine], None] | None = None,
    ) -> None:
        tune_allocator()
        self.config = config
        self.source = source
        self.answers = answers
        self.dead_letters = dead_letters
        self.decoder = EventDecoder(config, model_tasks(config))
        self.arrow_decoder = ArrowDecoder(self.decoder)  # Arrow messages: many events each (docs/arrow.md)
        # JSON payloads of a batch validated together (off: every one through the decoder, the reference path)
        self.json_decoder: JsonBatchDecoder | None = JsonBatchDecoder(self.decoder)
        self.partitioned = bool(getattr(source, "partitioned", False))
        self.parts: dict[str, Partition] = {}
        gauges, group_gauges = _learner_gauges(config)
        self.metrics = metrics or Metrics(
            list(config.models), {m: ["all", *s.group_labels] for m, s in config.models.items()}, gauges, group_gauges
        )
        if hasattr(source, "offset_resets"):  # a Kafka source: its position resets, by action
            self.metrics.offset_resets.counts = source.offset_resets
        monitor = getattr(getattr(source, "env", None), "monitor", None)
        if monitor is not None:  # a simulator's own measurements (e.g. fairness: the LP regret, per-auditor violations)
            self.metrics.registry.register(MonitorCollector(source.env.model, monitor))
        self.health = HealthState()
        self.server = None
        if serve_metrics and config.metrics.enabled:
            self.server = MetricsServer(self.metrics, self.health, config.metrics.host, config.metrics.port).start()
        self.progress = progress
        self.stop_requested = False
        self.since_checkpoint = 0
        self.last_checkpoint_time = time.monotonic()
        self.summaries: dict[str, Any] = {}
        self.stale: set[str] = set()
        self.published: dict[str, float] = {}
        self.last_event_time = time.monotonic()
        self.metrics_log = None
        self.metrics_log_due = 0.0
        if config.metrics.log_path:
            path = config.resolve(config.metrics.log_path)
            self.metrics_log = open_private_append(path, config.runtime.file_mode)
        self._lag_checked = 0.0
        self._lag_labels: set[str] = set()
        self._errors_reported = 0
        self._internal_logged: dict[tuple[str | None, str], tuple[float, int]] = {}
        self._warm_up()
        if self.partitioned:
            source.set_listener(self.on_assign, self.on_revoke, self.on_lost)
        else:
            self.parts[""] = self._restore("")
            self.publish_all()  # restored figures are on /metrics before the first event
        # Kafka endpoints connect in run(), with this process's HTTP server already answering
        self.brokers = broker_endpoints({"source": source, "answers": answers, "dead_letters": dead_letters})
        self.health.ready = not self.brokers
        if self.brokers:
            self.health.detail = f"connecting to the Kafka broker at {self.brokers[0][1].bootstrap}"

    # -- totals over the partitions this worker owns ---------------------------------------
    @property
    def router(self) -> Router:
        """The router of an unpartitioned source (files, stdin, memory)."""
        return self.parts[""].router

    @property
    def events_seen(self) -> int:
        return sum(p.events_seen for p in self.parts.values())

    @property
    def valid_events(self) -> int:
        return sum(p.valid_events for p in self.parts.values())

    @property
    def dead_count(self) -> int:
        return sum(p.dead_count for p in self.parts.values())

    def shards(self) -> Iterator[Shard]:
        for part in self.parts.values():
            yield from part.router.shards.values()

    # -- start-up ----------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel before the first event."""
        import importlib

        done = set()
        for spec in self.config.models.values():
            module = importlib.import_module(LEARNERS[spec.learner].__module__)
            for mod in {module.__name__, module.__name__ + "_kernels", "regretflow.learners.ridge_kernels"}:
                if mod in done:
                    continue
                done.add(mod)
                try:
                    warm = getattr(importlib.import_module(mod), "warm_up", None)
                except ModuleNotFoundError:
                    continue
                if warm is not None:
                    warm()
        t = regret.HindsightRegret(1, ["g"])
        t.update(np.ones((1, 1)), np.ones(1), np.ones(1), np.ones((1, 1), dtype=np.bool_))
        regret.BanditRegret(2).update_one(0, 0.5, 1.0, 2, np.array([0.5, 0.5]), np.array([0.0, 1.0]))

    def _directory(self, pid: str) -> str | None:
        if not self.config.checkpoint.dir:
            return None
        path = self.config.resolve(self.config.checkpoint.dir)
        if pid:
            path = path / pid.replace(":", ".").replace("/", "_")
        return str(path)

    def _restore(self, pid: str) -> Partition:
        """The partition's newest checkpoint, with the source sought to its position (or a fresh one)."""
        part = Partition(pid, self.config.models)
        directory = self._directory(pid)
        found = restore_checkpoint(directory) if directory else None
        if found is None:
            log.info("event=restore status=fresh partition=%r dir=%s", pid, directory)
            return part
        state, meta = found
        assert directory is not None  # (a checkpoint was found in it)
        # numbered past every file there, the ones the restore skipped as unreadable too (never replaced)
        part.load_state_dict(state, max(int(meta["number"]), newest_number(directory) or 0))
        self.stale.update(s.spec.name for s in part.router.shards.values())
        if state["position"]:
            if self.partitioned:
                self.source.seek(pid, state["position"])
            else:
                self.source.seek(state["position"])
        log.info(
            "event=restore status=ok partition=%r checkpoint=%d events=%d dir=%s", pid, part.checkpoint_number, part.events_seen, directory
        )
        return part

    def on_assign(self, pids: list[str]) -> None:
        """Rebalance: restore the partitions this worker gains and seek to their checkpoints."""
        for pid in pids:
            if pid not in self.parts:
                self.parts[pid] = self._restore(pid)
        self.publish_all()  # restored figures are on /metrics before the partitions' next event
        self.last_event_time = time.monotonic()  # idle_exit_seconds counts from here, not from a slow group join
        self.metrics.rebalances.inc()
        self.metrics.owned_partitions.set(len(self.parts))
        log.info("event=assigned partitions=%s", ",".join(sorted(pids)))

    def on_revoke(self, pids: list[str]) -> None:
        """Rebalance: checkpoint the partitions this worker gives up, then forget them."""
        lost = [pid for pid in pids if pid in self.parts]
        # offsets are not committed here: the client forbids blocking calls inside its
        # rebalance callback, and the checkpoint (which the next owner restores) is the truth
        self.checkpoint([pid for pid in lost if self.parts[pid].dirty], commit=False)
        self._forget(lost)
        log.info("event=revoked partitions=%s", ",".join(sorted(pids)))

    def on_lost(self, pids: list[str]) -> None:
        """Eviction: the group moved on without this worker, so drop the partitions unwritten.

        Another worker may already have restored them and be checkpointing; a checkpoint
        from here would be a stale lineage racing it (still self-consistent, so never a
        double count, but a step back in progress; one written before this call, when the
        loop's timer fell due first, never replaces the new owner's: see
        :func:`~regretflow.engine.runtime.checkpoint.write_checkpoint`). Whatever this
        worker applied since its last checkpoint is replayed by the new owner.
        """
        self._forget([pid for pid in pids if pid in self.parts])
        self.metrics.partitions_lost.inc(len(pids))
        log.warning("event=lost partitions=%s reason=evicted_from_group", ",".join(sorted(pids)))

    def _forget(self, pids: list[str]) -> None:
        for pid in pids:
            del self.parts[pid]
            if pid in self._lag_labels:
                for gauge in (self.metrics.consumer_lag, self.metrics.partition_events):
                    try:
                        gauge.remove(*split_pid(pid))
                    except KeyError:
                        pass
                self._lag_labels.discard(pid)
        self.stale.update(self.config.models)
        self.metrics.owned_partitions.set(len(self.parts))

    # -- the loop ----------------------------------------------------------------------
    def run(self, install_signals: bool = False) -> None:
        """Consume until the source is exhausted (finite sources), idle too long, or stopped.

        ``install_signals``: SIGTERM and SIGINT drain and checkpoint (main thread only); the
        handlers before the run are put back after it, so a process that goes on after the
        run (a test, a notebook, an embedding service) still stops on them.
        """
        if not install_signals:
            self._run()
            return
        with self.signals_handled():
            self._run()

    def signals_handled(self) -> contextlib.AbstractContextManager[None]:
        """SIGTERM and SIGINT set ``stop_requested`` inside the block (main thread only); the handlers
        found are put back after it. For a caller that goes on after :meth:`run` (the demo lingers)."""
        return stop_signals_handled_by(self._on_signal)

    def _run(self) -> None:
        rt = self.config.runtime
        timeout = rt.batch_timeout_ms / 1000.0
        # what exists now (modules, kernels, config, restored state) outlives the loop: the collector's full
        # passes, triggered by each batch's short-lived answers and events, skip it (~1.5 us an event otherwise);
        # unfrozen at the end, so nothing frozen is kept for good
        gc.freeze()
        try:
            if self.brokers:
                if not connect_endpoints(self.brokers, self.health, lambda: self.stop_requested):
                    log.info("event=stopped_before_connecting")
                self.health.ready = not self.stop_requested
            while not self.stop_requested:
                records = self.source.poll(rt.batch_size, timeout)
                if records:
                    self.process(records)
                    self.last_event_time = time.monotonic()
                else:
                    self.health.beat()
                    self._refresh_stale()
                    if rt.idle_exit_seconds and time.monotonic() - self.last_event_time > rt.idle_exit_seconds:
                        log.info("event=idle_exit seconds=%.1f", rt.idle_exit_seconds)
                        break
                self._maybe_checkpoint()
                self._source_metrics()
                if self.source.exhausted() and rt.stop_at_end:
                    break
        except BaseException as exc:
            # a batch may be half applied: no checkpoint now, so the newest one (whose
            # position is that of its last applied event) is where the restart resumes
            self.abort(exc)
            raise
        finally:
            gc.unfreeze()
        self.shutdown()

    def abort(self, exc: BaseException) -> None:
        """End after an error that one event cannot contain: flush what was answered, write no checkpoint."""
        self.health.ready = False
        self.health.detail = "failed"
        log.error("event=abort error=%r checkpoint=none", f"{type(exc).__name__}: {exc}"[:500])
        for sink in (self.answers, self.dead_letters):
            try:
                sink.flush()
            except Exception as flush_exc:  # the sink may be what failed
                log.error("event=abort_flush_failed error=%r", f"{type(flush_exc).__name__}: {flush_exc}"[:300])

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s action=drain-and-checkpoint", signal.Signals(signum).name)
        self.stop_requested = True

    def process(self, records: Sequence[Any]) -> None:
        """One micro-batch: every payload is answered, learned or dead-lettered.

        ``records`` are payloads (unpartitioned sources) or ``(partition, payload)`` pairs.
        """
        if not gc.isenabled():
            self._process(records)
            return
        # The collector is paused for the batch: its parsed payloads, runs and answers are freed by their
        # reference counts at the batch's end, while a pass in the middle would walk every one still held
        # (~0.5-1 us an event); what the batch leaves in cycles is collected by the first pass after it.
        gc.disable()
        try:
            self._process(records)
        finally:
            gc.enable()

    def _process(self, records: Sequence[Any]) -> None:
        started = time.perf_counter()
        out = _BatchOutput(columnar=self.config.runtime.answer_format == "arrow")
        decode = self.decoder.decode
        kinds = out.kinds
        if self.partitioned:
            if self.json_decoder is not None:
                records = self.json_decoder.expand(records)
        elif self.json_decoder is not None and set(map(type, records)) <= JSON_PAYLOAD_TYPES:
            records = [("", item) for item in self.json_decoder.decode(list(records))]  # (pairs of the few runs, not of every payload)
        else:
            records = [("", p) for p in records]
            if self.json_decoder is not None:
                records = self.json_decoder.expand(records)
        records = expand_rows(records, self.arrow_decoder)
        part = None
        for pid, payload in records:
            if part is None or part.pid != pid:
                part = self.parts.get(pid)
                if part is None:  # a record of a partition assigned without a callback (never with Kafka)
                    part = self.parts[pid] = self._restore(pid)
                part.dirty = True
            if type(payload) is ArrowBlock:  # valid rows of an Arrow message, taken together (docs/arrow.md)
                refused = admit_block(part.router, payload, out)
                for i, bad in refused:
                    out.dead(payload.raw(i), bad.reason, payload.raw(i).locate(bad.detail), payload.model, payload.ids[i])
                _count_rows(part, kinds, payload.model, payload.kind, len(payload), len(refused))
                continue
            if type(payload) is Run:  # JSON events validated together (json_batches), rows of one shard and kind
                refused = admit_json_run(part.router, payload, out)
                for i, bad in refused:
                    out.dead(payload.raws[i], bad.reason, bad.detail, payload.model, payload.ids[i])
                _count_rows(part, kinds, payload.model, payload.kind, len(payload), len(refused))
                continue
            part.events_seen += 1
            ev = None
            try:
                ev = payload.take() if type(payload) is ArrowRow else decode(payload)
                ev.raw = payload
                part.router.shard(ev).admit(ev, out)
            except BadEvent as bad:
                detail = bad.detail if type(payload) is not ArrowRow else payload.locate(bad.detail)
                out.dead(payload, bad.reason, detail, ev.model if ev is not None else bad.model, ev.id if ev is not None else bad.event_id)
                part.dead_count += 1
                continue
            except FatalError:
                raise
            except Exception as exc:  # one event's problem, never the process's end
                model = ev.model if ev is not None else None
                detail = f"{type(exc).__name__}: {exc}"[:300]
                self._log_internal_error(exc, model, detail)
                out.dead(payload, "internal_error", detail, model, ev.id if ev is not None else None)
                part.dead_count += 1
                continue
            part.valid_events += 1
            k = (ev.model, ev.kind)
            kinds[k] = kinds.get(k, 0) + 1
        for part in self.parts.values():
            if part.dirty:
                part.router.flush(out)
                self._quarantine_unhealthy(part, out)
        self.answers.write(answer_messages(out.answers) if out.columnar else cast(list[Record], out.answers))
        self.dead_letters.write(out.dead_records)
        self.metrics.answers_sent.inc(out.count())
        if out.dead_records:
            self.metrics.dead_letters_sent.inc(len(out.dead_records))
        n = sum(len(p) if type(p) is ArrowBlock or type(p) is Run else 1 for _, p in records)
        self.since_checkpoint += n
        elapsed = time.perf_counter() - started
        self._update_metrics(out, n, elapsed)
        self.health.beat()
        if self.metrics_log is not None and time.monotonic() >= self.metrics_log_due:
            self.write_metrics_log()
        if self.progress is not None:
            self.progress(self)

    def write_metrics_log(self) -> None:
        """Append the summary to the metrics log that ``regretflow report`` reads."""
        log_file = self.metrics_log
        assert log_file is not None  # called only when metrics.log_path is set
        log_file.write(metrics_log_record(self.summary(), time.time()))
        log_file.flush()
        self.metrics_log_due = time.monotonic() + self.config.metrics.log_every_seconds

    def _log_internal_error(self, exc: Exception, model: str | None, detail: str) -> None:
        """Log an internal error once per (model, exception type) a minute, with the count held back."""
        key = (model, type(exc).__name__)
        now = time.monotonic()
        last, held = self._internal_logged.get(key, (-1e18, 0))
        if now - last < 60.0:
            self._internal_logged[key] = (last, held + 1)
            return
        self._internal_logged[key] = (now, 0)
        log.error(
            "event=internal_error model=%s error=%r suppressed_since_last=%d",
            model or UNKNOWN_MODEL,
            detail,
            held,
            exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
        )

    def _quarantine_unhealthy(self, part: Partition, out: _BatchOutput) -> None:
        """Once per batch, before any answer leaves: shards whose state went non-finite are
        quarantined, their answers of this batch become ``model_unhealthy`` dead letters,
        and their last good state is put back (the partition's newest checkpoint, or an
        empty shard when it has none)."""
        failed = {sid: shard for sid, shard in part.router.shards.items() if shard.dirty and not shard.check_state() and not shard.reverted}
        if not failed:
            return
        by_key = part.router.by_key
        kept: list[Record | AnswerColumns] = []
        for answer, (model, key, kind, eid, raw) in zip(out.records(), out.owners()):
            sid = (model, (key or "") if by_key[model] else "")
            if sid in failed:
                out.dead(raw, "model_unhealthy", str(failed[sid].quarantined)[:300], model, eid)
                out.answered[(model, kind)] -= 1
            else:
                kept.append(answer)
        # what is left is no longer in spans: a later withdrawal in this batch is impossible (once per batch)
        out.answers = kept
        out.spans = []
        for sid, shard in failed.items():
            why = shard.quarantined
            good = None
            directory = self._directory(part.pid)
            found = latest_checkpoint(directory) if directory else None
            if found is not None:
                good = next((s for s in found[0].get("shards", {}).values() if (s["model"], s["key"]) == sid), None)
            fresh = Shard(shard.spec, shard.key)
            if good is not None:
                fresh.load_state_dict(good)
            fresh.quarantined, fresh.reverted = why, True
            fresh.dirty = True
            part.router.shards[sid] = fresh
            self.metrics.quarantines.labels(model=shard.spec.name).inc()
            self.stale.add(shard.spec.name)
            log.error(
                "event=quarantine model=%s key=%r partition=%r restored=%s reason=%r",
                shard.spec.name,
                shard.key,
                part.pid,
                "checkpoint" if good is not None else "empty",
                why,
            )

    # -- metrics ------------------------------------------------------------------------
    def _update_metrics(self, out: _BatchOutput, n: int, elapsed: float) -> None:
        m = self.metrics
        for key, count in out.kinds.items():  # (model, kind)
            m.events.labels(*key).inc(count)
        for key, count in out.dead_reasons.items():  # (model, reason)
            m.dead_letters.labels(*key).inc(count)
        for key, count in out.answered.items():  # (model, kind)
            m.answers.labels(*key).inc(count)
        m.batches.inc()
        m.latency.observe(elapsed, n)
        m.batch_duration.observe(elapsed)
        m.last_batch = time.time()
        touched = set()
        for shard in self.shards():
            if shard.dirty:
                touched.add(shard.spec.name)
                shard.dirty = False
                if shard.expired:
                    m.joins_expired.labels(model=shard.spec.name).inc(shard.expired)
                    shard.expired = 0
                evicted = shard.joins.evicted - shard.evicted_reported
                if evicted:
                    m.joins_evicted.labels(model=shard.spec.name).inc(evicted)
                    shard.evicted_reported = shard.joins.evicted
        self.stale.update(touched)
        self._refresh_stale()

    def _refresh_stale(self) -> None:
        """Publish models whose gauges are behind, at most once per ``metrics.refresh_seconds``
        each: the regret gauges solve a d x d eigenproblem per group."""
        now = time.monotonic()
        refresh = self.config.metrics.refresh_seconds
        for model in list(self.stale):
            if now - self.published.get(model, -1e18) >= refresh:
                self._publish_model(model)

    def publish_all(self) -> None:
        """Bring every gauge up to date now (at shutdown, or before reading them)."""
        for model in list(self.stale):
            self._publish_model(model)

    def _publish_model(self, model: str) -> None:
        """Aggregate the model's shards and set its gauges (called once per batch and model)."""
        m = self.metrics
        self.stale.discard(model)
        self.published[model] = time.monotonic()
        shards = [s for s in self.shards() if s.spec.name == model]
        if not shards:
            return
        summary = model_summary(shards)
        self.summaries[model] = summary
        m.model_version.labels(model=model).set(summary["model_version"])
        m.pending_joins.labels(model=model).set(summary["pending_joins"])
        m.quarantined_shards.labels(model=model).set(sum(s.quarantined is not None for s in shards))
        shards[0].task.publish(m, model, summary)
        for name, value in summary.get("learner_gauges", {}).items():
            if name in m.learner_gauges:
                m.learner_gauges[name].labels(model=model).set(value)
        labels = ["all", *self.config.models[model].group_labels]
        for name, values in summary.get("learner_group_gauges", {}).items():
            if name in m.learner_group_gauges:
                for label, value in zip(labels[1:] + ["all"], values):
                    m.learner_group_gauges[name].labels(model=model, group=label).set(float(value))

    # -- checkpoints --------------------------------------------------------------------
    def _maybe_checkpoint(self) -> None:
        ck = self.config.checkpoint
        if not ck.dir:
            return
        if self.since_checkpoint >= ck.every_events or (
            self.since_checkpoint and time.monotonic() - self.last_checkpoint_time >= ck.every_seconds
        ):
            self.checkpoint()

    def checkpoint(self, pids: list[str] | None = None, commit: bool = True) -> None:
        """Checkpoint the partitions that changed (or ``pids``), then commit their offsets.

        Answers and dead letters are flushed first: a checkpoint never covers an event
        whose answer could still be lost. Offsets go to Kafka only after the checkpoint
        that covers them, so the group's committed offsets (and lag) are true.
        """
        ck = self.config.checkpoint
        if not ck.dir:
            return
        started = time.perf_counter()
        self.answers.flush()
        self.dead_letters.flush()
        targets = [self.parts[p] for p in pids] if pids is not None else [p for p in self.parts.values() if p.dirty]
        positions = {}
        for part in targets:
            position = self.source.position(part.pid) if self.partitioned else self.source.position()
            if self._write_checkpoint(part, position):
                positions[part.pid] = position
        if self.partitioned and positions and commit:
            self.metrics.source_up.set(1 if self.source.commit(positions) else 0)
        if pids is None:
            self.since_checkpoint = 0
            self.last_checkpoint_time = time.monotonic()
        duration = time.perf_counter() - started
        if positions:
            self.metrics.checkpoints.inc(len(positions))
            self.metrics.checkpoint_duration.set(duration)
            self.metrics.last_checkpoint = time.time()
        log.debug("event=checkpoint partitions=%d events=%d seconds=%.4f", len(targets), self.events_seen, duration)

    def _write_checkpoint(self, part: Partition, position: Any) -> bool:
        """Write the partition's next checkpoint; False if another worker was found at work in its directory."""
        if part.fenced:
            return False
        directory = self._directory(part.pid)
        assert directory is not None  # checkpoint.dir is set (checked by the caller)
        number = part.checkpoint_number + 1
        try:
            write_checkpoint(
                directory, number, part.state_dict(position), keep=self.config.checkpoint.keep, file_mode=self.config.runtime.file_mode
            )
        except CheckpointFenced as exc:
            if not self.partitioned:
                raise  # one owner (its restore numbered past every file there): another writer is a fault to stop on
            # the group gave the partition to another worker, which restored it or wrote this number: this one hears
            # so at its next poll. Nothing was written, no offset is committed; after a restore elsewhere nothing more
            # is written for the partition here, else a next checkpoint goes above the newest
            log.warning("event=checkpoint status=fenced partition=%r error=%r", part.pid, str(exc))
            part.fenced = exc.restored_elsewhere
            part.checkpoint_number = max(part.checkpoint_number, exc.newest or 0)
            return False
        part.checkpoint_number = number
        part.dirty = False
        return True

    def _source_metrics(self) -> None:
        """Consumer lag per partition and client errors, every refresh_seconds (partitioned sources)."""
        if not self.partitioned:
            return
        now = time.monotonic()
        if now - self._lag_checked < self.config.metrics.refresh_seconds:
            return
        self._lag_checked = now
        m = self.metrics
        for pid, lag in self.source.lag().items():
            topic, partition = split_pid(pid)
            m.consumer_lag.labels(topic=topic, partition=partition).set(lag)
            self._lag_labels.add(pid)
        for pid, part in self.parts.items():
            topic, partition = split_pid(pid)
            m.partition_events.labels(topic=topic, partition=partition).set(part.events_seen)
            self._lag_labels.add(pid)
        errors = getattr(self.source, "errors", 0)
        if errors > self._errors_reported:
            m.source_errors.inc(errors - self._errors_reported)
            self._errors_reported = errors
            m.source_up.set(0)

    def shutdown(self) -> None:
        """Finish: final checkpoint, gauges up to date, sinks flushed."""
        self.publish_all()
        if self.config.checkpoint.dir and any(p.dirty for p in self.parts.values()):
            self.checkpoint()
        self.answers.flush()
        self.dead_letters.flush()
        if self.metrics_log is not None:
            self.write_metrics_log()
        self.health.ready = False
        self.health.detail = "stopped"

    def close(self) -> None:
        for part in (self.answers, self.dead_letters, self.source):
            part.close()
        if self.metrics_log is not None:
            self.metrics_log.close()
        if self.server is not None:
            self.server.stop()

    def summary(self) -> dict[str, Any]:
        """Per model: task, counts, and per group regret (or bandit values, or accuracy)."""
        out = {}
        for model in self.config.models:
            shards = [s for s in self.shards() if s.spec.name == model]
            out[model] = model_summary(shards) if shards else {"task": None, "events": 0}
        return out


def model_summary(shards: list[Shard]) -> dict[str, Any]:
    """Aggregate a model's shards: counts and the task's figures add up; the learner gauges of the first shard."""
    first = shards[0]
    summary: dict[str, Any] = {
        "task": first.task.name,
        "learner": first.spec.learner,
        "shards": len(shards),
        "model_version": sum(int(getattr(s.learner, "n_updates", 0)) for s in shards),
        "pending_joins": sum(len(s.joins) for s in shards),
        "joins_evicted": sum(s.joins.evicted for s in shards),
        "events": sum(s.seq for s in shards),
    }
    summary.update(first.task.summarize(shards))
    if hasattr(first.learner, "gauges"):
        summary["learner_gauges"] = first.learner.gauges()
    if hasattr(first.learner, "group_gauges"):
        summary["learner_group_gauges"] = {k: np.asarray(v).tolist() for k, v in first.learner.group_gauges().items()}
    return summary


def _learner_gauges(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    gauges: dict[str, str] = {}
    group_gauges: dict[str, str] = {}
    for spec in config.models.values():
        cls = LEARNERS[spec.learner]
        gauges.update(getattr(cls, "GAUGES", {}))
        group_gauges.update(getattr(cls, "GROUP_GAUGES", {}))
    return gauges, group_gauges
