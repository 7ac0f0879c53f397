"""Where events come from and where answers go.

A source has ``poll(max_records, timeout) -> list[bytes]``, ``position() -> dict``
(JSON scalars: where the record after the last one handed out starts),
``seek(position)``, ``exhausted() -> bool`` (a finite source has nothing more) and
``close()``. A sink has ``write(records)`` where each record is
``(key, payload, headers)`` with headers a tuple of (name, str value) pairs,
``flush()`` and ``close()``. A partitioned source (Kafka) returns ``(partition,
payload)`` pairs and takes the partition in ``position``/``seek``; see
:mod:`regretflow.connectors.kafka`. Connectors know nothing of learners or the engine.
"""

from collections.abc import Sequence
from typing import Any, Protocol

#: What a source's ``position()`` returns and ``seek()`` takes: a JSON object (stored in checkpoints).
Position = dict[str, Any]
#: One record for a sink: ``(key, payload, headers)``, headers as (name, str value) pairs.
Record = tuple[str, bytes, tuple[tuple[str, str], ...]]
#: What a sink's ``write`` takes.
Records = Sequence[Record]


class Sink(Protocol):
    """What the engine writes answers and dead letters to (every ``*Sink`` of this package).

    Examples
    --------
    >>> from regretflow.connectors.memory import MemorySink
    >>> sink: Sink = MemorySink()
    >>> sink.write([("m", b"{}", (("model", "m"),))]); sink.flush(); sink.close()
    """

    def write(self, records: Records) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
