"""Kafka: a consumer-group source with per-partition positions, and answer/dead-letter sinks.

Two client backends behind one interface, chosen by ``backend``: ``"kafka-python"``
(the default, pure Python) and ``"confluent"`` (librdkafka through confluent-kafka, an
optional extra; it consumes several times faster). The options that matter in
production pass through under one set of names (see :data:`SOURCE_OPTIONS` and
:data:`SINK_OPTIONS`); docs/configuration.md lists them.

The source is *partitioned*: ``poll`` returns ``(partition_id, payload)`` pairs, with
``partition_id = "topic:partition"``; ``position(pid)`` is the offset after the last
record handed out; ``seek(pid, position)``; ``commit({pid: position})`` commits
offsets to the group; ``set_listener(on_assign, on_revoke, on_lost)`` is called with
partition ids when the group rebalances (the engine checkpoints what it gives up and
restores what it gains inside those calls). ``on_lost`` is the forced case: this worker
was evicted (it stalled past the session timeout), another may already own the
partitions, so the engine drops them without writing anything.

Positions are checked, never trusted: a recreated topic (its topic id changed, or our
offset is past the end of its log) or an offset the broker reports out of range is
logged (``event=offset_reset``), counted in :attr:`KafkaSource.offset_resets` and
handled by ``on_offset_reset``: ``"fail"`` (the default) raises
:class:`OffsetResetError`, ``"earliest"`` and ``"latest"`` move to the start or the
end of the log and keep the learner state. Both clients are told never to reset on
their own (kafka-python ``auto_offset_reset="none"``, librdkafka
``auto.offset.reset=error``); ``auto_offset_reset`` only says where a partition with
no checkpoint and no committed offset starts.

Examples
--------
>>> settings = kafka_settings({"bootstrap_servers": "127.0.0.1:9092", "topics": ["events"]}, SOURCE_OPTIONS)
>>> settings["group_id"], settings["backend"]
('regretflow', 'kafka-python')
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regretflow.connectors import Records
from regretflow.connectors.arrow import RowCursor, position_dict

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, TopicPartition
    from confluent_kafka.admin import AdminClient

from regretflow.connectors.partition_ids import pid_of, split_pid

log = logging.getLogger("regretflow.kafka")


class BrokerUnreachable(ConnectionError):
    """One attempt to reach the broker failed (refused, unresolvable, timed out); the caller retries.

    >>> str(BrokerUnreachable("127.0.0.1:9", "connection refused"))
    '127.0.0.1:9: connection refused'
    """

    def __init__(self, bootstrap: str, reason: str):
        self.bootstrap, self.reason = bootstrap, reason
        super().__init__(f"{bootstrap}: {reason}")


class _OncePerWindow(logging.Filter):
    """Lets through one record per message shape and window: librdkafka repeats a failed
    connection's line many times a second while the broker is away.

    >>> f = _OncePerWindow(60.0)
    >>> rec = lambda m: logging.LogRecord("x", logging.ERROR, "", 0, m, None, None)
    >>> f.filter(rec("connect to 127.0.0.1:9 failed after 1ms")), f.filter(rec("connect to 127.0.0.1:9 failed after 7ms"))
    (True, False)
    """

    def __init__(self, window_seconds: float):
        super().__init__()
        self.window = window_seconds
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        shape = "".join(c for c in record.getMessage() if not c.isdigit())[:200]
        now = time.monotonic()
        if now - self._seen.get(shape, -self.window) < self.window:
            return False
        if len(self._seen) > 1000:  # bounded: shapes are few, but never trust a library's messages to be
            self._seen.clear()
        self._seen[shape] = now
        return True


# librdkafka's own log lines (confluent backend), at most one per shape a minute
_client_log = logging.getLogger("regretflow.kafka.client")
_client_log.addFilter(_OncePerWindow(60.0))


class _quiet_kafka_python:
    """kafka-python logs several ERROR lines per failed bootstrap: while the source is
    connecting, its own single line per attempt window says it instead."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("kafka")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


def _unreachable(s: dict[str, Any], exc: BaseException) -> BrokerUnreachable:
    text = str(exc)
    named = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"  # kafka-python names itself
    return BrokerUnreachable(s["bootstrap_servers"], named[:300])


def _kafka_python_unreachable() -> tuple[type[BaseException], ...]:
    """What kafka-python raises when it cannot bootstrap: a timeout (3.x), NoBrokersAvailable (2.x)."""
    from kafka import errors

    return tuple(getattr(errors, name) for name in ("KafkaTimeoutError", "NoBrokersAvailable") if hasattr(errors, name))


def _bootstrap_timeout(cls: Any, timeout: float) -> dict[str, Any]:
    """kafka-python 3 bounds a bootstrap by ``bootstrap_timeout_ms`` (2.x by its fixed version probe)."""
    return {"bootstrap_timeout_ms": max(int(timeout * 1000), 100)} if "bootstrap_timeout_ms" in cls.DEFAULT_CONFIG else {}


