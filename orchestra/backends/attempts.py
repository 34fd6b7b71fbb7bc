"""What one attempt of a job leaves in its directory, and moving it aside before the next.

A job's directory ``jobs/<job>/`` holds the current attempt's ``log`` and output. The output
is ``%OUT`` (the Task's ``output``) and every entry whose name starts with it, such as
``output_s1_i2.pic`` (the tutorial's scripts write ``%OUT`` plus a suffix, never ``%OUT``
itself); the entries that are orchestra's own (``log``, ``attempts``, ``.orchestra*``) never
count. Before a new attempt starts, the previous one's log and output move into
``attempts/<n>/``, ``n`` one more than any kept (so numbers grow even when a changed input
resets the attempt count), and only the newest ``keepAttempts`` of those are kept.

Every step works on directory descriptors opened with ``O_NOFOLLOW``: a job may replace its
directory, or ``attempts``, with a symlink, and orchestra then refuses the attempt rather
than move or delete anything where the link points. Entries are moved with ``rename`` (a
symlink, FIFO or device moves as itself; nothing is opened or followed). The move goes
through ``jobs/<job>/.orchestra-attempt`` and lands with one final rename, so a process killed
in the middle leaves the files in the job directory or in that staging directory, and the
next archive of the job finishes the move into one ``attempts/<n>/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from pathlib import Path

from orchestra.errors import UnsafePath

LOG_FILE = "log"
ATTEMPTS_DIR = "attempts"
STAGING_DIR = ".orchestra-attempt"
_PRUNING = ".pruning-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeJobDirectory(UnsafePath):
    """A job directory (or its ``jobs``, ``attempts``) that is not a plain directory: the
    unsafe path of every other check, told apart only for the attempt it fails."""


def is_own_file(name: str) -> bool:
    """An entry of a job directory that orchestra makes (never a job's output)."""
    return name in (LOG_FILE, ATTEMPTS_DIR) or name.startswith(".orchestra")


def is_output(name: str, output: str) -> bool:
    """``name`` is ``output`` or ``output`` plus a suffix, and not orchestra's own."""
    return name.startswith(output) and not is_own_file(name)


def output_written(job_dir: Path, output: str) -> bool:
    """Whether the job's directory holds its output (``%OUT`` or ``%OUT`` + suffix). Only the
    current attempt's can be there: the previous one's moved away before it started."""
    if not is_own_file(output):
        with contextlib.suppress(OSError):
            os.lstat(job_dir / output)
            return True
    try:
        with os.scandir(job_dir) as entries:
            return any(is_output(entry.name, output) for entry in entries)
    except OSError:
        return False


def archive_previous_attempt(job_dir: Path, output: str, keep: int) -> int | None:
    """Move what the previous attempt left in ``job_dir`` (its log and output) into
    ``attempts/<n>/``, keep the newest ``keep`` of those, return ``n`` (None: nothing to move).
    Raises :class:`UnsafeJobDirectory` for a symlinked or non-directory ``jobs``, job
    directory or ``attempts``; ``OSError`` when the storage refuses."""
    where = os.fspath(job_dir)
    jobs, job = os.path.split(where)
    jobs_fd = _open_dir(jobs)
    if jobs_fd is None:
        return None  # a task that never ran a job: the common case costs one failed open
    try:
        fd = _open_dir(job, jobs_fd, jobs)
    finally:
        os.close(jobs_fd)
    if fd is None:
        return None
    try:
        with os.scandir(fd) as entries:
            found = [entry.name for entry in entries]
        names = [name for name in found if name == LOG_FILE or is_output(name, output)]
        if not names and STAGING_DIR not in found:
            return None
        return _archive(fd, where, names, keep)
    finally:
        os.close(fd)


def _archive(fd: int, where: str, names: list[str], keep: int) -> int | None:
    attempts = _make_dir(ATTEMPTS_DIR, fd, where)
    try:
        stage = _make_dir(STAGING_DIR, fd, where)
        try:
            with os.scandir(stage) as entries:
                leftover = {entry.name for entry in entries}
            if leftover & set(names):
                # an interrupted move, then files of the same names: another attempt ran
                # (never through orchestra); land the older as an attempt of its own
                os.close(stage)
                stage = -1
                _land(fd, attempts)
                stage = _make_dir(STAGING_DIR, fd, where)
                leftover = set()
            for name in names:
                os.rename(name, name, src_dir_fd=fd, dst_dir_fd=stage)
        finally:
            if stage >= 0:
                os.close(stage)
        if not names and not leftover:  # made, then orchestra was killed: nothing to keep
            os.rmdir(STAGING_DIR, dir_fd=fd)
            return None
        number = _land(fd, attempts)
        with contextlib.suppress(OSError):  # the move is what matters; pruning is tried again
            _prune(attempts, keep)
        return number
    finally:
        os.close(attempts)


def _land(fd: int, attempts: int) -> int:
    """Rename the staging directory to the next number in ``attempts``; return it."""
    with os.scandir(attempts) as entries:
        numbers = [int(e.name) for e in entries if _is_number(e.name)]
    number = max(numbers, default=0) + 1
    os.rename(STAGING_DIR, str(number), src_dir_fd=fd, dst_dir_fd=attempts)
    return number


def _is_number(name: str) -> bool:
    return name.isascii() and name.isdigit()


def _prune(attempts: int, keep: int) -> None:
    """Remove all but the newest ``keep`` numbered entries (and what a killed prune left).
    Each goes out of the numbered names first, so a half-removed one never looks kept."""
    with os.scandir(attempts) as entries:
        names = [e.name for e in entries]
    numbered = sorted((n for n in names if _is_number(n)), key=int, reverse=True)
    doomed = [n for n in names if n.startswith(_PRUNING)]
    for name in numbered[keep:]:
        # unique: with keepAttempts 0 numbers start again at 1, beside what may be left
        gone = f"{_PRUNING}{name}.{time.time_ns()}"
        os.rename(name, gone, src_dir_fd=attempts, dst_dir_fd=attempts)
        doomed.append(gone)
    for name in doomed:
        # best effort: what cannot be removed now (a tree too deep, a file the storage
        # refuses to delete) is out of the kept names and tried again on the next archive
        with contextlib.suppress(OSError, RecursionError):
            _remove(name, attempts)


def _remove(name: str, parent: int) -> None:
    """Remove ``name`` under the directory ``parent``, a directory's contents first; a
    symlink is removed itself, never followed."""
    info = os.lstat(name, dir_fd=parent)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        with os.scandir(fd) as entries:
            children = [entry.name for entry in entries]
        for child in children:
            _remove(child, fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _open_dir(name: str, parent: int | None = None, inside: str = "") -> int | None:
    """A descriptor of the directory ``name`` (in ``parent``, which is ``inside``), None if
    there is none; never through a symlink at its last component."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            shown = os.path.join(inside, name)
            raise UnsafeJobDirectory(
                shown,
                "is a symlink or not a directory: orchestra does not follow it "
                "(remove it, then retry the job)",
            ) from None
        raise


def _make_dir(name: str, parent: int, inside: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, dir_fd=parent)
    fd = _open_dir(name, parent, inside)
    if fd is None:  # removed between the two calls: by a job, never by orchestra
        shown = os.path.join(inside, name)
        raise FileNotFoundError(errno.ENOENT, "it vanished while orchestra made it", shown)
    return fd
