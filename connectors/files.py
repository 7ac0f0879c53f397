"""Private files: what regretflow writes (checkpoints, answers, dead letters, metrics logs)
is created with ``runtime.file_mode`` (0600 by default) whatever the umask, in directories
it creates with the matching directory mode (0700); temp files are created exclusively,
never through a symlink.

Examples
--------
>>> import os, stat, tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> fh = open_private_append(root / "state" / "answers.jsonl")
>>> _ = fh.write(b"{}\\n"); fh.close()
>>> oct(stat.S_IMODE(os.stat(root / "state" / "answers.jsonl").st_mode)), oct(stat.S_IMODE(os.stat(root / "state").st_mode))
('0o600', '0o700')
>>> dir_mode(0o640) == 0o750
True
"""

from __future__ import annotations

import io
import os
from pathlib import Path

DEFAULT_FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def dir_mode(file_mode: int) -> int:
    """The directory mode that goes with ``file_mode``: whoever may read may also list (r -> rx)."""
    return file_mode | ((file_mode & 0o444) >> 2)


def make_private_dirs(path: str | os.PathLike[str], file_mode: int = DEFAULT_FILE_MODE) -> Path:
    """Create ``path`` and its missing parents with ``dir_mode(file_mode)``; existing ones are left as they are."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=dir_mode(file_mode))
        except FileExistsError:  # created meanwhile (another worker)
            continue
        os.chmod(directory, dir_mode(file_mode))  # mkdir's mode passed through the umask
    return path


def open_private(path: str | os.PathLike[str], flags: int, file_mode: int = DEFAULT_FILE_MODE, follow: bool = False) -> int:
    """``os.open`` that gives a file it creates exactly ``file_mode``; without ``follow`` a
    symlink at ``path`` is refused (a new file is created with O_EXCL, which never follows one)."""
    flags |= _CLOEXEC | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, file_mode)
    except FileExistsError:
        if flags & os.O_EXCL:
            raise
        return os.open(path, flags)  # an existing file keeps the mode its owner gave it
    try:
        os.fchmod(fd, file_mode)  # the umask narrowed (or, for a wide mode, could not widen) the create mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_append(path: str | os.PathLike[str], file_mode: int = DEFAULT_FILE_MODE) -> io.BufferedWriter:
    """A binary append-mode file object (an answers, dead-letter or metrics log file).

    An existing file, or an operator's symlink to one, is appended to as it is."""
    path = Path(path)
    make_private_dirs(path.parent, file_mode)
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND, file_mode, follow=True), "ab")