_COMMON = {
    "backend": "kafka-python",
    "bootstrap_servers": "127.0.0.1:9092",
    "client_id": "regretflow",
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_username": None,
    "sasl_password": None,
    "sasl_password_env": None,
    "ssl_cafile": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "request_timeout_ms": 30_000,
    # seconds to keep retrying an unreachable broker at start-up before giving up (exit 3); None: forever
    "connect_timeout_seconds": None,
}
SOURCE_OPTIONS = {
    **_COMMON,
    "topics": None,
    "group_id": "regretflow",
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    "max_poll_interval_ms": 300_000,
    "fetch_max_bytes": 52_428_800,
    "max_partition_fetch_bytes": 1_048_576,
    "fetch_max_wait_ms": 100,
    # confluent: how long librdkafka stops prefetching once its queue is full (its own default, 1000 ms, let the queue
    # of large Arrow messages run dry: a worker sat idle a third of the time). kafka-python fetches in poll: no such pause
    "fetch_queue_backoff_ms": 10,
    "auto_offset_reset": "earliest",
    "on_offset_reset": "fail",
}
SINK_OPTIONS = {
    **_COMMON,
    "topic": None,
    "compression": "none",
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 65_536,
    "max_buffered_records": 100_000,
    "max_block_ms": 60_000,
    # Kafka headers on each record (model, event id; reason for dead letters): None is the sink's default,
    # off for answers (they cost a Python list per record) and on for dead letters
    "headers": None,
}
BACKENDS = ("kafka-python", "confluent")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
STARTS = ("earliest", "latest")
OFFSET_RESET_POLICIES = ("fail", "earliest", "latest")
# how often the owned partitions are checked against their logs while consuming
POSITION_CHECK_SECONDS = 1.0


class OffsetResetError(RuntimeError):
    """A partition's position is not in its log and ``on_offset_reset = "fail"``.

    The topic was recreated (deleted, or lost with an in-memory broker) or the offset
    fell out of the log's range. Nothing from the new log was handed to the engine.

    Examples
    --------
    >>> err = OffsetResetError("events", 0, 20000, 0, 500, "past_log_end")
    >>> err.topic, err.partition, err.position, err.reason
    ('events', 0, 20000, 'past_log_end')
    """

    def __init__(self, topic: str, partition: int, position: int | None, low: int | None, high: int | None, reason: str):
        self.topic, self.partition, self.position, self.low, self.high, self.reason = topic, partition, position, low, high, reason
        super().__init__(
            f"Kafka topic {topic} partition {partition}: our position {position} is not in its log "
            f'(offsets {_span(low, high)}; {REASON_TEXT[reason]}); source.on_offset_reset = "fail" stops here, '
            'the checkpoints keep the last applied event: set it to "earliest" or "latest" to go on'
        )


REASON_TEXT = {
    "topic_recreated": "the topic id changed: the topic was deleted and created again",
    "past_log_end": "the offset is past the end of the log: the topic was recreated or truncated",
    "before_log_start": "the offset is before the start of the log: retention deleted records not yet applied",
    "out_of_range": "the broker reports the offset out of range",
}


def _span(low: int | None, high: int | None) -> str:
    return f"{'?' if low is None else low}..{'?' if high is None else high}"


