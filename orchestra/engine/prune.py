"""Pruning orphaned Kubernetes Jobs: Jobs labelled as orchestra's that no sidecar knows as a
current attempt. Guards: never a running Job of a task that still has a spec, and never more
than half of the managed Jobs without ``--force``."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from orchestra.errors import FatalError


@dataclass(frozen=True)
class ManagedJob:
    namespace: str
    name: str
    task: str
    run_id: str
    active: bool


def managed_job(data: Mapping[str, Any]) -> ManagedJob:
    meta = data.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = data.get("status") or {}
    return ManagedJob(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        task=str(annotations.get("orchestra.io/task-name", "")),
        run_id=str(annotations.get("orchestra.io/run-id", "")),
        active=bool(status.get("active")),
    )


def choose_prunable(
    jobs: Collection[ManagedJob],
    current_runs: Collection[str],
    tasks_with_spec: Collection[str],
    *,
    force: bool = False,
) -> list[ManagedJob]:
    """The Jobs to delete: not a current attempt of any task, and not running for a task that
    still has a spec. Refuses (FatalError) to delete more than half without ``force``."""
    current = set(current_runs)
    keep_running = set(tasks_with_spec)
    chosen = [
        job
        for job in jobs
        if job.run_id not in current and not (job.active and job.task in keep_running)
    ]
    if chosen and not force and len(chosen) * 2 > len(jobs):
        raise FatalError(
            f"pruning would delete {len(chosen)} of the {len(jobs)} Jobs orchestra manages "
            "(more than half): refused",
            hint="check the specs and the storage are the right ones; --force prunes anyway",
        )
    return chosen
