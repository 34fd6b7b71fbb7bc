"""The observed state: what the sidecars in the storage say about each task."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestra.plan.desired import DesiredTask
from orchestra.spec.model import SpecSet
from orchestra.status.model import TaskRecord
from orchestra.status.store import EVENTS_FILE, STATUS_FILE, TaskStore


@dataclass
class Orphan:
    """A task with a sidecar in the storage and no spec."""

    record: TaskRecord
    task_dir: Path


def observe(desired: list[DesiredTask]) -> dict[str, TaskRecord | None]:
    return {task.name: TaskStore(task.task_dir).load() for task in desired}


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


def find_orphans(specs: SpecSet) -> list[Orphan]:
    orphans = []
    storages = sorted({cluster.storage for cluster in specs.clusters.values()})
    for storage in storages:
        for directory in find_task_dirs(storage):
            if directory.name in specs.tasks:
                continue
            record = TaskStore(directory).load()
            if record is not None:
                orphans.append(Orphan(record, directory))
    return orphans