def kafka_settings(options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; a ValueError names the key."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown Kafka option; expected one of {', '.join(sorted(allowed))}")
    s = {**allowed, **options}
    if s["backend"] not in BACKENDS:
        raise ValueError(f"backend: {s['backend']!r} is not one of {', '.join(BACKENDS)}")
    if s["security_protocol"] not in PROTOCOLS:
        raise ValueError(f"security_protocol: {s['security_protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    if s["security_protocol"].startswith("SASL"):
        if s["sasl_mechanism"] not in MECHANISMS:
            raise ValueError(f"sasl_mechanism: required with SASL, one of {', '.join(MECHANISMS)}")
        if s["sasl_password"] is None and s["sasl_password_env"]:
            s["sasl_password"] = os.environ.get(s["sasl_password_env"])
        if not s["sasl_username"] or s["sasl_password"] is None:
            raise ValueError("sasl_username: SASL needs sasl_username and sasl_password (or sasl_password_env)")
    if "topics" in allowed:
        if not isinstance(s["topics"], list) or not s["topics"] or not all(isinstance(t, str) for t in s["topics"]):
            raise ValueError("topics: expected a non-empty list of topic names")
    if "topic" in allowed and not isinstance(s["topic"], str):
        raise ValueError("topic: required, the topic to produce to")
    if "auto_offset_reset" in allowed and s["auto_offset_reset"] not in STARTS:
        raise ValueError(f"auto_offset_reset: {s['auto_offset_reset']!r} is not one of {', '.join(STARTS)}")
    if "on_offset_reset" in allowed and s["on_offset_reset"] not in OFFSET_RESET_POLICIES:
        raise ValueError(f"on_offset_reset: {s['on_offset_reset']!r} is not one of {', '.join(OFFSET_RESET_POLICIES)}")
    if "headers" in allowed and s["headers"] is not None and not isinstance(s["headers"], bool):
        raise ValueError(f"headers: expected true or false, got {s['headers']!r}")
    if "fetch_queue_backoff_ms" in allowed:
        backoff = s["fetch_queue_backoff_ms"]
        if isinstance(backoff, bool) or not isinstance(backoff, int) or not 0 <= backoff <= 300_000:
            raise ValueError(f"fetch_queue_backoff_ms: expected an integer number of milliseconds from 0 to 300000, got {backoff!r}")
    if "compression" in allowed and s["compression"] not in COMPRESSION:
        raise ValueError(f"compression: {s['compression']!r} is not one of {', '.join(COMPRESSION)}")
    timeout = s["connect_timeout_seconds"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf")):
        raise ValueError("connect_timeout_seconds: expected a positive number of seconds (omit it to wait for the broker forever)")
    if isinstance(s["bootstrap_servers"], list):
        s["bootstrap_servers"] = ",".join(s["bootstrap_servers"])
    return s


# -- kafka-python --------------------------------------------------------------------
def _kp_security(s: dict[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] = {"security_protocol": s["security_protocol"]}
    if s["security_protocol"].startswith("SASL"):
        conf.update(sasl_mechanism=s["sasl_mechanism"], sasl_plain_username=s["sasl_username"], sasl_plain_password=s["sasl_password"])
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if s[key]:
            conf[key] = s[key]
    return conf


class _KafkaPythonConsumer:
    def __init__(self, s: dict[str, Any], max_records: int, connect_timeout: float):
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        # a consumer never creates a topic it reads (a deleted topic would come back empty, with the broker's
        # default partitions); older kafka-python has no such option
        no_create = {"allow_auto_create_topics": False} if "allow_auto_create_topics" in KafkaConsumer.DEFAULT_CONFIG else {}
        try:
            with _quiet_kafka_python():
                self._consumer = self._open(KafkaConsumer, s, max_records, no_create, connect_timeout)
        except _kafka_python_unreachable() as exc:
            raise _unreachable(s, exc) from None
        self._topics = s["topics"]
        self._start = s["auto_offset_reset"]
        self._timeout_ms = s["request_timeout_ms"]
        self.out_of_range: dict[str, int] = {}
        outer = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:  # kafka-python is untyped: TopicPartition values
                outer.rebalanced(outer.on_revoke, revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                outer.rebalanced(outer.on_assign, assigned)

            def on_partitions_lost(self, lost: Any) -> None:
                outer.rebalanced(outer.on_lost, lost)

        self.on_assign: Callable[[list[str]], None] = lambda pids: None
        self.on_revoke: Callable[[list[str]], None] = lambda pids: None
        self.on_lost: Callable[[list[str]], None] = lambda pids: None
        self.callback_error: BaseException | None = None
        self._consumer.subscribe(self._topics, listener=Listener())

    def rebalanced(self, callback: Callable[[list[str]], None], partitions: Any) -> None:
        """Run a rebalance callback; what it raises is raised again by the next :meth:`poll`.

        kafka-python calls the callbacks inside its own ``poll`` and only logs what they
        raise: a checkpoint that failed while a partition was revoked would go unnoticed,
        and the worker would go on as if it had been written.
        """
        try:
            callback([pid_of(tp.topic, tp.partition) for tp in partitions])
        except BaseException as exc:
            if self.callback_error is None:
                self.callback_error = exc
            raise

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, int, bytes | None]]:
        records = self._poll(max_records, timeout)
        failed, self.callback_error = self.callback_error, None
        if failed is not None:
            raise failed
        return records

    @staticmethod
    def _open(KafkaConsumer: Any, s: dict[str, Any], max_records: int, no_create: dict[str, Any], connect_timeout: float) -> Any:
        return KafkaConsumer(
            bootstrap_servers=s["bootstrap_servers"].split(","),
            client_id=s["client_id"],
            group_id=s["group_id"],
            **no_create,
            **_bootstrap_timeout(KafkaConsumer, connect_timeout),
            # "none": out-of-range offsets and missing positions raise, so the source decides (never a silent reset)
            enable_auto_commit=False,
            auto_offset_reset="none",
            session_timeout_ms=s["session_timeout_ms"],
            heartbeat_interval_ms=s["heartbeat_interval_ms"],
            max_poll_interval_ms=s["max_poll_interval_ms"],
            max_poll_records=max_records,
            fetch_max_bytes=s["fetch_max_bytes"],
            max_partition_fetch_bytes=s["max_partition_fetch_bytes"],
            fetch_max_wait_ms=s["fetch_max_wait_ms"],
            request_timeout_ms=max(s["request_timeout_ms"], s["session_timeout_ms"] + 1000),
            **_kp_security(s),
        )

    def probe(self, timeout: float) -> None:
        """Bootstrapped in the constructor: reachable."""

    def _poll(self, max_records: int, timeout: float) -> list[tuple[str, int, bytes | None]]:
        from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except NoOffsetForPartitionError as exc:  # no checkpoint and no committed offset: start per auto_offset_reset
            tps = list(exc.args[0]) if exc.args and isinstance(exc.args[0], (set, list, tuple)) else []
            if not tps:  # (no partitions named: seek_to_* would move every partition, restored ones too)
                raise
            log.info("event=kafka_start partitions=%s at=%s", ",".join(sorted(pid_of(tp.topic, tp.partition) for tp in tps)), self._start)
            (self._consumer.seek_to_beginning if self._start == "earliest" else self._consumer.seek_to_end)(*tps)
            return []
        except OffsetOutOfRangeError as exc:
            offsets = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            if not offsets:
                raise
            self.out_of_range.update({pid_of(tp.topic, tp.partition): int(off) for tp, off in offsets.items()})
            return []
        except Exception as exc:
            # kafka-python 3's LogTruncationError (the log was cut below our position, an unclean leader
            # election): the same decision as out of range
            divergent = getattr(exc, "divergent_offsets", None)
            if not isinstance(divergent, dict) or not divergent:
                raise
            self.out_of_range.update({pid_of(tp.topic, tp.partition): -1 for tp in divergent})
            return []
        out: list[tuple[str, int, bytes | None]] = []
        for tp, records in batches.items():
            pid = pid_of(tp.topic, tp.partition)
            out.extend((pid, r.offset, r.value) for r in records)
        return out

    def seek(self, pid: str, offset: int) -> None:
        from kafka import TopicPartition

        self._consumer.seek(TopicPartition(*split_pid(pid)), offset)

    def commit(self, offsets: dict[str, int]) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        self._consumer.commit(
            {TopicPartition(*split_pid(pid)): OffsetAndMetadata(off, "", -1) for pid, off in offsets.items()}, timeout_ms=5000
        )

    def topic_state(self, topic: str) -> tuple[bool, str | None]:
        """(the topic is in the client's metadata, its topic id or None when the client or broker has none)."""
        cluster = getattr(getattr(self._consumer, "_client", None), "cluster", None)  # kafka-python keeps it private
        if cluster is None:
            return True, None
        exists = cluster.partitions_for_topic(topic) is not None
        topic_id = cluster.topic_id(topic) if hasattr(cluster, "topic_id") else None
        return exists, _uuid_text(topic_id)

    def fetched_end(self, pid: str) -> int | None:
        """The end of the log as the last fetch response said (no request)."""
        from kafka import TopicPartition

        end = self._consumer.highwater(TopicPartition(*split_pid(pid)))
        return None if end is None else int(end)

    def log_range(self, pid: str) -> tuple[int, int]:
        """(first offset, end offset) from the broker (ListOffsets; tansu under-reports the end)."""
        from kafka import TopicPartition

        tp = TopicPartition(*split_pid(pid))
        low = self._consumer.beginning_offsets([tp], timeout_ms=self._timeout_ms)[tp]
        high = self._consumer.end_offsets([tp], timeout_ms=self._timeout_ms)[tp]
        return int(low), int(high)

    def lag(self, positions: dict[str, int]) -> dict[str, int]:
        from kafka import TopicPartition

        tps = {pid: TopicPartition(*split_pid(pid)) for pid in positions}
        # the high watermark the last fetch response carried: no request, never blocks
        ends = {pid: self._consumer.highwater(tp) for pid, tp in tps.items()}
        missing = [tps[pid] for pid, end in ends.items() if end is None]
        if missing:
            fetched = self._consumer.end_offsets(missing, timeout_ms=1000)
            ends.update({pid: fetched[tp] for pid, tp in tps.items() if tp in fetched})
        return {pid: max(int(ends[pid]) - positions[pid], 0) for pid in tps}

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _uuid_text(value: Any) -> str | None:
    """A topic id as canonical UUID text, from either client's type; None when unknown (or Kafka's zero id)."""
    if value is None:
        return None
    if hasattr(value, "get_most_significant_bits"):  # confluent_kafka.Uuid
        mask = (1 << 64) - 1
        value = uuid.UUID(int=((value.get_most_significant_bits() & mask) << 64) | (value.get_least_significant_bits() & mask))
    value = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    return None if value.int == 0 else str(value)


class _KafkaPythonProducer:
    def __init__(self, s: dict[str, Any], connect_timeout: float):
        from kafka import KafkaProducer

        try:
            with _quiet_kafka_python():
                self._producer = self._open(KafkaProducer, s, connect_timeout)
        except _kafka_python_unreachable() as exc:
            raise _unreachable(s, exc) from None

    def probe(self, timeout: float) -> None:
        """Bootstrapped in the constructor: reachable."""

    @staticmethod
    def _open(KafkaProducer: Any, s: dict[str, Any], connect_timeout: float) -> Any:
        return KafkaProducer(
            **_bootstrap_timeout(KafkaProducer, connect_timeout),
            bootstrap_servers=s["bootstrap_servers"].split(","),
            client_id=s["client_id"],
            acks=s["acks"] if s["acks"] == "all" else int(s["acks"]),
            compression_type=None if s["compression"] == "none" else s["compression"],
            linger_ms=s["linger_ms"],
            batch_size=s["batch_size"],
            max_block_ms=s["max_block_ms"],
            request_timeout_ms=s["request_timeout_ms"],
            **_kp_security(s),
        )

    def produce_many(self, topic: str, records: Records, headers: bool) -> None:
        send = self._producer.send
        for record in records:
            send(topic, key=record[0].encode(), value=record[1], headers=[(k, v.encode()) for k, v in record[2]] if headers else None)

    def take_failures(self) -> tuple[int, str | None]:
        return 0, None  # kafka-python raises from send or flush instead

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


# -- confluent-kafka -----------------------------------------------------------------
def _ck_security(s: dict[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] = {"security.protocol": s["security_protocol"].lower()}
    if s["security_protocol"].startswith("SASL"):
        conf.update({"sasl.mechanism": s["sasl_mechanism"], "sasl.username": s["sasl_username"], "sasl.password": s["sasl_password"]})
    for key, name in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"), ("ssl_keyfile", "ssl.key.location")):
        if s[key]:
            conf[name] = s[key]
    return conf


class _ConfluentConsumer:
    def __init__(self, s: dict[str, Any], max_records: int, connect_timeout: float):
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer

        self._settings = s
        self._connection = {
            "bootstrap.servers": s["bootstrap_servers"],
            "client.id": s["client_id"],
            "logger": _client_log,
            **_ck_security(s),
        }
        self._consumer = Consumer(
            {
                **self._connection,
                "group.id": s["group_id"],
                # "error": an out-of-range offset is reported to the source, never reset silently
                "enable.auto.commit": False,
                "auto.offset.reset": "error",
                "allow.auto.create.topics": False,
                "session.timeout.ms": s["session_timeout_ms"],
                "heartbeat.interval.ms": s["heartbeat_interval_ms"],
                "max.poll.interval.ms": s["max_poll_interval_ms"],
                "fetch.max.bytes": s["fetch_max_bytes"],
                "max.partition.fetch.bytes": s["max_partition_fetch_bytes"],
                "fetch.wait.max.ms": s["fetch_max_wait_ms"],
                "fetch.queue.backoff.ms": s["fetch_queue_backoff_ms"],
                "socket.timeout.ms": s["request_timeout_ms"],
            }
        )
        self._timeout = s["request_timeout_ms"] / 1000.0
        self._admin: AdminClient | None = None
        self._ids_unavailable = False
        self.on_assign: Callable[[list[str]], None] = lambda pids: None
        self.on_revoke: Callable[[list[str]], None] = lambda pids: None
        self.on_lost: Callable[[list[str]], None] = lambda pids: None
        self.out_of_range: dict[str, int] = {}
        self._seeks: dict[str, int] = {}
        self._assigning = False
        # an exception raised inside a callback of librdkafka's poll is kept and raised after it: raised
        # through the C layer it would surface as a SystemError
        self._callback_error: BaseException | None = None
        start = OFFSET_BEGINNING if s["auto_offset_reset"] == "earliest" else OFFSET_END

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self._assigning = True
            self._seeks = {}
            try:
                self.on_assign([pid_of(p.topic, p.partition) for p in partitions])
                unsought = [p for p in partitions if pid_of(p.topic, p.partition) not in self._seeks]
                committed = consumer.committed(unsought, timeout=self._timeout) if unsought else []
                # no checkpoint: the group's committed offset, else auto_offset_reset (librdkafka itself would
                # report a missing offset as out of range with auto.offset.reset=error)
                starts = {pid_of(p.topic, p.partition): (p.offset if p.offset >= 0 else start) for p in committed}
            except BaseException as exc:
                self._callback_error = self._callback_error or exc
                starts = {}
            finally:
                self._assigning = False
            for p in partitions:
                pid = pid_of(p.topic, p.partition)
                off = self._seeks.get(pid, starts.get(pid))
                if off is not None:
                    p.offset = off
            consumer.assign(partitions)

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self._guarded(self.on_revoke, [pid_of(p.topic, p.partition) for p in partitions])
            consumer.unassign()

        def lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self._guarded(self.on_lost, [pid_of(p.topic, p.partition) for p in partitions])
            consumer.unassign()

        self._consumer.subscribe(s["topics"], on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def probe(self, timeout: float) -> None:
        """librdkafka connects in the background: ask the cluster's metadata to know it is there."""
        from confluent_kafka import KafkaException

        try:
            self._consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise _unreachable(self._settings, exc) from None

    def _guarded(self, callback: Callable[[list[str]], None], pids: list[str]) -> None:
        try:
            callback(pids)
        except BaseException as exc:
            self._callback_error = self._callback_error or exc

    def _raise_callback_error(self) -> None:
        exc, self._callback_error = self._callback_error, None
        if exc is not None:
            raise exc

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, int, bytes | None]]:
        from confluent_kafka import KafkaError

        out: list[tuple[str, int, bytes | None]] = []
        messages: list[Message] = self._consumer.consume(num_messages=max_records, timeout=timeout)
        self._raise_callback_error()
        for m in messages:
            err, topic, partition, offset = m.error(), m.topic(), m.partition(), m.offset()
            if err is not None:
                if (
                    err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)
                    and topic is not None
                    and partition is not None
                    and offset is not None
                ):
                    self.out_of_range[pid_of(topic, partition)] = offset
                else:
                    log.warning("event=kafka_error error=%s", err)
                continue
            if topic is None or partition is None or offset is None:  # librdkafka sets all three on a record without error
                continue
            out.append((pid_of(topic, partition), offset, m.value()))
        return out

    def seek(self, pid: str, offset: int) -> None:
        from confluent_kafka import TopicPartition

        if self._assigning:
            self._seeks[pid] = offset  # applied by the assign callback
        else:
            self._consumer.seek(TopicPartition(*split_pid(pid), offset))

    def commit(self, offsets: dict[str, int]) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.commit(offsets=[TopicPartition(*split_pid(pid), off) for pid, off in offsets.items()], asynchronous=False)

    def topic_state(self, topic: str) -> tuple[bool, str | None]:
        """(the topic exists, its topic id or None); librdkafka's consumer metadata has no ids, the admin API does."""
        from confluent_kafka import KafkaError, KafkaException, TopicCollection
        from confluent_kafka.admin import AdminClient

        if self._ids_unavailable:
            return True, None
        if self._admin is None:
            self._admin = AdminClient(self._connection)
        future = self._admin.describe_topics(TopicCollection([topic]), request_timeout=self._timeout)[topic]
        try:
            described = future.result(timeout=self._timeout + 1.0)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return False, None
            if (
                error is None
                or error.retriable()
                or error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN)
            ):
                raise  # the broker is away: checked again at the next poll
            # a broker (or an ACL) that refuses to describe topics: go on without ids, never stall
            self._ids_unavailable = True
            log.warning(
                "event=kafka_topic_ids_unavailable topic=%s error=%s (recreated topics are found by their offsets only)", topic, error
            )
            return True, None
        return True, _uuid_text(getattr(described, "topic_id", None))

    def fetched_end(self, pid: str) -> int | None:
        from confluent_kafka import TopicPartition

        _, high = self._consumer.get_watermark_offsets(TopicPartition(*split_pid(pid)), timeout=1.0, cached=True)
        return None if high is None or high < 0 else int(high)

    def log_range(self, pid: str) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        low, high = self._consumer.get_watermark_offsets(TopicPartition(*split_pid(pid)), timeout=self._timeout, cached=False)
        return int(low), int(high)

    def lag(self, positions: dict[str, int]) -> dict[str, int]:
        from confluent_kafka import TopicPartition

        out = {}
        for pid, pos in positions.items():
            _, high = self._consumer.get_watermark_offsets(TopicPartition(*split_pid(pid)), timeout=1.0, cached=True)
            out[pid] = max(int(high) - pos, 0)
        return out

    def close(self) -> None:
        self._consumer.close()
        self._callback_error = None  # the engine had already stopped: a revocation at close has nothing to save


