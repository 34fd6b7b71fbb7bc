"""Stop a task that no engine is driving: ``orchestra delete`` and ``apply --prune``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from orchestra.backends import create_backend
from orchestra.backends.base import JobRun
from orchestra.engine.lock import TaskLock
from orchestra.engine.runner import KILL_REQUEST
from orchestra.errors import FatalError, UnsafePath
from orchestra.fsutil import atomic_write
from orchestra.spec.model import ClusterSpec
from orchestra.status.model import ACTIVE_JOB_STATES, TaskRecord
from orchestra.status.store import TaskStore

WAIT_FOR_ENGINE = 60.0


def kill_task(task_dir: Path, cluster: ClusterSpec, *, reason: str) -> TaskRecord:
    """Cancel the task's running jobs and mark it ``killed``. When another orchestra process is
    driving the task, ask it (a request file it checks twice a second) and wait for it."""
    lock = TaskLock(task_dir)
    try:
        lock.acquire(task_dir.name)
    except UnsafePath:
        raise  # a symlinked task directory: not this task's engine to ask
    except FatalError:
        return _ask_the_engine(task_dir, reason)
    store = TaskStore(task_dir)
    try:
        record = store.load()
        if record is None:
            raise FatalError(f"{task_dir} has no status: nothing to delete")
        if record.phase == "killed":
            return record
        store.open(record)
        active = [j for j in record.jobs.values() if j.state in ACTIVE_JOB_STATES]
        if active:
            backend = create_backend(cluster)
            try:
                runs = [
                    JobRun(
                        record.name,
                        j.name,
                        j.attempts,
                        j.run_id or "",
                        "",
                        task_dir / "jobs" / j.name,
                    )
                    for j in active
                ]
                alive = [e.run.run_id for e in backend.recover(runs) if e.kind == "started"]
                backend.cancel(alive)
                deadline = time.monotonic() + 10.0
                while alive and time.monotonic() < deadline:
                    for event in backend.poll(0.2):
                        if event.run.run_id in alive and event.kind != "started":
                            alive.remove(event.run.run_id)
            finally:
                backend.close()
            for job in active:
                store.append(
                    {
                        "ev": "job",
                        "job": job.name,
                        "state": "pending",
                        "attempts": max(0, job.attempts - 1),
                        "reason": "cancelled",
                    }
                )
        store.append({"ev": "task", "phase": "killed", "message": reason}, snapshot=True)
        return record
    finally:
        store.close()
        lock.release()


def purge_task(task_dir: Path) -> None:
    """Remove the task's directory, holding its lock: an orchestra still driving it (asked to
    kill it, it is winding down) is waited for, never removed from under."""
    lock = TaskLock(task_dir)
    deadline = time.monotonic() + WAIT_FOR_ENGINE
    while True:
        try:
            lock.acquire(task_dir.name)
            break
        except FatalError as exc:
            if time.monotonic() >= deadline:
                raise FatalError(
                    f"{exc.message}; not purged after waiting {WAIT_FOR_ENGINE:.0f} s",
                    hint="run delete --purge again once that process has ended",
                ) from None
            time.sleep(0.2)
    try:
        shutil.rmtree(task_dir)
    finally:
        lock.release()


def _ask_the_engine(task_dir: Path, reason: str) -> TaskRecord:
    request = task_dir / KILL_REQUEST
    # a new file renamed over the name: a symlink there is replaced, not followed, and a
    # FIFO there cannot block this write
    atomic_write(request, reason + "\n", fsync=False)
    deadline = time.monotonic() + WAIT_FOR_ENGINE
    while time.monotonic() < deadline:
        record = TaskStore(task_dir).load()
        if record is not None and record.phase == "killed":
            return record
        time.sleep(0.2)
    raise FatalError(
        f"asked the orchestra driving {task_dir.name} to stop it, but it has not after "
        f"{WAIT_FOR_ENGINE:.0f} s",
        hint=f"the request stays in {request}; it is carried out when that process next looks",
    )
