"""One orchestra process at a time per task: an ``flock`` on ``<task dir>/.orchestra-lock``.

The kernel releases the lock when its holder dies, SIGKILL included, so a lock is never stale.
The file names its holder (pid, host, time) for the message the next process prints.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from orchestra.errors import FatalError
from orchestra.fsutil import check_directory, now_iso, open_regular

LOCK_FILE = ".orchestra-lock"


class TaskLock:
    def __init__(self, task_dir: Path) -> None:
        self.path = task_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, task: str) -> None:
        check_directory(self.path.parent, create=True)  # a symlink there: UnsafePath
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FatalError(
                f"task {task} is being worked on by another orchestra ({holder})",
                hint="wait for it to finish, or stop it; this run changed nothing",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}\n".encode(), 0
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