class _ConfluentProducer:
    def __init__(self, s: dict[str, Any], connect_timeout: float):
        from confluent_kafka import Producer

        self._settings = s
        self._producer = Producer(
            {
                "bootstrap.servers": s["bootstrap_servers"],
                "client.id": s["client_id"],
                "logger": _client_log,
                "acks": s["acks"],
                "compression.type": s["compression"],
                "linger.ms": s["linger_ms"],
                "batch.size": s["batch_size"],
                "queue.buffering.max.messages": s["max_buffered_records"],
                "socket.timeout.ms": s["request_timeout_ms"],
                # librdkafka reports failed deliveries only: no Python call per delivered record
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
                **_ck_security(s),
            }
        )
        self.max_block = s["max_block_ms"] / 1000.0
        self._failed = 0
        self._last_error: str | None = None

    def probe(self, timeout: float) -> None:
        from confluent_kafka import KafkaException

        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise _unreachable(self._settings, exc) from None

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._last_error = str(err)

    def produce_many(self, topic: str, records: Records, headers: bool) -> None:
        """The records of a batch: one C call per record (the client encodes the str key), one poll for all."""
        produce = self._producer.produce
        for i, record in enumerate(records):
            try:
                if headers:
                    produce(topic, record[1], record[0], headers=list(record[2]))
                else:
                    produce(topic, record[1], record[0])
            except BufferError:  # local queue full: backpressure, not unbounded memory
                self._produce_blocking(topic, records[i:], headers)
                break
        self._producer.poll(0)

    def _produce_blocking(self, topic: str, records: Records, headers: bool) -> None:
        deadline = time.monotonic() + self.max_block
        for record in records:
            while True:
                try:
                    self._producer.produce(topic, record[1], record[0], headers=list(record[2]) if headers else None)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise
                    self._producer.poll(0.05)

    def take_failures(self) -> tuple[int, str | None]:
        """Deliveries that failed since the last call (reported by the polls), and the last error."""
        failed, error = self._failed, self._last_error
        self._failed, self._last_error = 0, None
        return failed, error

    def flush(self) -> None:
        while self._producer.flush(1.0) > 0:
            log.warning("event=kafka_flush_waiting pending=%d", len(self._producer))

    def close(self) -> None:
        self.flush()


