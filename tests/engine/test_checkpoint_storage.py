"""Checkpoints on storage that refuses writes: a real, tiny tmpfs, full or remounted read-only.

The mounts need root or passwordless sudo (CI has one of them: tests/install-services.sh).
"""

import os
import subprocess

import numpy as np
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.errors import FatalError
from regretflow.engine.runtime import checkpoint as ck
from regretflow.engine.runtime.loop import Engine
from tests.conftest import regression_config_dict, regression_stream

FS_SIZE = 64 * 1024
# 20,000 payload bytes: about 20.7 KB on disk (6 tmpfs pages), so a 64 KiB tmpfs holds two and not three
STATE = {"v": np.zeros(2500)}


def privileged(*command: str) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60)


def remount_read_only(mountpoint) -> None:
    out = privileged("mount", "-o", "remount,ro", str(mountpoint))
    assert out.returncode == 0, out.stderr


@pytest.fixture
def small_fs(tmp_path):
    """A fresh 64 KiB tmpfs, unmounted after the test."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    options = f"size={FS_SIZE},mode=0700,uid={os.getuid()},gid={os.getgid()}"
    out = privileged("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint))
    if out.returncode:
        pytest.fail(f"these tests mount a real tmpfs and need root or passwordless sudo: {out.stderr.strip()}")
    yield mountpoint
    privileged("umount", str(mountpoint))


def files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_full_disk_ends_with_one_message_and_leaves_the_older_checkpoints_bit_identical(small_fs):
    ck.write_checkpoint(small_fs, 1, STATE, keep=2)
    ck.write_checkpoint(small_fs, 2, STATE, keep=2)
    before = files(small_fs)
    with pytest.raises(FatalError) as raised:
        ck.write_checkpoint(small_fs, 3, STATE, keep=2)
    assert isinstance(raised.value, ck.CheckpointError) and raised.value.exit_code == 1
    message = str(raised.value)
    assert message == f"checkpoint directory {small_fs}: cannot write checkpoint-000000000003.npz: No space left on device (ENOSPC)"
    assert files(small_fs) == before  # no temp file, no partial checkpoint 3, 1 and 2 untouched
    assert ck.restore_checkpoint(small_fs)[1]["number"] == 2


def test_keep_n_needs_room_for_n_plus_1_checkpoints(small_fs):
    # the tmpfs holds two checkpoints: keep = 1 runs on forever, keep = 2 fails at its third
    for number in range(1, 6):
        ck.write_checkpoint(small_fs, number, STATE, keep=1)
    assert [p.name for p in ck.list_checkpoints(small_fs)] == ["checkpoint-000000000005.npz"]
    ck.write_checkpoint(small_fs, 6, STATE, keep=2)
    with pytest.raises(ck.CheckpointError, match="No space left on device"):
        ck.write_checkpoint(small_fs, 7, STATE, keep=2)


def test_a_read_only_directory_ends_with_one_message_and_restoring_from_it_still_works(small_fs, caplog):
    ck.write_checkpoint(small_fs, 1, STATE)
    stale = small_fs / ".checkpoint-000000000002.npz.4242.tmp"
    stale.write_bytes(b"partial")
    remount_read_only(small_fs)
    before = files(small_fs)
    with pytest.raises(ck.CheckpointError) as raised:
        ck.write_checkpoint(small_fs, 2, STATE)
    assert str(raised.value) == f"checkpoint directory {small_fs}: cannot write checkpoint-000000000002.npz: Read-only file system (EROFS)"
    with pytest.raises(ck.CheckpointError, match=f"checkpoint directory {small_fs}: not writable: Read-only file system"):
        ck.check_checkpoint_dir(small_fs)
    state, meta = ck.restore_checkpoint(small_fs)  # the stale temp cannot go: a warning, and the restore goes on
    assert meta["number"] == 1 and np.array_equal(state["v"], STATE["v"])
    assert any(str(stale) in r.getMessage() and "Read-only" in r.getMessage() for r in caplog.records)
    assert files(small_fs) == before


def test_the_engine_stops_with_a_checkpoint_error_when_the_disk_fills_and_keeps_its_last_checkpoint(small_fs):
    raw = regression_config_dict(checkpoint={"dir": str(small_fs), "every_events": 1_000_000})
    raw["metrics"] = {"enabled": False}
    config = parse_config(raw)
    events = regression_stream(300)
    Engine(config, MemorySource(events[:150]), MemorySink(), MemorySink(), serve_metrics=False).run()
    first = files(small_fs)
    assert list(first) == ["checkpoint-000000000001.npz"]
    with open(small_fs / "filler", "wb", buffering=0) as filler:  # everything the checkpoint left free
        with pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 4096)
    engine = Engine(config, MemorySource(events[150:]), MemorySink(), MemorySink(), serve_metrics=False)
    with pytest.raises(
        ck.CheckpointError, match=f"checkpoint directory {small_fs}: cannot write checkpoint-000000000002.npz: No space left"
    ):
        engine.run()
    (small_fs / "filler").unlink()
    assert files(small_fs) == first
