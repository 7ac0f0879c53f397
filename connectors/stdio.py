"""Standard input as a source, standard output or error as sinks."""

from __future__ import annotations

import queue
import sys
import threading
from typing import BinaryIO

from regretflow.connectors import Position, Records


class StdinSource:
    """Reads JSON lines from standard input (a reader thread, so polls can time out).

    Its position is a line count; it cannot be rewound, so a daemon that must resume
    after a crash reads from a jsonl file or Kafka instead. A line longer than
    ``max_line_bytes`` is cut to its first ``max_line_bytes + 1`` bytes (dead-lettered as
    ``oversized``) and the rest is read past in bounded chunks, never held.

    Examples
    --------
    >>> import io
    >>> src = StdinSource(stream=io.BytesIO(b'{"a": 1}\\n'))
    >>> src.poll(5, 1.0), src.poll(5, 0.1), src.exhausted()
    ([b'{"a": 1}'], [], True)
    >>> StdinSource(stream=io.BytesIO(b"y" * 50 + b"\\n"), max_line_bytes=4).poll(5, 1.0)
    [b'yyyyy']
    """

    def __init__(self, stream: BinaryIO | None = None, max_buffered: int = 100_000, max_line_bytes: int = 65_536) -> None:
        self._stream = stream if stream is not None else sys.stdin.buffer
        self.max_line_bytes = max_line_bytes
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_buffered)  # backpressure on the reader
        self._lines = 0
        self._eof = False
        threading.Thread(target=self._read, name="regretflow-stdin", daemon=True).start()

    def _read(self) -> None:
        limit = self.max_line_bytes + 1
        readline = self._stream.readline
        while line := readline(limit):
            if len(line) == limit and not line.endswith(b"\n"):
                while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # the rest of an oversized line: read past it, keep nothing
            self._queue.put(line)
        self._queue.put(None)  # end of input

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < max_records and not self._eof:
            try:
                item = self._queue.get(timeout=timeout) if not out else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._eof = True
                break
            self._lines += 1
            payload = item.rstrip(b"\r\n")
            if payload.strip():
                out.append(payload)
        return out

    def position(self) -> Position:
        return {"lines": self._lines}

    def seek(self, position: Position) -> None:
        if int(position.get("lines", 0)) != self._lines:
            raise ValueError("standard input cannot be rewound; resuming needs a seekable source (jsonl or kafka)")

    def exhausted(self) -> bool:
        return self._eof

    def close(self) -> None:
        pass


class StreamSink:
    """Writes one record per line to a binary stream (stdout by default)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, records: Records) -> None:
        if records:
            self._stream.write(b"\n".join(record[1] for record in records) + b"\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()
