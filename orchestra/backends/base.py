"""What every backend offers the engine, in plain dataclasses."""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from orchestra.errors import UnsafePath
from orchestra.fsutil import open_regular
from orchestra.spec.model import TaskSpec

EXIT_MARKER = ".orchestra-exit"


@dataclass(frozen=True)
class JobRun:
    """One attempt of one job. ``run_id`` is unique per attempt and travels with the job (as
    ``ORCHESTRA_RUN_ID``) so a later orchestra process can recognise it."""

    task: str
    job: str
    attempt: int
    run_id: str
    command: str
    job_dir: Path
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    output: str = ""  # the file the job should write (%OUT), as orchestra sees it
    spec: TaskSpec | None = None  # the Task, for backends that render manifests
    spec_digest: str = ""
    digest: str = ""  # the job's inputs digest
    commit: str | None = None


@dataclass(frozen=True)
class JobEvent:
    run: JobRun
    # "waiting": still running, but held back (its reason, e.g. ImagePullBackOff; None: no
    # longer held back)
    kind: Literal["started", "finished", "lost", "waiting"]
    time: str
    exit_code: int | None = None
    pid: int | None = None
    node: str | None = None
    reason: str | None = None
    started: str | None = None  # on "finished": when it started, if no "started" came before
    # on "finished": whether the job wrote its output, %OUT or %OUT + a suffix (see
    # attempts.output_written); None: unknown, the engine looks
    output_written: bool | None = None


class Backend(Protocol):
    """Submit, poll, cancel; and recover jobs submitted by an orchestra process that died."""

    def capacity(self) -> int | None:
        """How many more jobs it takes now (None: no limit of the backend's own)."""

    def submit(self, run: JobRun) -> None:
        """Start one attempt. Its progress arrives later through :meth:`poll`."""

    def poll(self, timeout: float) -> list[JobEvent]:
        """Events since the last call, waiting up to ``timeout`` seconds for the first."""

    def cancel(self, run_ids: Collection[str]) -> None:
        """Stop these attempts; each then reports ``finished`` through :meth:`poll`."""

    def recover(self, runs: Sequence[JobRun]) -> list[JobEvent]:
        """For attempts a previous process submitted: ``finished`` (outcome known),
        ``started`` (still running: now watched, its end comes through :meth:`poll`) or
        ``lost`` (neither: re-queue it)."""

    def close(self) -> list[JobEvent]:
        """Stop every attempt still running (Ctrl-C). Returns what :meth:`poll` has not handed
        out yet: the outcomes known by now (an attempt that ended before the stop is
        ``finished`` with its exit code, never re-queued) and, for each attempt stopped or never
        started, ``finished`` with reason ``interrupted``."""


def read_exit_marker(run: JobRun) -> tuple[int, str] | None:
    """(exit code, when it was written) from the marker written as a job ends,
    ``<code> <run id>``, if it is this attempt's and whole; else None (also while the local
    backend's ``run <pids> <run id>`` line is there: the job has not ended)."""
    try:
        data, mtime = read_job_file(run.job_dir / EXIT_MARKER)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.endswith("\n"):
        return None
    code, _, run_id = text.strip().partition(" ")
    if run_id != run.run_id or not code.lstrip("-").isdigit():
        return None
    return int(code), time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))


def read_job_file(path: Path, limit: int = 4096) -> tuple[bytes, float]:
    """(the first ``limit`` bytes, mtime) of a small file orchestra wrote in a job's
    directory, which the job may have replaced: never blocks (a FIFO, a device) and reads
    regular files only (OSError otherwise)."""
    try:  # a FIFO or a symlink planted there is none of orchestra's: never opened to read
        fd = open_regular(path)
    except UnsafePath as exc:
        raise OSError(exc.message) from None
    try:
        return os.read(fd, limit), os.fstat(fd).st_mtime
    finally:
        os.close(fd)
