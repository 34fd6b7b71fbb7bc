"""One reconciler at a time per storage: ``<storage>/.orchestra/reconcile.lock``.

An ``flock`` on the file (the kernel releases it when its holder dies, however it dies: a
stale lock frees itself; on NFSv4 Linux maps it to a lock the server keeps) plus, inside it,
who holds it (pid, host, user, since when, which commit) so that a reconciler that waited
``--lock-timeout`` seconds in vain can say who is in the way.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from orchestra.errors import FatalError, UnsafePath
from orchestra.fsutil import now_iso, open_regular, read_regular

LOCK_FILE = "reconcile.lock"


class ReconcileLock:
    def __init__(self, storage: Path) -> None:
        self.path = storage / ".orchestra" / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, timeout: float, *, commit: str, user: str) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; FatalError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)  # a FIFO there: refused
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    raise FatalError(
                        f"another reconcile holds {self.path} ({holder}); waited {timeout:g} s",
                        hint="it ends by itself; raise --lock-timeout to wait longer",
                    ) from None
                time.sleep(0.1)
        self._fd = fd
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": user,
            "since": now_iso(),
            "commit": commit,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)

    def holder(self) -> str:
        try:
            info = json.loads(read_regular(self.path) or b"{}")
        except (OSError, ValueError, UnsafePath):
            return "holder unknown"
        return (
            f"pid {info.get('pid')} on {info.get('host')}, user {info.get('user')}, "
            f"since {info.get('since')}, reconciling {str(info.get('commit'))[:10]}"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
