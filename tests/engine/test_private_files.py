"""Private files: modes whatever the umask, exclusive temp files, bounded checkpoint loading."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile

import numpy as np
import orjson
import pytest

from regretflow.connectors.jsonl import JsonlSink
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import ConfigError, parse_config
from regretflow.engine.runtime import checkpoint as checkpoint_module
from regretflow.engine.runtime.checkpoint import (
    CheckpointError,
    UnreadableCheckpoint,
    latest_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from regretflow.engine.runtime.loop import Engine
from tests.conftest import regression_config_dict, regression_stream

STATE = {"w": np.arange(6.0), "n": 3}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o077], ids=["umask022", "umask000", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_engine_files_are_private_whatever_the_umask(tmp_path, umask):
    config = parse_config(
        regression_config_dict(
            checkpoint={"dir": str(tmp_path / "state" / "ck"), "every_events": 50},
            metrics={"enabled": False, "log_path": str(tmp_path / "logs" / "metrics.jsonl"), "log_every_seconds": 0.0},
        )
    )
    answers = JsonlSink(tmp_path / "out" / "answers.jsonl")
    dead = JsonlSink(tmp_path / "out" / "dead.jsonl")
    engine = Engine(config, MemorySource(regression_stream(200) + [b"not json"]), answers, dead, serve_metrics=False)
    engine.run()
    answers.close(), dead.close()
    files = [
        tmp_path / "out" / "answers.jsonl",
        tmp_path / "out" / "dead.jsonl",
        tmp_path / "logs" / "metrics.jsonl",
        *sorted((tmp_path / "state" / "ck").iterdir()),
    ]
    assert len(files) >= 4 and all(p.stat().st_size > 0 for p in files[:3])
    assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}
    for d in ("out", "logs", "state", "state/ck"):
        assert oct(mode(tmp_path / d)) == "0o700", d


def test_file_mode_is_configurable_and_checked(tmp_path, umask):
    config = parse_config(
        regression_config_dict(runtime={"file_mode": 0o640}, checkpoint={"dir": str(tmp_path / "ck")}, metrics={"enabled": False})
    )
    Engine(config, MemorySource(regression_stream(20)), MemorySink(), MemorySink(), serve_metrics=False).run()
    (ck,) = (tmp_path / "ck").iterdir()
    assert oct(mode(ck)) == "0o640" and oct(mode(tmp_path / "ck")) == "0o750"
    for bad in (0o644 & 0o477, 0o1777, "0600"):
        with pytest.raises(ConfigError, match="runtime.file_mode"):
            parse_config(regression_config_dict(runtime={"file_mode": bad}))


def test_an_existing_sink_file_keeps_its_mode(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b"{}\n")
    path.chmod(0o644)
    sink = JsonlSink(path)
    sink.write([("k", b"{}", ())])
    sink.close()
    assert mode(path) == 0o644 and path.read_bytes() == b"{}\n{}\n"


def test_a_symlink_planted_at_the_checkpoint_names_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    d = tmp_path / "ck"
    d.mkdir()
    final = "checkpoint-000000000001.npz"
    (d / f".{final}.{os.getpid()}.tmp").symlink_to(victim)  # the name the old writer used
    monkeypatch.setattr(checkpoint_module.secrets, "token_hex", lambda n: "guessed")
    (d / f".{final}.{os.getpid()}.guessed.tmp").symlink_to(victim)  # even a guessed name: O_EXCL refuses it
    with pytest.raises(CheckpointError, match="File exists"):
        write_checkpoint(d, 1, STATE)
    assert victim.read_bytes() == b"precious"
    assert not (d / final).exists()
    monkeypatch.undo()
    path = write_checkpoint(d, 1, STATE)
    assert victim.read_bytes() == b"precious" and not path.is_symlink() and mode(path) == 0o600
    assert read_checkpoint(path)[0]["n"] == 3


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=compression)
    return buf.getvalue()


def _npy(shape, dtype="<f8", payload: bytes = b"") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def _fallback_case(tmp_path, bad: bytes):
    d = tmp_path / "ck"
    write_checkpoint(d, 1, STATE)
    (d / "checkpoint-000000000002.npz").write_bytes(bad)
    with pytest.raises(UnreadableCheckpoint) as err:
        read_checkpoint(d / "checkpoint-000000000002.npz")
    state, meta = latest_checkpoint(d)
    assert meta["number"] == 1 and state["n"] == 3
    return str(err.value)


def test_a_zip_bomb_is_unreadable_and_falls_back_without_expanding(tmp_path):
    import tracemalloc

    bomb = _zip(
        {"__meta__.npy": _npy((16,), "|u1", b"{}" * 8), "a:w.npy": _npy((64 * 1024 * 1024,), "<f8", bytes(512 * 1024 * 1024))},
        zipfile.ZIP_DEFLATED,
    )
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        why = _fallback_case(tmp_path, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "compressed" in why
    assert peak < 16 * 1024 * 1024


def test_a_lying_array_header_is_unreadable_and_falls_back(tmp_path):
    liar = _zip({"__meta__.npy": _npy((2,), "|u1", b"{}"), "a:w.npy": _npy((128 * 1024**3 // 8,), "<f8", bytes(64))})
    assert "array header claims more" in _fallback_case(tmp_path, liar)


def test_a_lying_zip_size_is_unreadable_and_falls_back(tmp_path):
    good = _zip({"__meta__.npy": _npy((2,), "|u1", b"{}"), "a:w.npy": _npy((8,), "<f8", bytes(64))})
    # the central directory's uncompressed size of the last member claims 128 GiB (zip64-free: 0xFFFFFFF0)
    at = good.rindex(b"PK\x01\x02")
    liar = good[: at + 24] + struct.pack("<I", 0xFFFFFFF0) + good[at + 28 :]
    assert "claims" in _fallback_case(tmp_path, liar)


def test_run_falls_back_from_a_bomb_to_the_previous_checkpoint(tmp_path, caplog):
    config = parse_config(
        regression_config_dict(checkpoint={"dir": str(tmp_path / "ck"), "every_events": 10_000}, metrics={"enabled": False})
    )
    first = Engine(config, MemorySource(regression_stream(30)), MemorySink(), MemorySink(), serve_metrics=False)
    first.run()
    bomb = _zip(
        {"__meta__.npy": _npy((2,), "|u1", b"{}"), "a:x.npy": _npy((32 * 1024 * 1024,), "<f8", bytes(256 * 1024 * 1024))},
        zipfile.ZIP_DEFLATED,
    )
    (tmp_path / "ck" / "checkpoint-000000000099.npz").write_bytes(bomb)
    restarted = Engine(config, MemorySource([]), MemorySink(), MemorySink(), serve_metrics=False)  # restores in the constructor
    assert "checkpoint_fallback" in caplog.text
    as_json = lambda e: orjson.dumps(e.summary(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)  # noqa: E731
    assert orjson.loads(as_json(restarted))["m"]["events"] == first.valid_events
    assert as_json(restarted) == as_json(first)
