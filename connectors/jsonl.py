"""JSON Lines files: a source with resumable byte positions, and an appending sink."""

from __future__ import annotations

import os
import time
from pathlib import Path


class JsonlSource:
    """Reads one event per line; its position is the byte offset of the next line.

    With ``follow=True`` it waits for lines appended to the file (``tail -f``) and a
    last line without its newline is read only once the newline arrives.

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
    """

    def __init__(self, path: str | os.PathLike, follow: bool = False, poll_interval: float = 0.05):
        self.path = Path(path)
        self.follow = follow
        self.poll_interval = poll_interval
        self._fh = open(self.path, "rb")
        self._offset = 0
        self._eof = False

    def poll(self, max_records: int, timeout: float) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        fh = self._fh
        while len(out) < max_records:
            line = fh.readline()
            if not line:
                self._eof = True
                if not self.follow or out or time.monotonic() >= deadline:
                    break
                time.sleep(self.poll_interval)
                continue
            if not line.endswith(b"\n") and self.follow:
                fh.seek(self._offset)  # incomplete line: wait for its newline
                self._eof = True
                if out or time.monotonic() >= deadline:
                    break
                time.sleep(self.poll_interval)
                continue
            self._offset += len(line)
            self._eof = False
            payload = line.rstrip(b"\r\n")
            if payload.strip():
                out.append(payload)
        return out

    def position(self) -> dict:
        return {"offset": self._offset}

    def seek(self, position: dict) -> None:
        self._offset = int(position["offset"])
        self._fh.seek(self._offset)
        self._eof = False

    def exhausted(self) -> bool:
        return self._eof and not self.follow

    def close(self) -> None:
        self._fh.close()


class JsonlSink:
    """Appends one record per line and fsyncs on ``flush`` (answers survive a crash)."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")
        self.fsync = fsync
        if self._fh.tell() > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")  # a crashed writer left half a line: never glue a record to it

    def write(self, records: list[tuple]) -> None:
        if records:
            self._fh.write(b"\n".join(record[1] for record in records) + b"\n")

    def flush(self) -> None:
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.flush()
        self._fh.close()
