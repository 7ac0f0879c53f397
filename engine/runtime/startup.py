"""Start-up without a broker: reach every Kafka endpoint, retrying with backoff, while the
HTTP server already answers.

While it waits, ``/healthz`` answers 200 (the process is alive and beating) and
``/readyz`` 503 with the reason; one log line per window says who is waited for, how
long and why, never a traceback. Past the endpoint's ``connect_timeout_seconds`` (default:
no limit) the worker ends with :class:`~regretflow.engine.errors.BrokerUnreachableError`
(exit 3). A stop signal during the wait ends it cleanly: nothing was consumed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from regretflow.connectors.kafka import BrokerUnreachable
from regretflow.engine.errors import BrokerUnreachableError
from regretflow.engine.observability.metrics import HealthState

log = logging.getLogger("regretflow")

ATTEMPT_SECONDS = 5.0  # the longest one connection attempt may take
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
LOG_WINDOW_SECONDS = 30.0  # at most one "still unreachable" line per window


@runtime_checkable
class BrokerEndpoint(Protocol):
    """A source or sink that must reach its broker before the engine runs (KafkaSource, KafkaSink)."""

    connected: bool

    @property
    def bootstrap(self) -> str: ...

    @property
    def connect_timeout(self) -> float | None: ...

    def connect(self, timeout: float = ...) -> None: ...


def broker_endpoints(named: dict[str, object]) -> list[tuple[str, BrokerEndpoint]]:
    """The endpoints among ``named`` (source, answers, dead_letters) that still have to connect.

    >>> broker_endpoints({"source": object()})
    []
    """
    return [(name, e) for name, e in named.items() if isinstance(e, BrokerEndpoint) and not e.connected]


def connect_endpoints(
    endpoints: Sequence[tuple[str, BrokerEndpoint]],
    health: HealthState,
    stop_requested: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Connect each endpoint in turn; True once all are connected, False if a stop was requested first.

    Raises :class:`BrokerUnreachableError` once an endpoint has been unreachable for its
    ``connect_timeout`` seconds (counted from the start of the wait).
    """
    started = clock()
    for name, endpoint in endpoints:
        attempts = 0
        backoff = FIRST_BACKOFF_SECONDS
        logged_at: float | None = None
        failed_since_log = 0
        limit = endpoint.connect_timeout
        deadline = math.inf if limit is None else started + limit

        def left(deadline: float = deadline) -> float:  # seconds before this endpoint's deadline (inf without a limit)
            return max(deadline - clock(), 0.0)

        while not endpoint.connected:
            if stop_requested():
                return False
            attempts += 1
            try:
                endpoint.connect(max(min(ATTEMPT_SECONDS, left()), 0.1))
                break
            except BrokerUnreachable as exc:
                reason = exc.reason
            waited = clock() - started
            health.ready = False
            health.detail = f"waiting for the Kafka broker at {endpoint.bootstrap} ({name}, {waited:.0f} s): {reason}"[:300]
            health.beat()
            if limit is not None and left() == 0.0:
                raise BrokerUnreachableError(
                    f"the Kafka broker at {endpoint.bootstrap} ({name}) stayed unreachable for {limit:g} s "
                    f"(connect_timeout_seconds; {attempts} attempt{'s' if attempts != 1 else ''}): {reason}"
                )
            failed_since_log += 1
            if logged_at is None or clock() - logged_at >= LOG_WINDOW_SECONDS:
                log.warning(
                    "event=broker_unreachable endpoint=%s bootstrap=%s attempts=%d waited_s=%.0f next_attempt_s=%.0f timeout_s=%s error=%r",
                    name,
                    endpoint.bootstrap,
                    failed_since_log,
                    waited,
                    backoff,
                    "none" if limit is None else f"{limit:g}",
                    reason,
                )
                logged_at, failed_since_log = clock(), 0
            # never sleep past the deadline: the last attempt comes at it, then the verdict
            if not _pause(min(backoff, left()), health, stop_requested, clock, sleep):
                return False
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        if attempts > 1:
            log.info(
                "event=broker_connected endpoint=%s bootstrap=%s attempts=%d waited_s=%.0f",
                name,
                endpoint.bootstrap,
                attempts,
                clock() - started,
            )
    return True


def _pause(
    seconds: float, health: HealthState, stop_requested: Callable[[], bool], clock: Callable[[], float], sleep: Callable[[float], None]
) -> bool:
    """Sleep in short slices, beating (the process is alive) and watching for a stop; False if stopped."""
    until = clock() + seconds
    while clock() < until:
        if stop_requested():
            return False
        health.beat()
        sleep(min(0.2, max(until - clock(), 0.0)))
    return True
