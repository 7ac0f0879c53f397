"""In-memory source and sink: the demo, replays of lists, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

from regretflow.connectors import Position, Record, Records


class MemorySource:
    """Serves a list of payloads; its position is the index of the next one.

    Examples
    --------
    >>> src = MemorySource([b"a", b"b", b"c"])
    >>> src.poll(2, 0.0), src.position(), src.poll(2, 0.0), src.exhausted()
    ([b'a', b'b'], {'index': 2}, [b'c'], True)
    """

    def __init__(self, payloads: Iterable[bytes]):
        self.payloads = [p if isinstance(p, bytes) else str(p).encode() for p in payloads]
        self._index = 0

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        out = self.payloads[self._index : self._index + max_records]
        self._index += len(out)
        return out

    def position(self) -> Position:
        return {"index": self._index}

    def seek(self, position: Position) -> None:
        self._index = int(position["index"])

    def exhausted(self) -> bool:
        return self._index >= len(self.payloads)

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every record in ``records`` (a list of (key, payload, headers))."""

    def __init__(self, keep: bool = True):
        self.records: list[Record] = []
        self.keep = keep
        self.count = 0

    def write(self, records: Records) -> None:
        self.count += len(records)
        if self.keep:
            self.records.extend(records)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
