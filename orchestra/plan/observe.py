"""The observed state: what the sidecars in the storage say about each task."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestra.errors import DamagedTaskError
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
    desired: list[DesiredTask], damaged: list[DamagedTaskError] | None = None
) -> dict[str, TaskRecord | None]:
    """Each task's record. When the snapshot says its jobs are exactly the desired ones (same
    names, same input digests), only the snapshot's header is read: a no-op plan of 100,000
    jobs then parses no job line. A task whose sidecar is damaged is left out and its error
    added to ``damaged`` (raised when that is None)."""
    observed: dict[str, TaskRecord | None] = {}
    for task in desired:
        store = TaskStore(task.task_dir)
        try:
            summary = store.load_summary()
            wanted = task.jobs_digest
            relaunch = summary is not None and summary.phase == "killed"
            relaunch = relaunch and summary is not None and summary.spec_digest != task.spec_digest
            if summary is not None and summary.jobs_digest == wanted and not relaunch:
                observed[task.name] = summary
            else:
                observed[task.name] = store.load()
        except DamagedTaskError as exc:
            if damaged is None:
                raise
            damaged.append(exc)
    return observed


def find_task_dirs(storage: Path) -> list[Path]:
    """Every ``<storage>/<user>/<task>/`` that holds a sidecar."""
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
        for entry in entries:
            if entry.name.startswith("user.") and entry.is_dir():
                path = Path(entry.path)
                if (path / EVENTS_FILE).exists() or (path / STATUS_FILE).exists():
                    found.append(path)
    return found


def find_orphans(specs: SpecSet, damaged: list[DamagedTaskError] | None = None) -> list[Orphan]:
    """The tasks with a sidecar and no spec; damaged ones go to ``damaged`` as in observe."""
    orphans = []
    storages = sorted({cluster.storage for cluster in specs.clusters.values()})
    for storage in storages:
        for directory in find_task_dirs(storage):
            if directory.name in specs.tasks:
                continue
            try:
                record = TaskStore(directory).load()
            except DamagedTaskError as exc:
                if damaged is None:
                    raise
                damaged.append(exc)
                continue
            if record is not None:
                orphans.append(Orphan(record, directory, specs.invalid_spec_of(directory.name)))
    return orphans
