"""Checkpoints: one file holds everything needed to resume exactly.

A checkpoint is a nested dict whose leaves are numpy arrays or JSON scalars (learner
states, pending joins, regret trackers, RNG states, source positions). It is written
as a ``.npz`` archive (loaded with ``allow_pickle=False``: no pickle anywhere) with a
``__meta__`` member holding the JSON scalars, the format version and a SHA-256 over
every array's name, dtype, shape and bytes plus the scalars. Writing is atomic:
temp file, fsync, a hard link to the checkpoint's name, fsync of the directory; a
reader sees the old checkpoint or the new one, never half of one. A checkpoint never
replaces another: a name already taken means another worker wrote it
(:class:`CheckpointFenced`).

Off the happy path: a newest file that cannot be used (empty, not an archive, a read
error, a checksum mismatch) is skipped with a warning and the previous one restored; a
write that fails (no space, a read-only directory) removes its temp file, leaves the
older checkpoints as they were and raises :class:`CheckpointError`, a
:class:`~regretflow.engine.errors.FatalError` whose message names the directory and
the OS error. While a new checkpoint is written the ``keep`` older ones still exist,
so the directory needs room for ``keep + 1`` checkpoints.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> path = write_checkpoint(d, 1, {"model": {"w": np.arange(3.0), "n": 3}})
>>> state, meta = read_checkpoint(path)
>>> state["model"]["w"].tolist(), state["model"]["n"], meta["format_version"]
([0.0, 1.0, 2.0], 3, 1)
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from regretflow.connectors.files import DEFAULT_FILE_MODE, make_private_dirs, open_private
from regretflow.engine.errors import FatalError

log = logging.getLogger("regretflow")

FORMAT_VERSION = 1
# Older formats this build upgrades on load: version -> function(state, meta) -> (state, meta)
MIGRATIONS: dict[int, Any] = {}

_NAME = re.compile(r"^checkpoint-(\d{12})\.npz$")
# what a writer leaves behind when it is killed mid-write: ".checkpoint-<number>.npz.<pid>.tmp"
# (and the ".checkpoint-probe.*.tmp" of check_checkpoint_dir)
_TEMP = re.compile(r"^\.checkpoint-.*\.tmp$")
SEP = "/"


class CheckpointError(FatalError):
    """Checkpoints that cannot be written or used: the worker stops with this one message.

    Raised when storage refuses a write (no space, read-only, not a directory), when no
    checkpoint of a directory can be read, and for a format this build cannot read.

    >>> issubclass(CheckpointError, FatalError), CheckpointError.exit_code
    (True, 1)
    """


class CheckpointFenced(CheckpointError):
    """A write that found another writer in its directory: nothing was written.

    Either its temp file was removed while it was written (another worker restored the
    directory, which removes temp files), or its checkpoint's name was already taken
    (another worker wrote that number). A Kafka worker meets this when the group gave
    its partition away while it was stopped: it skips the checkpoint, and its next
    poll tells it the partition is lost. ``newest`` is the highest checkpoint number in
    the directory (None if unknown): a writer that goes on numbers its next one above it.
    ``restored_elsewhere``: the temp file was removed, which only a restore does.

    >>> exc = CheckpointFenced("checkpoint directory state: checkpoint-000000000007.npz exists", newest=7)
    >>> issubclass(CheckpointFenced, CheckpointError), exc.newest, exc.restored_elsewhere
    (True, 7, False)
    """

    def __init__(self, message: str, newest: int | None = None, restored_elsewhere: bool = False):
        super().__init__(message)
        self.newest = newest
        self.restored_elsewhere = restored_elsewhere

    def __reduce__(self) -> tuple[type[CheckpointFenced], tuple[str, int | None, bool]]:
        return type(self), (str(self), self.newest, self.restored_elsewhere)


class UnreadableCheckpoint(CheckpointError):
    """One checkpoint file that cannot be read or verified; an older one may still serve.

    >>> exc = UnreadableCheckpoint("state/checkpoint-000000000002.npz", "empty file (zero length)")
    >>> print(exc)
    state/checkpoint-000000000002.npz: unreadable checkpoint (empty file (zero length))
    >>> exc.reason
    'empty file (zero length)'
    """

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: unreadable checkpoint ({reason})")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(
        self,
    ) -> tuple[type[UnreadableCheckpoint], tuple[Path, str]]:  # picklable with its two arguments (the default would pass the message alone)
        return type(self), (self.path, self.reason)


def _storage_message(directory: Path, action: str, exc: OSError) -> str:
    """'checkpoint directory D: ACTION: <OS error> (ENOSPC)': what an operator needs, on one line."""
    code = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"checkpoint directory {directory}: {action}: {text}" + (f" ({code})" if code else "")


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


def write_checkpoint(directory: str | Path, number: int, state: dict[str, Any], keep: int = 2, file_mode: int = DEFAULT_FILE_MODE) -> Path:
    """Write checkpoint ``number`` atomically into ``directory``; keep the newest ``keep``.

    The file gets ``file_mode`` (a directory created here its directory mode) whatever
    the umask; its temp file has an unpredictable name and is created exclusively, so
    nothing planted at that name (a symlink) is followed or overwritten.

    Raises CheckpointError (naming the directory and the OS error) when storage refuses
    the write; its temp file is removed and the older checkpoints are untouched. Raises
    :class:`CheckpointFenced` when another writer is at work in the directory: the temp
    file was removed under this one, or checkpoint ``number`` exists (it is never replaced).
    """
    directory = Path(directory)
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
    tmp = directory / f".{final.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    buf = io.BytesIO()
    # Any, not NDArray: mypy matches a ** mapping against savez's allow_pickle: bool as well
    members: dict[str, Any] = {_member(k): v for k, v in arrays.items()}
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8), **members)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory}: exists and is not a directory")
    try:
        make_private_dirs(directory, file_mode)
        try:
            with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_EXCL, file_mode), "wb") as fh:
                fh.write(buf.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
            _publish(tmp, final, file_mode)
        except OSError as exc:
            _remove_quietly(tmp)
            if exc.errno == errno.ESTALE:  # the temp file removed over NFS while it was open
                raise _removed(directory, tmp) from exc
            raise
        except BaseException:
            # a full disk or a kill must not leave a partial file behind (nor one per restart)
            _remove_quietly(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CheckpointError(_storage_message(directory, f"cannot write {final.name}", exc)) from exc
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        try:
            old.unlink(missing_ok=True)
        except OSError as exc:  # the new checkpoint is durable; the next write prunes again
            log.warning("event=checkpoint_prune status=failed file=%s error=%r", old, _storage_message(directory, "cannot remove", exc))
    return final


# what os.link raises on storage without hard links (some network and FUSE file systems)
_NO_HARD_LINKS = frozenset((errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS))


def _publish(tmp: Path, final: Path, file_mode: int) -> None:
    """Give the written temp file the checkpoint's name, never over an existing file (CheckpointFenced).

    A hard link is atomic and refuses a name that exists, where a rename would replace it: a worker
    that wakes up after its group gave its partition away must not replace the new owner's checkpoint.
    On storage without hard links the name is reserved first (created exclusively, empty), then the
    temp file renamed over that reservation: a second writer finds the name taken either way. A kill
    between the two leaves an empty file, which a restore skips as unreadable."""
    try:
        os.link(tmp, final)
    except FileExistsError as exc:
        raise _taken(final) from exc
    except FileNotFoundError as exc:
        raise _removed(final.parent, tmp) from exc
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:
            os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), file_mode))
        except FileExistsError as taken:
            raise _taken(final) from taken
        try:
            os.replace(tmp, final)
        except FileNotFoundError as removed:
            _remove_quietly(final)  # (our own empty reservation)
            raise _removed(final.parent, tmp) from removed
        return
    _remove_quietly(tmp)  # the checkpoint stands; a temp file left here goes at the next restore


def _taken(final: Path) -> CheckpointFenced:
    return CheckpointFenced(
        f"checkpoint directory {final.parent}: {final.name} exists: another worker wrote it", newest_number(final.parent)
    )


def _removed(directory: Path, tmp: Path) -> CheckpointFenced:
    return CheckpointFenced(
        f"checkpoint directory {directory}: {tmp.name} was removed while it was written: another worker restored this directory",
        newest_number(directory),
        restored_elsewhere=True,
    )


def newest_number(directory: str | Path) -> int | None:
    """The highest checkpoint number in ``directory`` (readable or not), None if it holds none or cannot be listed."""
    directory = Path(directory)
    try:
        names = list_checkpoints(directory)
    except OSError:
        return None
    match = _NAME.match(names[-1].name) if names else None
    return int(match.group(1)) if match else None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temp files that killed or failed writers left in ``directory``.

    Call it only where this process now owns the directory (restoring it): a temp file
    is the partial write of a checkpoint that never existed. A writer still alive (a
    worker evicted while it was stopped mid-write) finds its temp file gone when it
    resumes, and :func:`write_checkpoint` raises :class:`CheckpointFenced` for it.
    Returns the files removed.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".checkpoint-000000000003.npz.4242.tmp").write_bytes(b"partial")
    >>> [p.name for p in remove_stale_temps(d)], sorted(d.iterdir())
    (['.checkpoint-000000000003.npz.4242.tmp'], [])
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        if not _TEMP.match(path.name):
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a read-only directory: restoring still works; writing will say why not
            log.warning(
                "event=checkpoint_temp status=not-removed file=%s error=%r", path, _storage_message(directory, "cannot remove", exc)
            )
            continue
        log.info("event=checkpoint_temp status=removed file=%s", path)
        removed.append(path)
    return removed


def check_checkpoint_dir(path: str | Path, file_mode: int = DEFAULT_FILE_MODE) -> Path:
    """Start-up check of ``checkpoint.dir``: a directory (created if missing) where files can be created.

    Cheap (one empty probe file, created and removed); raises CheckpointError with the
    directory and the OS error otherwise. It cannot promise space: a full disk is
    reported by the write that meets it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "state"
    >>> check_checkpoint_dir(d) == d, d.is_dir(), list(d.iterdir())
    (True, True, [])
    >>> _ = (d / "file").write_text("x")
    >>> check_checkpoint_dir(d / "file")
    Traceback (most recent call last):
    ...
    regretflow.engine.runtime.checkpoint.CheckpointError: checkpoint directory .../state/file: exists and is not a directory
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path}: exists and is not a directory")
    try:
        make_private_dirs(path, file_mode)
        fd, probe = tempfile.mkstemp(prefix=".checkpoint-probe.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(_storage_message(path, "not writable", exc)) from exc
    return path


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
    """Load and verify a checkpoint; returns (nested state, meta).

    Raises UnreadableCheckpoint for a file that cannot be read or verified, and
    CheckpointError for a format this build cannot read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise UnreadableCheckpoint(path, "empty file (zero length)")
            if not zipfile.is_zipfile(fh):
                raise UnreadableCheckpoint(path, "not a complete zip archive")
            fh.seek(0)
            _check_sizes(fh, path)
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                if "__meta__" not in npz.files:
                    raise UnreadableCheckpoint(path, "no __meta__ member: not a regretflow checkpoint")
                meta = json.loads(npz["__meta__"].tobytes().decode())
                arrays = {_path(m): npz[m] for m in npz.files if m.startswith("a:")}
        if not isinstance(meta, dict) or not isinstance(meta.get("scalars", {}), dict):
            raise UnreadableCheckpoint(path, "__meta__ is not a checkpoint's meta object")
        version = meta.get("format_version")
        if not isinstance(version, int):
            raise UnreadableCheckpoint(path, "no format version")
        if version > FORMAT_VERSION:  # checked before the checksum: a newer format may compute it differently
            raise CheckpointError(
                f"{path}: written in checkpoint format {version} by a newer regretflow; this build reads formats up to {FORMAT_VERSION}"
            )
        scalars = meta.get("scalars", {})
        expected = _digest(arrays, json.dumps(scalars, sort_keys=True, allow_nan=False).encode())
        if expected != meta.get("sha256"):
            raise UnreadableCheckpoint(path, "checksum mismatch: the file is corrupt")
        state = unflatten(arrays, scalars)
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever reading or decoding these bytes raises, the file cannot be used
        raise UnreadableCheckpoint(path, f"{type(exc).__name__}: {exc}") from exc
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise CheckpointError(
                f"{path}: checkpoint format {version} is no longer readable by this build (format {FORMAT_VERSION}); "
                "replay the stream from its start or use the regretflow version that wrote it"
            )
        state, meta = MIGRATIONS[version](state, meta)
        version = meta["format_version"]
    return state, meta


def _check_sizes(fh: BinaryIO, path: Path) -> None:
    """Refuse, before anything is expanded, a file whose members would take more memory than
    the file's own size: regretflow stores members uncompressed, so a compressed member (a zip
    bomb), a member whose header claims more bytes than the archive holds, or an array header
    whose shape needs more bytes than its member carries is not a checkpoint it wrote."""
    file_size = os.fstat(fh.fileno()).st_size
    with zipfile.ZipFile(fh) as archive:
        total = 0
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise UnreadableCheckpoint(path, f"member {info.filename!r} is compressed; checkpoints store members uncompressed")
            total += info.file_size
            if info.file_size != info.compress_size or total > file_size:
                raise UnreadableCheckpoint(path, f"member {info.filename!r} claims {info.file_size} bytes, more than the file holds")
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
                raise UnreadableCheckpoint(path, f"member {info.filename!r}: its array header claims more than the member holds")


_LISTINGS = 5  # a directory listed again when a checkpoint in it went away between the listing and the read


def latest_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that verifies, or None when ``directory`` holds none.

    A newest file that cannot be read or verified is skipped with a warning naming it
    and why, and the previous one is used; a format this build cannot read stops the
    search (falling back past it would silently undo work). Read-only: it never
    changes the directory (see :func:`restore_checkpoint`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory}: exists and is not a directory")
    for _ in range(_LISTINGS):
        try:
            paths = list_checkpoints(directory)
        except OSError as exc:
            raise CheckpointError(_storage_message(directory, "cannot list", exc)) from exc
        skipped: list[UnreadableCheckpoint] = []
        pruned = False
        for path in reversed(paths):
            try:
                found = read_checkpoint(path)
            except UnreadableCheckpoint as exc:
                if isinstance(exc.__cause__, FileNotFoundError):
                    pruned = True  # removed since the listing (another writer's prune keeps newer ones): list again
                    break
                log.warning("event=checkpoint_skipped file=%s reason=%r action=use-previous", path, exc.reason)
                skipped.append(exc)
                continue
            if skipped:
                log.warning("event=checkpoint_fallback file=%s skipped=%d", path, len(skipped))
            return found
        if not pruned:
            break
    if skipped:
        raise CheckpointError(
            f"checkpoint directory {directory}: no usable checkpoint among {len(skipped)} files: " + "; ".join(map(str, skipped))
        )
    return None


def restore_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Start-up restore of a directory this process now owns: stale temp files removed, then the newest usable checkpoint.

    >>> import tempfile, pathlib, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_checkpoint(d, 1, {"v": np.zeros(2)})
    >>> _ = (d / "checkpoint-000000000002.npz").write_bytes(b"")  # e.g. a disk that filled up outside regretflow
    >>> _ = (d / ".checkpoint-000000000002.npz.77.tmp").write_bytes(b"partial")
    >>> state, meta = restore_checkpoint(d)
    >>> meta["number"], sorted(p.name for p in d.iterdir())
    (1, ['checkpoint-000000000001.npz', 'checkpoint-000000000002.npz'])
    """
    remove_stale_temps(directory)
    return latest_checkpoint(directory)


def describe(path: str | Path) -> dict[str, Any]:
    """What ``regretflow checkpoint inspect`` prints: meta, the file's size and every leaf's shape or value."""
    state, meta = read_checkpoint(path)
    arrays, scalars = flatten(state)
    return {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "format_version": meta["format_version"],
        "number": meta["number"],
        "written_at": meta["written_at"],
        "sha256": meta["sha256"],
        "arrays": {k: f"{v.dtype.str} {list(v.shape)}" for k, v in sorted(arrays.items())},
        "scalars": dict(sorted(scalars.items())),
    }
