"""The observed state: what the sidecars in the storage say about each task."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from orchestra.errors import DamagedTaskError, UnsafePath
from orchestra.plan.desired import DesiredTask
from orchestra.spec.model import SpecSet
from orchestra.status.model import TaskRecord
from orchestra.status.store import EVENTS_FILE, STATUS_FILE, TaskStore


@dataclass
class Orphan:
    """A task with a sidecar in the storage and no spec."""

    record: TaskRecord
    task_dir: Path
    #: the invalid spec file that defines (or may define) it: then it is no orphan, and
    #: nothing is pruned until that file is fixed
    invalid_spec: str | None = None


def observe(
    desired: list[DesiredTask],
    refused: dict[str, str] | None = None,
    damaged: list[DamagedTaskError] | None = None,
) -> dict[str, TaskRecord | None]:
    """Each task's record. When the snapshot says its jobs are exactly the desired ones (same
    names, same input digests), only the snapshot's header is read: a no-op plan of 100,000
    jobs then parses no job line. A task whose directory or sidecar is unsafe (a symlink, a
    FIFO...) is left out and named in ``refused``; one whose sidecar is damaged is left out
    and its error added to ``damaged``; each raises when its collection is None."""
    observed: dict[str, TaskRecord | None] = {}
    for task in desired:
        read, record = load_noting(partial(_observe, task), task.name, refused, damaged)
        if read:
            observed[task.name] = record
    return observed


def load_noting(
    load: Callable[[], TaskRecord | None],
    key: str,
    refused: dict[str, str] | None,
    damaged: list[DamagedTaskError] | None,
) -> tuple[bool, TaskRecord | None]:
    """(True, what ``load`` read); or (False, None) for a task to skip, noted in ``refused``
    (unsafe files, under ``key``) or ``damaged`` (unreadable contents). A scan of many tasks
    passes both so that one task's trouble stops no other; each raises when it is None."""
    try:
        return True, load()
    except UnsafePath as exc:
        if refused is None:
            raise
        refused[key] = exc.message
    except DamagedTaskError as exc:
        if damaged is None:
            raise
        damaged.append(exc)
    return False, None


def _observe(task: DesiredTask) -> TaskRecord | None:
    store = TaskStore(task.task_dir)
    summary = store.load_summary()
    wanted = task.jobs_digest
    relaunch = summary is not None and summary.phase == "killed"
    relaunch = relaunch and summary is not None and summary.spec_digest != task.spec_digest
    if summary is not None and summary.jobs_digest == wanted and not relaunch:
        return summary
    return store.load()


def find_task_dirs(storage: Path) -> list[Path]:
    """Every ``<storage>/<owner>/user.<owner>.<name>/`` that holds a sidecar, and every symlink
    there named as a task's directory (loading it raises :class:`UnsafePath`: it is never
    entered). A directory named for another user's task is not one of this user's."""
    found = []
    try:
        users = sorted(os.scandir(storage), key=lambda e: e.name)
    except OSError:
        return []
    for user in users:
        if user.name.startswith(".") or not user.is_dir():
            continue
        try:
            entries = sorted(os.scandir(user.path), key=lambda e: e.name)
        except OSError:
            continue
        prefix = f"user.{user.name}."
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            if entry.is_symlink():
                found.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                path = Path(entry.path)
                if os.path.lexists(path / EVENTS_FILE) or os.path.lexists(path / STATUS_FILE):
                    found.append(path)
    return found


def find_orphans(
    specs: SpecSet,
    refused: dict[str, str] | None = None,
    damaged: list[DamagedTaskError] | None = None,
) -> list[Orphan]:
    """Tasks in the storages without a spec; an unsafe one is named in ``refused`` (by its
    directory), a damaged one goes to ``damaged``, as in :func:`observe`."""
    orphans = []
    storages = sorted({cluster.storage for cluster in specs.clusters.values()})
    for storage in storages:
        for directory in find_task_dirs(storage):
            if directory.name in specs.tasks:
                continue
            read, record = load_noting(TaskStore(directory).load, str(directory), refused, damaged)
            if read and record is not None:
                orphans.append(Orphan(record, directory, specs.invalid_spec_of(directory.name)))
    return orphans
