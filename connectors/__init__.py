"""Where events come from and where answers go.

A source has ``poll(max_records, timeout) -> list[bytes]``, ``position() -> dict``
(JSON scalars: where the record after the last one handed out starts),
``seek(position)``, ``exhausted() -> bool`` (a finite source has nothing more) and
``close()``. A sink has ``write(records: list[tuple[str, bytes]])`` (key, payload),
``flush()`` and ``close()``. Connectors know nothing of learners or the engine.
"""
