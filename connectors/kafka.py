"""Kafka: a consumer-group source with per-partition positions, and answer/dead-letter sinks.

Two client backends behind one interface, chosen by ``backend``: ``"kafka-python"``
(the default, pure Python) and ``"confluent"`` (librdkafka through confluent-kafka, an
optional extra; it consumes several times faster). The options that matter in
production pass through under one set of names (see :data:`SOURCE_OPTIONS` and
:data:`SINK_OPTIONS`); the README's Kafka section lists them.

The source is *partitioned*: ``poll`` returns ``(partition_id, payload)`` pairs, with
``partition_id = "topic:partition"``; ``position(pid)`` is the offset after the last
record handed out; ``seek(pid, position)``; ``commit({pid: position})`` commits
offsets to the group; ``set_listener(on_assign, on_revoke, on_lost)`` is called with
partition ids when the group rebalances (the engine checkpoints what it gives up and
restores what it gains inside those calls). ``on_lost`` is the forced case: this worker
was evicted (it stalled past the session timeout), another may already own the
partitions, so the engine drops them without writing anything.

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
from typing import Any, Callable

log = logging.getLogger("regretflow.kafka")

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
    "auto_offset_reset": "earliest",
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
}
BACKENDS = ("kafka-python", "confluent")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")


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
    if "compression" in allowed and s["compression"] not in COMPRESSION:
        raise ValueError(f"compression: {s['compression']!r} is not one of {', '.join(COMPRESSION)}")
    if isinstance(s["bootstrap_servers"], list):
        s["bootstrap_servers"] = ",".join(s["bootstrap_servers"])
    return s


def pid_of(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def split_pid(pid: str) -> tuple[str, int]:
    topic, _, partition = pid.rpartition(":")
    return topic, int(partition)


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
    def __init__(self, s: dict[str, Any], max_records: int):
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=s["bootstrap_servers"].split(","), client_id=s["client_id"], group_id=s["group_id"],
            enable_auto_commit=False, auto_offset_reset=s["auto_offset_reset"],
            session_timeout_ms=s["session_timeout_ms"], heartbeat_interval_ms=s["heartbeat_interval_ms"],
            max_poll_interval_ms=s["max_poll_interval_ms"], max_poll_records=max_records,
            fetch_max_bytes=s["fetch_max_bytes"], max_partition_fetch_bytes=s["max_partition_fetch_bytes"],
            fetch_max_wait_ms=s["fetch_max_wait_ms"], request_timeout_ms=max(s["request_timeout_ms"], s["session_timeout_ms"] + 1000),
            **_kp_security(s),
        )
        self._topics = s["topics"]
        outer = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                outer.on_revoke([pid_of(tp.topic, tp.partition) for tp in revoked])

            def on_partitions_assigned(self, assigned):
                outer.on_assign([pid_of(tp.topic, tp.partition) for tp in assigned])

            def on_partitions_lost(self, lost):
                outer.on_lost([pid_of(tp.topic, tp.partition) for tp in lost])

        self.on_assign: Callable[[list[str]], None] = lambda pids: None
        self.on_revoke: Callable[[list[str]], None] = lambda pids: None
        self.on_lost: Callable[[list[str]], None] = lambda pids: None
        self._consumer.subscribe(self._topics, listener=Listener())

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, int, bytes]]:
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        out = []
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

        self._consumer.commit({TopicPartition(*split_pid(pid)): OffsetAndMetadata(off, "", -1) for pid, off in offsets.items()},
                              timeout_ms=5000)

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


class _KafkaPythonProducer:
    def __init__(self, s: dict[str, Any]):
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=s["bootstrap_servers"].split(","), client_id=s["client_id"],
            acks=s["acks"] if s["acks"] == "all" else int(s["acks"]),
            compression_type=None if s["compression"] == "none" else s["compression"],
            linger_ms=s["linger_ms"], batch_size=s["batch_size"], max_block_ms=s["max_block_ms"], request_timeout_ms=s["request_timeout_ms"], **_kp_security(s),
        )

    def produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._producer.send(topic, key=key, value=value, headers=headers)

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
    def __init__(self, s: dict[str, Any], max_records: int):
        from confluent_kafka import Consumer

        self._consumer = Consumer({
            "bootstrap.servers": s["bootstrap_servers"], "client.id": s["client_id"], "group.id": s["group_id"],
            "enable.auto.commit": False, "auto.offset.reset": s["auto_offset_reset"],
            "session.timeout.ms": s["session_timeout_ms"], "heartbeat.interval.ms": s["heartbeat_interval_ms"],
            "max.poll.interval.ms": s["max_poll_interval_ms"], "fetch.max.bytes": s["fetch_max_bytes"],
            "max.partition.fetch.bytes": s["max_partition_fetch_bytes"], "fetch.wait.max.ms": s["fetch_max_wait_ms"],
            "socket.timeout.ms": s["request_timeout_ms"], **_ck_security(s),
        })
        self.on_assign: Callable[[list[str]], None] = lambda pids: None
        self.on_revoke: Callable[[list[str]], None] = lambda pids: None
        self.on_lost: Callable[[list[str]], None] = lambda pids: None
        self._seeks: dict[str, int] = {}
        self._assigning = False

        def assigned(consumer, partitions):
            self._assigning = True
            self._seeks = {}
            try:
                self.on_assign([pid_of(p.topic, p.partition) for p in partitions])
            finally:
                self._assigning = False
            for p in partitions:
                off = self._seeks.get(pid_of(p.topic, p.partition))
                if off is not None:
                    p.offset = off
            consumer.assign(partitions)

        def revoked(consumer, partitions):
            self.on_revoke([pid_of(p.topic, p.partition) for p in partitions])
            consumer.unassign()

        def lost(consumer, partitions):
            self.on_lost([pid_of(p.topic, p.partition) for p in partitions])
            consumer.unassign()

        self._consumer.subscribe(s["topics"], on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, int, bytes]]:
        out = []
        for m in self._consumer.consume(num_messages=max_records, timeout=timeout):
            if m.error() is not None:
                log.warning("event=kafka_error error=%s", m.error())
                continue
            out.append((pid_of(m.topic(), m.partition()), m.offset(), m.value()))
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

    def lag(self, positions: dict[str, int]) -> dict[str, int]:
        from confluent_kafka import TopicPartition

        out = {}
        for pid, pos in positions.items():
            _, high = self._consumer.get_watermark_offsets(TopicPartition(*split_pid(pid)), timeout=1.0, cached=True)
            out[pid] = max(int(high) - pos, 0)
        return out

    def close(self) -> None:
        self._consumer.close()


class _ConfluentProducer:
    def __init__(self, s: dict[str, Any]):
        from confluent_kafka import Producer

        self._producer = Producer({
            "bootstrap.servers": s["bootstrap_servers"], "client.id": s["client_id"], "acks": s["acks"],
            "compression.type": s["compression"], "linger.ms": s["linger_ms"], "batch.size": s["batch_size"],
            "queue.buffering.max.messages": s["max_buffered_records"], "socket.timeout.ms": s["request_timeout_ms"],
            **_ck_security(s),
        })
        self.max_block = s["max_block_ms"] / 1000.0

    def produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        deadline = time.monotonic() + self.max_block
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:  # local queue full: backpressure, not unbounded memory
                if time.monotonic() > deadline:
                    raise
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self) -> None:
        while self._producer.flush(1.0) > 0:
            log.warning("event=kafka_flush_waiting pending=%d", len(self._producer))

    def close(self) -> None:
        self.flush()


# -- the engine-facing classes --------------------------------------------------------
class KafkaSource:
    """Consumes ``topics`` in consumer group ``group_id``; partitioned positions.

    Examples
    --------
    >>> KafkaSource.partitioned
    True
    """

    partitioned = True

    def __init__(self, options: dict[str, Any], max_records: int = 512):
        self.settings = kafka_settings(options, SOURCE_OPTIONS)
        cls = _ConfluentConsumer if self.settings["backend"] == "confluent" else _KafkaPythonConsumer
        self._client = cls(self.settings, max_records)
        self._next: dict[str, int] = {}
        self._client.on_assign = self._assigned
        self._client.on_revoke = self._revoked
        self._client.on_lost = self._lost
        self._on_assign: Callable[[list[str]], None] = lambda pids: None
        self._on_revoke: Callable[[list[str]], None] = lambda pids: None
        self._on_lost: Callable[[list[str]], None] = lambda pids: None
        self.errors = 0

    def set_listener(self, on_assign: Callable[[list[str]], None], on_revoke: Callable[[list[str]], None],
                     on_lost: Callable[[list[str]], None] | None = None) -> None:
        """Rebalance callbacks; ``on_lost`` (eviction) falls back to ``on_revoke`` when not given."""
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._on_lost = on_lost if on_lost is not None else on_revoke

    def _assigned(self, pids: list[str]) -> None:
        self._on_assign(pids)

    def _revoked(self, pids: list[str]) -> None:
        self._on_revoke(pids)
        for pid in pids:
            self._next.pop(pid, None)

    def _lost(self, pids: list[str]) -> None:
        self._on_lost(pids)
        for pid in pids:
            self._next.pop(pid, None)

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, bytes]]:
        try:
            records = self._client.poll(max_records, timeout)
        except Exception as exc:  # the broker is away: say so, keep running
            self.errors += 1
            log.warning("event=kafka_poll_error error=%r", exc)
            time.sleep(min(timeout, 1.0))
            return []
        out = []
        nxt = self._next
        for pid, offset, value in records:
            nxt[pid] = offset + 1
            out.append((pid, value if value is not None else b""))
        return out

    def position(self, pid: str) -> dict[str, int] | None:
        off = self._next.get(pid)
        return None if off is None else {"offset": off}

    def seek(self, pid: str, position: dict[str, int]) -> None:
        self._client.seek(pid, int(position["offset"]))
        self._next[pid] = int(position["offset"])

    def commit(self, positions: dict[str, dict[str, int]]) -> bool:
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
        self._client.close()


class KafkaSink:
    """Produces records to ``topic``; the key and the headers carry the model and the event id."""

    def __init__(self, options: dict[str, Any]):
        self.settings = kafka_settings(options, SINK_OPTIONS)
        cls = _ConfluentProducer if self.settings["backend"] == "confluent" else _KafkaPythonProducer
        self._producer = cls(self.settings)
        self.topic = self.settings["topic"]
        self.max_buffered = self.settings["max_buffered_records"]
        self.produced = 0
        self._unflushed = 0

    def write(self, records) -> None:
        produce, topic = self._producer.produce, self.topic
        for record in records:
            key, payload = record[0], record[1]
            headers = [(k, v.encode()) for k, v in record[2]] if len(record) > 2 else []
            produce(topic, key.encode(), payload, headers)
        self.produced += len(records)
        self._unflushed += len(records)
        if self._unflushed >= self.max_buffered:
            # a slow answer topic slows the loop down instead of growing memory without bound
            self.flush()

    def flush(self) -> None:
        self._producer.flush()
        self._unflushed = 0

    def close(self) -> None:
        self.flush()
        self._producer.close()
