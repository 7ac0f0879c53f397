"""Checkpoints: atomic, checksummed, versioned, no pickle."""

import json
import zipfile

import numpy as np
import pytest

from regretflow.engine import checkpoint as ck


def sample_state():
    return {"kind": "x", "position": {"offset": 42}, "shards": {"0": {"w": np.arange(4.0), "names": np.array(["a", "b"]), "n": 3, "none": None, "empty": {}}}}


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
    import io

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
    monkeypatch.setitem(ck.MIGRATIONS, ck.FORMAT_VERSION - 1, lambda s, m: ({**s, "v": s["v"] + 1}, {**m, "format_version": m["format_version"] + 1}))
    state, _ = ck.read_checkpoint(path)
    assert state["v"] == 2


def test_only_the_newest_are_kept_and_no_temp_files_remain(tmp_path):
    for i in range(1, 6):
        ck.write_checkpoint(tmp_path, i, {"i": i}, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-000000000004.npz", "checkpoint-000000000005.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
