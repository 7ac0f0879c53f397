"""In-memory source and sink: the demo, replays of lists, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from regretflow.connectors import Position, Record, Records
from regretflow.connectors.arrow import RowCursor, position_dict


class MemorySource:
    """Serves a list of payloads; its position is the index of the next one.

    An Arrow payload (docs/arrow.md) counts as many events as it has rows and may be
    split across polls; the position then also names the next row (``{"index": 3, "row": 100}``).

    Examples
    --------
    >>> src = MemorySource([b"a", b"b", b"c"])
    >>> src.poll(2, 0.0), src.position(), src.poll(2, 0.0), src.exhausted()
    ([b'a', b'b'], {'index': 2}, [b'c'], True)
    """

    def __init__(self, payloads: Iterable[bytes]):
        self.payloads = [p if isinstance(p, bytes) else str(p).encode() for p in payloads]
        self._index = 0  # the next payload not yet fetched into the cursor
        self._cursor = RowCursor()

    def poll(self, max_records: int, timeout: float) -> list[Any]:
        if not self._cursor:
            stop = min(self._index + max_records, len(self.payloads))
            for i in range(self._index, stop):
                self._cursor.push("", i, self.payloads[i])
            self._index = stop
        return [item for _, item in self._cursor.take(max_records)]

    def position(self) -> Position:
        at = self._cursor.next_position("")
        index, row = at if at is not None else (self._index, 0)
        return position_dict("index", index, row)

    def seek(self, position: Position) -> None:
        self._index = int(position["index"])
        self._cursor.seek("", self._index, int(position.get("row", 0)))

    def exhausted(self) -> bool:
        return self._index >= len(self.payloads) and not self._cursor

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
