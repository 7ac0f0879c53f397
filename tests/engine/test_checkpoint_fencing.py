"""Two workers on one checkpoint directory: a late writer never replaces the new owner's checkpoint.

A Kafka worker stopped past its session timeout (SIGSTOP, a long GC pause, a frozen VM)
resumes after the group gave its partition to another worker, and may write one more
checkpoint before its next poll tells it the partition is lost. The new owner's restore
removes the temp file of a write in progress (the late write is then fenced, and the
old worker writes nothing more for the partition), and a checkpoint is published under a
name not yet taken (a hard link), so a late write never replaces a checkpoint: a name
taken means another writer, and the write is fenced. A fenced partitioned worker goes on
(no offset committed). A restore numbers the next checkpoint past every file in the
directory, the ones it skipped as unreadable too.
The faults are made here by hand; tests/integration/test_kafka_daemon.py makes the
eviction with two real workers on a broker.
"""

import errno
import logging

import numpy as np
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime import checkpoint as ck
from regretflow.engine.runtime.loop import Engine
from tests.conftest import regression_config_dict, regression_stream

STATE = {"v": np.arange(4.0)}
PID = "events:0"


def remove_temp_at_fsync(monkeypatch, directory):
    """The new owner's restore, between the old writer's write and its publication."""
    real_fsync = ck.os.fsync
    removed = []

    def fsync(fd):
        real_fsync(fd)
        for path in directory.glob(".checkpoint-*.tmp"):
            path.unlink()
            removed.append(path)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    return removed


def test_a_writer_whose_temp_file_was_removed_is_fenced_and_writes_nothing(tmp_path, monkeypatch):
    ck.write_checkpoint(tmp_path, 1, STATE)
    before = sorted(tmp_path.iterdir())
    removed = remove_temp_at_fsync(monkeypatch, tmp_path)
    with pytest.raises(ck.CheckpointFenced, match="was removed while it was written: another worker restored this directory") as raised:
        ck.write_checkpoint(tmp_path, 2, STATE)
    assert removed and sorted(tmp_path.iterdir()) == before
    assert raised.value.newest == 1


