"""Failures of the run's surroundings, told apart from what is wrong with a file (SPEC §8).

A file whose content is wrong is quarantined and the night goes on.  A failure that
is not about the file's content — the state store or the outbox cannot be written
(a full disk, a read-only folder, an I/O error), the machine is out of memory —
stops the run instead (*stop, don't cascade*): quarantining the file would lose it
for a reason it does not have, and the files after it, which may depend on it,
would be judged against a state that misses it.  `RunStopped` carries the one line
the operator reads: what failed, where, and what to do.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from pathlib import Path

import duckdb


class RunStopped(Exception):
    """The run stopped on a failure of its surroundings (exit 1); the message says what to fix."""


# errno -> (what is wrong, what to do)
_ERRNO: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("is full (no space left on the device)", "free space there"),
    errno.EDQUOT: ("is over its disk quota", "free space there or raise the quota"),
    errno.EFBIG: ("refused a file that large", "free space or raise the file size limit"),
    errno.EROFS: ("is on a read-only file system", "make it writable"),
    errno.EACCES: ("cannot be written by this user (permission denied)", "fix its permissions"),
    errno.EPERM: (
        "cannot be written by this user (operation not permitted)",
        "fix its permissions",
    ),
    errno.EIO: ("gave an I/O error", "check the disk (see the system log)"),
    errno.ENOMEM: ("ran out of memory", "give the run more memory"),
}
# the same failures as DuckDB words them (it raises its own exceptions, not OSError)
_WORDS: list[tuple[str, int]] = [
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("file too large", errno.EFBIG),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("operation not permitted", errno.EPERM),
    ("input/output error", errno.EIO),
    ("cannot allocate memory", errno.ENOMEM),
]
_DUCKDB_IO = (duckdb.IOException, duckdb.FatalException, duckdb.OutOfMemoryException,
              duckdb.PermissionException)  # fmt: skip
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def _errno_of(err: BaseException) -> int | None:
    if isinstance(err, OSError) and err.errno in _ERRNO:
        return err.errno
    text = str(err).lower()
    return next((code for words, code in _WORDS if words in text), None)


def is_environmental(err: BaseException) -> bool:
    """Whether `err` is a failure of the surroundings (disk, permissions, memory, the
    store's files), not of a file's content: such a failure stops the run (§8)."""
    if isinstance(err, (RunStopped, MemoryError, OSError, *_DUCKDB_IO)):
        return True
    if isinstance(err, duckdb.Error):
        # a failed commit is a TransactionException that names the file it could not write
        return _errno_of(err) is not None or "could not write" in str(err).lower()
    return False


def _path_of(err: BaseException) -> Path | None:
    if isinstance(err, OSError) and err.filename:
        return Path(str(err.filename))
    found = _QUOTED_PATH.search(str(err))
    return Path(found.group(1)) if found else None


def _place(path: Path | None, places: Iterable[tuple[str, Path]]) -> str:
    """'the state store's folder /x' when `path` lies in one of the named `places`."""
    if path is None:
        return ""
    for label, folder in places:
        try:
            if path.absolute().is_relative_to(folder.absolute()):
                return f"{label} {folder}"
        except (OSError, ValueError):
            continue
    return str(path.parent if path.suffix else path)


def describe(err: BaseException, places: Iterable[tuple[str, Path]] = ()) -> str:
    """One line: what failed and what to do (without the files left; see `stopped`)."""
    if isinstance(err, RunStopped):
        return str(err)
    place = _place(_path_of(err), places)
    code = _errno_of(err)
    if isinstance(err, (MemoryError, duckdb.OutOfMemoryException)):
        code = code or errno.ENOMEM
        place = place or "the machine"
    if code is not None:
        what, todo = _ERRNO[code]
        return f"{place or 'a folder the run writes'} {what}: {todo}, then run again"
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return (
        f"{place or 'the state store'} could not be read or written ({type(err).__name__}: "
        f"{detail}): fix the cause (see the log), then run again"
    )


def stopped(err: BaseException, places: Iterable[tuple[str, Path]], left: str = "") -> RunStopped:
    """The `RunStopped` to raise for `err`: `describe` and, when given, what was left."""
    if isinstance(err, RunStopped):
        return err
    line = "run stopped: " + describe(err, places)
    return RunStopped(f"{line} ({left})" if left else line)
