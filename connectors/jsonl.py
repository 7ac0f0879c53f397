"""JSON Lines files: a source with resumable byte positions, an appending sink, and
:func:`read_lines` / :func:`read_objects` for tools that read a whole file at once
(offline evaluation, the report) through the same bounded reader."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from regretflow.connectors import Position, Records
from regretflow.connectors.files import open_private_append

# a bound for files regretflow wrote itself (answers, metrics logs): no real line comes
# near it; it only keeps a corrupt file from being read into memory whole
WRITTEN_LINE_BYTES = 1 << 24


class JsonlSource:
    """Reads one event per line; its position is the byte offset of the next line.

    With ``follow=True`` it waits for lines appended to the file (``tail -f``) and a
    last line without its newline is read only once the newline arrives. Without it, an
    empty poll at the end of the file waits out its timeout (an idle loop never spins).

    A line longer than ``max_line_bytes`` is never held whole: its first
    ``max_line_bytes + 1`` bytes are returned (the decoder dead-letters them as
    ``oversized``) and the rest is skipped in bounded chunks; the position still counts
    every byte, so a resume starts at the next line.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "events.jsonl")
    >>> _ = open(path, "wb").write(b'{"a": 1}\\n{"a": 2}\\n')
    >>> src = JsonlSource(path)
    >>> src.poll(1, 0.0), src.position()
    ([b'{"a": 1}'], {'offset': 9})
    >>> src.seek({"offset": 0}); len(src.poll(10, 0.0)), src.exhausted()
    (2, True)
    >>> _ = open(path, "ab").write(b"x" * 100 + b"\\n")
    >>> src = JsonlSource(path, max_line_bytes=10); src.seek({"offset": 18})
    >>> src.poll(5, 0.0), src.position()
    ([b'xxxxxxxxxxx'], {'offset': 119})
    """

    def __init__(self, path: str | os.PathLike, follow: bool = False, poll_interval: float = 0.05, max_line_bytes: int = 65_536):
        self.path = Path(path)
        self.follow = follow
        self.poll_interval = poll_interval
        self.max_line_bytes = max_line_bytes
        self._fh = open(self.path, "rb")
        self._offset = 0
        self._eof = False

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        fh = self._fh
        while len(out) < max_records:
            line, size = self._read_line(fh)
            if not size:
                self._eof = True
                if out or time.monotonic() >= deadline:
                    break
                # nothing yet: wait (for appended lines, or out the timeout) rather than spin
                time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
                continue
            if not line.endswith(b"\n") and self.follow:
                fh.seek(self._offset)  # incomplete line: wait for its newline
                self._eof = True
                if out or time.monotonic() >= deadline:
                    break
                time.sleep(self.poll_interval)
                continue
            self._offset += size
            self._eof = False
            payload = line.rstrip(b"\r\n")
            if payload.strip():
                out.append(payload)
        return out

    def _read_line(self, fh: BinaryIO) -> tuple[bytes, int]:
        """The next line (at most ``max_line_bytes + 1`` bytes of it, then its newline if
        it had one) and how many bytes it spans in the file."""
        limit = self.max_line_bytes + 1
        line = fh.readline(limit)
        size = len(line)
        if size < limit or line.endswith(b"\n"):
            return line, size
        while True:  # oversized: skip the rest without holding it
            chunk = fh.readline(1 << 20)
            size += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return line + chunk[-1:] if chunk else line, size

    def position(self) -> Position:
        return {"offset": self._offset}

    def seek(self, position: Position) -> None:
        self._offset = int(position["offset"])
        self._fh.seek(self._offset)
        self._eof = False

    def exhausted(self) -> bool:
        return self._eof and not self.follow

    def close(self) -> None:
        self._fh.close()


def read_lines(path: str | os.PathLike[str], max_line_bytes: int = WRITTEN_LINE_BYTES) -> Iterator[bytes]:
    """The non-blank lines of a JSONL file, in order, without their newlines.

    A last line without its newline (a writer killed mid-line) is returned as it is; a
    line longer than ``max_line_bytes`` is cut to ``max_line_bytes + 1`` bytes, as
    :class:`JsonlSource` does.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
    >>> _ = open(path, "wb").write(b'{"a": 1}\\n\\n{"a": 2}\\n{"a"')
    >>> list(read_lines(path))
    [b'{"a": 1}', b'{"a": 2}', b'{"a"']
    """
    source = JsonlSource(path, max_line_bytes=max_line_bytes)
    try:
        while lines := source.poll(1024, 0.0):
            yield from lines
    finally:
        source.close()


def read_objects(path: str | os.PathLike[str], max_line_bytes: int = WRITTEN_LINE_BYTES) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file; a line that is not one (a torn last line, a line
    cut at ``max_line_bytes``, a bare number) is skipped.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
    >>> _ = open(path, "wb").write(b'{"a": 1}\\n[2]\\n{"a": 3}\\n{"a"')
    >>> list(read_objects(path))
    [{'a': 1}, {'a': 3}]
    """
    for line in read_lines(path, max_line_bytes):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


class JsonlSink:
    """Appends one record per line and fsyncs on ``flush`` (answers survive a crash).

    A file it creates gets ``file_mode`` (0600: answers and dead letters hold user data)
    whatever the umask, and a symlink at ``path`` is refused rather than followed.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True, file_mode: int = 0o600):
        self.path = Path(path)
        self._fh = open_private_append(self.path, file_mode)
        self.fsync = fsync
        if self._fh.tell() > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")  # a crashed writer left half a line: never glue a record to it

    def write(self, records: Records) -> None:
        if records:
            self._fh.write(b"\n".join(record[1] for record in records) + b"\n")

    def flush(self) -> None:
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.flush()
        self._fh.close()