# -- the engine-facing classes --------------------------------------------------------
class _BrokerEndpoint:
    """What the daemon's start-up needs of a source or sink: where the broker is and how long to wait for it."""

    settings: dict[str, Any]
    connected: bool

    @property
    def bootstrap(self) -> str:
        return str(self.settings["bootstrap_servers"])

    @property
    def connect_timeout(self) -> float | None:
        """Seconds the daemon keeps retrying an unreachable broker at start-up (None: forever)."""
        timeout = self.settings["connect_timeout_seconds"]
        return None if timeout is None else float(timeout)


class KafkaSource(_BrokerEndpoint):
    """Consumes ``topics`` in consumer group ``group_id``; partitioned positions.

    A position is ``{"offset": next offset, "topic_id": id}`` (the id when the broker
    has topic ids), so a checkpoint restored onto a recreated topic is recognised.

    Examples
    --------
    >>> KafkaSource.partitioned
    True
    >>> KafkaSource({"topics": ["events"], "on_offset_reset": "skip"})
    Traceback (most recent call last):
    ...
    ValueError: on_offset_reset: 'skip' is not one of fail, earliest, latest
    """

    partitioned = True

    def __init__(self, options: dict[str, Any], max_records: int = 512):
        self.settings = kafka_settings(options, SOURCE_OPTIONS)
        self.policy = self.settings["on_offset_reset"]
        self.max_records = max_records
        # built by connect(): the constructor never blocks on the network, so the daemon's HTTP
        # server answers /healthz and /readyz while the broker is still away
        self._client_or_none: _KafkaPythonConsumer | _ConfluentConsumer | None = None
        self.connected = False
        self._next: dict[str, int] = {}
        self._topic_ids: dict[str, str | None] = {}  # pid -> the id of the log its position belongs to
        self._owned: set[str] = set()  # the partitions the group gave this worker
        self._unverified: set[str] = set()  # assigned or sought, not yet checked against the log
        self._check_due = 0.0
        self._missing: set[str] = set()  # topics absent from the broker's metadata (logged once)
        self._on_assign: Callable[[list[str]], None] = lambda pids: None
        self._on_revoke: Callable[[list[str]], None] = lambda pids: None
        self._on_lost: Callable[[list[str]], None] = lambda pids: None
        self.errors = 0
        self.offset_resets: dict[tuple[str, str, str], int] = {}  # (topic, partition, action) -> count
        self._cursor = RowCursor()  # fetched records not yet handed out, split at Arrow rows

    def connect(self, timeout: float = 10.0) -> None:
        """Reach the broker and join the group's subscription: one attempt of at most about
        ``timeout`` seconds, :class:`BrokerUnreachable` if it fails (the caller retries)."""
        if self.connected:
            return
        if self._client_or_none is None:
            cls = _ConfluentConsumer if self.settings["backend"] == "confluent" else _KafkaPythonConsumer
            client = cls(self.settings, self.max_records, timeout)
            client.on_assign, client.on_revoke, client.on_lost = self._assigned, self._revoked, self._lost
            self._client_or_none = client
        self._client_or_none.probe(timeout)
        self.connected = True
        log.info("event=kafka_connected role=source bootstrap=%s", self.bootstrap)

    @property
    def _client(self) -> _KafkaPythonConsumer | _ConfluentConsumer:
        if self._client_or_none is None:
            raise RuntimeError("the Kafka source is not connected yet (call connect())")
        return self._client_or_none

    def set_listener(
        self,
        on_assign: Callable[[list[str]], None],
        on_revoke: Callable[[list[str]], None],
        on_lost: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Rebalance callbacks; ``on_lost`` (eviction) falls back to ``on_revoke`` when not given."""
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._on_lost = on_lost if on_lost is not None else on_revoke

    def _assigned(self, pids: list[str]) -> None:
        self._owned.update(pids)
        self._unverified.update(pids)
        for pid in pids:  # a series at 0 before the first reset, so that an alert sees its increase
            topic, partition = split_pid(pid)
            self.offset_resets.setdefault((topic, str(partition), self.policy), 0)
        self._on_assign(pids)

    def _revoked(self, pids: list[str]) -> None:
        self._on_revoke(pids)
        self._drop(pids)

    def _lost(self, pids: list[str]) -> None:
        self._on_lost(pids)
        self._drop(pids)

    def _drop(self, pids: list[str]) -> None:
        for pid in pids:
            self._owned.discard(pid)
            self._next.pop(pid, None)
            self._topic_ids.pop(pid, None)
            self._unverified.discard(pid)
            self._cursor.drop(pid)

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, Any]]:
        """The next records (at most ``max_records`` events: an Arrow message's rows count one each and
        may be handed out over several polls), none of them from a partition whose position is not in its log.

        Raises :class:`OffsetResetError` when one is found and ``on_offset_reset = "fail"``.
        """
        if self._cursor:  # rows of Arrow messages fetched earlier come first
            return self._cursor.take(max_records)
        if not self.connected:  # the daemon connects first; a direct user gets one short attempt per poll
            try:
                self.connect(max(timeout, 1.0))
            except BrokerUnreachable as exc:
                self.errors += 1
                log.warning("event=kafka_unreachable role=source error=%r", str(exc))
                return []
        try:
            records = self._client.poll(max_records, timeout)
        except Exception as exc:  # the broker is away: say so, keep running
            self.errors += 1
            log.warning("event=kafka_poll_error error=%r", exc)
            time.sleep(min(timeout, 1.0))
            return []
        held, moved = self._check_positions()
        if held or moved:
            # records of a partition that failed its check, or could not be checked, are never handed out
            first: dict[str, int] = {}
            kept = []
            for record in records:
                if record[0] in held or record[0] in moved:
                    first.setdefault(record[0], record[1])
                else:
                    kept.append(record)
            for pid, offset in first.items():
                if pid in held:  # fetched again once the check passes (a reset has sought elsewhere already)
                    self._client.seek(pid, offset)
            records = kept
        nxt = self._next
        for pid, offset, value in records:
            nxt[pid] = offset + 1  # fetched; position() names the first row not yet handed out
            self._cursor.push(pid, offset, value if value is not None else b"")
        return self._cursor.take(max_records)

    def _check_positions(self) -> tuple[set[str], set[str]]:
        """Check the new and (every POSITION_CHECK_SECONDS) all owned positions against their logs; a position
        not in its log gets the policy. Returns the partitions held back (to be checked again at the next
        poll) and those the policy moved."""
        out_of_range, self._client.out_of_range = self._client.out_of_range, {}
        now = time.monotonic()
        periodic = now >= self._check_due
        if not (out_of_range or self._unverified or periodic):
            return set(), set()
        if periodic:
            self._check_due = now + POSITION_CHECK_SECONDS
        pids = (self._unverified | set(out_of_range) | (self._owned if periodic else set())) & self._owned
        held: set[str] = set()
        moved: set[str] = set()
        states: dict[str, tuple[bool, str | None]] = {}  # one metadata look-up per topic and pass
        for pid in sorted(pids):
            topic, _ = split_pid(pid)
            try:
                if topic not in states:
                    states[topic] = self._client.topic_state(topic)
                exists, topic_id = states[topic]
                if not exists:  # deleted, or lost with the broker: held until it is back, then checked
                    if topic not in self._missing:
                        self._missing.add(topic)
                        self.errors += 1  # once per absence: source_up reads 0 until a commit succeeds again
                        log.warning("event=kafka_topic_missing topic=%s partition=%s position=%s", topic, pid, self._next.get(pid))
                    self._unverified.add(pid)
                    held.add(pid)
                    continue
                self._missing.discard(topic)
                reason = self._verdict(pid, topic_id, pid in out_of_range, pid in self._unverified)
                if reason is not None:
                    self._reset(pid, reason, topic_id)  # raises with "fail"
                    moved.add(pid)
                    continue
            except OffsetResetError:
                raise
            except Exception as exc:  # the broker is away: check again at the next poll
                self.errors += 1
                log.warning("event=kafka_position_check_failed partition=%s error=%r", pid, exc)
                self._unverified.add(pid)
                held.add(pid)
                continue
            if self._topic_ids.get(pid) is None:
                self._topic_ids[pid] = topic_id
            self._unverified.discard(pid)
        return held, moved

    def _verdict(self, pid: str, topic_id: str | None, out_of_range: bool, new: bool) -> str | None:
        """Why ``pid``'s position is not in its log, or None when it is (as far as the broker says)."""
        known = self._topic_ids.get(pid)
        if known is not None and topic_id is not None and known != topic_id:
            return "topic_recreated"
        if out_of_range:
            return "out_of_range"
        position = self._next.get(pid)
        if position is None:
            return None
        end = self._client.fetched_end(pid)
        # Past the end: past what the last fetch reported (ListOffsets under-reports the end on tansu) and past what
        # ListOffsets says (the fetch's report may predate the assignment: librdkafka keeps a partition's watermark
        # from the last time this worker owned it).
        if new or (end is not None and position > end):
            low, listed = self._client.log_range(pid)
            if end is not None and position > max(end, listed):
                return "past_log_end"
            if position < low:
                return "before_log_start"
        return None

    def _reset(self, pid: str, reason: str, topic_id: str | None) -> None:
        """Log, count and apply the policy to a position that is not in its log."""
        topic, partition = split_pid(pid)
        position = self._next.get(pid)
        action = self.policy
        low: int | None
        high: int | None
        try:
            low, high = self._client.log_range(pid)
        except Exception:
            if action != "fail":
                raise  # where to go is unknown: checked again at the next poll
            low = high = None
        if reason != "topic_recreated" and high is not None:
            fetched = self._client.fetched_end(pid)
            high = high if fetched is None else max(high, fetched)
        self.errors += 1
        key = (topic, str(partition), action)
        self.offset_resets[key] = self.offset_resets.get(key, 0) + 1
        fields = (
            f"event=offset_reset topic={topic} partition={partition} position={position} log_start={low} log_end={high} "
            f"reason={reason} action={action}"
        )
        if action == "fail":
            log.error(fields)
            raise OffsetResetError(topic, partition, position, low, high, reason)
        target = low if action == "earliest" else high
        assert target is not None  # the log's range is known: without it only "fail" went on, and raised
        log.warning("%s to=%d (the learner state is kept)", fields, target)
        self._client.seek(pid, target)
        self._cursor.drop(pid)
        self._next[pid] = target
        self._topic_ids[pid] = topic_id
        self._unverified.discard(pid)

    def position(self, pid: str) -> dict[str, Any] | None:
        """The next offset, and the next row when the engine stopped inside an Arrow message."""
        at = self._cursor.next_position(pid)
        off, row = at if at is not None else (self._next.get(pid), 0)
        if off is None:
            return None
        position: dict[str, Any] = position_dict("offset", off, row)
        topic_id = self._topic_ids.get(pid)
        if topic_id is not None:
            position["topic_id"] = topic_id
        return position

    def seek(self, pid: str, position: dict[str, Any]) -> None:
        """Resume at a checkpointed position; it is checked against the log before any record is handed out."""
        self._client.seek(pid, int(position["offset"]))
        self._cursor.seek(pid, int(position["offset"]), int(position.get("row", 0)))
        self._next[pid] = int(position["offset"])
        self._topic_ids[pid] = position.get("topic_id")
        self._unverified.add(pid)

    def commit(self, positions: dict[str, dict[str, Any]]) -> bool:
        """Commit offsets to the group (after the checkpoint that covers them); False if the broker is away."""
        offsets = {pid: int(p["offset"]) for pid, p in positions.items() if p}
        if not offsets:
            return True
        try:
            self._client.commit(offsets)
            return True
        except Exception as exc:  # the checkpoint is the truth; a later commit catches up
            self.errors += 1
            log.warning("event=kafka_commit_failed error=%r", exc)
            return False

    def lag(self) -> dict[str, int]:
        """Records behind the end of each owned partition (on tansu the end is under-reported
        while the newest batch holds several records; on Apache Kafka it is exact)."""
        if not self._next:
            return {}
        try:
            return self._client.lag(dict(self._next))
        except Exception as exc:
            self.errors += 1
            log.warning("event=kafka_lag_unavailable error=%r", exc)
            return {}

    def exhausted(self) -> bool:
        return False

    def close(self) -> None:
        # the engine checkpointed before closing: the revocation the client reports while leaving the group
        # has nothing to save (and the engine's sinks are closed by now)
        self._on_assign = self._on_revoke = self._on_lost = lambda pids: None
        if self._client_or_none is not None:
            self._client_or_none.close()


class KafkaSink(_BrokerEndpoint):
    """Produces records to ``topic``, keyed by the record's key; headers (model, event id) when ``headers`` is on.

    ``default_headers`` is what ``headers = None`` (the option's default) means for this
    sink: off for answers, on for dead letters. A batch is produced with one client call
    per record and one poll; failed deliveries are counted per batch (``delivery_failures``)
    and logged.
    """

    def __init__(self, options: dict[str, Any], default_headers: bool = False):
        self.settings = kafka_settings(options, SINK_OPTIONS)
        self._producer_or_none: _KafkaPythonProducer | _ConfluentProducer | None = None  # built by connect()
        self.connected = False
        self.topic = self.settings["topic"]
        self.headers = default_headers if self.settings["headers"] is None else bool(self.settings["headers"])
        self.max_buffered = self.settings["max_buffered_records"]
        self.produced = 0
        self.delivery_failures = 0
        self._unflushed = 0

    def connect(self, timeout: float = 10.0) -> None:
        """Reach the broker: one attempt of at most about ``timeout`` seconds, :class:`BrokerUnreachable` if it fails."""
        if self.connected:
            return
        if self._producer_or_none is None:
            cls = _ConfluentProducer if self.settings["backend"] == "confluent" else _KafkaPythonProducer
            self._producer_or_none = cls(self.settings, timeout)
        self._producer_or_none.probe(timeout)
        self.connected = True
        log.info("event=kafka_connected role=sink topic=%s bootstrap=%s", self.topic, self.bootstrap)

    @property
    def _producer(self) -> _KafkaPythonProducer | _ConfluentProducer:
        if self._producer_or_none is None:  # a direct user that never called connect(): one bounded attempt
            self.connect(self.settings["request_timeout_ms"] / 1000.0)
        assert self._producer_or_none is not None
        return self._producer_or_none

    def write(self, records: Records) -> None:
        if not records:
            return
        self._producer.produce_many(self.topic, records, self.headers)
        self._count_failures()
        self.produced += len(records)
        self._unflushed += len(records)
        if self._unflushed >= self.max_buffered:
            # a slow answer topic slows the loop down instead of growing memory without bound
            self.flush()

    def _count_failures(self) -> None:
        failed, error = self._producer.take_failures()
        if failed:
            self.delivery_failures += failed
            log.error("event=kafka_delivery_failed topic=%s records=%d error=%r", self.topic, failed, error)

    def flush(self) -> None:
        if self._producer_or_none is None:  # never connected: nothing to flush
            return
        self._producer.flush()
        self._count_failures()
        self._unflushed = 0

    def close(self) -> None:
        if self._producer_or_none is None:  # never connected: nothing buffered
            return
        self.flush()
        self._producer.close()
