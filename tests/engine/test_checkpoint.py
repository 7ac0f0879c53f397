"""Checkpoints: atomic, checksummed, versioned, no pickle."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from regretflow.engine.errors import FatalError
from regretflow.engine.runtime import checkpoint as ck


def sample_state():
    return {
        "kind": "x",
        "position": {"offset": 42},
        "shards": {"0": {"w": np.arange(4.0), "names": np.array(["a", "b"]), "n": 3, "none": None, "empty": {}}},
    }


def test_round_trip_keeps_arrays_scalars_and_nesting(tmp_path):
    path = ck.write_checkpoint(tmp_path, 1, sample_state())
    state, meta = ck.read_checkpoint(path)
    assert state["position"] == {"offset": 42}
    shard = state["shards"]["0"]
    assert shard["w"].tolist() == [0.0, 1.0, 2.0, 3.0] and shard["names"].tolist() == ["a", "b"]
    assert shard["n"] == 3 and shard["none"] is None and shard["empty"] == {}
    assert meta["number"] == 1 and meta["format_version"] == ck.FORMAT_VERSION


def test_file_loads_with_numpy_without_pickle(tmp_path):
    path = ck.write_checkpoint(tmp_path, 1, sample_state())
    with np.load(path, allow_pickle=False) as npz:
        assert "__meta__" in npz.files


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError):
        ck.write_checkpoint(tmp_path, 1, {"bad": np.array([{"a": 1}], dtype=object)})


def test_corruption_is_detected_and_an_older_checkpoint_is_used(tmp_path):
    ck.write_checkpoint(tmp_path, 1, {"v": np.zeros(3)}, keep=5)
    newest = ck.write_checkpoint(tmp_path, 2, {"v": np.ones(3)}, keep=5)
    data = bytearray(newest.read_bytes())
    idx = data.find(np.ones(3).tobytes())
    data[idx] ^= 0xFF  # flip a byte inside the array payload
    newest.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match="checksum|unreadable"):
        ck.read_checkpoint(newest)
    state, meta = ck.latest_checkpoint(tmp_path)
    assert meta["number"] == 1 and state["v"].tolist() == [0.0, 0.0, 0.0]


def test_newer_format_fails_with_a_clear_message(tmp_path):
    path = ck.write_checkpoint(tmp_path, 1, {"v": 1})
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(path)["__meta__"].tobytes())
    meta["format_version"] = ck.FORMAT_VERSION + 1
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    members["__meta__.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ck.CheckpointError, match="newer regretflow"):
        ck.read_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match="newer regretflow"):
        ck.latest_checkpoint(tmp_path)


def test_older_format_without_migration_fails_clearly(tmp_path, monkeypatch):
    path = ck.write_checkpoint(tmp_path, 1, {"v": 1})
    monkeypatch.setattr(ck, "FORMAT_VERSION", ck.FORMAT_VERSION + 1)
    with pytest.raises(ck.CheckpointError, match="no longer readable"):
        ck.read_checkpoint(path)
    monkeypatch.setitem(
        ck.MIGRATIONS, ck.FORMAT_VERSION - 1, lambda s, m: ({**s, "v": s["v"] + 1}, {**m, "format_version": m["format_version"] + 1})
    )
    state, _ = ck.read_checkpoint(path)
    assert state["v"] == 2


def test_only_the_newest_are_kept_and_no_temp_files_remain(tmp_path):
    for i in range(1, 6):
        ck.write_checkpoint(tmp_path, i, {"i": i}, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-000000000004.npz", "checkpoint-000000000005.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- off the happy path: files that cannot be used, temp files, directories that are not ----------


def two_checkpoints(directory):
    """Checkpoints 1 (zeros) and 2 (ones); returns the newest's path."""
    ck.write_checkpoint(directory, 1, {"v": np.zeros(3)}, keep=5)
    return ck.write_checkpoint(directory, 2, {"v": np.ones(3)}, keep=5)