def test_a_checkpoint_is_never_replaced(tmp_path):
    first = ck.write_checkpoint(tmp_path, 3, {"v": np.zeros(2)})
    with pytest.raises(ck.CheckpointFenced, match="checkpoint-000000000003.npz exists: another worker wrote it") as raised:
        ck.write_checkpoint(tmp_path, 3, {"v": np.ones(2)})
    assert raised.value.newest == 3
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp file left either
    assert ck.read_checkpoint(first)[0]["v"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_storage_without_hard_links_renames_and_still_refuses_a_taken_name(tmp_path, monkeypatch, code):
    def no_links(src, dst):
        raise OSError(code, "hard links not supported", str(dst))

    monkeypatch.setattr(ck.os, "link", no_links)
    ck.write_checkpoint(tmp_path, 1, STATE)
    assert ck.restore_checkpoint(tmp_path)[1]["number"] == 1
    with pytest.raises(ck.CheckpointFenced, match="exists"):
        ck.write_checkpoint(tmp_path, 1, STATE)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-000000000001.npz"]


class PartitionedMemorySource:
    """One partition of payloads, with the partitioned source's calls the engine makes."""

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
        return [(PID, p) for p in batch]

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


def engine_on(state_dir, source):
    raw = regression_config_dict(checkpoint={"dir": str(state_dir), "every_events": 1_000_000})
    raw["metrics"] = {"enabled": False}
    return Engine(parse_config(raw), source, MemorySink(), MemorySink(), serve_metrics=False)


def worker(state_dir, stream):
    """A worker that owns the partition (restored from the directory) and has applied nothing yet."""
    source = PartitionedMemorySource(stream)
    engine = engine_on(state_dir, source)
    source.on_assign([PID])
    return engine, source


def stopped_worker(state_dir, stream):
    """Worker A after its checkpoint 1 (offset 100) and 100 more events: the group is about to evict it."""
    a, a_source = worker(state_dir, stream)
    a.process(a_source.poll(100, 0.0))
    a.checkpoint()
    a.process(a_source.poll(100, 0.0))
    return a, a_source


def newest(directory):
    state, meta = ck.restore_checkpoint(directory)
    return meta["number"], state["position"]


def test_a_late_write_of_the_evicted_worker_never_replaces_the_new_owners_checkpoint(tmp_path, caplog):
    stream = regression_stream(400)
    directory = tmp_path / "state" / "events.0"
    a, a_source = stopped_worker(tmp_path / "state", stream)
    b, b_source = worker(tmp_path / "state", stream)  # the group gives the partition to B: it restores 1
    assert b_source.next == 100
    b.process(b_source.poll(300, 0.0))
    b.checkpoint()  # checkpoint 2 at offset 400
    with caplog.at_level(logging.WARNING, logger="regretflow"):
        a.checkpoint()  # A wakes up and writes before it polls: number 2 is taken
    assert "event=checkpoint status=fenced partition='events:0'" in caplog.text and "exists: another worker wrote it" in caplog.text
    assert newest(directory) == (2, {"offset": 400})  # B's checkpoint stands
    assert a_source.commits == [{PID: {"offset": 100}}]  # A committed nothing past its last checkpoint
    a_source.on_lost([PID])  # A's next poll tells it it was evicted
    assert a.parts == {}


def test_a_late_write_that_lands_first_is_a_consistent_snapshot_and_the_owner_goes_above_it(tmp_path, caplog):
    stream = regression_stream(400)
    directory = tmp_path / "state" / "events.0"
    a, a_source = stopped_worker(tmp_path / "state", stream)
    b, b_source = worker(tmp_path / "state", stream)
    a.checkpoint()  # A's late checkpoint 2 (offset 200) lands before B writes any
    assert newest(directory) == (2, {"offset": 200})
    b.process(b_source.poll(300, 0.0))
    with caplog.at_level(logging.WARNING, logger="regretflow"):
        b.checkpoint()  # B's 2 is taken: fenced this time, with nothing committed
    assert "status=fenced" in caplog.text and b_source.commits == []
    assert b.parts[PID].dirty and b.parts[PID].checkpoint_number == 2
    b.checkpoint()  # its next checkpoint is numbered above A's
    assert newest(directory) == (3, {"offset": 400}) and b_source.commits == [{PID: {"offset": 400}}]
    # the directory's history is two lineages, each checkpoint consistent: A's state at 200 is what A learned
    one_pass, one_source = worker(tmp_path / "fresh", stream)
    one_pass.process(one_source.poll(200, 0.0))
    late = ck.read_checkpoint(directory / "checkpoint-000000000002.npz")[0]
    assert late["events_seen"] == one_pass.parts[PID].events_seen == 200


def test_after_a_restore_elsewhere_the_old_worker_writes_nothing_more_for_the_partition(tmp_path, monkeypatch, caplog):
    stream = regression_stream(300)
    directory = tmp_path / "state" / "events.0"
    a, a_source = stopped_worker(tmp_path / "state", stream)
    with monkeypatch.context() as patch:
        remove_temp_at_fsync(patch, directory)  # B restores while A writes
        a.checkpoint()
    assert a.parts[PID].fenced
    a.process(a_source.poll(100, 0.0))
    a.checkpoint()  # A polls before it hears of the loss, and its timer falls due again: nothing is written
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint-000000000001.npz"]
    assert a_source.commits == [{PID: {"offset": 100}}]


def test_a_listing_that_a_prune_overtook_is_made_again(tmp_path, monkeypatch):
    for number in (1, 2):
        ck.write_checkpoint(tmp_path, number, {"v": np.full(2, float(number))})
    stale = ck.list_checkpoints(tmp_path)
    ck.write_checkpoint(tmp_path, 3, {"v": np.full(2, 3.0)}, keep=1)  # another writer's prune removes 1 and 2
    real_listing, listings = ck.list_checkpoints, []

    def listing(directory):  # the first listing was made before the prune
        listings.append(directory)
        return stale if len(listings) == 1 else real_listing(directory)

    monkeypatch.setattr(ck, "list_checkpoints", listing)
    state, meta = ck.latest_checkpoint(tmp_path)
    assert meta["number"] == 3 and len(listings) == 2


def test_without_hard_links_a_temp_file_removed_before_the_rename_is_fenced(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported", str(dst))

    real_replace = ck.os.replace

    def restore_in_between(src, dst):
        ck.os.unlink(src)  # the new owner's restore
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "link", no_links)
    monkeypatch.setattr(ck.os, "replace", restore_in_between)
    with pytest.raises(ck.CheckpointFenced) as raised:
        ck.write_checkpoint(tmp_path, 1, STATE)
    assert raised.value.restored_elsewhere and list(tmp_path.iterdir()) == []  # the reservation is taken back


def test_a_fenced_checkpoint_on_revoke_lets_the_partition_go(tmp_path, monkeypatch):
    a, a_source = worker(tmp_path / "state", regression_stream(200))
    a.process(a_source.poll(100, 0.0))
    remove_temp_at_fsync(monkeypatch, tmp_path / "state" / "events.0")
    a_source.on_revoke([PID])  # does not raise
    assert a.parts == {} and a_source.commits == []


def test_one_owner_goes_past_a_checkpoint_its_restore_skipped(tmp_path, caplog):
    events = regression_stream(200)
    state = tmp_path / "state"
    first = engine_on(state, MemorySource(events[:100]))
    first.run()
    (state / "checkpoint-000000000002.npz").write_bytes(b"")  # unreadable: e.g. a disk that filled outside regretflow
    second = engine_on(state, MemorySource(events))
    with caplog.at_level(logging.WARNING, logger="regretflow"):
        second.run()  # restores 1, and its checkpoint goes to 3 (2 is taken and never replaced)
    assert "event=checkpoint_skipped" in caplog.text
    number, position = newest(state)
    assert number == 3 and position == {"index": len(events)}


def test_an_unpartitioned_engine_stops_on_a_temp_file_removed_under_it(tmp_path, monkeypatch):
    # one process owns an unpartitioned directory: another writer there is a fault to stop on
    engine = engine_on(tmp_path / "state", MemorySource(regression_stream(50)))
    engine.process(engine.source.poll(50, 0.0))
    remove_temp_at_fsync(monkeypatch, tmp_path / "state")
    with pytest.raises(ck.CheckpointFenced):
        engine.checkpoint()
