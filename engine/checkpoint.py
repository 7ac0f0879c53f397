"""Checkpoints: one file holds everything needed to resume exactly.

A checkpoint is a nested dict whose leaves are numpy arrays or JSON scalars (learner
states, pending joins, regret trackers, RNG states, source positions). It is written
as a ``.npz`` archive (loaded with ``allow_pickle=False``: no pickle anywhere) with a
``__meta__`` member holding the JSON scalars, the format version and a SHA-256 over
every array's name, dtype, shape and bytes plus the scalars. Writing is atomic:
temp file, fsync, rename, fsync of the directory; a reader sees the old checkpoint
or the new one, never half of one.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> path = write_checkpoint(d, 1, {"model": {"w": np.arange(3.0), "n": 3}})
>>> state, meta = read_checkpoint(path)
>>> state["model"]["w"].tolist(), state["model"]["n"], meta["format_version"]
([0.0, 1.0, 2.0], 3, 1)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
# Older formats this build upgrades on load: version -> function(state, meta) -> (state, meta)
MIGRATIONS: dict[int, Any] = {}

_NAME = re.compile(r"^checkpoint-(\d{12})\.npz$")
SEP = "/"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, from an unknown format, or unreadable."""


def flatten(state: dict[str, Any], prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a nested state into arrays and JSON scalars keyed by '/'-joined paths."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in state.items():
        if SEP in key:
            raise ValueError(f"state key {key!r} contains {SEP!r}")
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            if not value:
                scalars[path + SEP] = {}
            sub_arrays, sub_scalars = flatten(value, path + SEP)
            arrays.update(sub_arrays)
            scalars.update(sub_scalars)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"{path}: object arrays cannot be checkpointed")
            arrays[path] = value
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            scalars[path] = value.item()
        elif value is None or isinstance(value, (str, int, float, bool)):
            scalars[path] = value
        else:
            raise TypeError(f"{path}: {type(value).__name__} is neither an array nor a JSON scalar")
    return arrays, scalars


def unflatten(arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, value in list(scalars.items()) + list(arrays.items()):
        parts = path.split(SEP)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[-1] != "":
            node[parts[-1]] = value
    return root


def _digest(arrays: dict[str, np.ndarray], scalars_json: bytes) -> str:
    h = hashlib.sha256()
    h.update(scalars_json)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_checkpoint(directory: str | Path, number: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``number`` atomically into ``directory``; keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays, scalars = flatten(state)
    scalars_json = json.dumps(scalars, sort_keys=True, allow_nan=False).encode()
    meta = {
        "format_version": FORMAT_VERSION,
        "number": number,
        "written_at": time.time(),
        "sha256": _digest(arrays, scalars_json),
        "scalars": scalars,
    }
    final = directory / f"checkpoint-{number:012d}.npz"
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8), **{_member(k): v for k, v in arrays.items()})
    with open(tmp, "wb") as fh:
        fh.write(buf.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


def _member(path: str) -> str:
    # npz member names: keep '/' out of them (zip directories) but stay reversible
    return "a:" + path.replace(SEP, "|")


def _path(member: str) -> str:
    return member[2:].replace("|", SEP)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load and verify a checkpoint; returns (nested state, meta). Raises CheckpointError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__meta__" not in npz.files:
                raise CheckpointError(f"{path}: no __meta__ member: not a regretflow checkpoint")
            meta = json.loads(npz["__meta__"].tobytes().decode())
            arrays = {_path(m): npz[m] for m in npz.files if m.startswith("a:")}
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: no format version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in checkpoint format {version} by a newer regretflow; this build reads formats up to {FORMAT_VERSION}"
        )
    scalars = meta.get("scalars", {})
    expected = _digest(arrays, json.dumps(scalars, sort_keys=True, allow_nan=False).encode())
    if expected != meta.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch: the file is corrupt")
    state = unflatten(arrays, scalars)
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise CheckpointError(
                f"{path}: checkpoint format {version} is no longer readable by this build (format {FORMAT_VERSION}); "
                "replay the stream from its start or use the regretflow version that wrote it"
            )
        state, meta = MIGRATIONS[version](state, meta)
        version = meta["format_version"]
    return state, meta


def latest_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that verifies (a corrupt newest one falls back to the previous)."""
    errors = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return read_checkpoint(path)
        except CheckpointError as exc:
            if "format" in str(exc) and "checksum" not in str(exc) and "unreadable" not in str(exc):
                raise
            errors.append(str(exc))
    if errors:
        raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
    return None


def describe(path: str | Path) -> dict[str, Any]:
    """What ``regretflow checkpoint inspect`` prints: meta and every leaf's shape or value."""
    state, meta = read_checkpoint(path)
    arrays, scalars = flatten(state)
    return {
        "path": str(path),
        "format_version": meta["format_version"],
        "number": meta["number"],
        "written_at": meta["written_at"],
        "sha256": meta["sha256"],
        "arrays": {k: f"{v.dtype.str} {list(v.shape)}" for k, v in sorted(arrays.items())},
        "scalars": dict(sorted(scalars.items())),
    }
