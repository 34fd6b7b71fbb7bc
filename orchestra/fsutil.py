"""Small file-system helpers every layer may use: atomic writes and timestamps."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path


def atomic_write(
    path: Path, data: str | bytes | Sequence[bytes | memoryview], *, fsync: bool = True
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a torn
    one: write a temporary file beside it, fsync it, rename it over ``path``. ``data`` may be a
    sequence of chunks, written one after the other (a large one is not copied to join them).

    On failure (disk full, read-only storage) the previous file is left intact and the
    ``OSError`` propagates."""
    chunks = [data.encode("utf-8")] if isinstance(data, str) else data
    if isinstance(chunks, bytes | memoryview):
        chunks = [chunks]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
