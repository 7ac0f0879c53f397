"""Two workers on one checkpoint directory: the one that restored it owns it.

A Kafka worker stopped mid-write past its session timeout (SIGSTOP, a long GC pause, a
frozen VM) resumes after the group gave its partition to another worker. The new owner's
restore must not delete a live writer's temp file, and the old writer, if its temp file
did go (a writer on another host, stopped for longer than ``STALE_TEMP_SECONDS``), must
not stop the daemon: it skips that checkpoint and hears at its next poll that the
partition is lost. The fault is made here by hand; tests/integration/test_kafka_daemon.py
makes it with two real workers on a broker.
"""

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime import checkpoint as ck
from regretflow.engine.runtime.loop import Engine
from tests.conftest import regression_config_dict, regression_stream

STATE = {"v": np.arange(4.0)}


def temp_name(number: int, host: str, pid: int) -> str:
    return f".checkpoint-{number:012d}.npz.h{host}.{pid}.0123abcd.tmp"


def test_a_restore_keeps_the_temp_file_of_a_live_writer_and_removes_the_others(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    try:
        other_host = "0" * 12 if ck._HOST != "0" * 12 else "1" * 12
        live_here = tmp_path / temp_name(2, ck._HOST, sleeper.pid)
        dead_here = tmp_path / temp_name(3, ck._HOST, exited.pid)
        own = tmp_path / temp_name(4, ck._HOST, os.getpid())
        fresh_elsewhere = tmp_path / temp_name(5, other_host, 1)
        old_elsewhere = tmp_path / temp_name(6, other_host, 2)
        legacy = tmp_path / ".checkpoint-000000000007.npz.4242.tmp"
        for path in (live_here, dead_here, own, fresh_elsewhere, old_elsewhere, legacy):
            path.write_bytes(b"partial")
        old = time.time() - ck.STALE_TEMP_SECONDS - 5
        os.utime(old_elsewhere, (old, old))
        removed = ck.remove_stale_temps(tmp_path)
        assert sorted(removed) == sorted([dead_here, own, old_elsewhere, legacy])
        assert sorted(tmp_path.iterdir()) == sorted([live_here, fresh_elsewhere])
        # once a writer has been silent that long, its file goes too, even if a process of its pid runs here
        later = time.time() + ck.STALE_TEMP_SECONDS + 5
        assert sorted(ck.remove_stale_temps(tmp_path, now=later)) == sorted([live_here, fresh_elsewhere])
    finally:
        sleeper.kill()
        sleeper.wait()


def remove_temp_at_fsync(monkeypatch, directory):
    """The new owner's restore, between the old writer's write and its rename."""
    real_fsync = ck.os.fsync
    calls = []

    def fsync(fd):
        real_fsync(fd)
        for path in directory.glob(".checkpoint-*.tmp"):
            path.unlink()
            calls.append(path)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    return calls


def test_a_writer_whose_temp_file_was_removed_is_fenced_and_writes_nothing(tmp_path, monkeypatch):
    ck.write_checkpoint(tmp_path, 1, STATE)
    before = sorted(tmp_path.iterdir())
    removed = remove_temp_at_fsync(monkeypatch, tmp_path)
    with pytest.raises(ck.CheckpointFenced, match="was removed while it was written: another worker restored this directory"):
        ck.write_checkpoint(tmp_path, 2, STATE)
    assert removed and sorted(tmp_path.iterdir()) == before


class PartitionedMemorySource:
    """One partition ("events:0") of payloads, with the partitioned source's calls the engine makes."""

    partitioned = True

    def __init__(self, payloads):
        self.payloads = payloads
        self.next = 0
        self.commits = []
        self.on_assign = self.on_revoke = self.on_lost = None

    def set_listener(self, on_assign, on_revoke, on_lost=None):
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost

    def poll(self, max_records, timeout):
        batch = self.payloads[self.next : self.next + max_records]
        self.next += len(batch)
        return [("events:0", p) for p in batch]

    def position(self, pid):
        return {"offset": self.next}

    def seek(self, pid, position):
        self.next = int(position["offset"])

    def commit(self, positions):
        self.commits.append(positions)
        return True

    def lag(self):
        return {}

    def exhausted(self):
        return self.next >= len(self.payloads)

    def close(self):
        pass


def engine_on(tmp_path, source):
    raw = regression_config_dict(checkpoint={"dir": str(tmp_path / "state"), "every_events": 1_000_000})
    raw["metrics"] = {"enabled": False}
    return Engine(parse_config(raw), source, MemorySink(), MemorySink(), serve_metrics=False)


def test_a_partitioned_worker_skips_a_fenced_checkpoint_commits_nothing_and_drops_the_partition_when_lost(tmp_path, monkeypatch, caplog):
    source = PartitionedMemorySource(regression_stream(200))
    engine = engine_on(tmp_path, source)
    source.on_assign(["events:0"])
    engine.process(source.poll(100, 0.0))
    engine.checkpoint()
    assert source.commits == [{"events:0": {"offset": 100}}]
    directory = tmp_path / "state" / "events.0"
    written = sorted(directory.iterdir())
    engine.process(source.poll(100, 0.0))
    remove_temp_at_fsync(monkeypatch, directory)
    with caplog.at_level(logging.WARNING, logger="regretflow"):
        engine.checkpoint()  # does not raise
    assert any("event=checkpoint status=fenced partition='events:0'" in r.getMessage() for r in caplog.records)
    assert source.commits == [{"events:0": {"offset": 100}}]  # no offset past the last checkpoint that landed
    assert sorted(directory.iterdir()) == written
    assert engine.parts["events:0"].dirty and engine.parts["events:0"].checkpoint_number == 1
    source.on_lost(["events:0"])  # the next poll tells the worker it was evicted
    assert engine.parts == {}
    _, meta = ck.restore_checkpoint(directory)
    assert meta["number"] == 1


def test_an_unpartitioned_engine_stops_on_a_fenced_checkpoint(tmp_path, monkeypatch):
    # one process owns an unpartitioned directory: a temp file removed under it is a fault to stop on
    engine = engine_on(tmp_path, MemorySource(regression_stream(50)))
    engine.process(engine.source.poll(50, 0.0))
    remove_temp_at_fsync(monkeypatch, tmp_path / "state")
    with pytest.raises(ck.CheckpointFenced):
        engine.checkpoint()
