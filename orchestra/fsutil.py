"""Small file-system helpers every layer may use: atomic writes, opening files that may be
hostile (a job can replace any file of its task directory with a symlink, a FIFO or a device),
and timestamps."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from orchestra.errors import UnsafePath

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (or fails with
# ENXIO for writing); O_NOCTTY: a terminal device never becomes ours
_NEVER_BLOCK = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def atomic_write(
    path: Path,
    data: str | bytes | Sequence[bytes | memoryview],
    *,
    fsync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a torn
    one: write a temporary file beside it, fsync it, rename it over ``path``. ``data`` may be a
    sequence of chunks, written one after the other (a large one is not copied to join them).

    With ``dir_fd`` (a directory opened before), ``path``'s name is written in that directory
    whatever its path leads to now (a job may have replaced it with a symlink since).

    On failure (disk full, read-only storage) the previous file is left intact and the
    ``OSError`` propagates."""
    chunks = [data.encode("utf-8")] if isinstance(data, str) else data
    if isinstance(chunks, bytes | memoryview):
        chunks = [chunks]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if dir_fd is not None:
        path, tmp = Path(path.name), Path(tmp.name)
    try:
        try:  # a new file, never what is there (a symlink planted at the name, a FIFO)
            fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=dir_fd)
        except FileExistsError:  # left by a killed process of the same pid, or planted
            os.unlink(tmp, dir_fd=dir_fd)  # the name only, never what a symlink points to
            fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=dir_fd)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


# the last whole second seen and its formatted prefix, as one tuple replaced whole
_SECOND: list[tuple[int, str]] = [(0, "")]


def now_iso() -> str:
    """The current UTC time as ``2026-11-25T07:00:00.123Z`` (the seconds part is formatted
    once per second: this runs for every event)."""
    stamp = time.time()
    whole, prefix = _SECOND[0]  # safe to share between threads
    if whole != int(stamp):
        whole = int(stamp)
        prefix = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _SECOND[0] = (whole, prefix)
    return f"{prefix}{int(stamp * 1000) % 1000:03d}Z"


def parse_iso(value: str) -> float:
    """Seconds since the epoch of a time written by :func:`now_iso`."""
    return (
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    )


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while: building or reading 100,000 job records
    allocates no cycles, yet each full collection walks every live object (a 100,000-job
    snapshot takes 4x longer with it on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def resolved_outside(path: str | Path, root: str | Path) -> str | None:
    """Where ``path`` really is (symlinks followed) when that is outside ``root``; None when
    it is ``root`` or inside it."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real == real_root or real.startswith(real_root + os.sep):
        return None
    return real


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, for messages: "a FIFO", "a symlink"..."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _symlink_problem(path: str | Path) -> str:
    try:
        return f"is a symlink (to {os.readlink(path)!r})"
    except OSError:
        return "is a symlink, or under one"


def open_regular(
    path: str | Path,
    flags: int = os.O_RDONLY,
    mode: int = 0o644,
    *,
    follow: bool = False,
    dir_fd: int | None = None,
) -> int:
    """``os.open`` of a file that must be a regular file, which never blocks: a FIFO, a device,
    a socket or a directory there raises :class:`UnsafePath` naming it, and so does a symlink
    unless ``follow``. A missing file raises ``FileNotFoundError`` as ``os.open`` does.
    ``dir_fd``: ``path`` is a name in that directory (as ``os.open``)."""
    extra = _NEVER_BLOCK if follow else _NEVER_BLOCK | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | extra, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, _symlink_problem(path)) from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, opened for writing
            raise UnsafePath(path, "is a FIFO, not a regular file") from None
        if exc.errno == errno.EISDIR:
            raise UnsafePath(path, "is a directory, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath(path, f"is {kind_of(info.st_mode)}, not a regular file")
    return fd


def read_regular(path: str | Path, *, follow: bool = False, dir_fd: int | None = None) -> bytes:
    """The content of a regular file (see :func:`open_regular`)."""
    fd = open_regular(path, follow=follow, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_directory(path: str | Path, *, create: bool = False) -> bool:
    """Whether ``path`` exists as a real directory (made, parents too, with ``create``).
    Anything else there, a symlink to a directory included, raises :class:`UnsafePath`: a
    task directory linked to another user's would have orchestra write into that one."""
    if create:
        try:
            os.mkdir(path)  # never through a symlink at ``path``: that is "exists"
            return True
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with contextlib.suppress(FileExistsError):  # made at the same time by another
                os.mkdir(path)
        except FileExistsError:
            pass  # what is there is checked below
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(path, f"{_symlink_problem(path)}, not a directory")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(path, f"is {kind_of(info.st_mode)}, not a directory")
    return True


def open_directory(path: str | Path) -> int:
    """A descriptor of a real directory (a symlink there: :class:`UnsafePath`), for writing
    in it by name after a job has had the chance to replace its path with a symlink."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            check_directory(path)  # names what is there instead
        raise


def make_job_dir(job_dir: Path) -> None:
    """Make ``<task dir>/jobs/<job>/`` (the task directory exists), refusing with
    :class:`UnsafePath` a ``jobs`` or job directory that is a symlink or not a directory: a
    job could have planted a link to another user's directory there."""
    # ``jobs`` exists but for the first job, the job's directory but for a retry: a system
    # call or two per launched job; and the task directory again: a job may have replaced it
    # with a symlink since its engine locked it
    check_directory(job_dir.parent.parent)
    if not check_directory(job_dir.parent):
        check_directory(job_dir.parent, create=True)
    check_directory(job_dir, create=True)
