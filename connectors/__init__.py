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