def _zip_with_meta(path, meta_bytes):
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(meta_bytes, dtype=np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", buf.getvalue())


DAMAGES = {
    "zero-length": (lambda p: p.write_bytes(b""), "empty file (zero length)"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a complete zip archive"),
    "plain .npy, not an archive": (lambda p: np.save(open(p, "wb"), np.ones(3)), "not a complete zip archive"),
    "a directory in its place": (lambda p: (p.unlink(), p.mkdir()), "IsADirectoryError"),
    "meta not JSON": (lambda p: _zip_with_meta(p, b"\xff{not json"), "UnicodeDecodeError"),
    "meta a JSON list": (lambda p: _zip_with_meta(p, b"[1, 2]"), "not a checkpoint's meta object"),
    "meta without a format version": (lambda p: _zip_with_meta(p, b'{"scalars": {}}'), "no format version"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_an_unusable_newest_file_falls_back_to_the_previous_with_a_warning_naming_it(tmp_path, caplog, damage):
    newest = two_checkpoints(tmp_path)
    spoil, reason = DAMAGES[damage]
    spoil(newest)
    with pytest.raises(ck.UnreadableCheckpoint, match="unreadable checkpoint") as raised:
        ck.read_checkpoint(newest)
    assert reason in raised.value.reason
    with caplog.at_level(logging.WARNING, logger="regretflow"):
        state, meta = ck.latest_checkpoint(tmp_path)
    assert meta["number"] == 1 and state["v"].tolist() == [0.0, 0.0, 0.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in w and reason in w for w in warnings), warnings


def test_a_newest_file_without_read_permission_falls_back_to_the_previous(tmp_path):
    newest = two_checkpoints(tmp_path)
    newest.chmod(0)
    code = (
        "import logging, sys\n"
        "from regretflow.engine.runtime.checkpoint import latest_checkpoint\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        f"print(latest_checkpoint({str(tmp_path)!r})[1]['number'])\n"
    )
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads any file: run the reader without the capabilities that let it
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert str(newest) in out.stderr and "Permission denied" in out.stderr


def test_when_no_file_is_usable_the_error_names_the_directory_and_every_file(tmp_path):
    newest = two_checkpoints(tmp_path)
    newest.write_bytes(b"")
    (tmp_path / "checkpoint-000000000001.npz").write_bytes(b"junk")
    with pytest.raises(FatalError, match=f"checkpoint directory {tmp_path}: no usable checkpoint among 2 files") as raised:
        ck.latest_checkpoint(tmp_path)
    assert "checkpoint-000000000001.npz" in str(raised.value) and "checkpoint-000000000002.npz" in str(raised.value)
    assert not isinstance(raised.value, ck.UnreadableCheckpoint)


def test_restore_removes_stale_temp_files_and_latest_checkpoint_leaves_the_directory_alone(tmp_path):
    two_checkpoints(tmp_path)
    stale = [tmp_path / ".checkpoint-000000000003.npz.4242.tmp", tmp_path / ".checkpoint-probe.x1y2.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("an operator's file")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert ck.latest_checkpoint(tmp_path)[1]["number"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    state, meta = ck.restore_checkpoint(tmp_path)
    assert meta["number"] == 2 and state["v"].tolist() == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000000000001.npz", "checkpoint-000000000002.npz", "notes.txt"]


def test_restore_of_a_directory_not_yet_created_is_a_fresh_start(tmp_path):
    assert ck.restore_checkpoint(tmp_path / "absent") is None and not (tmp_path / "absent").exists()


def test_an_interrupted_write_removes_its_temp_file_and_keeps_the_older_checkpoints(tmp_path, monkeypatch):
    two_checkpoints(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "fsync", killed)  # the write is done; the process is stopped before the rename
    with pytest.raises(KeyboardInterrupt):
        ck.write_checkpoint(tmp_path, 3, {"v": np.full(3, 2.0)}, keep=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_checkpoint_dir_that_is_a_file_is_one_clear_error_everywhere(tmp_path):
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("x")
    message = f"checkpoint directory {not_a_dir}: exists and is not a directory"
    for call in (
        lambda: ck.check_checkpoint_dir(not_a_dir),
        lambda: ck.write_checkpoint(not_a_dir, 1, {"v": 1}),
        lambda: ck.latest_checkpoint(not_a_dir),
        lambda: ck.restore_checkpoint(not_a_dir),
    ):
        with pytest.raises(FatalError, match=re.escape(message)):
            call()
    assert not_a_dir.read_text() == "x"
    with pytest.raises(
        ck.CheckpointError, match=re.escape(f"checkpoint directory {not_a_dir / 'sub'}: cannot write") + ".*Not a directory"
    ):
        ck.write_checkpoint(not_a_dir / "sub", 1, {"v": 1})


def test_check_checkpoint_dir_creates_the_directory_and_leaves_no_probe(tmp_path):
    target = tmp_path / "a" / "b"
    assert ck.check_checkpoint_dir(target) == target
    assert target.is_dir() and list(target.iterdir()) == []


def test_inspect_reports_the_file_size_that_the_space_estimate_uses(tmp_path):
    path = ck.write_checkpoint(tmp_path, 1, {"v": np.zeros(1000)})
    info = ck.describe(path)
    assert info["bytes"] == path.stat().st_size and info["bytes"] > 8000


def test_an_unreadable_checkpoint_error_survives_pickling(tmp_path):
    import pickle

    exc = pickle.loads(pickle.dumps(ck.UnreadableCheckpoint(tmp_path / "c.npz", "empty file (zero length)")))
    assert (
        exc.reason == "empty file (zero length)" and str(exc) == f"{tmp_path / 'c.npz'}: unreadable checkpoint (empty file (zero length))"
    )
