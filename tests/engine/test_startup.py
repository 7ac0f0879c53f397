"""The start-up wait for a Kafka broker, on scripted endpoints and a scripted clock (no broker).

The real-broker behaviour, with both backends, is in tests/integration/test_kafka_startup.py.
"""

from __future__ import annotations

import logging

import pytest

from regretflow.connectors.kafka import BrokerUnreachable
from regretflow.engine.errors import BrokerUnreachableError
from regretflow.engine.observability.metrics import HealthState
from regretflow.engine.runtime import startup
from regretflow.engine.runtime.startup import broker_endpoints, connect_endpoints


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Endpoint:
    """Unreachable for its first ``failures`` attempts; each attempt costs ``cost`` seconds of the clock."""

    def __init__(self, clock: Clock, failures: int, timeout: float | None = None, cost: float = 0.0):
        self.clock, self.failures, self.connect_timeout, self.cost = clock, failures, timeout, cost
        self.bootstrap = "kafka:9092"
        self.connected = False
        self.attempts: list[tuple[float, float]] = []  # (when, the attempt's timeout)

    def connect(self, timeout: float = 10.0) -> None:
        self.attempts.append((self.clock.now, timeout))
        self.clock.now += self.cost
        if len(self.attempts) <= self.failures:
            raise BrokerUnreachable(self.bootstrap, "connection refused")
        self.connected = True


def run(endpoints, clock: Clock, stop=lambda: False, health: HealthState | None = None) -> bool:
    return connect_endpoints(endpoints, health or HealthState(), stop, clock=clock, sleep=clock.sleep)


def test_only_unconnected_endpoints_that_can_connect_are_waited_for():
    clock = Clock()
    waiting, ready = Endpoint(clock, 0), Endpoint(clock, 0)
    ready.connected = True
    assert broker_endpoints({"source": waiting, "answers": ready, "dead_letters": object()}) == [("source", waiting)]


def test_retries_back_off_doubling_up_to_the_cap_and_then_connect(caplog):
    clock = Clock()
    endpoint = Endpoint(clock, failures=7)
    with caplog.at_level(logging.INFO, logger="regretflow"):
        assert run([("source", endpoint)], clock)
    starts = [when for when, _ in endpoint.attempts]
    gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:])]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert endpoint.connected
    lines = [r.getMessage() for r in caplog.records]
    # one warning per 30-second window (at 0, 31 and 61+ s here), then one line saying it connected
    assert sum("event=broker_unreachable" in line for line in lines) == 3
    assert "attempts=1 " in lines[0] and "next_attempt_s=1 " in lines[0] and "error='connection refused'" in lines[0]
    assert lines[-1].startswith("event=broker_connected endpoint=source bootstrap=kafka:9092 attempts=8")


def test_health_reports_the_wait_and_keeps_beating():
    clock = Clock()
    health = HealthState()
    seen = []

    class Watching(Endpoint):
        def connect(self, timeout: float = 10.0) -> None:
            seen.append((health.ready, health.detail, health.heartbeat))
            super().connect(timeout)

    health.heartbeat = -1.0
    assert run([("answers", Watching(clock, failures=2))], clock, health=health)
    assert seen[0][0] is False  # not ready while it waits (the engine sets ready once run() has connected)
    assert seen[1][1].startswith("waiting for the Kafka broker at kafka:9092 (answers, 0 s): connection refused")
    assert seen[2][2] >= 0.0  # beaten while it waited: /healthz stays 200


def test_past_the_timeout_it_raises_exit_3_without_sleeping_past_the_deadline():
    clock = Clock()
    endpoint = Endpoint(clock, failures=100, timeout=10.0)
    with pytest.raises(BrokerUnreachableError) as failed:
        run([("source", endpoint)], clock)
    assert failed.value.exit_code == 3
    assert str(failed.value) == (
        "the Kafka broker at kafka:9092 (source) stayed unreachable for 10 s (connect_timeout_seconds; 5 attempts): connection refused"
    )
    assert [when for when, _ in endpoint.attempts] == [0.0, 1.0, 3.0, 7.0, 10.0]  # the last at the deadline, not at 15
    assert endpoint.attempts[-1][1] == 0.1  # with no time left, one short last attempt


def test_a_single_failed_attempt_is_named_in_the_singular():
    clock = Clock()
    with pytest.raises(BrokerUnreachableError) as failed:
        run([("source", Endpoint(clock, failures=100, timeout=0.5, cost=1.0))], clock)
    assert "(connect_timeout_seconds; 1 attempt): connection refused" in str(failed.value)


def test_an_attempt_never_runs_longer_than_the_time_left():
    clock = Clock()
    endpoint = Endpoint(clock, failures=100, timeout=7.0, cost=2.0)
    with pytest.raises(BrokerUnreachableError):
        run([("source", endpoint)], clock)
    assert all(timeout <= startup.ATTEMPT_SECONDS for _, timeout in endpoint.attempts)
    assert endpoint.attempts[1] == (3.0, 4.0)  # 2 s attempt + 1 s backoff: 4 s left of 7


def test_a_stop_request_ends_the_wait_cleanly():
    clock = Clock()
    endpoint = Endpoint(clock, failures=100)
    assert run([("source", endpoint)], clock, stop=lambda: clock.now > 5.0) is False
    assert not endpoint.connected and len(endpoint.attempts) == 3


def test_every_endpoint_connects_in_turn_and_the_timeout_counts_from_the_start():
    clock = Clock()
    source, answers = Endpoint(clock, failures=2), Endpoint(clock, failures=100, timeout=5.0)
    with pytest.raises(BrokerUnreachableError, match=r"\(answers\) stayed unreachable for 5 s"):
        run([("source", source), ("answers", answers)], clock)
    assert source.connected and answers.attempts[0][0] == 3.0  # the source took 3 s of the answers' 5
